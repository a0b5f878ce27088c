//! Generic HMAC, for providers hookd has no file for: everything about the scheme comes from a
//! `[providers.<name>]` section with `scheme = "hmac"` (see [`HmacSpec`]). Built to fail closed:
//! the body is always signed, a timestamp header is only allowed when the timestamp is signed too,
//! and the MAC length must be the algorithm's.

use std::borrow::Cow;

use axum::http::HeaderName;

use super::hmac::{Algorithm, any_key_matches};
use super::section::{Section, SettingError};
use super::{
    RawRequest, Secrets, VerifiedWebhook, Verifier, VerifyError, body_digest_key, check_window,
    decode_base64, header_key, parse_json, parse_unix, signature_header,
};

/// How the MAC is written in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

/// One piece of the signed bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(String),
    Body,
    Timestamp,
}

/// Where a value (idempotency key, event type) is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A request header (lower-case name).
    Header(String),
    /// A JSON pointer into the body, e.g. `/id` or `/data/event_id`.
    Pointer(String),
}

/// A generic scheme that cannot be verified safely, or a part of it that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("a '}}' without its '{{'")]
    StrayClose,
    #[error("an unclosed '{{'")]
    Unclosed,
    #[error("unknown placeholder {{{0}}}: use {{body}} and {{timestamp}}")]
    Placeholder(String),
    #[error("{{body}} is missing: the body must be signed")]
    NoBody,
    #[error("{{body}} appears more than once")]
    BodyTwice,
    #[error("{0:?} is not a valid header name")]
    HeaderName(String),
    #[error(
        "timestamp_header is set but the signed template has no {{timestamp}}: an unsigned \
         timestamp can be changed by anyone"
    )]
    UnsignedTimestamp,
    #[error("the signed template uses {{timestamp}}: set timestamp_header")]
    NoTimestampHeader,
}

/// The fields of a `[providers.<name>]` section with `scheme = "hmac"`, besides `secret`.
pub(super) const FIELDS: &[&str] = &[
    "tolerance_secs",
    "header",
    "prefix",
    "algorithm",
    "encoding",
    "signed",
    "timestamp_header",
    "idempotency_header",
    "idempotency_pointer",
    "event_type_header",
    "event_type_pointer",
];

/// The scheme from its section; each mistake names the field.
pub(super) fn spec(s: &Section<'_>) -> Result<HmacSpec, SettingError> {
    let tolerance_secs = s.tolerance()?;
    let header_at = |field: &str| {
        let key = s.key(field);
        move |source: SpecError| SettingError::Spec {
            key,
            source: Box::new(source),
        }
    };
    let header = s.text("header")?.ok_or_else(|| SettingError::Required {
        key: s.key("header"),
        what: "the header that carries the signature",
    })?;
    let header = HmacSpec::header_name(header).map_err(header_at("header"))?;
    let algorithm = match s.text("algorithm")? {
        None => Algorithm::Sha256,
        Some(a) => Algorithm::from_name(a).ok_or_else(|| SettingError::Choice {
            key: s.key("algorithm"),
            value: a.to_owned(),
            expected: "sha1, sha256 or sha512",
        })?,
    };
    let encoding = match s.text("encoding")? {
        None | Some("hex") => Encoding::Hex,
        Some("base64") => Encoding::Base64,
        Some(other) => {
            return Err(SettingError::Choice {
                key: s.key("encoding"),
                value: other.to_owned(),
                expected: "hex or base64",
            });
        }
    };
    let signed = HmacSpec::parse_template(s.text("signed")?.unwrap_or("{body}"))
        .map_err(header_at("signed"))?;
    let timestamp_header = s
        .text("timestamp_header")?
        .map(HmacSpec::header_name)
        .transpose()
        .map_err(header_at("timestamp_header"))?;
    if timestamp_header.is_none() && s.has("tolerance_secs") {
        return Err(SettingError::Needs {
            key: s.key("tolerance_secs"),
            needs: "timestamp_header",
        });
    }
    let spec = HmacSpec {
        header,
        prefix: s.text("prefix")?.unwrap_or_default().to_owned(),
        algorithm,
        encoding,
        signed,
        timestamp_header,
        tolerance_secs,
        idempotency: value_source(s, "idempotency")?,
        event_type: value_source(s, "event_type")?,
    };
    spec.check().map_err(|source| SettingError::Scheme {
        provider: s.name().to_owned(),
        source: Box::new(source),
    })?;
    Ok(spec)
}

/// `<what>_header` or `<what>_pointer` (not both): where a value is read from.
fn value_source(s: &Section<'_>, what: &'static str) -> Result<Option<Source>, SettingError> {
    let header_field = format!("{what}_header");
    let pointer_field = format!("{what}_pointer");
    match (s.text(&header_field)?, s.text(&pointer_field)?) {
        (Some(_), Some(_)) => Err(SettingError::Both {
            what,
            provider: s.name().to_owned(),
        }),
        (Some(h), None) => HmacSpec::header_name(h)
            .map(|h| Some(Source::Header(h)))
            .map_err(|source| SettingError::Spec {
                key: s.key(&header_field),
                source: Box::new(source),
            }),
        (None, Some(p)) if p.starts_with('/') => Ok(Some(Source::Pointer(p.to_owned()))),
        (None, Some(p)) => Err(SettingError::Pointer {
            key: s.key(&pointer_field),
            value: p.to_owned(),
        }),
        (None, None) => Ok(None),
    }
}

/// A validated generic HMAC scheme (everything but the secrets).
#[derive(Debug, Clone)]
pub struct HmacSpec {
    /// Lower-case header name.
    pub header: String,
    /// Text before the MAC in the header, e.g. `sha256=`; empty for none.
    pub prefix: String,
    pub algorithm: Algorithm,
    pub encoding: Encoding,
    pub signed: Vec<Part>,
    pub timestamp_header: Option<String>,
    pub tolerance_secs: u64,
    pub idempotency: Option<Source>,
    pub event_type: Option<Source>,
}

impl HmacSpec {
    /// Parse a signed-bytes template such as `{timestamp}.{body}`. `{body}` must appear exactly
    /// once: a scheme that does not sign the body would accept any body.
    pub fn parse_template(template: &str) -> Result<Vec<Part>, SpecError> {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if rest[..open].contains('}') {
                return Err(SpecError::StrayClose);
            }
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let close = rest[open..].find('}').ok_or(SpecError::Unclosed)? + open;
            parts.push(match &rest[open + 1..close] {
                "body" => Part::Body,
                "timestamp" => Part::Timestamp,
                other => return Err(SpecError::Placeholder(other.to_owned())),
            });
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return Err(SpecError::StrayClose);
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        match parts.iter().filter(|p| **p == Part::Body).count() {
            1 => Ok(parts),
            0 => Err(SpecError::NoBody),
            _ => Err(SpecError::BodyTwice),
        }
    }

    /// A header name as configured, checked and lower-cased.
    pub fn header_name(name: &str) -> Result<String, SpecError> {
        HeaderName::from_bytes(name.trim().as_bytes())
            .map(|h| h.as_str().to_owned())
            .map_err(|_| SpecError::HeaderName(name.to_owned()))
    }

    /// Checks that span several settings.
    pub fn check(&self) -> Result<(), SpecError> {
        let signs_time = self.signed.contains(&Part::Timestamp);
        match (&self.timestamp_header, signs_time) {
            (Some(_), false) => Err(SpecError::UnsignedTimestamp),
            (None, true) => Err(SpecError::NoTimestampHeader),
            _ => Ok(()),
        }
    }

    fn needs_json(&self) -> bool {
        matches!(self.idempotency, Some(Source::Pointer(_)))
            || matches!(self.event_type, Some(Source::Pointer(_)))
    }
}

pub struct GenericVerifier {
    secrets: Secrets,
    spec: HmacSpec,
}

impl GenericVerifier {
    pub fn new(secrets: Secrets, spec: HmacSpec) -> Self {
        Self { secrets, spec }
    }
}

/// Strip the prefix and decode the MAC, which must be the algorithm's length.
pub(crate) fn parse_header(spec: &HmacSpec, value: &str) -> Result<Vec<u8>, VerifyError> {
    let encoded =
        value
            .strip_prefix(spec.prefix.as_str())
            .ok_or(VerifyError::MalformedSignature(
                "the configured prefix is missing",
            ))?;
    let mac = match spec.encoding {
        Encoding::Hex => hex::decode(encoded).ok(),
        Encoding::Base64 => decode_base64(encoded),
    }
    .ok_or(VerifyError::MalformedSignature(
        "signature is not in the configured encoding",
    ))?;
    if mac.len() != spec.algorithm.output_len() {
        return Err(VerifyError::MalformedSignature(
            "signature length does not match the algorithm",
        ));
    }
    Ok(mac)
}

fn extract(
    source: &Option<Source>,
    req: &RawRequest<'_>,
    json: Option<&serde_json::Value>,
) -> Option<String> {
    match source.as_ref()? {
        Source::Header(name) => header_key(req.headers, name),
        Source::Pointer(ptr) => match json?.pointer(ptr)? {
            serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        },
    }
}

#[async_trait::async_trait]
impl Verifier for GenericVerifier {
    async fn verify(
        &self,
        provider: &str,
        req: &RawRequest<'_>,
    ) -> Result<VerifiedWebhook, VerifyError> {
        let spec = &self.spec;
        let value = signature_header(req.headers, &spec.header, spec.header.clone())?;
        let mac = parse_header(spec, value)?;
        let timestamp = match &spec.timestamp_header {
            Some(name) => {
                let raw = header_key(req.headers, name)
                    .ok_or_else(|| VerifyError::MissingHeader(Cow::Owned(name.clone())))?;
                let ts = parse_unix(&raw)?;
                Some((ts, raw))
            }
            None => None,
        };
        let parts: Vec<&[u8]> = spec
            .signed
            .iter()
            .map(|p| match p {
                Part::Literal(s) => s.as_bytes(),
                Part::Body => req.body.as_ref(),
                // `check` guarantees a timestamp header whenever the template has {timestamp}.
                Part::Timestamp => timestamp
                    .as_ref()
                    .map_or(&b""[..], |(_, raw)| raw.as_bytes()),
            })
            .collect();
        let keys: Vec<&[u8]> = self.secrets.iter().map(|s| s.expose().as_bytes()).collect();
        if !any_key_matches(spec.algorithm, &keys, &parts, &[mac]) {
            return Err(VerifyError::InvalidSignature);
        }
        if let Some((ts, _)) = timestamp {
            check_window(ts, req.now_unix, spec.tolerance_secs)?;
        }
        let json = if spec.needs_json() {
            Some(parse_json::<serde_json::Value>(req.body)?)
        } else {
            None
        };
        let key = extract(&spec.idempotency, req, json.as_ref())
            .unwrap_or_else(|| body_digest_key(req.body));
        let event_type =
            extract(&spec.event_type, req, json.as_ref()).unwrap_or_else(|| "unknown".to_owned());
        Ok(VerifiedWebhook::new(
            provider,
            key,
            event_type,
            req,
            &[spec.header.as_str()],
        ))
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use proptest::prelude::*;

    use super::*;
    use crate::verify::hmac::mac;
    use crate::verify::tests::{headers, run};

    fn spec() -> HmacSpec {
        HmacSpec {
            header: "x-acme-signature".into(),
            prefix: "sha512=".into(),
            algorithm: Algorithm::Sha512,
            encoding: Encoding::Base64,
            signed: HmacSpec::parse_template("{timestamp}.{body}").unwrap(),
            timestamp_header: Some("x-acme-timestamp".into()),
            tolerance_secs: 60,
            idempotency: Some(Source::Pointer("/data/id".into())),
            event_type: Some(Source::Header("x-acme-event".into())),
        }
    }

    fn sign(secret: &str, ts: i64, body: &str) -> String {
        let m = mac(
            Algorithm::Sha512,
            secret.as_bytes(),
            &[format!("{ts}.{body}").as_bytes()],
        );
        format!(
            "sha512={}",
            base64::engine::general_purpose::STANDARD.encode(m)
        )
    }

    #[test]
    fn template_parsing() {
        assert_eq!(HmacSpec::parse_template("{body}").unwrap(), [Part::Body]);
        assert_eq!(
            HmacSpec::parse_template("v0:{timestamp}:{body}").unwrap(),
            [
                Part::Literal("v0:".into()),
                Part::Timestamp,
                Part::Literal(":".into()),
                Part::Body
            ]
        );
        for bad in [
            "{timestamp}",
            "{body}{body}",
            "{id}.{body}",
            "{body",
            "}{body}",
            "",
        ] {
            assert!(HmacSpec::parse_template(bad).is_err(), "{bad:?}");
        }
        let mut s = spec();
        s.timestamp_header = None;
        assert!(s.check().is_err());
        s.signed = vec![Part::Body];
        s.check().unwrap();
        s.timestamp_header = Some("x-t".into());
        assert!(s.check().is_err());
    }

    #[test]
    fn verifies_as_configured() {
        let v = GenericVerifier::new(Secrets::new(["old", "acme-secret"]).unwrap(), spec());
        let body = r#"{"data":{"id":"acme_42"}}"#;
        let send = |sig: &str, ts: i64, now: i64, body: &str| {
            let t = ts.to_string();
            let h = headers(&[
                ("x-acme-signature", sig),
                ("x-acme-timestamp", &t),
                ("x-acme-event", "order.paid"),
            ]);
            run(&v, &h, body, now)
        };
        let w = send(&sign("acme-secret", 1000, body), 1000, 1000, body).unwrap();
        assert_eq!(
            (w.idempotency_key(), w.event_type()),
            ("acme_42", "order.paid")
        );
        assert_eq!(w.headers()["x-acme-signature"], "[redacted]");
        send(&sign("old", 1000, body), 1000, 1000, body).unwrap();
        assert_eq!(
            send(&sign("acme-secret", 1000, body), 1001, 1000, body).unwrap_err(),
            VerifyError::InvalidSignature,
            "the timestamp is signed"
        );
        assert_eq!(
            send(&sign("acme-secret", 1000, body), 1000, 1061, body)
                .unwrap_err()
                .reason(),
            "timestamp_out_of_tolerance"
        );
        let sig = sign("acme-secret", 1000, body);
        assert_eq!(
            send(&sig[7..], 1000, 1000, body).unwrap_err().reason(),
            "malformed_signature"
        );
        assert_eq!(
            send(&sig[..40], 1000, 1000, body).unwrap_err().reason(),
            "malformed_signature"
        );
        let no_id = r#"{"data":{}}"#;
        let w = send(&sign("acme-secret", 1000, no_id), 1000, 1000, no_id).unwrap();
        assert!(w.idempotency_key().starts_with("sha256:"));
        let h = headers(&[("x-acme-signature", sig.as_str())]);
        assert_eq!(
            run(&v, &h, body, 1000).unwrap_err(),
            VerifyError::MissingHeader("x-acme-timestamp".into())
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn parsers_never_panic(s in ".{0,120}") {
            let _ = parse_header(&spec(), &s);
            let _ = HmacSpec::parse_template(&s);
        }
    }
}

//! Twilio: `X-Twilio-Signature: <base64>`, an HMAC keyed with the account's auth token over the URL
//! Twilio called followed by every POST parameter, sorted by name, each as `name` + `value`.
//!
//! - JSON bodies are not in the signed string; the URL carries `bodySHA256=<hex SHA-256 of the
//!   body>` instead, which is checked here, and the parameters are empty.
//! - Twilio is inconsistent about the port in the URL it signs, so, like its SDKs, both the URL
//!   with its port and without are tried.
//! - A Webhook Setting makes Twilio sign with the setting's shared key instead of the auth token,
//!   and say so in `X-Twilio-Webhooks-Signature-Settings: key=<id>,algorithm=HMAC_SHA256`.
//!
//! The parameter order follows Twilio's Python SDK: names sorted, each name's distinct values
//! sorted. `I-Twilio-Idempotency-Token` is the idempotency key.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::hmac::{Algorithm, any_key_matches};
use super::{
    RawRequest, Secrets, VerifiedWebhook, Verifier, VerifyError, body_digest_key, called_url,
    decode_base64, header_key, header_str, is_form, parse_json, signature_header,
};

const HEADER: &str = "x-twilio-signature";
const SETTINGS: &str = "x-twilio-webhooks-signature-settings";

pub struct TwilioVerifier {
    auth_tokens: Secrets,
    shared_keys: Option<Secrets>,
    public_url: Option<String>,
}

impl TwilioVerifier {
    pub fn new(
        auth_tokens: Secrets,
        shared_keys: Option<Secrets>,
        public_url: Option<String>,
    ) -> Self {
        Self {
            auth_tokens,
            shared_keys,
            public_url,
        }
    }
}

/// Decode the base64 MAC; SHA-1 and SHA-256 MACs are both possible, so only the encoding is checked.
pub(crate) fn parse_header(value: &str) -> Result<Vec<u8>, VerifyError> {
    let mac =
        decode_base64(value).ok_or(VerifyError::MalformedSignature("signature is not base64"))?;
    if mac.len() != 20 && mac.len() != 32 {
        return Err(VerifyError::MalformedSignature(
            "signature is neither 20 nor 32 bytes",
        ));
    }
    Ok(mac)
}

/// The algorithm named by `X-Twilio-Webhooks-Signature-Settings`; without `algorithm=`, SHA-1.
pub(crate) fn parse_settings(value: &str) -> Result<Algorithm, VerifyError> {
    let named = value.split(',').find_map(|part| {
        let (k, v) = part.split_once('=')?;
        (k.trim() == "algorithm" && !v.trim().is_empty()).then(|| v.trim())
    });
    match named {
        None => Ok(Algorithm::Sha1),
        Some(a) if a.eq_ignore_ascii_case("HMAC_SHA1") => Ok(Algorithm::Sha1),
        Some(a) if a.eq_ignore_ascii_case("HMAC_SHA256") => Ok(Algorithm::Sha256),
        Some(other) => Err(VerifyError::unsupported(other)),
    }
}

/// The signed URL as received and its other form: without the port if it has one, else with the
/// scheme's default port.
pub(crate) fn port_variants(url: &str) -> [String; 2] {
    let Some((scheme, rest)) = url.split_once("://") else {
        return [url.to_owned(), url.to_owned()];
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let port_at = authority
        .rfind(':')
        .filter(|&i| !authority[i..].contains(']'))
        .filter(|&i| {
            let digits = &authority[i + 1..];
            !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
        });
    let other = match port_at {
        Some(i) => format!("{scheme}://{}{tail}", &authority[..i]),
        None => {
            let port = if scheme.eq_ignore_ascii_case("https") {
                443
            } else {
                80
            };
            format!("{scheme}://{authority}:{port}{tail}")
        }
    };
    [url.to_owned(), other]
}

/// `name` + `value` of every form parameter: names sorted, each name's distinct values sorted.
pub(crate) fn sorted_params(body: &[u8]) -> String {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    pairs.sort();
    pairs.dedup();
    let mut out = String::new();
    for (k, v) in pairs {
        out.push_str(&k);
        out.push_str(&v);
    }
    out
}

/// For JSON bodies: the `bodySHA256` the URL carries, if any.
fn body_hash_param(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "bodySHA256")
        .map(|(_, v)| v.into_owned())
}

/// Form bodies from Twilio say what they are about through their status parameters.
fn form_event_type(body: &[u8]) -> String {
    let mut kind = None;
    for (k, v) in form_urlencoded::parse(body) {
        match k.as_ref() {
            "MessageStatus" | "SmsStatus" => return format!("message.{v}"),
            "CallStatus" => kind = Some(format!("call.{v}")),
            _ => {}
        }
    }
    kind.unwrap_or_else(|| "request".to_owned())
}

#[async_trait::async_trait]
impl Verifier for TwilioVerifier {
    async fn verify(
        &self,
        provider: &str,
        req: &RawRequest<'_>,
    ) -> Result<VerifiedWebhook, VerifyError> {
        let value = signature_header(req.headers, HEADER, "X-Twilio-Signature")?;
        let mac = parse_header(value)?;
        let (algorithm, keys) = match header_str(req.headers, SETTINGS) {
            None => (Algorithm::Sha1, &self.auth_tokens),
            Some(settings) => {
                let algorithm = parse_settings(settings)?;
                // Signed with a Webhook Setting's shared key; without one configured nothing matches.
                match &self.shared_keys {
                    Some(keys) => (algorithm, keys),
                    None => return Err(VerifyError::InvalidSignature),
                }
            }
        };
        let url = called_url(self.public_url.as_deref(), req)?;
        let body_hash = body_hash_param(req.uri.query());
        let params = match &body_hash {
            Some(expected) => {
                let actual = hex::encode(Sha256::digest(req.body));
                if !bool::from(actual.as_bytes().ct_eq(expected.as_bytes())) {
                    return Err(VerifyError::InvalidSignature);
                }
                String::new()
            }
            None if is_form(req.headers) => sorted_params(req.body),
            None => String::new(),
        };
        let keys: Vec<&[u8]> = keys.iter().map(|s| s.expose().as_bytes()).collect();
        let candidates = [mac];
        let matched = port_variants(&url).iter().any(|u| {
            any_key_matches(
                algorithm,
                &keys,
                &[u.as_bytes(), params.as_bytes()],
                &candidates,
            )
        });
        if !matched {
            return Err(VerifyError::InvalidSignature);
        }
        let event_type = if body_hash.is_some() {
            parse_json::<serde_json::Value>(req.body)?
                .get("type")
                .and_then(|t| t.as_str())
                .unwrap_or("request")
                .to_owned()
        } else {
            form_event_type(req.body)
        };
        let key = header_key(req.headers, "i-twilio-idempotency-token")
            .unwrap_or_else(|| body_digest_key(req.body));
        Ok(VerifiedWebhook::new(
            provider,
            key,
            event_type,
            req,
            &[HEADER],
        ))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde::Deserialize;

    use super::*;
    use crate::verify::tests::{fixture_cases, headers, run_at};

    #[derive(Deserialize)]
    struct Case {
        name: String,
        token: String,
        url: String,
        body: String,
        content_type: String,
        signature: String,
        #[serde(default)]
        settings: Option<String>,
    }

    fn split_url(url: &str) -> (String, String) {
        let rest = url.split_once("://").unwrap().1;
        let i = rest.find('/').unwrap();
        (
            format!("{}://{}", url.split_once("://").unwrap().0, &rest[..i]),
            rest[i..].to_owned(),
        )
    }

    #[test]
    fn known_answer_from_twilio_docs() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let body = "CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1234&From=%2B12349013030&To=%2B18005551212";
        let signed = format!("{url}{}", sorted_params(body.as_bytes()));
        let mac = crate::verify::hmac::mac(Algorithm::Sha1, b"12345", &[signed.as_bytes()]);
        assert_eq!(
            decode_base64("0/KCTR6DLpKmkAf8muzZqo1nDgQ=").unwrap(),
            mac,
            "{signed}"
        );
        let v = TwilioVerifier::new(
            Secrets::new(["12345"]).unwrap(),
            None,
            Some("https://mycompany.com".into()),
        );
        let h = headers(&[
            (HEADER, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="),
            ("content-type", "application/x-www-form-urlencoded"),
        ]);
        let w = run_at(&v, &h, body.as_bytes(), 0, "/myapp.php?foo=1&bar=2").unwrap();
        assert_eq!(w.event_type(), "request");
    }

    #[test]
    fn sdk_fixtures_verify() {
        let cases: Vec<Case> = fixture_cases(include_str!("../../tests/fixtures/twilio.json"));
        assert!(cases.len() >= 4);
        for c in cases {
            let (base, path) = split_url(&c.url);
            let (tokens, shared) = match c.settings {
                Some(_) => (
                    Secrets::new(["not-this-one"]),
                    Secrets::new([c.token.as_str()]),
                ),
                None => (Secrets::new([c.token.as_str()]), None),
            };
            let v = TwilioVerifier::new(tokens.unwrap(), shared, Some(base.clone()));
            let mut pairs = vec![
                (HEADER, c.signature.as_str()),
                ("content-type", &c.content_type),
            ];
            if let Some(s) = &c.settings {
                pairs.push((SETTINGS, s));
            }
            let h = headers(&pairs);
            run_at(&v, &h, c.body.as_bytes(), 0, &path)
                .unwrap_or_else(|e| panic!("{}: {e}", c.name));
            let tampered = format!("{}&x=1", c.body);
            assert_eq!(
                run_at(&v, &h, tampered.as_bytes(), 0, &path).unwrap_err(),
                VerifyError::InvalidSignature,
                "{}",
                c.name
            );
            let elsewhere = TwilioVerifier::new(
                Secrets::new([c.token.as_str()]).unwrap(),
                Secrets::new([c.token.as_str()]),
                Some("https://other.example.com".into()),
            );
            assert_eq!(
                run_at(&elsewhere, &h, c.body.as_bytes(), 0, &path).unwrap_err(),
                VerifyError::InvalidSignature,
                "{}: the URL is signed",
                c.name
            );
        }
    }

    #[test]
    fn ports_and_settings() {
        assert_eq!(
            port_variants("https://a.example:8443/x?y=1"),
            ["https://a.example:8443/x?y=1", "https://a.example/x?y=1"]
        );
        assert_eq!(
            port_variants("https://a.example/x"),
            ["https://a.example/x", "https://a.example:443/x"]
        );
        assert_eq!(
            port_variants("http://[::1]/x"),
            ["http://[::1]/x", "http://[::1]:80/x"]
        );
        assert_eq!(
            parse_settings("key=k,algorithm=HMAC_SHA256"),
            Ok(Algorithm::Sha256)
        );
        assert_eq!(parse_settings("key=k"), Ok(Algorithm::Sha1));
        assert_eq!(
            parse_settings("algorithm=HMAC_MD5").unwrap_err().reason(),
            "unsupported_algorithm"
        );
        assert_eq!(sorted_params(b"b=2&a=1&b=1&a=1"), "a1b1b2");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn parsers_never_panic(s in ".{0,80}", body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_header(&s);
            let _ = parse_settings(&s);
            let _ = port_variants(&s);
            let _ = port_variants(&format!("https://{s}"));
            let _ = body_hash_param(Some(&s));
            let _ = sorted_params(&body);
            let _ = form_event_type(&body);
        }
    }
}

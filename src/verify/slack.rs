//! Slack: `X-Slack-Signature: v0=<hex>`, HMAC-SHA256 with the app's signing secret over
//! `v0:<X-Slack-Request-Timestamp>:<raw body>` (form bodies too), within 300 s.
//!
//! Events API bodies are JSON whose `event_id` is stable across Slack's retries; slash commands and
//! interactivity payloads are form-encoded, carry no id and fall back to the body digest. A signed
//! `url_verification` is the handshake Slack sends when the URL is entered: it is answered with its
//! challenge and not stored.

use serde::Deserialize;

use super::hmac::any_secret_matches;
use super::{
    RawRequest, Secrets, VerifiedWebhook, Verifier, VerifyError, body_digest_key, check_window,
    is_form, parse_json, parse_unix, required_header, signature_header,
};

const HEADER: &str = "x-slack-signature";
const TIMESTAMP: &str = "x-slack-request-timestamp";

pub struct SlackVerifier {
    secrets: Secrets,
    tolerance_secs: u64,
}

impl SlackVerifier {
    pub fn new(secrets: Secrets, tolerance_secs: u64) -> Self {
        Self {
            secrets,
            tolerance_secs,
        }
    }
}

/// Decode `v0=<64 hex>`.
pub(crate) fn parse_header(value: &str) -> Result<Vec<u8>, VerifyError> {
    let hex_part = value
        .strip_prefix("v0=")
        .ok_or(VerifyError::MalformedSignature("expected v0=<hex>"))?;
    let mac = hex::decode(hex_part)
        .map_err(|_| VerifyError::MalformedSignature("signature is not hex"))?;
    if mac.len() != 32 {
        return Err(VerifyError::MalformedSignature("signature is not 32 bytes"));
    }
    Ok(mac)
}

#[derive(Deserialize)]
struct SlackBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    event_id: Option<String>,
    event: Option<InnerEvent>,
    challenge: Option<String>,
}

#[derive(Deserialize)]
struct InnerEvent {
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct Interaction {
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// Slash commands say which command; interactivity sends `payload=<json>` with its type.
fn form_event_type(body: &[u8]) -> String {
    let mut payload = None;
    for (k, v) in form_urlencoded::parse(body) {
        match k.as_ref() {
            "command" => return "slash_command".to_owned(),
            "payload" => payload = Some(v.into_owned()),
            _ => {}
        }
    }
    payload
        .and_then(|p| serde_json::from_str::<Interaction>(&p).ok())
        .and_then(|i| i.kind)
        .unwrap_or_else(|| "interaction".to_owned())
}

#[async_trait::async_trait]
impl Verifier for SlackVerifier {
    async fn verify(
        &self,
        provider: &str,
        req: &RawRequest<'_>,
    ) -> Result<VerifiedWebhook, VerifyError> {
        let value = signature_header(req.headers, HEADER, "X-Slack-Signature")?;
        let ts_raw = required_header(req.headers, TIMESTAMP, "X-Slack-Request-Timestamp")?;
        let mac = parse_header(value)?;
        let ts = parse_unix(ts_raw)?;
        let parts: [&[u8]; 4] = [b"v0:", ts_raw.as_bytes(), b":", req.body];
        if !any_secret_matches(&self.secrets, &parts, &[mac]) {
            return Err(VerifyError::InvalidSignature);
        }
        check_window(ts, req.now_unix, self.tolerance_secs)?;
        if is_form(req.headers) {
            let event_type = form_event_type(req.body);
            let key = body_digest_key(req.body);
            return Ok(VerifiedWebhook::new(
                provider,
                key,
                event_type,
                req,
                &[HEADER],
            ));
        }
        let body: SlackBody = parse_json(req.body)?;
        let kind = body.kind.unwrap_or_else(|| "unknown".to_owned());
        let event_type = match body.event.and_then(|e| e.kind) {
            Some(inner) if kind == "event_callback" => inner,
            _ => kind,
        };
        let key = body.event_id.unwrap_or_else(|| body_digest_key(req.body));
        let verified = VerifiedWebhook::new(provider, key, event_type, req, &[HEADER]);
        match body.challenge {
            Some(c) if verified.event_type() == "url_verification" => {
                Ok(verified.with_challenge(c))
            }
            _ => Ok(verified),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde::Deserialize;

    use super::*;
    use crate::verify::tests::{fixture_cases, headers, run};

    #[derive(Deserialize)]
    struct Case {
        name: String,
        secret: String,
        timestamp: i64,
        body: String,
        signature: String,
        content_type: String,
    }

    fn slack(secrets: &[&str]) -> SlackVerifier {
        SlackVerifier::new(Secrets::new(secrets.iter().copied()).unwrap(), 300)
    }

    #[test]
    fn sdk_fixtures_verify() {
        let cases: Vec<Case> = fixture_cases(include_str!("../../tests/fixtures/slack.json"));
        assert!(cases.len() >= 3);
        for c in cases {
            let ts = c.timestamp.to_string();
            let h = headers(&[
                (HEADER, &c.signature),
                (TIMESTAMP, &ts),
                ("content-type", &c.content_type),
            ]);
            let v = slack(&[&c.secret]);
            let w = run(&v, &h, &c.body, c.timestamp).unwrap_or_else(|e| panic!("{}: {e}", c.name));
            assert_eq!(w.body().as_ref(), c.body.as_bytes());
            if c.content_type == "application/json" {
                assert!(w.idempotency_key().starts_with("Ev"), "{}", c.name);
            }
            let tampered = format!("{} ", c.body);
            assert_eq!(
                run(&v, &h, &tampered, c.timestamp).unwrap_err(),
                VerifyError::InvalidSignature
            );
            assert_eq!(
                run(&slack(&["other"]), &h, &c.body, c.timestamp).unwrap_err(),
                VerifyError::InvalidSignature
            );
            for now in [c.timestamp - 301, c.timestamp + 301] {
                assert_eq!(
                    run(&v, &h, &c.body, now).unwrap_err().reason(),
                    "timestamp_out_of_tolerance"
                );
            }
            run(&slack(&["old", &c.secret]), &h, &c.body, c.timestamp).unwrap();
        }
    }

    #[test]
    fn event_types_and_challenge() {
        let v = slack(&["s"]);
        let sign = |body: &str| {
            let mac = crate::verify::hmac::hmac_sha256(b"s", &[b"v0:100:", body.as_bytes()]);
            format!("v0={}", hex::encode(mac))
        };
        let send = |body: &str, ct: &str| {
            let sig = sign(body);
            run(
                &v,
                &headers(&[(HEADER, &sig), (TIMESTAMP, "100"), ("content-type", ct)]),
                body,
                100,
            )
        };
        let w = send(
            r#"{"type":"event_callback","event_id":"Ev1","event":{"type":"app_mention"}}"#,
            "application/json",
        )
        .unwrap();
        assert_eq!(
            (w.event_type(), w.idempotency_key()),
            ("app_mention", "Ev1")
        );
        assert!(w.challenge().is_none());
        let w = send(
            r#"{"token":"t","challenge":"3eZbrw1aB","type":"url_verification"}"#,
            "application/json",
        )
        .unwrap();
        assert_eq!(w.challenge(), Some("3eZbrw1aB"));
        let form = "payload=%7B%22type%22%3A%22block_actions%22%7D";
        let w = send(form, "application/x-www-form-urlencoded").unwrap();
        assert_eq!(w.event_type(), "block_actions");
        let w = send(
            "command=%2Fdeploy&text=now",
            "application/x-www-form-urlencoded",
        )
        .unwrap();
        assert_eq!(w.event_type(), "slash_command");
        assert!(w.idempotency_key().starts_with("sha256:"));
    }

    #[test]
    fn header_edge_cases() {
        let v = slack(&["s"]);
        let check =
            |sig: &str, ts: &str| run(&v, &headers(&[(HEADER, sig), (TIMESTAMP, ts)]), "{}", 100);
        let good = format!(
            "v0={}",
            hex::encode(crate::verify::hmac::hmac_sha256(b"s", &[b"v0:100:{}"]))
        );
        check(&good, "100").unwrap();
        assert_eq!(
            check(&good[3..], "100").unwrap_err().reason(),
            "malformed_signature"
        );
        assert_eq!(
            check(&good[..20], "100").unwrap_err().reason(),
            "malformed_signature"
        );
        assert_eq!(
            check("v0=zz", "100").unwrap_err().reason(),
            "malformed_signature"
        );
        assert_eq!(
            check(&good, "soon").unwrap_err().reason(),
            "malformed_timestamp"
        );
        assert_eq!(
            run(&v, &headers(&[(HEADER, &good)]), "{}", 100)
                .unwrap_err()
                .reason(),
            "missing_header"
        );
        assert_eq!(
            run(&v, &headers(&[(TIMESTAMP, "100")]), "{}", 100)
                .unwrap_err()
                .reason(),
            "missing_signature"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn parsers_never_panic(s in ".{0,80}", body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_header(&s);
            let _ = parse_unix(&s);
            let _ = form_event_type(&body);
        }
    }
}

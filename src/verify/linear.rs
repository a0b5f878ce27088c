//! Linear: `Linear-Signature: <hex>`, HMAC-SHA256 over the raw body with the webhook's signing
//! secret. The time is inside the signed body (`webhookTimestamp`, in milliseconds) and must be
//! within 60 s, past or future, as Linear's SDK requires. `Linear-Delivery` is the idempotency key;
//! the event type is the body's `type` and `action`, e.g. `Issue.create`.

use serde::Deserialize;

use super::hmac::any_secret_matches;
use super::{
    RawRequest, Secrets, VerifiedWebhook, Verifier, VerifyError, body_digest_key, check_window,
    header_key, parse_json, signature_header,
};

const HEADER: &str = "linear-signature";

pub struct LinearVerifier {
    secrets: Secrets,
    tolerance_secs: u64,
}

impl LinearVerifier {
    pub fn new(secrets: Secrets, tolerance_secs: u64) -> Self {
        Self {
            secrets,
            tolerance_secs,
        }
    }
}

/// Decode the 64 hex digits.
pub(crate) fn parse_header(value: &str) -> Result<Vec<u8>, VerifyError> {
    let mac =
        hex::decode(value).map_err(|_| VerifyError::MalformedSignature("signature is not hex"))?;
    if mac.len() != 32 {
        return Err(VerifyError::MalformedSignature("signature is not 32 bytes"));
    }
    Ok(mac)
}

#[derive(Deserialize)]
struct LinearEvent {
    #[serde(rename = "type")]
    kind: Option<String>,
    action: Option<String>,
    #[serde(rename = "webhookTimestamp")]
    webhook_timestamp: Option<serde_json::Number>,
}

#[async_trait::async_trait]
impl Verifier for LinearVerifier {
    async fn verify(
        &self,
        provider: &str,
        req: &RawRequest<'_>,
    ) -> Result<VerifiedWebhook, VerifyError> {
        let value = signature_header(req.headers, HEADER, "Linear-Signature")?;
        let mac = parse_header(value)?;
        if !any_secret_matches(&self.secrets, &[req.body], &[mac]) {
            return Err(VerifyError::InvalidSignature);
        }
        let event: LinearEvent = parse_json(req.body)?;
        let millis = event.webhook_timestamp.and_then(|n| n.as_i64()).ok_or(
            VerifyError::MalformedTimestamp("no integer webhookTimestamp in the body"),
        )?;
        check_window(millis.div_euclid(1000), req.now_unix, self.tolerance_secs)?;
        let key =
            header_key(req.headers, "linear-delivery").unwrap_or_else(|| body_digest_key(req.body));
        let event_type = match (event.kind, event.action) {
            (Some(k), Some(a)) => format!("{k}.{a}"),
            (Some(k), None) => k,
            _ => "unknown".to_owned(),
        };
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

    use super::*;
    use crate::verify::hmac::hmac_sha256;
    use crate::verify::tests::{headers, run};

    fn body(ms: i64) -> String {
        format!(
            r#"{{"action":"create","type":"Issue","data":{{"id":"2174add1"}},"webhookTimestamp":{ms}}}"#
        )
    }

    fn linear() -> LinearVerifier {
        LinearVerifier::new(Secrets::new(["lin_wh_old", "lin_wh_secret"]).unwrap(), 60)
    }

    fn send(body: &str, secret: &str, now: i64) -> Result<VerifiedWebhook, VerifyError> {
        let sig = hex::encode(hmac_sha256(secret.as_bytes(), &[body.as_bytes()]));
        let h = headers(&[
            (HEADER, &sig),
            ("linear-delivery", "234d1a4e-b617-4388-90fe-adc3633d6b72"),
        ]);
        run(&linear(), &h, body, now)
    }

    #[test]
    fn window_on_signed_body_timestamp() {
        let b = body(1_700_000_000_500);
        let w = send(&b, "lin_wh_secret", 1_700_000_030).unwrap();
        assert_eq!(w.idempotency_key(), "234d1a4e-b617-4388-90fe-adc3633d6b72");
        assert_eq!(w.event_type(), "Issue.create");
        send(&b, "lin_wh_old", 1_700_000_000).unwrap();
        for now in [1_700_000_061, 1_699_999_939] {
            assert_eq!(
                send(&b, "lin_wh_secret", now).unwrap_err().reason(),
                "timestamp_out_of_tolerance"
            );
        }
        assert_eq!(
            send(&b, "other", 1_700_000_000).unwrap_err(),
            VerifyError::InvalidSignature
        );
        assert_eq!(
            send(r#"{"type":"Issue"}"#, "lin_wh_secret", 0)
                .unwrap_err()
                .reason(),
            "malformed_timestamp"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn parser_never_panics(s in ".{0,80}") {
            let _ = parse_header(&s);
        }
    }
}

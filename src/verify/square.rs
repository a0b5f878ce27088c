//! Square: `x-square-hmacsha256-signature: <base64>`, HMAC-SHA256 with the subscription's signature
//! key over the notification URL followed by the raw body. The URL must be exactly the one entered
//! in Square, which hookd rebuilds as the public base URL plus the path it was called on (see
//! `called_url`). Nothing time-like is signed. Body `event_id` is the idempotency key, `type` the
//! event type.

use serde::Deserialize;

use super::hmac::any_secret_matches;
use super::{
    RawRequest, Secrets, VerifiedWebhook, Verifier, VerifyError, body_digest_key, called_url,
    parse_json, shopify, signature_header,
};

const HEADER: &str = "x-square-hmacsha256-signature";

pub struct SquareVerifier {
    secrets: Secrets,
    public_url: Option<String>,
}

impl SquareVerifier {
    pub fn new(secrets: Secrets, public_url: Option<String>) -> Self {
        Self {
            secrets,
            public_url,
        }
    }
}

#[derive(Deserialize)]
struct SquareEvent {
    event_id: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
}

#[async_trait::async_trait]
impl Verifier for SquareVerifier {
    async fn verify(
        &self,
        provider: &str,
        req: &RawRequest<'_>,
    ) -> Result<VerifiedWebhook, VerifyError> {
        let value = signature_header(req.headers, HEADER, "x-square-hmacsha256-signature")?;
        // The same encoding as Shopify's: base64 of an HMAC-SHA256.
        let mac = shopify::parse_header(value)?;
        let url = called_url(self.public_url.as_deref(), req)?;
        if !any_secret_matches(&self.secrets, &[url.as_bytes(), req.body], &[mac]) {
            return Err(VerifyError::InvalidSignature);
        }
        let event: SquareEvent = parse_json(req.body)?;
        let key = event.event_id.unwrap_or_else(|| body_digest_key(req.body));
        let event_type = event.event_type.unwrap_or_else(|| "unknown".to_owned());
        Ok(VerifiedWebhook::new(
            provider,
            key,
            event_type,
            req,
            &[HEADER, "x-square-signature"],
        ))
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;
    use crate::verify::hmac::hmac_sha256;
    use crate::verify::tests::{headers, run_at};

    const BODY: &str = r#"{"merchant_id":"MLEFBHHSJGVHD","type":"payment.updated","event_id":"1a3e2a1f-0ee6-4b3b-8b6f-4e3f6b1e2a11","data":{}}"#;

    fn sig(key: &str, url: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(hmac_sha256(
            key.as_bytes(),
            &[url.as_bytes(), BODY.as_bytes()],
        ))
    }

    #[test]
    fn signs_public_url_and_body() {
        let public = "https://hooks.example.com";
        let v = SquareVerifier::new(
            Secrets::new(["old", "sq-key"]).unwrap(),
            Some(format!("{public}/")),
        );
        let url = format!("{public}/webhooks/square");
        let h = headers(&[(HEADER, &sig("sq-key", &url)), ("host", "127.0.0.1:3001")]);
        let w = run_at(&v, &h, BODY.as_bytes(), 0, "/webhooks/square").unwrap();
        assert_eq!(w.idempotency_key(), "1a3e2a1f-0ee6-4b3b-8b6f-4e3f6b1e2a11");
        assert_eq!(w.event_type(), "payment.updated");
        // Signed for another URL: rejected.
        let h = headers(&[(
            HEADER,
            &sig("sq-key", "https://evil.example/webhooks/square"),
        )]);
        assert_eq!(
            run_at(&v, &h, BODY.as_bytes(), 0, "/webhooks/square").unwrap_err(),
            VerifyError::InvalidSignature
        );
    }

    #[test]
    fn without_public_url_the_host_header_is_used() {
        let v = SquareVerifier::new(Secrets::new(["k"]).unwrap(), None);
        let url = "http://127.0.0.1:3001/webhooks/square?x=1";
        let h = headers(&[(HEADER, &sig("k", url)), ("host", "127.0.0.1:3001")]);
        run_at(&v, &h, BODY.as_bytes(), 0, "/webhooks/square?x=1").unwrap();
        let h = headers(&[(HEADER, &sig("k", url))]);
        assert_eq!(
            run_at(&v, &h, BODY.as_bytes(), 0, "/webhooks/square?x=1")
                .unwrap_err()
                .reason(),
            "missing_header"
        );
    }
}

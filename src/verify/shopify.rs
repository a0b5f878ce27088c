//! Shopify: `X-Shopify-Hmac-Sha256: <base64>`, HMAC-SHA256 over the raw body with the app's client
//! secret. Nothing time-like is signed, so there is no window. `X-Shopify-Webhook-Id` is stable
//! across retries (the idempotency key, required: only the body is signed, so the store also
//! treats a byte-identical body within the replay window as a duplicate); `X-Shopify-Topic` is
//! the event type.

use serde::de::IgnoredAny;

use super::hmac::any_secret_matches;
use super::{
    RawRequest, Secrets, VerifiedWebhook, Verifier, VerifyError, decode_base64, header_key,
    header_str, parse_json, signature_header,
};

const HEADER: &str = "x-shopify-hmac-sha256";

pub struct ShopifyVerifier {
    secrets: Secrets,
}

impl ShopifyVerifier {
    pub fn new(secrets: Secrets) -> Self {
        Self { secrets }
    }
}

/// Decode the base64 HMAC-SHA256.
pub(crate) fn parse_header(value: &str) -> Result<Vec<u8>, VerifyError> {
    let mac =
        decode_base64(value).ok_or(VerifyError::MalformedSignature("signature is not base64"))?;
    if mac.len() != 32 {
        return Err(VerifyError::MalformedSignature("signature is not 32 bytes"));
    }
    Ok(mac)
}

#[async_trait::async_trait]
impl Verifier for ShopifyVerifier {
    async fn verify(
        &self,
        provider: &str,
        req: &RawRequest<'_>,
    ) -> Result<VerifiedWebhook, VerifyError> {
        let value = signature_header(req.headers, HEADER, "X-Shopify-Hmac-Sha256")?;
        let mac = parse_header(value)?;
        if !any_secret_matches(&self.secrets, &[req.body], &[mac]) {
            return Err(VerifyError::InvalidSignature);
        }
        parse_json::<IgnoredAny>(req.body)?;
        let key = header_key(req.headers, "x-shopify-webhook-id")
            .or_else(|| header_key(req.headers, "x-shopify-event-id"))
            .ok_or(VerifyError::MissingHeader("X-Shopify-Webhook-Id".into()))?;
        let event_type = header_str(req.headers, "x-shopify-topic")
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown")
            .to_owned();
        Ok(VerifiedWebhook::new(provider, key, event_type, req, &[HEADER]).signed_only_over_body())
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
        body: String,
        hmac: String,
    }

    fn shopify(secrets: &[&str]) -> ShopifyVerifier {
        ShopifyVerifier::new(Secrets::new(secrets.iter().copied()).unwrap())
    }

    #[test]
    fn sdk_fixtures_verify() {
        let cases: Vec<Case> = fixture_cases(include_str!("../../tests/fixtures/shopify.json"));
        assert!(cases.len() >= 3);
        for c in cases {
            let h = headers(&[
                ("x-shopify-hmac-sha256", &c.hmac),
                ("x-shopify-topic", "orders/create"),
                (
                    "x-shopify-webhook-id",
                    "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
                ),
            ]);
            let w = run(&shopify(&[&c.secret]), &h, &c.body, 0)
                .unwrap_or_else(|e| panic!("{}: {e}", c.name));
            assert_eq!(w.idempotency_key(), "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043");
            assert_eq!(w.event_type(), "orders/create");
            assert_eq!(w.headers()["x-shopify-hmac-sha256"], "[redacted]");
            let tampered = format!("{} ", c.body);
            assert_eq!(
                run(&shopify(&[&c.secret]), &h, &tampered, 0).unwrap_err(),
                VerifyError::InvalidSignature,
                "{}",
                c.name
            );
            assert_eq!(
                run(&shopify(&["other"]), &h, &c.body, 0).unwrap_err(),
                VerifyError::InvalidSignature
            );
            run(&shopify(&["old", &c.secret]), &h, &c.body, 0).unwrap();
        }
    }

    #[test]
    fn header_edge_cases() {
        let v = shopify(&["s"]);
        let check = |sig: &str| run(&v, &headers(&[(HEADER, sig)]), "{}", 0);
        assert_eq!(check("%%%").unwrap_err().reason(), "malformed_signature");
        assert_eq!(check("YWJj").unwrap_err().reason(), "malformed_signature");
        assert_eq!(
            run(&v, &headers(&[]), "{}", 0).unwrap_err().reason(),
            "missing_signature"
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

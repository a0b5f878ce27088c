//! GitHub: `X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256 over the raw body. The delivery GUID
//! (`X-GitHub-Delivery`, stable across redeliveries) is the idempotency key and `X-GitHub-Event`
//! the event type. Bodies are JSON, or form-encoded `payload=` when the hook is set up that way.
//! Only the body is signed: the delivery id is required (a request without one is refused), and
//! the store treats a byte-identical body within the replay window as a duplicate.

use serde::de::IgnoredAny;

use super::hmac::any_secret_matches;
use super::{
    RawRequest, Secrets, VerifiedWebhook, Verifier, VerifyError, header_str, is_form, parse_json,
    signature_header,
};

const HEADER: &str = "x-hub-signature-256";

pub struct GithubVerifier {
    secrets: Secrets,
}

impl GithubVerifier {
    pub fn new(secrets: Secrets) -> Self {
        Self { secrets }
    }
}

/// Decode `sha256=<64 hex>`.
pub(crate) fn parse_header(value: &str) -> Result<Vec<u8>, VerifyError> {
    let hex_part = value
        .strip_prefix("sha256=")
        .ok_or(VerifyError::MalformedSignature("expected sha256=<hex>"))?;
    let mac = hex::decode(hex_part)
        .map_err(|_| VerifyError::MalformedSignature("signature is not hex"))?;
    if mac.len() != 32 {
        return Err(VerifyError::MalformedSignature("signature is not 32 bytes"));
    }
    Ok(mac)
}

#[async_trait::async_trait]
impl Verifier for GithubVerifier {
    async fn verify(
        &self,
        provider: &str,
        req: &RawRequest<'_>,
    ) -> Result<VerifiedWebhook, VerifyError> {
        let value = signature_header(req.headers, HEADER, "X-Hub-Signature-256")?;
        let mac = parse_header(value)?;
        if !any_secret_matches(&self.secrets, &[req.body], &[mac]) {
            return Err(VerifyError::InvalidSignature);
        }
        let event_type = header_str(req.headers, "x-github-event")
            .filter(|s| !s.is_empty())
            .ok_or(VerifyError::MissingHeader("X-GitHub-Event".into()))?
            .to_owned();
        if !is_form(req.headers) {
            parse_json::<IgnoredAny>(req.body)?;
        }
        let key = header_str(req.headers, "x-github-delivery")
            .filter(|s| !s.is_empty())
            .ok_or(VerifyError::MissingHeader("X-GitHub-Delivery".into()))?
            .to_owned();
        Ok(
            VerifiedWebhook::new(provider, key, event_type, req, &[HEADER, "x-hub-signature"])
                .signed_only_over_body(),
        )
    }
}

//! Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]`, HMAC-SHA256 over `<t>.<raw body>`
//! with the whole `whsec_...` string as key. `v0` and unknown schemes are ignored (no downgrade).

use serde::Deserialize;

use super::hmac::any_secret_matches;
use super::{
    RawRequest, Secrets, VerifiedWebhook, Verifier, VerifyError, body_digest_key, check_window,
    parse_json, signature_header,
};

const HEADER: &str = "stripe-signature";

pub struct StripeVerifier {
    secrets: Secrets,
    tolerance_secs: u64,
}

impl StripeVerifier {
    pub fn new(secrets: Secrets, tolerance_secs: u64) -> Self {
        Self {
            secrets,
            tolerance_secs,
        }
    }
}

/// The parts of a `Stripe-Signature` header that matter.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct StripeHeader<'a> {
    pub timestamp: i64,
    pub timestamp_raw: &'a str,
    pub v1: Vec<Vec<u8>>,
}

pub(crate) fn parse_header(value: &str) -> Result<StripeHeader<'_>, VerifyError> {
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for item in value.split(',') {
        let Some((k, v)) = item.trim().split_once('=') else {
            continue;
        };
        match k {
            "t" => {
                let t = v
                    .parse::<i64>()
                    .map_err(|_| VerifyError::MalformedSignature("t is not a unix timestamp"))?;
                timestamp = Some((t, v));
            }
            // A v1 that is not hex can never match; keep looking at the others.
            "v1" => {
                if let Ok(mac) = hex::decode(v) {
                    v1.push(mac);
                }
            }
            _ => {}
        }
    }
    let (timestamp, timestamp_raw) =
        timestamp.ok_or(VerifyError::MalformedSignature("no t= timestamp"))?;
    if v1.is_empty() {
        return Err(VerifyError::MalformedSignature("no v1= signature"));
    }
    Ok(StripeHeader {
        timestamp,
        timestamp_raw,
        v1,
    })
}

#[derive(Deserialize)]
struct StripeEvent {
    id: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
}

#[async_trait::async_trait]
impl Verifier for StripeVerifier {
    async fn verify(
        &self,
        provider: &str,
        req: &RawRequest<'_>,
    ) -> Result<VerifiedWebhook, VerifyError> {
        let value = signature_header(req.headers, HEADER, "Stripe-Signature")?;
        let header = parse_header(value)?;
        let parts: [&[u8]; 3] = [header.timestamp_raw.as_bytes(), b".", req.body];
        if !any_secret_matches(&self.secrets, &parts, &header.v1) {
            return Err(VerifyError::InvalidSignature);
        }
        // Stripe's SDKs only reject old timestamps; a far-future one is just as suspect.
        check_window(header.timestamp, req.now_unix, self.tolerance_secs)?;
        let event: StripeEvent = parse_json(req.body)?;
        let key = event.id.unwrap_or_else(|| body_digest_key(req.body));
        let event_type = event.event_type.unwrap_or_else(|| "unknown".to_owned());
        Ok(VerifiedWebhook::new(
            provider,
            key,
            event_type,
            req,
            &[HEADER],
        ))
    }
}

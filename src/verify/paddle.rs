//! Paddle Billing: `Paddle-Signature: ts=<unix>;h1=<hex>`, HMAC-SHA256 over `<ts>:<raw body>` with
//! the notification destination's secret key. While a secret is rotated Paddle sends one `h1` per
//! secret; any may match. The window defaults to Paddle's SDKs' 5 s, past or future. Body
//! `event_id` is the idempotency key and `event_type` the event type.

use serde::Deserialize;

use super::hmac::any_secret_matches;
use super::{
    RawRequest, Secrets, VerifiedWebhook, Verifier, VerifyError, body_digest_key, check_window,
    parse_json, parse_unix, signature_header,
};

const HEADER: &str = "paddle-signature";

pub struct PaddleVerifier {
    secrets: Secrets,
    tolerance_secs: u64,
}

impl PaddleVerifier {
    pub fn new(secrets: Secrets, tolerance_secs: u64) -> Self {
        Self {
            secrets,
            tolerance_secs,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PaddleHeader<'a> {
    pub timestamp: i64,
    pub timestamp_raw: &'a str,
    pub h1: Vec<Vec<u8>>,
}

pub(crate) fn parse_header(value: &str) -> Result<PaddleHeader<'_>, VerifyError> {
    let mut ts = None;
    let mut h1 = Vec::new();
    for item in value.split(';') {
        let Some((k, v)) = item.trim().split_once('=') else {
            continue;
        };
        match k {
            "ts" => ts = Some(v),
            // An h1 that is not hex can never match; keep looking at the others.
            "h1" => {
                if let Ok(mac) = hex::decode(v) {
                    h1.push(mac);
                }
            }
            _ => {}
        }
    }
    let timestamp_raw = ts.ok_or(VerifyError::MalformedSignature("no ts= timestamp"))?;
    let timestamp = parse_unix(timestamp_raw)?;
    if h1.is_empty() {
        return Err(VerifyError::MalformedSignature("no h1= signature"));
    }
    Ok(PaddleHeader {
        timestamp,
        timestamp_raw,
        h1,
    })
}

#[derive(Deserialize)]
struct PaddleEvent {
    event_id: Option<String>,
    event_type: Option<String>,
}

#[async_trait::async_trait]
impl Verifier for PaddleVerifier {
    async fn verify(
        &self,
        provider: &str,
        req: &RawRequest<'_>,
    ) -> Result<VerifiedWebhook, VerifyError> {
        let value = signature_header(req.headers, HEADER, "Paddle-Signature")?;
        let header = parse_header(value)?;
        let parts: [&[u8]; 3] = [header.timestamp_raw.as_bytes(), b":", req.body];
        if !any_secret_matches(&self.secrets, &parts, &header.h1) {
            return Err(VerifyError::InvalidSignature);
        }
        check_window(header.timestamp, req.now_unix, self.tolerance_secs)?;
        let event: PaddleEvent = parse_json(req.body)?;
        let key = event.event_id.unwrap_or_else(|| body_digest_key(req.body));
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::verify::hmac::hmac_sha256;
    use crate::verify::tests::{headers, run};

    const BODY: &str = r#"{"event_id":"evt_01h8441jx8x9q5ac8hgyzhhc2f","event_type":"transaction.completed","data":{"id":"txn_01h8"}}"#;

    fn sig(secret: &str, ts: i64) -> String {
        let mac = hmac_sha256(
            secret.as_bytes(),
            &[format!("{ts}:").as_bytes(), BODY.as_bytes()],
        );
        format!("ts={ts};h1={}", hex::encode(mac))
    }

    fn paddle(secrets: &[&str]) -> PaddleVerifier {
        PaddleVerifier::new(Secrets::new(secrets.iter().copied()).unwrap(), 5)
    }

    #[test]
    fn signs_ts_colon_body() {
        let v = paddle(&["pdl_ntfset_secret"]);
        let h = headers(&[(HEADER, &sig("pdl_ntfset_secret", 1_700_000_000))]);
        let w = run(&v, &h, BODY, 1_700_000_003).unwrap();
        assert_eq!(w.idempotency_key(), "evt_01h8441jx8x9q5ac8hgyzhhc2f");
        assert_eq!(w.event_type(), "transaction.completed");
        for now in [1_700_000_006, 1_699_999_994] {
            assert_eq!(
                run(&v, &h, BODY, now).unwrap_err().reason(),
                "timestamp_out_of_tolerance"
            );
        }
        assert_eq!(
            run(&paddle(&["other"]), &h, BODY, 1_700_000_000).unwrap_err(),
            VerifyError::InvalidSignature
        );
        // Rotation: Paddle sends one h1 per active secret.
        let old = sig("old", 1_700_000_000);
        let new = sig("pdl_ntfset_secret", 1_700_000_000);
        let both = format!("{old};h1={}", new.split("h1=").nth(1).unwrap());
        run(&v, &headers(&[(HEADER, &both)]), BODY, 1_700_000_000).unwrap();
    }

    #[test]
    fn header_edge_cases() {
        assert_eq!(
            parse_header("h1=ab").unwrap_err().reason(),
            "malformed_signature"
        );
        assert_eq!(
            parse_header("ts=1").unwrap_err().reason(),
            "malformed_signature"
        );
        assert_eq!(
            parse_header("ts=x;h1=ab").unwrap_err().reason(),
            "malformed_timestamp"
        );
        assert_eq!(
            parse_header("ts=1;h1=zz").unwrap_err().reason(),
            "malformed_signature"
        );
        assert_eq!(
            parse_header("").unwrap_err().reason(),
            "malformed_signature"
        );
        let h = parse_header(" ts=1 ; h1=ab ;x=y;h1=cd").unwrap();
        assert_eq!((h.timestamp, h.h1.len()), (1, 2));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn parser_never_panics(s in ".{0,80}") {
            let _ = parse_header(&s);
        }

        #[test]
        fn parser_never_panics_on_near_misses(
            ts in "[0-9x-]{0,12}",
            h1 in "[0-9a-fz]{0,70}",
            sep in "[;= ]{1,3}",
        ) {
            let _ = parse_header(&format!("ts={ts}{sep}h1={h1}"));
        }
    }
}

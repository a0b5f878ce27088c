//! Standard Webhooks, and Svix (the same scheme under `svix-*` header names): `webhook-id`,
//! `webhook-timestamp` and `webhook-signature`. The signature header is a space-separated list:
//! `v1,<base64>` is HMAC-SHA256 over `<id>.<timestamp>.<raw body>` keyed with the base64-decoded
//! part of a `whsec_` secret; `v1a,<base64>` is an ed25519 signature over the same bytes, checked
//! with a `whpk_` public key. Any entry may match any key (rotation); unknown versions are ignored.
//! The timestamp must be within ±300 s. `webhook-id` is the idempotency key, the body's `type` the
//! event type.

use std::fmt;

use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use base64::Engine;
use serde::Deserialize;

use super::hmac::{Algorithm, any_key_matches};
use super::{
    RawRequest, Secrets, VerifiedWebhook, Verifier, VerifyError, check_window, decode_base64,
    header_str, parse_json, parse_unix, required_header,
};

/// The keys of one endpoint: HMAC secrets (`whsec_`) and ed25519 public keys (`whpk_`).
#[derive(Clone)]
pub struct StandardKeys {
    hmac: Vec<Vec<u8>>,
    ed25519: Vec<[u8; 32]>,
}

impl fmt::Debug for StandardKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "StandardKeys({} secret(s), {} public key(s))",
            self.hmac.len(),
            self.ed25519.len()
        )
    }
}

impl StandardKeys {
    /// The decoded HMAC keys (`whsec_` secrets), for `hookd sign`; empty when only public keys
    /// are configured.
    pub fn hmac_keys(&self) -> &[Vec<u8>] {
        &self.hmac
    }

    /// Decode each configured key. The error says which entry (by position) is wrong and why,
    /// never what it holds.
    pub fn parse(secrets: &Secrets) -> Result<Self, KeyError> {
        // Like the SDKs, accept the base64 with or without its padding.
        let lenient = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        let mut keys = Self {
            hmac: Vec::new(),
            ed25519: Vec::new(),
        };
        for (i, secret) in secrets.iter().enumerate() {
            let n = i + 1;
            let s = secret.expose();
            if let Some(pk) = s.strip_prefix("whpk_") {
                let key = lenient
                    .decode(pk)
                    .ok()
                    .and_then(|k| <[u8; 32]>::try_from(k).ok())
                    .ok_or(KeyError::PublicKey(n))?;
                keys.ed25519.push(key);
            } else if s.starts_with("whsk_") {
                return Err(KeyError::SigningKey(n));
            } else {
                let b64 = s.strip_prefix("whsec_").unwrap_or(s);
                let key = lenient
                    .decode(b64)
                    .ok()
                    .filter(|k| !k.is_empty())
                    .ok_or(KeyError::Secret(n))?;
                keys.hmac.push(key);
            }
        }
        Ok(keys)
    }
}

/// A configured key that cannot be used, by its position in the list (never its value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("entry {0}: a whpk_ key is 32 bytes in base64")]
    PublicKey(usize),
    #[error(
        "entry {0} is a whsk_ signing key, which must stay with the sender: configure its whpk_ \
         public key"
    )]
    SigningKey(usize),
    #[error("entry {0}: a whsec_ secret is base64 after whsec_")]
    Secret(usize),
}

pub struct StandardVerifier {
    keys: StandardKeys,
    tolerance_secs: u64,
}

impl StandardVerifier {
    pub fn new(keys: StandardKeys, tolerance_secs: u64) -> Self {
        Self {
            keys,
            tolerance_secs,
        }
    }
}

/// Decoded entries of a signature header, by scheme.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Signatures {
    pub v1: Vec<Vec<u8>>,
    pub v1a: Vec<Vec<u8>>,
}

pub(crate) fn parse_header(value: &str) -> Result<Signatures, VerifyError> {
    let mut sigs = Signatures::default();
    for entry in value.split(' ').filter(|e| !e.is_empty()) {
        let Some((version, sig)) = entry.split_once(',') else {
            continue;
        };
        // An entry that does not decode can never match; keep looking at the others.
        let list = match version {
            "v1" => &mut sigs.v1,
            "v1a" => &mut sigs.v1a,
            _ => continue,
        };
        if let Some(bytes) = decode_base64(sig).filter(|b| !b.is_empty()) {
            list.push(bytes);
        }
    }
    if sigs.v1.is_empty() && sigs.v1a.is_empty() {
        return Err(VerifyError::MalformedSignature(
            "no v1,<base64> or v1a,<base64> entry",
        ));
    }
    Ok(sigs)
}

/// The header families: Standard Webhooks' own names, and Svix's. Never mixed.
const FAMILIES: [[&str; 3]; 2] = [
    ["webhook-signature", "webhook-id", "webhook-timestamp"],
    ["svix-signature", "svix-id", "svix-timestamp"],
];

#[derive(Deserialize)]
struct StandardEvent {
    #[serde(rename = "type")]
    event_type: Option<String>,
}

impl StandardVerifier {
    fn matches(&self, msg: &[&[u8]], sigs: &Signatures) -> bool {
        let hmac_keys: Vec<&[u8]> = self.keys.hmac.iter().map(Vec::as_slice).collect();
        if any_key_matches(Algorithm::Sha256, &hmac_keys, msg, &sigs.v1) {
            return true;
        }
        if sigs.v1a.is_empty() || self.keys.ed25519.is_empty() {
            return false;
        }
        let joined = msg.concat();
        self.keys.ed25519.iter().any(|pk| {
            let key = UnparsedPublicKey::new(&ED25519, pk);
            sigs.v1a.iter().any(|s| key.verify(&joined, s).is_ok())
        })
    }
}

#[async_trait::async_trait]
impl Verifier for StandardVerifier {
    async fn verify(
        &self,
        provider: &str,
        req: &RawRequest<'_>,
    ) -> Result<VerifiedWebhook, VerifyError> {
        let family = FAMILIES
            .iter()
            .find(|f| header_str(req.headers, f[0]).is_some())
            .ok_or(VerifyError::MissingSignature("webhook-signature".into()))?;
        let [sig_name, id_name, ts_name] = *family;
        let value = header_str(req.headers, sig_name).unwrap_or_default();
        let id = required_header(req.headers, id_name, id_name)?;
        let ts_raw = required_header(req.headers, ts_name, ts_name)?;
        let sigs = parse_header(value)?;
        let ts = parse_unix(ts_raw)?;
        let msg: [&[u8]; 5] = [id.as_bytes(), b".", ts_raw.as_bytes(), b".", req.body];
        if !self.matches(&msg, &sigs) {
            return Err(VerifyError::InvalidSignature);
        }
        check_window(ts, req.now_unix, self.tolerance_secs)?;
        let event: StandardEvent = parse_json(req.body)?;
        let event_type = event.event_type.unwrap_or_else(|| "unknown".to_owned());
        Ok(VerifiedWebhook::new(
            provider,
            id.to_owned(),
            event_type,
            req,
            &[sig_name],
        ))
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    use proptest::prelude::*;
    use serde::Deserialize;

    use super::*;
    use crate::verify::tests::{fixture_cases, headers, run};

    #[derive(Deserialize)]
    struct Case {
        name: String,
        secret: String,
        id: String,
        timestamp: i64,
        body: String,
        signature: String,
    }

    fn standard(secrets: &[&str]) -> StandardVerifier {
        let keys = StandardKeys::parse(&Secrets::new(secrets.iter().copied()).unwrap()).unwrap();
        StandardVerifier::new(keys, 300)
    }

    fn send(
        v: &StandardVerifier,
        prefix: &str,
        id: &str,
        ts: i64,
        sig: &str,
        body: &str,
        now: i64,
    ) -> Result<VerifiedWebhook, VerifyError> {
        let ts = ts.to_string();
        let h = headers(&[
            (&format!("{prefix}-id"), id),
            (&format!("{prefix}-timestamp"), &ts),
            (&format!("{prefix}-signature"), sig),
        ]);
        run(v, &h, body, now)
    }

    #[test]
    fn known_answer() {
        let v = standard(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]);
        let (id, ts) = ("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330);
        let sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        for prefix in ["webhook", "svix"] {
            let w = send(&v, prefix, id, ts, sig, r#"{"test": 2432232314}"#, ts).unwrap();
            assert_eq!(w.idempotency_key(), id);
            assert_eq!(w.headers()[&format!("{prefix}-signature")], "[redacted]");
        }
    }

    #[test]
    fn sdk_fixtures_verify() {
        let mut cases: Vec<Case> =
            fixture_cases(include_str!("../../tests/fixtures/standard.json"));
        cases.extend(fixture_cases::<Case>(include_str!(
            "../../tests/fixtures/standard_npm.json"
        )));
        assert!(cases.len() >= 8);
        assert!(cases.iter().any(|c| c.secret.starts_with("whpk_")));
        for c in cases {
            let v = standard(&[&c.secret]);
            let ok = |body: &str, now: i64| {
                send(&v, "webhook", &c.id, c.timestamp, &c.signature, body, now)
            };
            let w = ok(&c.body, c.timestamp).unwrap_or_else(|e| panic!("{}: {e}", c.name));
            assert_eq!(w.idempotency_key(), c.id);
            assert_eq!(w.body().as_ref(), c.body.as_bytes());
            assert_eq!(
                ok(&format!("{} ", c.body), c.timestamp).unwrap_err(),
                VerifyError::InvalidSignature,
                "{}",
                c.name
            );
            for now in [c.timestamp - 301, c.timestamp + 301] {
                assert_eq!(
                    ok(&c.body, now).unwrap_err().reason(),
                    "timestamp_out_of_tolerance",
                    "{}",
                    c.name
                );
            }
            let other = standard(&["whsec_b3RoZXItc2VjcmV0LWJ5dGVzLWZvci10ZXN0cw=="]);
            assert_eq!(
                send(
                    &other,
                    "webhook",
                    &c.id,
                    c.timestamp,
                    &c.signature,
                    &c.body,
                    c.timestamp
                )
                .unwrap_err(),
                VerifyError::InvalidSignature
            );
            let rotated = standard(&["whsec_b3RoZXItc2VjcmV0LWJ5dGVzLWZvci10ZXN0cw==", &c.secret]);
            send(
                &rotated,
                "svix",
                &c.id,
                c.timestamp,
                &c.signature,
                &c.body,
                c.timestamp,
            )
            .unwrap();
        }
    }

    #[test]
    fn ed25519_v1a() {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let whpk = format!("whpk_{}", b64.encode(pair.public_key().as_ref()));
        let body = r#"{"type":"invoice.paid"}"#;
        let sig = b64.encode(pair.sign(format!("msg_1.100.{body}").as_bytes()));
        let v = standard(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &whpk]);
        let list = format!("v1,Zm9v v1a,{sig}");
        let w = send(&v, "webhook", "msg_1", 100, &list, body, 100).unwrap();
        assert_eq!(w.event_type(), "invoice.paid");
        assert_eq!(
            send(&v, "webhook", "msg_2", 100, &list, body, 100).unwrap_err(),
            VerifyError::InvalidSignature,
            "the id is signed"
        );
        // A v1a signature is never tried as an HMAC, nor the other way round.
        let hmac_only = standard(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]);
        assert_eq!(
            send(&hmac_only, "webhook", "msg_1", 100, &list, body, 100).unwrap_err(),
            VerifyError::InvalidSignature
        );
    }

    #[test]
    fn keys_are_checked_without_showing_them() {
        let bad = |s: &str| {
            StandardKeys::parse(&Secrets::new([s]).unwrap())
                .unwrap_err()
                .to_string()
        };
        assert!(!bad("whsec_%%%secret%%%").contains("secret%"));
        assert!(bad("whpk_AAAA").contains("32 bytes"));
        assert!(bad("whsk_AAAA").contains("whpk_"));
        let keys =
            StandardKeys::parse(&Secrets::new(["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]).unwrap())
                .unwrap();
        assert!(!format!("{keys:?}").contains("MfKQ"));
    }

    #[test]
    fn header_edge_cases() {
        let v = standard(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]);
        let check = |sig: &str| send(&v, "webhook", "m", 1, sig, "{}", 1);
        for garbage in ["garbage", "v1", "v2,abc", "", "v1,", "v1a"] {
            assert_eq!(
                check(garbage).unwrap_err().reason(),
                "malformed_signature",
                "{garbage:?}"
            );
        }
        assert_eq!(check("v1,Zm9v").unwrap_err(), VerifyError::InvalidSignature);
        assert_eq!(
            run(
                &v,
                &headers(&[("webhook-signature", "v1,Zm9v"), ("webhook-timestamp", "1")]),
                "{}",
                1
            )
            .unwrap_err()
            .reason(),
            "missing_header"
        );
        assert_eq!(
            run(&v, &headers(&[]), "{}", 1).unwrap_err().reason(),
            "missing_signature"
        );
        assert_eq!(
            send(&v, "webhook", "m", 1, "v1,Zm9v", "{}", 1)
                .unwrap_err()
                .reason(),
            "invalid_signature"
        );
        let h = headers(&[
            ("webhook-id", "m"),
            ("webhook-timestamp", "1.5"),
            ("webhook-signature", "v1,Zm9v"),
        ]);
        assert_eq!(
            run(&v, &h, "{}", 1).unwrap_err().reason(),
            "malformed_timestamp"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn parser_never_panics(s in ".{0,120}") {
            let _ = parse_header(&s);
        }

        #[test]
        fn parser_never_panics_on_near_misses(entries in proptest::collection::vec("(v1|v1a|v2)?,?[A-Za-z0-9+/=]{0,48}", 0..5)) {
            let _ = parse_header(&entries.join(" "));
        }
    }
}

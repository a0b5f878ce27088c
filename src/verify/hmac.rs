//! HMAC helpers shared by the HMAC-based schemes.

use hmac::{KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::Secrets;

type HmacSha256 = hmac::Hmac<Sha256>;

/// HMAC-SHA256 over the concatenation of `parts`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// True when any candidate equals the MAC of `parts` under any secret. Every comparison is
/// constant-time, and lengths are checked before contents.
pub fn any_secret_matches(secrets: &Secrets, parts: &[&[u8]], candidates: &[Vec<u8>]) -> bool {
    let mut matched = subtle::Choice::from(0);
    for secret in secrets.iter() {
        let expected = hmac_sha256(secret.expose().as_bytes(), parts);
        for c in candidates {
            if c.len() == expected.len() {
                matched |= c.as_slice().ct_eq(&expected);
            }
        }
    }
    matched.into()
}

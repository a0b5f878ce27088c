//! HMAC helpers shared by the HMAC-based schemes.

use hmac::{KeyInit, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::Secrets;

/// The hash under an HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Only for providers that still sign with it (Twilio); HMAC-SHA1 is still a sound MAC.
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "sha1" => Some(Self::Sha1),
            "sha256" => Some(Self::Sha256),
            "sha512" => Some(Self::Sha512),
            _ => None,
        }
    }

    /// Length of the MAC in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }
}

fn mac_with<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// HMAC over the concatenation of `parts`.
pub fn mac(alg: Algorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    match alg {
        Algorithm::Sha1 => mac_with::<hmac::Hmac<Sha1>>(key, parts),
        Algorithm::Sha256 => mac_with::<hmac::Hmac<Sha256>>(key, parts),
        Algorithm::Sha512 => mac_with::<hmac::Hmac<Sha512>>(key, parts),
    }
}

/// HMAC-SHA256 over the concatenation of `parts`.
#[cfg(test)]
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(&mac(Algorithm::Sha256, key, parts));
    out
}

/// True when any candidate equals the MAC of `parts` under any key. Every comparison is
/// constant-time, and lengths are checked before contents.
pub fn any_key_matches(
    alg: Algorithm,
    keys: &[&[u8]],
    parts: &[&[u8]],
    candidates: &[Vec<u8>],
) -> bool {
    let mut matched = subtle::Choice::from(0);
    for key in keys {
        let expected = mac(alg, key, parts);
        for c in candidates {
            if c.len() == expected.len() {
                matched |= c.as_slice().ct_eq(&expected);
            }
        }
    }
    matched.into()
}

/// [`any_key_matches`] with HMAC-SHA256 and each secret's UTF-8 bytes as the key.
pub fn any_secret_matches(secrets: &Secrets, parts: &[&[u8]], candidates: &[Vec<u8>]) -> bool {
    any_key_matches(Algorithm::Sha256, &secrets.keys(), parts, candidates)
}

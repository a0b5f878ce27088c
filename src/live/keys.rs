//! Encryption of provider secrets at rest: AES-256-GCM under the keys of `HOOKD_SECRET_KEY`
//! (`<key id>:<base64 of 32 bytes>`, comma-separated; the first one encrypts, every one
//! decrypts, so a key can be rotated while both are configured).
//!
//! Owns the key format, the ciphertext format (base64 of a random 96-bit nonce then the
//! ciphertext and its tag, with the key id stored beside it) and what binds a ciphertext to its
//! place (the additional data names the provider and the secret's id, so a ciphertext copied to
//! another provider does not decrypt). It must never log, show or store a plaintext or a key.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The variable the keys come from.
pub const SECRET_KEY_VAR: &str = "HOOKD_SECRET_KEY";

/// The configured keys, the encrypting one first.
pub struct SecretKeys {
    keys: Vec<(String, LessSafeKey)>,
}

impl fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        write!(f, "SecretKeys({ids:?})")
    }
}

/// A `HOOKD_SECRET_KEY` that cannot be used; never shows a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "{SECRET_KEY_VAR}: entry {0} is not <key id>:<base64 of 32 bytes>, e.g. \
         k1:$(openssl rand -base64 32); a key id is 1 to 32 letters, digits, '-', '_' or '.'"
    )]
    Format(usize),
    #[error(
        "{SECRET_KEY_VAR}: key {0:?} is not the base64 of exactly 32 bytes (openssl rand -base64 32)"
    )]
    Length(String),
    #[error("{SECRET_KEY_VAR}: key id {0:?} is given twice")]
    Duplicate(String),
}

/// A stored secret that cannot be decrypted with the keys configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error(
        "a secret is encrypted under key {kid:?}, which {SECRET_KEY_VAR} does not have \
         (configured: {configured}); set the key it was written with"
    )]
    UnknownKey { kid: String, configured: String },
    #[error(
        "a secret does not decrypt under key {kid:?}: {SECRET_KEY_VAR} gives that id another \
         key than the one it was written with, or the stored value was altered"
    )]
    Failed { kid: String },
}

/// A ciphertext and the id of the key it is under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub kid: String,
    /// Base64 of the nonce, then the ciphertext and its tag.
    pub data: String,
}

fn valid_kid(kid: &str) -> bool {
    (1..=32).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl SecretKeys {
    /// Parse `HOOKD_SECRET_KEY`'s value.
    pub fn parse(value: &str) -> Result<Self, KeyError> {
        let mut keys: Vec<(String, LessSafeKey)> = Vec::new();
        for (i, entry) in value.split(',').map(str::trim).enumerate() {
            let (kid, b64) = entry
                .split_once(':')
                .filter(|(kid, _)| valid_kid(kid))
                .ok_or(KeyError::Format(i + 1))?;
            let bytes = STANDARD
                .decode(b64.trim())
                .ok()
                .filter(|b| b.len() == 32)
                .ok_or_else(|| KeyError::Length(kid.to_owned()))?;
            let key = UnboundKey::new(&AES_256_GCM, &bytes)
                .map_err(|_| KeyError::Length(kid.to_owned()))?;
            if keys.iter().any(|(k, _)| k == kid) {
                return Err(KeyError::Duplicate(kid.to_owned()));
            }
            keys.push((kid.to_owned(), LessSafeKey::new(key)));
        }
        Ok(Self { keys })
    }

    /// The id of the key new secrets are encrypted under.
    pub fn current(&self) -> &str {
        self.keys.first().map_or("", |(id, _)| id.as_str())
    }

    /// Whether `kid` is configured.
    pub fn has(&self, kid: &str) -> bool {
        self.keys.iter().any(|(k, _)| k == kid)
    }

    /// Encrypt `plaintext` under the current key, bound to `place`.
    pub fn seal(&self, plaintext: &str, place: &str) -> Sealed {
        let (kid, key) = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        // The system's CSPRNG; it does not fail on Linux once the kernel is seeded.
        aws_lc_rs::rand::fill(&mut nonce).expect("the system random generator failed");
        let mut data = plaintext.as_bytes().to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(place.as_bytes()),
            &mut data,
        )
        .expect("AES-256-GCM sealing of a short secret cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Sealed {
            kid: kid.clone(),
            data: STANDARD.encode(out),
        }
    }

    /// Decrypt a secret sealed for `place`.
    pub fn open(&self, sealed: &Sealed, place: &str) -> Result<String, OpenError> {
        let Some((_, key)) = self.keys.iter().find(|(k, _)| *k == sealed.kid) else {
            return Err(OpenError::UnknownKey {
                kid: sealed.kid.clone(),
                configured: self.ids(),
            });
        };
        let failed = || OpenError::Failed {
            kid: sealed.kid.clone(),
        };
        let mut bytes = STANDARD.decode(&sealed.data).map_err(|_| failed())?;
        if bytes.len() < NONCE_LEN {
            return Err(failed());
        }
        let mut data = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| failed())?;
        let plain = key
            .open_in_place(nonce, Aad::from(place.as_bytes()), &mut data)
            .map_err(|_| failed())?;
        String::from_utf8(plain.to_vec()).map_err(|_| failed())
    }

    fn ids(&self) -> String {
        let ids: Vec<&str> = self.keys.iter().map(|(k, _)| k.as_str()).collect();
        ids.join(", ")
    }
}

/// `n` random bytes.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut out).expect("the system random generator failed");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "k2:HxAREhMUFRYXGBkaGxwdHh8AAQIDBAUGBwgJCgsMDQ4=";

    #[test]
    fn seals_and_opens_under_the_first_key() {
        let keys = SecretKeys::parse(&format!("{K2},{K1}")).unwrap();
        let sealed = keys.seal("whsec_abc", "stripe/1");
        assert_eq!(sealed.kid, "k2");
        assert!(!sealed.data.contains("whsec_abc"));
        assert_eq!(keys.open(&sealed, "stripe/1").unwrap(), "whsec_abc");
        // Another place: the additional data differs, so it does not open.
        assert!(matches!(
            keys.open(&sealed, "github/1"),
            Err(OpenError::Failed { .. })
        ));
    }

    #[test]
    fn an_old_key_still_opens_while_configured() {
        let old = SecretKeys::parse(K1).unwrap();
        let sealed = old.seal("s", "p/1");
        let both = SecretKeys::parse(&format!("{K2},{K1}")).unwrap();
        assert_eq!(both.open(&sealed, "p/1").unwrap(), "s");
        let new_only = SecretKeys::parse(K2).unwrap();
        let err = new_only.open(&sealed, "p/1").unwrap_err();
        assert!(err.to_string().contains("\"k1\""), "{err}");
    }

    #[test]
    fn the_wrong_key_under_the_same_id_fails() {
        let sealed = SecretKeys::parse(K1).unwrap().seal("s", "p/1");
        let other = SecretKeys::parse(&K2.replace("k2:", "k1:")).unwrap();
        assert_eq!(
            other.open(&sealed, "p/1"),
            Err(OpenError::Failed { kid: "k1".into() })
        );
    }

    #[test]
    fn bad_values_are_named() {
        assert_eq!(SecretKeys::parse("nokid").unwrap_err(), KeyError::Format(1));
        assert_eq!(
            SecretKeys::parse("k1:c2hvcnQ=").unwrap_err(),
            KeyError::Length("k1".into())
        );
        assert_eq!(
            SecretKeys::parse(&format!("{K1},{K1}")).unwrap_err(),
            KeyError::Duplicate("k1".into())
        );
        assert_eq!(
            SecretKeys::parse(&format!("{K1},bad id:x")).unwrap_err(),
            KeyError::Format(2)
        );
    }
}

//! Who is asking: the admin tokens (hashed once, compared in constant time) and the principal
//! a request or console session acts as, with its scope.
//!
//! Owns authentication by token. It must never compare a token in a way whose time depends on
//! which token matched, nor give a console session more scope than its token has now.

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use super::{AdminToken, Scope};

/// Who is asking: the name of the token (or of the console session's token) and its scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub scope: Scope,
    /// Through the web console rather than the API.
    pub console: bool,
}

impl Principal {
    /// The actor as the audit log names it.
    pub fn actor(&self) -> String {
        if self.console {
            format!("{} (console)", self.name)
        } else {
            self.name.clone()
        }
    }

    /// Whether the scope allows state-changing actions.
    pub fn may_operate(&self) -> bool {
        self.scope >= Scope::Operate
    }
}

struct TokenDigest {
    name: String,
    scope: Scope,
    digest: [u8; 32],
}

/// The admin tokens, hashed once so that every comparison is constant-time and independent of
/// the token's length.
pub struct Tokens(Vec<TokenDigest>);

impl Tokens {
    /// The configured tokens, hashed.
    pub fn new(tokens: &[AdminToken]) -> Self {
        Self(
            tokens
                .iter()
                .map(|t| TokenDigest {
                    name: t.name.clone(),
                    scope: t.scope,
                    digest: Sha256::digest(t.token.expose().as_bytes()).into(),
                })
                .collect(),
        )
    }

    /// Whether no token is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The token `presented` names, compared in constant time against every configured token
    /// (no early exit, so the time taken says nothing about which one matched, if any).
    pub fn authenticate(&self, presented: &str) -> Option<Principal> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found: Option<&TokenDigest> = None;
        for t in &self.0 {
            let hit: Choice = t.digest.ct_eq(&digest);
            if bool::from(hit) {
                found = Some(t);
            }
        }
        found.map(|t| Principal {
            name: t.name.clone(),
            scope: t.scope,
            console: false,
        })
    }

    /// The console principal of a configured token by name (sessions store the name): `None`
    /// once the token is removed from the configuration.
    pub fn console_principal(&self, name: &str, scope: &str) -> Option<Principal> {
        let t = self.0.iter().find(|t| t.name == name)?;
        // A session keeps the scope it was made with, never more than the token has now.
        let scope = Scope::parse(scope)?.min(t.scope);
        Some(Principal {
            name: t.name.clone(),
            scope,
            console: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::Secret;

    #[test]
    fn scopes_order_and_names() {
        let p = |scope| Principal {
            name: "x".into(),
            scope,
            console: true,
        };
        assert!(p(Scope::Operate).may_operate());
        assert!(!p(Scope::Read).may_operate());
        assert_eq!(p(Scope::Read).actor(), "x (console)");
    }

    #[test]
    fn tokens_are_matched_by_value_and_scopes_kept() {
        let tokens = Tokens::new(&[
            AdminToken {
                name: "admin".into(),
                token: Secret::new("op"),
                scope: Scope::Operate,
            },
            AdminToken {
                name: "ro".into(),
                token: Secret::new("ro-token"),
                scope: Scope::Read,
            },
        ]);
        let who = |t: &str| tokens.authenticate(t).map(|p| (p.name, p.scope));
        assert_eq!(who("op"), Some(("admin".into(), Scope::Operate)));
        assert_eq!(who("ro-token"), Some(("ro".into(), Scope::Read)));
        assert_eq!(who("ro"), None);
        assert_eq!(who(""), None);
        // A session never has more than its token has now.
        let p = tokens.console_principal("ro", "operate").unwrap();
        assert_eq!((p.scope, p.console), (Scope::Read, true));
        assert!(tokens.console_principal("gone", "read").is_none());
    }
}

//! Settings of the operator surface: admin tokens and their scopes, the read replica for admin
//! reads, console sessions, payload retention and the event stream. Owns their defaults and
//! the rules a set of tokens must follow. It must never read the environment or a file: the configuration reader
//! fills [`OperatorConfig`] and hands it over.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::verify::Secret;

/// What an admin token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Look at everything; change nothing.
    Read,
    /// Also replay, redrive, pause and resume.
    Operate,
}

impl Scope {
    /// The scope as configured and shown: `read` or `operate`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Operate => "operate",
        }
    }

    /// `read` or `operate`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Self::Read),
            "operate" => Some(Self::Operate),
            _ => None,
        }
    }
}

/// One bearer token of the admin API and the console.
#[derive(Debug, Clone)]
pub struct AdminToken {
    /// Who acts, in the audit log.
    pub name: String,
    pub token: Secret,
    pub scope: Scope,
}

impl AdminToken {
    /// Shortest admin token accepted: 24 bytes. The failed-login limit slows guessing per
    /// address, not per botnet; a short token is the one thing it cannot make up for.
    pub const MIN_BYTES: usize = 24;

    /// A name the audit log can show as it is: 1 to 64 letters, digits, '-', '_', '.' or '@'.
    pub fn valid_name(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
    }
}

/// Two tokens that cannot both exist: they would be indistinguishable in the audit log, or one
/// value would stand for two scopes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenClash {
    #[error("two tokens are named {0:?}")]
    Name(String),
    #[error("tokens {0} and {1} have the same value")]
    Value(String, String),
}

/// The first clash among `tokens`, in order.
pub fn token_clash(tokens: &[AdminToken]) -> Option<TokenClash> {
    for (i, a) in tokens.iter().enumerate() {
        for b in &tokens[..i] {
            if a.name == b.name {
                return Some(TokenClash::Name(a.name.clone()));
            }
            if a.token.expose() == b.token.expose() {
                return Some(TokenClash::Value(b.name.clone(), a.name.clone()));
            }
        }
    }
    None
}

/// The operator surface's settings.
#[derive(Debug, Clone)]
pub struct OperatorConfig {
    /// Every admin token; empty means the admin API and the console do not exist (404).
    pub tokens: Vec<AdminToken>,
    /// `DATABASE_READ_URL`: admin reads go here (a read replica) when set.
    pub read_database_url: Option<String>,
    /// How long a console login lasts.
    pub session_ttl: Duration,
    /// `HOOKD_RETENTION_DAYS`: payloads of finished events older than this are purged.
    pub retention: Option<Duration>,
    /// The event stream (`/admin/events/stream`).
    pub stream: super::StreamSettings,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            tokens: Vec::new(),
            read_database_url: None,
            session_ttl: Duration::from_secs(12 * 3600),
            retention: None,
            stream: super::StreamSettings::default(),
        }
    }
}

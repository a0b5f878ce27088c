//! Settings of the operator surface: admin tokens and their scopes, the read replica for admin
//! reads, console sessions, and payload retention.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ConfigError, FileStore, Source, redact_url};
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
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Operate => "operate",
        }
    }

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
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            tokens: Vec::new(),
            read_database_url: None,
            session_ttl: Duration::from_secs(12 * 3600),
            retention: None,
        }
    }
}

/// `[admin]` in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAdmin {
    #[serde(default)]
    tokens: Vec<FileToken>,
    session_hours: Option<u64>,
    /// Addresses that may reach `/admin` and `/ui` (read by `hardening::admin_access`).
    pub(super) allow: Option<Vec<String>>,
    /// Failed logins per address per minute (read by `hardening::admin_access`).
    pub(super) max_failures: Option<u32>,
}

/// `[[admin.tokens]]`: `token` or `token_env` (the variable that holds it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToken {
    name: String,
    token: Option<String>,
    token_env: Option<String>,
    scope: String,
}

/// `[retention]` in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRetention {
    days: Option<u64>,
}

fn invalid(setting: &str, value: &str, expected: &str) -> ConfigError {
    ConfigError::Invalid {
        setting: setting.to_owned(),
        value: value.to_owned(),
        expected: expected.to_owned(),
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
}

/// Shortest admin token accepted: 24 bytes. The failed-login limit slows guessing per address,
/// not per botnet; a short token is the one thing it cannot make up for.
pub const MIN_TOKEN_BYTES: usize = 24;

/// Refuse, naming where it was set, any token shorter than [`MIN_TOKEN_BYTES`].
fn check_lengths(
    src: &Source<'_>,
    admin: &FileAdmin,
    tokens: &[AdminToken],
) -> Result<(), ConfigError> {
    for t in tokens {
        if t.token.expose().len() >= MIN_TOKEN_BYTES {
            continue;
        }
        let setting = match t.name.as_str() {
            "admin" if src.raw("HOOKD_ADMIN_TOKEN").is_some() => "HOOKD_ADMIN_TOKEN".to_owned(),
            "read" if src.raw("HOOKD_ADMIN_READ_TOKEN").is_some() => {
                "HOOKD_ADMIN_READ_TOKEN".to_owned()
            }
            name => {
                let i = admin.tokens.iter().position(|f| f.name == name);
                let from_env = i.and_then(|i| admin.tokens[i].token_env.clone());
                from_env.unwrap_or_else(|| format!("admin.tokens[{}].token", i.unwrap_or(0)))
            }
        };
        return Err(invalid(
            &setting,
            &format!("({} bytes)", t.token.expose().len()),
            &format!(
                "an admin token of at least {MIN_TOKEN_BYTES} bytes (e.g. `openssl rand -hex 24`)"
            ),
        ));
    }
    Ok(())
}

pub(super) fn load(
    src: &Source<'_>,
    admin: &FileAdmin,
    retention: &FileRetention,
    store: &FileStore,
    database_url: &str,
) -> Result<OperatorConfig, ConfigError> {
    let mut tokens = Vec::new();
    if let Some(t) = src.raw("HOOKD_ADMIN_TOKEN") {
        tokens.push(AdminToken {
            name: "admin".into(),
            token: Secret::new(t),
            scope: Scope::Operate,
        });
    }
    if let Some(t) = src.raw("HOOKD_ADMIN_READ_TOKEN") {
        tokens.push(AdminToken {
            name: "read".into(),
            token: Secret::new(t),
            scope: Scope::Read,
        });
    }
    for (i, t) in admin.tokens.iter().enumerate() {
        let at = format!("admin.tokens[{i}]");
        if !valid_name(&t.name) {
            return Err(invalid(
                &format!("{at}.name"),
                &t.name,
                "1 to 64 letters, digits, '-', '_', '.' or '@'",
            ));
        }
        let scope = Scope::parse(&t.scope)
            .ok_or_else(|| invalid(&format!("{at}.scope"), &t.scope, "read or operate"))?;
        let token = match (&t.token, &t.token_env) {
            (Some(tok), None) if !tok.trim().is_empty() => tok.trim().to_owned(),
            (None, Some(var)) => src.raw(var).map(str::to_owned).ok_or_else(|| {
                invalid(
                    var,
                    "(unset)",
                    &format!("the token of {at} ({}), as token_env says", t.name),
                )
            })?,
            _ => {
                return Err(invalid(
                    &format!("{at}.token"),
                    "(see the file)",
                    "exactly one of token (not empty) or token_env",
                ));
            }
        };
        tokens.push(AdminToken {
            name: t.name.clone(),
            token: Secret::new(&token),
            scope,
        });
    }
    check_lengths(src, admin, &tokens)?;
    for (i, a) in tokens.iter().enumerate() {
        for b in &tokens[..i] {
            if a.name == b.name {
                return Err(invalid(
                    "admin.tokens",
                    &a.name,
                    "a different name for every token (HOOKD_ADMIN_TOKEN is \"admin\", \
                     HOOKD_ADMIN_READ_TOKEN is \"read\")",
                ));
            }
            if a.token.expose() == b.token.expose() {
                return Err(invalid(
                    "admin.tokens",
                    &format!("{} and {}", b.name, a.name),
                    "a different token value for every token",
                ));
            }
        }
    }

    let read_database_url = src
        .raw("DATABASE_READ_URL")
        .map(str::to_owned)
        .or_else(|| store.read_url.clone());
    if let Some(url) = &read_database_url {
        let same_engine = if database_url.starts_with("sqlite:") {
            false
        } else {
            url.starts_with("postgres://") || url.starts_with("postgresql://")
        };
        if !same_engine {
            return Err(invalid(
                "DATABASE_READ_URL",
                &redact_url(url),
                "a postgres:// URL of a read replica of DATABASE_URL (PostgreSQL only)",
            ));
        }
    }

    let session_hours = src.positive("HOOKD_UI_SESSION_HOURS", admin.session_hours, 12)?;
    let retention = match src.raw("HOOKD_RETENTION_DAYS") {
        Some(_) => Some(src.positive("HOOKD_RETENTION_DAYS", None, 1u64)?),
        None => match retention.days {
            Some(0) => {
                return Err(invalid(
                    "retention.days",
                    "0",
                    "a positive whole number of days",
                ));
            }
            d => d,
        },
    };
    Ok(OperatorConfig {
        tokens,
        read_database_url,
        session_ttl: Duration::from_secs(session_hours.saturating_mul(3600)),
        retention: retention.map(|d| Duration::from_secs(d.saturating_mul(86_400))),
    })
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    fn config(vars: &[(&str, &str)], toml: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hookd.toml");
        std::fs::write(&path, toml).unwrap();
        let mut all: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        all.push(("HOOKD_CONFIG".into(), path.display().to_string()));
        Config::from_vars(all)
    }

    #[test]
    fn tokens_come_from_env_and_file() {
        let c = config(
            &[
                ("HOOKD_ADMIN_TOKEN", "op-token-0123456789abcdefgh"),
                ("HOOKD_ADMIN_READ_TOKEN", "read-token-0123456789abcdefgh"),
                ("ONCALL", "oncall-token-0123456789abcdefgh"),
            ],
            r#"
[[admin.tokens]]
name = "ci"
token = "ci-token-0123456789abcdefgh"
scope = "operate"
[[admin.tokens]]
name = "oncall"
token_env = "ONCALL"
scope = "read"
"#,
        )
        .unwrap();
        let t: Vec<(&str, &str, Scope)> = c
            .operator
            .tokens
            .iter()
            .map(|t| (t.name.as_str(), t.token.expose(), t.scope))
            .collect();
        assert_eq!(
            t,
            [
                ("admin", "op-token-0123456789abcdefgh", Scope::Operate),
                ("read", "read-token-0123456789abcdefgh", Scope::Read),
                ("ci", "ci-token-0123456789abcdefgh", Scope::Operate),
                ("oncall", "oncall-token-0123456789abcdefgh", Scope::Read),
            ]
        );
    }

    #[test]
    fn token_mistakes_name_the_setting() {
        let err = |vars: &[(&str, &str)], toml: &str| config(vars, toml).unwrap_err().to_string();
        let e = err(
            &[],
            "[[admin.tokens]]\nname = \"x\"\ntoken = \"t\"\nscope = \"write\"\n",
        );
        assert!(e.contains("admin.tokens[0].scope"), "{e}");
        let e = err(
            &[("HOOKD_ADMIN_TOKEN", "same-token-0123456789abcdefgh")],
            "[[admin.tokens]]\nname = \"x\"\ntoken = \"same-token-0123456789abcdefgh\"\nscope = \"read\"\n",
        );
        assert!(e.contains("different token value"), "{e}");
        let e = err(
            &[],
            "[[admin.tokens]]\nname = \"x\"\ntoken_env = \"NOPE\"\nscope = \"read\"\n",
        );
        assert!(e.contains("NOPE"), "{e}");
        // Short tokens are refused, naming where they were set and never echoing them.
        let e = err(&[("HOOKD_ADMIN_TOKEN", "short-secret")], "");
        assert!(
            e.contains("HOOKD_ADMIN_TOKEN")
                && e.contains("24 bytes")
                && !e.contains("short-secret"),
            "{e}"
        );
        let e = err(&[("HOOKD_ADMIN_READ_TOKEN", "short")], "");
        assert!(e.contains("HOOKD_ADMIN_READ_TOKEN"), "{e}");
        let e = err(
            &[],
            "[[admin.tokens]]\nname = \"ci\"\ntoken = \"tiny\"\nscope = \"read\"\n",
        );
        assert!(e.contains("admin.tokens[0].token"), "{e}");
        let e = err(
            &[("CI_TOKEN", "tiny")],
            "[[admin.tokens]]\nname = \"ci\"\ntoken_env = \"CI_TOKEN\"\nscope = \"read\"\n",
        );
        assert!(e.contains("CI_TOKEN"), "{e}");
        let e = err(&[("HOOKD_RETENTION_DAYS", "0")], "");
        assert!(e.contains("HOOKD_RETENTION_DAYS"), "{e}");
        let e = err(&[("DATABASE_READ_URL", "postgres://r/db")], "");
        assert!(e.contains("DATABASE_READ_URL"), "{e}");
    }

    #[test]
    fn retention_and_replica() {
        let c = config(
            &[
                ("DATABASE_URL", "postgres://p@h/db"),
                ("DATABASE_READ_URL", "postgres://p@replica/db"),
            ],
            "[retention]\ndays = 30\n",
        )
        .unwrap();
        assert_eq!(c.operator.retention, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(
            c.operator.read_database_url.as_deref(),
            Some("postgres://p@replica/db")
        );
        assert!(config(&[], "").unwrap().operator.retention.is_none());
    }
}

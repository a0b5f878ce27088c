//! Reads the settings of the operator surface: admin tokens (`HOOKD_ADMIN_TOKEN`,
//! `HOOKD_ADMIN_READ_TOKEN`, `[[admin.tokens]]`), console sessions, the read replica,
//! `[retention]` and the event stream. Fills [`OperatorConfig`]; the rules a set of tokens
//! must follow are `ops`'s.

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use super::reader::{Reader, invalid};
use crate::ops::{AdminToken, OperatorConfig, Scope, StreamSettings, TokenClash, token_clash};
use crate::store::{StoreSettings, is_postgres_url, redact_url};
use crate::verify::Secret;

/// `[[admin.tokens]]`: `token` or `token_env` (the variable that holds it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToken {
    name: String,
    token: Option<String>,
    token_env: Option<String>,
    scope: String,
}

pub(super) fn operator(
    r: &Reader<'_>,
    store: &StoreSettings,
) -> Result<OperatorConfig, ConfigError> {
    let d = OperatorConfig::default();
    let tokens = tokens(r)?;
    let read_database_url = r.text(Some("DATABASE_READ_URL"), Some("store.read_url"))?;
    if let Some(url) = &read_database_url {
        // A replica of SQLite does not exist; one of PostgreSQL is PostgreSQL.
        if store.is_sqlite() || !is_postgres_url(url) {
            return Err(invalid(
                "DATABASE_READ_URL",
                &redact_url(url),
                "a postgres:// URL of a read replica of DATABASE_URL (PostgreSQL only)",
            ));
        }
    }
    let session_hours = r.positive(
        "HOOKD_UI_SESSION_HOURS",
        Some("admin.session_hours"),
        d.session_ttl.as_secs() / 3600,
    )?;
    let retention_days = match r.raw("HOOKD_RETENTION_DAYS") {
        Some(_) => Some(r.positive("HOOKD_RETENTION_DAYS", None, 1u64)?),
        None => match r.file::<u64>("retention.days", "a positive whole number of days")? {
            Some(0) => {
                return Err(invalid(
                    "retention.days",
                    "0",
                    "a positive whole number of days",
                ));
            }
            days => days,
        },
    };
    Ok(OperatorConfig {
        tokens,
        read_database_url,
        session_ttl: Duration::from_secs(session_hours.saturating_mul(3600)),
        retention: retention_days.map(|d| Duration::from_secs(d.saturating_mul(86_400))),
        stream: stream(r, store)?,
    })
}

/// `HOOKD_STREAM_MAX` and `HOOKD_STREAM_SETTLE_MS`. A settle delay shorter than the store
/// timeout would let a stream move past an insert still under way, and skip it: refused.
fn stream(r: &Reader<'_>, store: &StoreSettings) -> Result<StreamSettings, ConfigError> {
    let d = StreamSettings::default();
    let max_streams = r.positive("HOOKD_STREAM_MAX", Some("admin.stream_max"), d.max_streams)?;
    let settle_ms = r.positive(
        "HOOKD_STREAM_SETTLE_MS",
        Some("admin.stream_settle_ms"),
        d.settle.as_millis() as u64,
    )?;
    let settle = Duration::from_millis(settle_ms);
    if settle < store.timeout {
        return Err(invalid(
            "HOOKD_STREAM_SETTLE_MS",
            &settle_ms.to_string(),
            &format!(
                "at least the store timeout (HOOKD_STORE_TIMEOUT_MS, {} ms): an event stream \
                 must not move past an insert still under way",
                store.timeout.as_millis()
            ),
        ));
    }
    Ok(StreamSettings {
        max_streams,
        settle,
    })
}

/// Every admin token: the two variables', then the file's, in order.
fn tokens(r: &Reader<'_>) -> Result<Vec<AdminToken>, ConfigError> {
    let mut tokens = Vec::new();
    for (var, name, scope) in [
        ("HOOKD_ADMIN_TOKEN", "admin", Scope::Operate),
        ("HOOKD_ADMIN_READ_TOKEN", "read", Scope::Read),
    ] {
        if let Some(t) = r.raw(var) {
            tokens.push(AdminToken {
                name: name.into(),
                token: Secret::new(t),
                scope,
            });
        }
    }
    let file = r
        .section::<Vec<FileToken>>("admin.tokens")?
        .unwrap_or_default();
    for (i, t) in file.iter().enumerate() {
        tokens.push(file_token(r, i, t)?);
    }
    if let Some(t) = tokens
        .iter()
        .find(|t| t.token.expose().len() < AdminToken::MIN_BYTES)
    {
        return Err(invalid(
            &token_setting(r, &file, &t.name),
            &format!("({} bytes)", t.token.expose().len()),
            &format!(
                "an admin token of at least {} bytes (e.g. `openssl rand -hex 24`)",
                AdminToken::MIN_BYTES
            ),
        ));
    }
    match token_clash(&tokens) {
        None => Ok(tokens),
        Some(TokenClash::Name(name)) => Err(invalid(
            "admin.tokens",
            &name,
            "a different name for every token (HOOKD_ADMIN_TOKEN is \"admin\", \
             HOOKD_ADMIN_READ_TOKEN is \"read\")",
        )),
        Some(TokenClash::Value(a, b)) => Err(invalid(
            "admin.tokens",
            &format!("{a} and {b}"),
            "a different token value for every token",
        )),
    }
}

/// Where the token named `name` was set: its variable, or its entry of the file.
fn token_setting(r: &Reader<'_>, file: &[FileToken], name: &str) -> String {
    match name {
        "admin" if r.raw("HOOKD_ADMIN_TOKEN").is_some() => "HOOKD_ADMIN_TOKEN".to_owned(),
        "read" if r.raw("HOOKD_ADMIN_READ_TOKEN").is_some() => "HOOKD_ADMIN_READ_TOKEN".to_owned(),
        _ => {
            let i = file.iter().position(|f| f.name == name);
            let from_env = i.and_then(|i| file[i].token_env.clone());
            from_env.unwrap_or_else(|| format!("admin.tokens[{}].token", i.unwrap_or(0)))
        }
    }
}

/// `[[admin.tokens]]` entry `i`.
fn file_token(r: &Reader<'_>, i: usize, t: &FileToken) -> Result<AdminToken, ConfigError> {
    let at = format!("admin.tokens[{i}]");
    if !AdminToken::valid_name(&t.name) {
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
        (None, Some(var)) => r.raw(var).map(str::to_owned).ok_or_else(|| {
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
    Ok(AdminToken {
        name: t.name.clone(),
        token: Secret::new(&token),
        scope,
    })
}

//! Settings that protect hookd from abuse and overload: rate limits, request limits and
//! timeouts, admin access, TLS on the listener, forward destination policy and JSON Schemas.
//! Read by `Config::from_vars` like every other setting; each mistake names the setting.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::{ConfigError, FileDestinations, Source, env_prefix};
use crate::actions::egress::EgressPolicy;

/// `[limits]` in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileLimits {
    rate_per_sec: Option<u32>,
    burst: Option<u32>,
    /// `[limits.providers.<name>]`: a provider's own rate.
    #[serde(default)]
    providers: BTreeMap<String, FileRate>,
    max_in_flight: Option<usize>,
    max_connections: Option<usize>,
    webhook_reserved_connections: Option<usize>,
    header_timeout_ms: Option<u64>,
    body_timeout_ms: Option<u64>,
    max_header_bytes: Option<usize>,
    max_headers: Option<usize>,
    max_id_bytes: Option<usize>,
    max_event_type_bytes: Option<usize>,
    audit_redact_headers: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRate {
    rate_per_sec: Option<u32>,
    burst: Option<u32>,
}

/// `[tls]` in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTls {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    reload_secs: Option<u64>,
}

/// A token bucket: `per_sec` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateQuota {
    pub per_sec: u32,
    pub burst: u32,
}

/// Limits on what one request, one client and the whole process may take.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Default per-provider rate (per process); `None`: unlimited.
    pub rate: Option<RateQuota>,
    /// Providers with a rate of their own (`None`: unlimited for that provider).
    pub provider_rates: BTreeMap<String, Option<RateQuota>>,
    /// Webhook requests being handled at once; beyond it, 503 at once.
    pub max_in_flight: usize,
    /// Open client connections; beyond it, new connections wait in the kernel's backlog.
    pub max_connections: usize,
    /// Connections only webhooks may use: requests to other routes may be reading their bodies
    /// on at most `max_connections - webhook_reserved_connections` connections at once.
    pub webhook_reserved_connections: usize,
    /// Time a client has to send the request line and headers (and the TLS handshake).
    pub header_timeout: Duration,
    /// Time a client has to send the whole body, counted from when its headers arrived.
    pub body_timeout: Duration,
    /// Size of the request line and headers together.
    pub max_header_bytes: usize,
    /// Number of request headers.
    pub max_headers: usize,
    /// Length of an idempotency key (a provider's event or delivery id).
    pub max_id_bytes: usize,
    /// Length of an event type.
    pub max_event_type_bytes: usize,
    /// Header names (lower-case) whose values are redacted in the stored audit headers, on top
    /// of the built-in credential-like names (`verify::CREDENTIAL_MARKERS`).
    pub audit_redact_headers: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            rate: None,
            provider_rates: BTreeMap::new(),
            max_in_flight: 512,
            max_connections: 4096,
            webhook_reserved_connections: 2048,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_id_bytes: 255,
            max_event_type_bytes: 128,
            audit_redact_headers: Vec::new(),
        }
    }
}

impl Limits {
    /// The rate that applies to `provider`.
    pub fn rate_for(&self, provider: &str) -> Option<RateQuota> {
        match self.provider_rates.get(provider) {
            Some(own) => *own,
            None => self.rate,
        }
    }
}

/// Who may reach `/admin` and `/ui`, and how many wrong tokens a client may try.
#[derive(Debug, Clone)]
pub struct AdminAccess {
    /// Client addresses allowed; `None`: any.
    pub allow: Option<Vec<IpNet>>,
    /// Failed logins per client address per minute before it is refused (429) for a while.
    pub max_failures: u32,
}

/// TLS on the listener.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// How often the files are checked for a change.
    pub reload: Duration,
}

pub(super) fn limits(
    src: &Source<'_>,
    file: &FileLimits,
    providers: &[String],
) -> Result<Limits, ConfigError> {
    let d = Limits::default();
    let ms = Duration::from_millis;
    let rate = quota(
        src,
        "HOOKD_RATE_LIMIT_PER_SEC",
        "HOOKD_RATE_LIMIT_BURST",
        file.rate_per_sec,
        file.burst,
    )?;
    for name in file.providers.keys() {
        if !providers.iter().any(|p| p == name) {
            return Err(ConfigError::Invalid {
                setting: format!("limits.providers.{name}"),
                value: name.clone(),
                expected: format!("a provider name (one of {})", providers.join(", ")),
            });
        }
    }
    let mut provider_rates = BTreeMap::new();
    for name in providers {
        let env = env_prefix(name);
        let own = file.providers.get(name);
        let per_sec_var = format!("{env}_RATE_LIMIT_PER_SEC");
        let burst_var = format!("{env}_RATE_LIMIT_BURST");
        let set = own.is_some() || src.raw(&per_sec_var).is_some() || src.raw(&burst_var).is_some();
        if set {
            // A provider's burst alone keeps the default rate.
            let per_sec = own.and_then(|o| o.rate_per_sec).or(rate.map(|r| r.per_sec));
            let q = quota(
                src,
                &per_sec_var,
                &burst_var,
                per_sec,
                own.and_then(|o| o.burst),
            )?;
            provider_rates.insert(name.clone(), q);
        }
    }
    let max_connections = src.positive(
        "HOOKD_MAX_CONNECTIONS",
        file.max_connections,
        d.max_connections,
    )?;
    let limits = Limits {
        rate,
        provider_rates,
        max_in_flight: src.positive("HOOKD_MAX_IN_FLIGHT", file.max_in_flight, d.max_in_flight)?,
        max_connections,
        webhook_reserved_connections: src.within(
            "HOOKD_WEBHOOK_RESERVED_CONNECTIONS",
            file.webhook_reserved_connections,
            max_connections / 2,
            (0, max_connections.saturating_sub(1)),
        )?,
        header_timeout: ms(src.positive(
            "HOOKD_HEADER_TIMEOUT_MS",
            file.header_timeout_ms,
            10_000,
        )?),
        body_timeout: ms(src.positive("HOOKD_BODY_TIMEOUT_MS", file.body_timeout_ms, 30_000)?),
        max_header_bytes: src.positive(
            "HOOKD_MAX_HEADER_BYTES",
            file.max_header_bytes,
            d.max_header_bytes,
        )?,
        max_headers: src.positive("HOOKD_MAX_HEADERS", file.max_headers, d.max_headers)?,
        max_id_bytes: src.positive("HOOKD_MAX_ID_BYTES", file.max_id_bytes, d.max_id_bytes)?,
        max_event_type_bytes: src.positive(
            "HOOKD_MAX_EVENT_TYPE_BYTES",
            file.max_event_type_bytes,
            d.max_event_type_bytes,
        )?,
        audit_redact_headers: header_names(src, file)?,
    };
    // hyper's read buffer holds the headers and cannot be smaller than 8 KiB.
    if !(1024..=1 << 20).contains(&limits.max_header_bytes) {
        return Err(ConfigError::Invalid {
            setting: "HOOKD_MAX_HEADER_BYTES".into(),
            value: limits.max_header_bytes.to_string(),
            expected: "between 1024 and 1048576 bytes".into(),
        });
    }
    Ok(limits)
}

/// `HOOKD_AUDIT_REDACT_HEADERS`: comma-separated header names (TOML: an array), lower-cased.
fn header_names(src: &Source<'_>, file: &FileLimits) -> Result<Vec<String>, ConfigError> {
    let list: Vec<String> = match src.raw("HOOKD_AUDIT_REDACT_HEADERS") {
        Some(v) => v.split(',').map(|s| s.trim().to_owned()).collect(),
        None => file.audit_redact_headers.clone().unwrap_or_default(),
    };
    list.into_iter()
        .filter(|s| !s.is_empty())
        .map(|s| {
            if axum::http::HeaderName::from_bytes(s.as_bytes()).is_ok() {
                Ok(s.to_ascii_lowercase())
            } else {
                Err(ConfigError::Invalid {
                    setting: "HOOKD_AUDIT_REDACT_HEADERS".into(),
                    value: s,
                    expected: "header names separated by commas, e.g. X-Tenant-Key,X-Internal"
                        .into(),
                })
            }
        })
        .collect()
}

/// A rate and its burst; a rate of 0 (or none) means unlimited.
fn quota(
    src: &Source<'_>,
    per_sec_var: &str,
    burst_var: &str,
    file_per_sec: Option<u32>,
    file_burst: Option<u32>,
) -> Result<Option<RateQuota>, ConfigError> {
    let per_sec: Option<u32> = match src.raw(per_sec_var) {
        Some(_) => Some(src.get(per_sec_var, None, 0, "requests per second (0: unlimited)")?),
        None => file_per_sec,
    };
    let Some(per_sec) = per_sec.filter(|r| *r > 0) else {
        if src.raw(burst_var).is_some() {
            return Err(ConfigError::Invalid {
                setting: burst_var.into(),
                value: src.raw(burst_var).unwrap_or_default().into(),
                expected: format!("no burst without a rate: set {per_sec_var} too"),
            });
        }
        return Ok(None);
    };
    let burst = src.positive(burst_var, file_burst, per_sec)?;
    Ok(Some(RateQuota { per_sec, burst }))
}

pub(super) fn admin_access(
    src: &Source<'_>,
    file: &super::operator::FileAdmin,
) -> Result<AdminAccess, ConfigError> {
    let list: Option<Vec<String>> = match src.raw("HOOKD_ADMIN_ALLOW") {
        Some(v) => Some(v.split(',').map(|s| s.trim().to_owned()).collect()),
        None => file.allow.clone(),
    };
    let allow = list
        .map(|l| {
            l.iter()
                .filter(|s| !s.is_empty())
                .map(|s| {
                    parse_net(s).ok_or_else(|| ConfigError::Invalid {
                        setting: "HOOKD_ADMIN_ALLOW".into(),
                        value: s.clone(),
                        expected: "IP addresses or CIDR ranges separated by commas, e.g. \
                                   127.0.0.1,10.0.0.0/8,::1"
                            .into(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    Ok(AdminAccess {
        allow,
        max_failures: src.positive("HOOKD_ADMIN_MAX_FAILURES", file.max_failures, 10)?,
    })
}

/// `10.0.0.0/8`, `::1` or `127.0.0.1` (a single address is a /32 or /128).
pub fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

pub(super) fn tls(src: &Source<'_>, file: &FileTls) -> Result<Option<TlsConfig>, ConfigError> {
    let path = |var: &str, from_file: &Option<PathBuf>| {
        src.raw(var).map(PathBuf::from).or(from_file.clone())
    };
    let cert = path("HOOKD_TLS_CERT", &file.cert);
    let key = path("HOOKD_TLS_KEY", &file.key);
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(c), Some(k)) => (c, k),
        (c, _) => {
            let missing = if c.is_none() {
                "HOOKD_TLS_CERT"
            } else {
                "HOOKD_TLS_KEY"
            };
            return Err(ConfigError::Invalid {
                setting: missing.into(),
                value: String::new(),
                expected: "both HOOKD_TLS_CERT and HOOKD_TLS_KEY (PEM file paths), or neither"
                    .into(),
            });
        }
    };
    Ok(Some(TlsConfig {
        cert,
        key,
        reload: Duration::from_secs(src.positive("HOOKD_TLS_RELOAD_SECS", file.reload_secs, 10)?),
    }))
}

pub(super) fn egress(
    src: &Source<'_>,
    file: &FileDestinations,
) -> Result<EgressPolicy, ConfigError> {
    let list: Option<Vec<String>> = match src.raw("HOOKD_FORWARD_ALLOW") {
        Some(v) => Some(v.split(',').map(|s| s.trim().to_owned()).collect()),
        None => file.forward_allow.clone(),
    };
    let allow_private = src.get(
        "HOOKD_FORWARD_ALLOW_PRIVATE",
        file.allow_private,
        false,
        "true or false",
    )?;
    EgressPolicy::new(list.as_deref(), allow_private).map_err(|e| ConfigError::Invalid {
        setting: "HOOKD_FORWARD_ALLOW".into(),
        value: list.unwrap_or_default().join(","),
        expected: e,
    })
}

/// `[[schemas]]` in the TOML file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSchema {
    #[serde(default = "star")]
    provider: String,
    #[serde(default = "stars")]
    events: Vec<String>,
    schema: PathBuf,
}

fn star() -> String {
    "*".into()
}

fn stars() -> Vec<String> {
    vec![star()]
}

/// A JSON Schema that payloads of a provider and event type must match. Compiled once, at start.
#[derive(Clone)]
pub struct SchemaRule {
    /// Provider name or `*`.
    pub provider: String,
    /// Globs on the event type.
    pub events: Vec<String>,
    /// The file it came from, as configured (named in errors).
    pub path: PathBuf,
    pub validator: Arc<jsonschema::Validator>,
}

impl fmt::Debug for SchemaRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaRule")
            .field("provider", &self.provider)
            .field("events", &self.events)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Read and compile every `[[schemas]]` entry; paths are relative to the config file's folder.
pub(super) fn schemas(
    entries: &[FileSchema],
    config_dir: Option<&Path>,
    providers: &[String],
) -> Result<Vec<SchemaRule>, ConfigError> {
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let invalid = |expected: String| ConfigError::Invalid {
                setting: format!("schemas[{i}].schema"),
                value: e.schema.display().to_string(),
                expected,
            };
            if e.provider != "*" && !providers.contains(&e.provider) {
                return Err(ConfigError::Invalid {
                    setting: format!("schemas[{i}].provider"),
                    value: e.provider.clone(),
                    expected: format!("* or a provider name (one of {})", providers.join(", ")),
                });
            }
            let path = match config_dir {
                Some(dir) if e.schema.is_relative() => dir.join(&e.schema),
                _ => e.schema.clone(),
            };
            let text = std::fs::read_to_string(&path)
                .map_err(|err| invalid(format!("a readable JSON Schema file ({err})")))?;
            let schema: serde_json::Value = serde_json::from_str(&text)
                .map_err(|err| invalid(format!("a JSON Schema, but it is not JSON: {err}")))?;
            let validator = jsonschema::validator_for(&schema)
                .map_err(|err| invalid(format!("a valid JSON Schema: {err}")))?;
            Ok(SchemaRule {
                provider: e.provider.clone(),
                events: e.events.clone(),
                path: e.schema.clone(),
                validator: Arc::new(validator),
            })
        })
        .collect()
}

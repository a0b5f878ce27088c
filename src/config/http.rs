//! Reads the settings of the HTTP surface: `[server]`, `[limits]`, `[tls]`, the access part of
//! `[admin]`, `[[schemas]]` and their variables. Fills [`HttpSettings`]; the limits' own bounds
//! and the schema compiler belong to `http`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use super::reader::{Reader, invalid};
use crate::http::{AdminAccess, HttpSettings, Limits, RateQuota, SchemaRule, TlsConfig};
use crate::verify::env_prefix;

pub(super) fn http(r: &Reader<'_>, providers: &[String]) -> Result<HttpSettings, ConfigError> {
    let d = HttpSettings::default();
    Ok(HttpSettings {
        bind: r.get::<IpAddr>("HOOKD_BIND", Some("server.bind"), d.bind, "an IP address")?,
        port: r.get("PORT", Some("server.port"), d.port, "a TCP port (0-65535)")?,
        internal_addr: r.opt(
            "HOOKD_INTERNAL_ADDR",
            Some("server.internal_addr"),
            "an address and port, e.g. 127.0.0.1:9090",
        )?,
        max_body_bytes: r.positive(
            "HOOKD_MAX_BODY_BYTES",
            Some("server.max_body_bytes"),
            d.max_body_bytes,
        )?,
        memory_limit_bytes: r.positive::<u64>(
            "HOOKD_MEMORY_LIMIT_MB",
            None,
            d.memory_limit_bytes >> 20,
        )? << 20,
        limits: limits(r, providers)?,
        admin_access: admin_access(r)?,
        tls: tls(r)?,
        schemas: schemas(r, providers)?,
        shutdown_ready_delay: Duration::from_millis(r.within(
            "HOOKD_SHUTDOWN_READY_DELAY_MS",
            Some("server.shutdown_ready_delay_ms"),
            d.shutdown_ready_delay.as_millis() as u64,
            (0, HttpSettings::SHUTDOWN_READY_DELAY_MAX.as_millis() as u64),
        )?),
    })
}

/// `[limits.providers.<name>]`: a provider's own rate.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRate {
    rate_per_sec: Option<u32>,
    burst: Option<u32>,
}

fn limits(r: &Reader<'_>, providers: &[String]) -> Result<Limits, ConfigError> {
    let d = Limits::default();
    let ms = |var: &str, key: &str, default: Duration| {
        r.positive(var, Some(key), default.as_millis() as u64)
            .map(Duration::from_millis)
    };
    let rate = quota(
        r,
        ("HOOKD_RATE_LIMIT_PER_SEC", "HOOKD_RATE_LIMIT_BURST"),
        r.file::<u32>("limits.rate_per_sec", "requests per second (0: unlimited)")?,
        r.file::<u32>("limits.burst", "a positive whole number")?,
    )?;
    let max_connections = r.positive(
        "HOOKD_MAX_CONNECTIONS",
        Some("limits.max_connections"),
        d.max_connections,
    )?;
    let limits = Limits {
        rate,
        provider_rates: provider_rates(r, providers, rate)?,
        max_in_flight: r.positive(
            "HOOKD_MAX_IN_FLIGHT",
            Some("limits.max_in_flight"),
            d.max_in_flight,
        )?,
        max_connections,
        // Half by default, whatever the connection cap.
        webhook_reserved_connections: r.within(
            "HOOKD_WEBHOOK_RESERVED_CONNECTIONS",
            Some("limits.webhook_reserved_connections"),
            max_connections / 2,
            (0, max_connections.saturating_sub(1)),
        )?,
        header_timeout: ms(
            "HOOKD_HEADER_TIMEOUT_MS",
            "limits.header_timeout_ms",
            d.header_timeout,
        )?,
        body_timeout: ms(
            "HOOKD_BODY_TIMEOUT_MS",
            "limits.body_timeout_ms",
            d.body_timeout,
        )?,
        max_header_bytes: r.positive(
            "HOOKD_MAX_HEADER_BYTES",
            Some("limits.max_header_bytes"),
            d.max_header_bytes,
        )?,
        max_headers: r.positive(
            "HOOKD_MAX_HEADERS",
            Some("limits.max_headers"),
            d.max_headers,
        )?,
        max_id_bytes: r.positive(
            "HOOKD_MAX_ID_BYTES",
            Some("limits.max_id_bytes"),
            d.max_id_bytes,
        )?,
        max_event_type_bytes: r.positive(
            "HOOKD_MAX_EVENT_TYPE_BYTES",
            Some("limits.max_event_type_bytes"),
            d.max_event_type_bytes,
        )?,
        audit_redact_headers: redact_headers(r)?,
    };
    let (lo, hi) = Limits::HEADER_BYTES;
    if !(lo..=hi).contains(&limits.max_header_bytes) {
        return Err(invalid(
            "HOOKD_MAX_HEADER_BYTES",
            &limits.max_header_bytes.to_string(),
            &format!("between {lo} and {hi} bytes"),
        ));
    }
    Ok(limits)
}

/// `HOOKD_AUDIT_REDACT_HEADERS`: comma-separated header names (TOML: an array), lower-cased.
fn redact_headers(r: &Reader<'_>) -> Result<Vec<String>, ConfigError> {
    let list = r
        .list("HOOKD_AUDIT_REDACT_HEADERS", "limits.audit_redact_headers")?
        .unwrap_or_default();
    list.iter()
        .filter(|s| !s.is_empty())
        .map(|s| {
            Limits::redact_header(s).ok_or_else(|| {
                invalid(
                    "HOOKD_AUDIT_REDACT_HEADERS",
                    s,
                    "header names separated by commas, e.g. X-Tenant-Key,X-Internal",
                )
            })
        })
        .collect()
}

/// Providers with a rate of their own, from `<PROVIDER>_RATE_LIMIT_*` or
/// `[limits.providers.<name>]`.
fn provider_rates(
    r: &Reader<'_>,
    providers: &[String],
    default: Option<RateQuota>,
) -> Result<BTreeMap<String, Option<RateQuota>>, ConfigError> {
    let file = r
        .section::<BTreeMap<String, FileRate>>("limits.providers")?
        .unwrap_or_default();
    if let Some(name) = file.keys().find(|n| !providers.contains(n)) {
        return Err(invalid(
            &format!("limits.providers.{name}"),
            name,
            &format!("a provider name (one of {})", providers.join(", ")),
        ));
    }
    let mut rates = BTreeMap::new();
    for name in providers {
        let env = env_prefix(name);
        let own = file.get(name);
        let vars = (
            format!("{env}_RATE_LIMIT_PER_SEC"),
            format!("{env}_RATE_LIMIT_BURST"),
        );
        if own.is_none() && r.raw(&vars.0).is_none() && r.raw(&vars.1).is_none() {
            continue;
        }
        // A provider's burst alone keeps the default rate.
        let per_sec = own
            .and_then(|o| o.rate_per_sec)
            .or(default.map(|q| q.per_sec));
        let q = quota(r, (&vars.0, &vars.1), per_sec, own.and_then(|o| o.burst))?;
        rates.insert(name.clone(), q);
    }
    Ok(rates)
}

/// A rate and its burst; a rate of 0 (or none) means unlimited.
fn quota(
    r: &Reader<'_>,
    (per_sec_var, burst_var): (&str, &str),
    file_per_sec: Option<u32>,
    file_burst: Option<u32>,
) -> Result<Option<RateQuota>, ConfigError> {
    let per_sec: Option<u32> = match r.raw(per_sec_var) {
        Some(_) => Some(r.get(per_sec_var, None, 0, "requests per second (0: unlimited)")?),
        None => file_per_sec,
    };
    let Some(per_sec) = per_sec.filter(|q| *q > 0) else {
        if let Some(burst) = r.raw(burst_var) {
            return Err(invalid(
                burst_var,
                burst,
                &format!("no burst without a rate: set {per_sec_var} too"),
            ));
        }
        return Ok(None);
    };
    let burst = match r.raw(burst_var) {
        Some(_) => r.positive(burst_var, None, per_sec)?,
        None => match file_burst {
            Some(0) => {
                return Err(invalid(
                    burst_var,
                    "0 (from the config file)",
                    "a positive whole number",
                ));
            }
            Some(b) => b,
            None => per_sec,
        },
    };
    Ok(Some(RateQuota { per_sec, burst }))
}

fn admin_access(r: &Reader<'_>) -> Result<AdminAccess, ConfigError> {
    let d = AdminAccess::default();
    let allow = r
        .list("HOOKD_ADMIN_ALLOW", "admin.allow")?
        .map(|list| {
            list.iter()
                .filter(|s| !s.is_empty())
                .map(|s| {
                    crate::net::parse_net(s).ok_or_else(|| {
                        invalid(
                            "HOOKD_ADMIN_ALLOW",
                            s,
                            "IP addresses or CIDR ranges separated by commas, e.g. \
                             127.0.0.1,10.0.0.0/8,::1",
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    Ok(AdminAccess {
        allow,
        max_failures: r.positive(
            "HOOKD_ADMIN_MAX_FAILURES",
            Some("admin.max_failures"),
            d.max_failures,
        )?,
    })
}

fn tls(r: &Reader<'_>) -> Result<Option<TlsConfig>, ConfigError> {
    let cert = r.text(Some("HOOKD_TLS_CERT"), Some("tls.cert"))?;
    let key = r.text(Some("HOOKD_TLS_KEY"), Some("tls.key"))?;
    let reload = Duration::from_secs(r.positive(
        "HOOKD_TLS_RELOAD_SECS",
        Some("tls.reload_secs"),
        TlsConfig::RELOAD.as_secs(),
    )?);
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(TlsConfig {
            cert: PathBuf::from(cert),
            key: PathBuf::from(key),
            reload,
        })),
        (cert, _) => Err(invalid(
            if cert.is_none() {
                "HOOKD_TLS_CERT"
            } else {
                "HOOKD_TLS_KEY"
            },
            "",
            "both HOOKD_TLS_CERT and HOOKD_TLS_KEY (PEM file paths), or neither",
        )),
    }
}

/// `[[schemas]]` in the TOML file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSchema {
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

/// Every `[[schemas]]` entry, compiled; paths are relative to the config file's folder.
fn schemas(r: &Reader<'_>, providers: &[String]) -> Result<Vec<SchemaRule>, ConfigError> {
    let entries = r.section::<Vec<FileSchema>>("schemas")?.unwrap_or_default();
    entries
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            if e.provider != "*" && !providers.contains(&e.provider) {
                return Err(invalid(
                    &format!("schemas[{i}].provider"),
                    &e.provider,
                    &format!("* or a provider name (one of {})", providers.join(", ")),
                ));
            }
            let file = match r.file_dir() {
                Some(dir) if e.schema.is_relative() => dir.join(&e.schema),
                _ => e.schema.clone(),
            };
            let shown = e.schema.display().to_string();
            SchemaRule::load(e.provider, e.events, e.schema, &file).map_err(|source| {
                ConfigError::Refused {
                    setting: format!("schemas[{i}].schema"),
                    value: shown,
                    expected: source.to_string(),
                    source: Box::new(source),
                }
            })
        })
        .collect()
}

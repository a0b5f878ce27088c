//! Reads the settings of the actions: `[[routes]]`, the forward timeout, `[smtp]`,
//! `[destinations]` (with `[destinations.rate_limits]`) and `[transform]` with their variables.
//! Fills [`ActionSettings`]; the checks across routes, mail server, egress policy and rate limits
//! are the actions' own ([`ActionSettings::validate`], [`ActionSettings::check_rate_limits`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::ConfigError;
use super::reader::{Reader, invalid};
use crate::actions::breaker::{BreakerPolicy, Destination};
use crate::actions::broker::destination_of_key;
use crate::actions::egress::EgressPolicy;
use crate::actions::email::{Recipient, SmtpSettings};
use crate::actions::rate::RateLimit;
use crate::actions::{ActionSettings, ForwardSettings, RouteConfig};
use crate::store::redact_url;
use crate::transform::TransformSettings;

pub(super) fn actions(r: &Reader<'_>) -> Result<ActionSettings, ConfigError> {
    let d = ActionSettings::default();
    let forward = ForwardSettings {
        timeout: Duration::from_millis(r.positive(
            "HOOKD_FORWARD_TIMEOUT_MS",
            Some("worker.forward_timeout_ms"),
            d.forward.timeout.as_millis() as u64,
        )?),
        ..d.forward
    };
    Ok(ActionSettings {
        routes: r.section::<Vec<RouteConfig>>("routes")?.unwrap_or_default(),
        forward,
        smtp: smtp(r)?,
        breaker: BreakerPolicy {
            failure_threshold: r.positive(
                "HOOKD_BREAKER_FAILURES",
                Some("destinations.breaker_failures"),
                d.breaker.failure_threshold,
            )?,
            cooldown: Duration::from_millis(r.positive(
                "HOOKD_BREAKER_COOLDOWN_MS",
                Some("destinations.breaker_cooldown_ms"),
                d.breaker.cooldown.as_millis() as u64,
            )?),
        },
        destination_concurrency: r.positive(
            "HOOKD_DESTINATION_CONCURRENCY",
            Some("destinations.concurrency"),
            d.destination_concurrency,
        )?,
        egress: egress(r)?,
        rate_limits: rate_limits(r)?,
        transform: TransformSettings {
            timeout: Duration::from_millis(r.positive(
                "HOOKD_TRANSFORM_TIMEOUT_MS",
                Some("transform.timeout_ms"),
                d.transform.timeout.as_millis() as u64,
            )?),
            memory_limit_bytes: r
                .positive(
                    "HOOKD_TRANSFORM_MEMORY_MB",
                    Some("transform.memory_mb"),
                    d.transform.memory_limit_bytes >> 20,
                )?
                .saturating_mul(1 << 20),
            threads: r.positive(
                "HOOKD_TRANSFORM_THREADS",
                Some("transform.threads"),
                d.transform.threads,
            )?,
        },
    })
}

/// `HOOKD_RATE_LIMITS=https://api.example.com=50/s,smtp://mail:25=10/m`, or the table
/// `[destinations.rate_limits]` (`"https://api.example.com" = "50/s"`). Each key is a URL whose
/// origin is the destination; the variable replaces the whole table.
fn rate_limits(r: &Reader<'_>) -> Result<BTreeMap<Destination, RateLimit>, ConfigError> {
    const VAR: &str = "HOOKD_RATE_LIMITS";
    const KEY: &str = "destinations.rate_limits";
    let (setting, pairs) = match r.raw(VAR) {
        Some(list) => {
            r.file_value(KEY);
            let pairs = list
                .split(',')
                .filter(|p| !p.trim().is_empty())
                .map(|pair| {
                    let (url, limit) = pair.trim().rsplit_once('=').ok_or_else(|| {
                        invalid(VAR, list, "url=limit pairs separated by commas, e.g. https://api.example.com=50/s")
                    })?;
                    let limit = limit
                        .parse::<RateLimit>()
                        .map_err(|e| invalid(VAR, list, &e.to_string()))?;
                    Ok((url.trim().to_owned(), limit))
                })
                .collect::<Result<Vec<_>, ConfigError>>()?;
            (VAR, pairs)
        }
        None => {
            let table = r.section::<BTreeMap<String, RateLimit>>(KEY)?;
            (KEY, table.unwrap_or_default().into_iter().collect())
        }
    };
    let mut limits = BTreeMap::new();
    for (url, limit) in pairs {
        let dest = reqwest::Url::parse(&url)
            .ok()
            .filter(|u| u.has_host())
            .map(|u| destination_of_key(&u))
            .ok_or_else(|| {
                invalid(
                    setting,
                    &url,
                    "a destination URL such as https://api.example.com or amqp://rabbit.internal:5672",
                )
            })?;
        if let Some(other) = limits.insert(dest.clone(), limit)
            && other != limit
        {
            let both = format!("{other} and {limit}");
            return Err(invalid(
                setting,
                &both,
                &format!("one rate limit for {dest}"),
            ));
        }
    }
    Ok(limits)
}

fn egress(r: &Reader<'_>) -> Result<EgressPolicy, ConfigError> {
    let list = r.list("HOOKD_FORWARD_ALLOW", "destinations.forward_allow")?;
    let allow_private = r.get(
        "HOOKD_FORWARD_ALLOW_PRIVATE",
        Some("destinations.allow_private"),
        false,
        "true or false",
    )?;
    EgressPolicy::new(list.as_deref(), allow_private).map_err(|e| ConfigError::Invalid {
        setting: "HOOKD_FORWARD_ALLOW".into(),
        value: list.unwrap_or_default().join(","),
        expected: e.to_string(),
    })
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `SMTP_URL` and its companions; `None` when no URL is set.
fn smtp(r: &Reader<'_>) -> Result<Option<SmtpSettings>, ConfigError> {
    let Some(url) = r.text(Some("SMTP_URL"), Some("smtp.url"))? else {
        // Known keys of the file even while email is off.
        for key in ["smtp.from", "smtp.timeout_ms", "smtp.ca_file"] {
            r.file_value(key);
        }
        return Ok(None);
    };
    let from = r.text(Some("SMTP_FROM"), Some("smtp.from"))?;
    let ca = r
        .text(Some("HOOKD_SMTP_CA_FILE"), Some("smtp.ca_file"))?
        .map(PathBuf::from);
    let refused =
        |setting: &str, value: String, expected: &str, source: BoxError| ConfigError::Refused {
            setting: setting.to_owned(),
            value,
            expected: format!("{expected} ({source})"),
            source,
        };
    let mut smtp = SmtpSettings::from_url(&url).map_err(|e| {
        refused(
            "SMTP_URL",
            redact_url(&url),
            "smtp://[user:password@]host[:port][?tls=none] or smtps://...",
            Box::new(e),
        )
    })?;
    if let Some(from) = from {
        smtp.from =
            Some(from.parse::<Recipient>().map_err(|e| {
                refused("SMTP_FROM", from.clone(), "an email address", Box::new(e))
            })?);
    }
    smtp.timeout = Duration::from_millis(r.positive(
        "HOOKD_SMTP_TIMEOUT_MS",
        Some("smtp.timeout_ms"),
        smtp.timeout.as_millis() as u64,
    )?);
    if let Some(path) = ca {
        let shown = path.display().to_string();
        let pem = std::fs::read(&path).map_err(|e| ConfigError::Refused {
            setting: "HOOKD_SMTP_CA_FILE".into(),
            value: shown.clone(),
            expected: format!("a readable PEM file ({e})"),
            source: Box::new(e),
        })?;
        smtp.trust_pem(&pem).map_err(|e| {
            refused(
                "HOOKD_SMTP_CA_FILE",
                shown,
                "PEM CA certificates",
                Box::new(e),
            )
        })?;
    }
    Ok(Some(smtp))
}

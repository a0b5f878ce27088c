//! Reads the settings of the store, the Redis queue and the worker pool (`[store]`, `[redis]`,
//! `[worker]` and their variables). Fills the types those subsystems own; it must never hold a
//! default of its own.

use std::collections::BTreeMap;
use std::time::Duration;

use super::ConfigError;
use super::reader::{Reader, invalid};
use crate::queue::{RedisConfig, RedisSettingError, RedisTarget};
use crate::store::{StoreSettings, is_store_url, redact_url};
use crate::worker::{RetryPolicy, WorkerSettings};

pub(super) fn store(r: &Reader<'_>) -> Result<StoreSettings, ConfigError> {
    let d = StoreSettings::default();
    let database_url = r
        .text(Some("DATABASE_URL"), Some("store.database_url"))?
        .unwrap_or(d.database_url);
    if !is_store_url(&database_url) {
        return Err(invalid(
            "DATABASE_URL",
            &redact_url(&database_url),
            "postgres://user@host/db or sqlite://path/to/file.db",
        ));
    }
    let us = r.within(
        "HOOKD_BATCH_WINDOW_US",
        Some("store.batch_window_us"),
        d.batch_window.as_micros() as u64,
        (0, StoreSettings::MAX_BATCH_WINDOW_US),
    )?;
    Ok(StoreSettings {
        database_url,
        pool_size: r.positive("HOOKD_DB_POOL_SIZE", Some("store.pool_size"), d.pool_size)?,
        timeout: millis(r.positive(
            "HOOKD_STORE_TIMEOUT_MS",
            Some("store.timeout_ms"),
            d.timeout.as_millis() as u64,
        )?),
        batch_window: Duration::from_micros(us),
        batch_max: r.within(
            "HOOKD_BATCH_MAX",
            Some("store.batch_max"),
            d.batch_max,
            (1, StoreSettings::MAX_BATCH),
        )?,
        wait: Duration::from_secs(r.get(
            "HOOKD_STORE_WAIT_SECS",
            Some("store.wait_secs"),
            d.wait.as_secs(),
            "whole seconds (0: do not wait)",
        )?),
        replay_window: Duration::from_secs(
            r.within(
                "HOOKD_REPLAY_WINDOW_HOURS",
                Some("store.replay_window_hours"),
                d.replay_window.as_secs() / 3600,
                (1, StoreSettings::MAX_REPLAY_WINDOW_HOURS),
            )? * 3600,
        ),
        auto_migrate: r.get(
            "HOOKD_AUTO_MIGRATE",
            Some("store.auto_migrate"),
            d.auto_migrate,
            "true or false",
        )?,
    })
}

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// One Redis server, a cluster, or none (the store-backed queue).
fn redis_target(r: &Reader<'_>) -> Result<Option<RedisTarget>, ConfigError> {
    let cluster = r
        .list("REDIS_CLUSTER_NODES", "redis.cluster_nodes")?
        .map(|nodes| {
            nodes
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
        });
    let file_url = r.text(None, Some("redis.url"))?;
    let single = r
        .raw("REDIS_URL")
        .map(str::to_owned)
        .or_else(|| {
            r.raw("REDIS_HOST").map(|host| {
                let port = r
                    .raw("REDIS_PORT")
                    .map_or(RedisTarget::DEFAULT_PORT.to_string(), str::to_owned);
                match r.raw("REDIS_PASSWORD") {
                    Some(pw) => format!("redis://:{pw}@{host}:{port}"),
                    None => format!("redis://{host}:{port}"),
                }
            })
        })
        .or(file_url);
    Ok(match (cluster, single) {
        (Some(nodes), _) if !nodes.is_empty() => Some(RedisTarget::Cluster(nodes)),
        (_, Some(url)) => Some(RedisTarget::Single(url)),
        _ => None,
    })
}

pub(super) fn redis(
    r: &Reader<'_>,
    store: &StoreSettings,
) -> Result<Option<RedisConfig>, ConfigError> {
    let Some(target) = redis_target(r)? else {
        // Still asked for, so they are known keys of the file.
        for key in [
            "prefix",
            "partitions",
            "keep_completed",
            "keep_failed",
            "sweep_grace_secs",
        ] {
            r.file_value(&format!("redis.{key}"));
        }
        return Ok(None);
    };
    let d = RedisConfig::new(target);
    let config = RedisConfig {
        prefix: r
            .text(Some("HOOKD_REDIS_PREFIX"), Some("redis.prefix"))?
            .unwrap_or(d.prefix),
        partitions: r.positive(
            "HOOKD_REDIS_PARTITIONS",
            Some("redis.partitions"),
            d.partitions,
        )?,
        member_ttl: d.member_ttl,
        keep_completed: r.get(
            "HOOKD_KEEP_COMPLETED",
            Some("redis.keep_completed"),
            d.keep_completed,
            "a whole number",
        )?,
        keep_failed: r.get(
            "HOOKD_KEEP_FAILED",
            Some("redis.keep_failed"),
            d.keep_failed,
            "a whole number",
        )?,
        sweep_grace: Duration::from_secs(r.positive(
            "HOOKD_SWEEP_GRACE_SECS",
            Some("redis.sweep_grace_secs"),
            d.sweep_grace.as_secs(),
        )?),
        target: d.target,
    };
    check_redis(&config)?;
    if store.is_sqlite() {
        return Err(invalid(
            "REDIS_URL",
            "(set)",
            "no Redis with the embedded SQLite store: SQLite serves one process, so there is \
             nothing to share a queue with, and Redis would only add a second place for jobs to \
             be lost. Set DATABASE_URL=postgres://... to run several processes over Redis, or \
             unset REDIS_URL/REDIS_HOST",
        ));
    }
    Ok(Some(config))
}

/// The queue's own checks, reported under the setting they concern.
fn check_redis(config: &RedisConfig) -> Result<(), ConfigError> {
    config.check().map_err(|e| match e {
        RedisSettingError::Url(url) => invalid(
            "REDIS_URL",
            &redact_url(&url),
            "redis://host:port (or rediss://), or REDIS_HOST and REDIS_PORT",
        ),
        RedisSettingError::Prefix => invalid(
            "HOOKD_REDIS_PREFIX",
            &config.prefix,
            "a non-empty name without braces",
        ),
        RedisSettingError::Partitions { max } => invalid(
            "HOOKD_REDIS_PARTITIONS",
            &config.partitions.to_string(),
            &format!("a whole number from 1 to {max}"),
        ),
    })
}

pub(super) fn worker(
    r: &Reader<'_>,
    drain_timeout: Duration,
) -> Result<WorkerSettings, ConfigError> {
    let d = WorkerSettings::default();
    let ms = |var: &str, key: &str, default: Duration| {
        r.positive(var, Some(key), default.as_millis() as u64)
            .map(millis)
    };
    Ok(WorkerSettings {
        concurrency: r.positive("HOOKD_WORKERS", Some("worker.workers"), d.concurrency)?,
        lease: Duration::from_secs(r.positive(
            "HOOKD_LEASE_SECS",
            Some("worker.lease_secs"),
            d.lease.as_secs(),
        )?),
        poll_interval: ms("HOOKD_POLL_MS", "worker.poll_ms", d.poll_interval)?,
        retry: RetryPolicy {
            max_attempts: r.positive(
                "HOOKD_MAX_ATTEMPTS",
                Some("worker.max_attempts"),
                d.retry.max_attempts,
            )?,
            base: ms("HOOKD_RETRY_BASE_MS", "worker.retry_base_ms", d.retry.base)?,
            cap: ms("HOOKD_RETRY_MAX_MS", "worker.retry_max_ms", d.retry.cap)?,
            window: r.span(
                "HOOKD_RETRY_WINDOW",
                Some("worker.retry_window"),
                d.retry.window,
            )?,
        },
        drain_timeout,
        provider_concurrency: provider_caps(r)?,
    })
}

/// `stripe=4,github=2` (or the TOML table `[worker.provider_concurrency]`).
fn provider_caps(r: &Reader<'_>) -> Result<BTreeMap<String, usize>, ConfigError> {
    let from_file = r.section::<BTreeMap<String, usize>>("worker.provider_concurrency")?;
    let Some(list) = r.raw("HOOKD_PROVIDER_CONCURRENCY") else {
        return Ok(from_file.unwrap_or_default());
    };
    let bad = || {
        invalid(
            "HOOKD_PROVIDER_CONCURRENCY",
            list,
            "provider=limit pairs separated by commas, e.g. stripe=4,github=2",
        )
    };
    list.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            let (name, n) = pair.split_once('=').ok_or_else(bad)?;
            match n.trim().parse::<usize>() {
                Ok(n) if n > 0 => Ok((name.trim().to_owned(), n)),
                _ => Err(bad()),
            }
        })
        .collect()
}

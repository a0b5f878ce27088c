//! Configuration: reads the environment and an optional TOML file (`HOOKD_CONFIG`, or
//! `hookd.toml` in the working directory when it exists) once at start, and fills the settings
//! type of each subsystem. The environment wins over the file. Every invalid value fails start-up
//! with a message that names the setting to fix (its variable or its file key).
//!
//! Owns where each setting is read from, and nothing else: defaults, checks and meaning belong
//! to the subsystem that owns the settings type (`store`, `queue`, `worker`, `actions`, `http`,
//! `ops`, `telemetry`, and `verify`'s scheme registry for providers). It must never build a
//! runtime object, and nothing but the wiring (`app`, `main`) may import it. Nothing else in
//! hookd reads the environment.

mod actions;
mod duration;
mod http;
mod live;
mod operator;
mod providers;
mod reader;
mod spans;
mod store;
mod telemetry;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::actions::{ActionSettings, InvalidRoute, UnusedRateLimit};
use crate::http::HttpSettings;
use crate::live::LiveSettings;
use crate::ops::OperatorConfig;
use crate::queue::RedisConfig;
use crate::store::StoreSettings;
use crate::telemetry::TelemetryConfig;
use crate::verify::{ProviderConfig, ProviderError};
use crate::worker::WorkerSettings;

use reader::Reader;

/// Everything hookd needs to run: each subsystem's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where providers reach hookd (`https://hooks.example.com`), for schemes that sign the URL
    /// they called and for secure console cookies; `None`: `http://` and the request's `Host`.
    pub public_url: Option<String>,
    /// Every provider hookd knows: the built-ins and each `[providers.<name>]` section.
    pub providers: Vec<ProviderConfig>,
    /// The database, its pool, group commit and the start-up wait.
    pub store: StoreSettings,
    /// Redis Streams queue; `None` means the store-backed queue.
    pub redis: Option<RedisConfig>,
    /// The worker pool: concurrency, leases, the retry schedule and per-provider caps.
    pub worker: WorkerSettings,
    /// Routes, forwards, email, destination breakers and the egress policy.
    pub actions: ActionSettings,
    /// The listener, its limits, admin access, TLS and JSON Schemas.
    pub http: HttpSettings,
    /// How long in-flight requests and steps get once shutdown starts.
    pub shutdown_timeout: Duration,
    /// Admin tokens, console sessions, the read replica and payload retention.
    pub operator: OperatorConfig,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
    /// The live configuration: the secret keys and the version check.
    pub live: LiveSettings,
}

/// A setting that could not be used, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{setting}={value:?} is invalid: expected {expected}")]
    Invalid {
        setting: String,
        value: String,
        expected: String,
    },
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("config file {path}: {key} is not a setting hookd knows (known here: {known})")]
    UnknownKey {
        path: PathBuf,
        key: String,
        known: String,
    },
    #[error("{key} in the config file: {source}")]
    Section {
        key: String,
        source: toml::de::Error,
    },
    /// A setting whose value a subsystem refused; `expected` includes why, `source` keeps it.
    #[error("{setting}={value:?} is invalid: expected {expected}")]
    Refused {
        setting: String,
        value: String,
        expected: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(transparent)]
    Route(#[from] InvalidRoute),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    RateLimit(#[from] UnusedRateLimit),
}

impl Config {
    /// Load from the process environment (and the config file it points to).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Load from the given variables, as if they were the environment.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = vars.into_iter().collect();
        let r = Reader::new(&env)?;
        let public_url = providers::public_url(&r)?;
        let providers = providers::providers(&r, public_url.as_deref())?;
        let names: Vec<String> = providers.iter().map(|p| p.name.clone()).collect();
        let store = store::store(&r)?;
        // One grace period for the listener and the workers; the workers' type holds its default.
        let shutdown_timeout = Duration::from_secs(r.positive(
            "HOOKD_SHUTDOWN_TIMEOUT_SECS",
            Some("server.shutdown_timeout_secs"),
            WorkerSettings::default().drain_timeout.as_secs(),
        )?);
        let config = Self {
            redis: store::redis(&r, &store)?,
            worker: store::worker(&r, shutdown_timeout)?,
            actions: actions::actions(&r)?,
            http: http::http(&r, &names)?,
            operator: operator::operator(&r, &store)?,
            telemetry: telemetry::telemetry(&r)?,
            live: live::live(&r)?,
            public_url,
            providers,
            store,
            shutdown_timeout,
        };
        r.unknown_key()?;
        config.actions.validate()?;
        config.actions.check_rate_limits()?;
        Ok(config)
    }

    /// The provider with this name (its URL path segment).
    pub fn provider(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.name == name)
    }
}

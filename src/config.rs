//! Configuration: one typed struct, loaded once at start from the environment and an optional
//! TOML file (`HOOKD_CONFIG`, or `hookd.toml` in the working directory when it exists).
//! The environment wins over the file. Every invalid value fails start-up with a message that
//! names the setting to fix. Nothing else in hookd reads the environment.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::actions::RouteConfig;
use crate::actions::breaker::BreakerPolicy;
use crate::actions::egress::EgressPolicy;
use crate::actions::email::{Recipient, SmtpSettings};
use crate::verify::paypal_certs::{self, CertUrlPrefix, TrustRoots};
use crate::verify::{
    Algorithm, GenericVerifier, GithubVerifier, GitlabVerifier, HmacEncoding, HmacSource, HmacSpec,
    LinearVerifier, PaddleVerifier, PaypalSettings, PaypalVerifier, Providers, Scheme, Secret,
    Secrets, ShopifyVerifier, SlackVerifier, SquareVerifier, StandardKeys, StandardVerifier,
    StripeVerifier, TwilioVerifier, Verifier,
};
use crate::worker::RetryPolicy;

mod operator;
pub use operator::{AdminToken, OperatorConfig, Scope};
mod hardening;

pub use hardening::{AdminAccess, Limits, RateQuota, SchemaRule, TlsConfig, parse_net};

/// Everything hookd needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind: IpAddr,
    pub port: u16,
    /// `HOOKD_INTERNAL_ADDR`: where `/health` and `/metrics` are served instead of the public
    /// listener; `None`: on the public listener.
    pub internal_addr: Option<SocketAddr>,
    /// `postgres://...` or `sqlite://...`.
    pub database_url: String,
    pub db_pool_size: u32,
    /// How long a request waits for the store (pool acquire, SQLite lock) before answering 503.
    pub store_timeout: Duration,
    /// Group commit: how long a batch of inserts waits for more after its first one.
    pub batch_window: Duration,
    /// Group commit: most inserts per transaction (1 turns group commit off).
    pub batch_max: usize,
    /// How long a byte-identical body of a scheme that signs only the body (GitHub, Shopify)
    /// counts as a replay of the first.
    pub replay_window: Duration,
    pub max_body_bytes: usize,
    /// Where providers reach hookd (`https://hooks.example.com`), for schemes that sign the URL
    /// they called; `None`: `http://` and the request's `Host`.
    pub public_url: Option<String>,
    /// Every provider hookd knows: the built-ins and each `[providers.<name>]` section.
    pub providers: Vec<ProviderConfig>,
    pub admin_token: Option<Secret>,
    pub workers: usize,
    pub lease: Duration,
    pub poll_interval: Duration,
    pub retry: RetryPolicy,
    pub forward_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub routes: Vec<RouteConfig>,
    /// Redis Streams queue; `None` means the store-backed queue.
    pub redis: Option<RedisConfig>,
    /// Per-provider cap on events processed at once by this process.
    pub provider_concurrency: BTreeMap<String, usize>,
    pub telemetry: TelemetryConfig,
    /// `/health` reports unhealthy above this resident set size.
    pub memory_limit_bytes: u64,
    /// The mail server for `email` steps (`SMTP_URL`); `None` when email is not configured.
    pub smtp: Option<SmtpSettings>,
    /// When a destination's circuit breaker opens, and for how long.
    pub breaker: BreakerPolicy,
    /// Steps in flight to one destination at once, per process.
    pub destination_concurrency: usize,
    /// Admin tokens, console sessions, the read replica and payload retention.
    pub operator: OperatorConfig,
    /// How long start-up waits for the store to answer before giving up.
    pub store_wait: Duration,
    /// Rate limits, overload bound, request limits and timeouts.
    pub limits: Limits,
    /// Who may reach `/admin` and `/ui`.
    pub admin_access: AdminAccess,
    /// TLS on the listener; `None`: plain HTTP.
    pub tls: Option<TlsConfig>,
    /// Where forwards may go.
    pub egress: EgressPolicy,
    /// JSON Schemas payloads must match, by provider and event type.
    pub schemas: Vec<SchemaRule>,
}

/// Logs and traces.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    pub log_filter: String,
    /// Where `combined.log` and `error.log` go; `None` turns log files off.
    pub log_dir: Option<PathBuf>,
    /// Daily log files kept per kind.
    pub log_max_files: usize,
    pub service_name: String,
    /// OTLP trace export; `None` means no exporter.
    pub otlp: Option<OtlpConfig>,
    /// The original service's `JAEGER_ENDPOINT`, reported at start as unsupported.
    pub jaeger_endpoint: Option<String>,
}

#[derive(Debug, Clone)]
pub struct OtlpConfig {
    pub endpoint: String,
    pub protocol: OtlpProtocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    HttpProtobuf,
    Grpc,
}

/// Where the Redis queue lives and how much of its history it keeps.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub target: RedisTarget,
    /// Key prefix; keys are `{<prefix>}:<name>` so all of them share one cluster slot.
    pub prefix: String,
    /// Completed job records kept in Redis (the store keeps everything).
    pub keep_completed: usize,
    /// Dead-lettered job records kept in the dead-letter stream.
    pub keep_failed: usize,
    /// An event committed but not claimed for this long is enqueued again by the sweeper.
    pub sweep_grace: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    Single(String),
    Cluster(Vec<String>),
}

/// One provider endpoint, `/webhooks/{name}`.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// The URL path segment, and the prefix of its environment variables (upper-cased).
    pub name: String,
    /// The setting that turns it on (`STRIPE_WEBHOOK_SECRET`), named while it is off.
    pub setting: String,
    /// `None` while that setting is unset: the provider accepts nothing.
    pub verifier: Option<VerifierConfig>,
}

/// A provider's validated scheme settings.
#[derive(Debug, Clone)]
pub enum VerifierConfig {
    Stripe {
        secrets: Secrets,
        tolerance_secs: u64,
    },
    Github {
        secrets: Secrets,
    },
    Paypal(PaypalSettings),
    Standard {
        keys: StandardKeys,
        tolerance_secs: u64,
    },
    Shopify {
        secrets: Secrets,
    },
    Slack {
        secrets: Secrets,
        tolerance_secs: u64,
    },
    Gitlab {
        secrets: Secrets,
    },
    Twilio {
        auth_tokens: Secrets,
        shared_keys: Option<Secrets>,
        public_url: Option<String>,
    },
    Paddle {
        secrets: Secrets,
        tolerance_secs: u64,
    },
    Square {
        secrets: Secrets,
        public_url: Option<String>,
    },
    Linear {
        secrets: Secrets,
        tolerance_secs: u64,
    },
    Hmac {
        secrets: Secrets,
        spec: HmacSpec,
    },
}

impl VerifierConfig {
    fn build(&self) -> Result<Box<dyn Verifier>, String> {
        Ok(match self.clone() {
            Self::Stripe {
                secrets,
                tolerance_secs,
            } => Box::new(StripeVerifier::new(secrets, tolerance_secs)),
            Self::Github { secrets } => Box::new(GithubVerifier::new(secrets)),
            Self::Paypal(settings) => Box::new(PaypalVerifier::new(settings)?),
            Self::Standard {
                keys,
                tolerance_secs,
            } => Box::new(StandardVerifier::new(keys, tolerance_secs)),
            Self::Shopify { secrets } => Box::new(ShopifyVerifier::new(secrets)),
            Self::Slack {
                secrets,
                tolerance_secs,
            } => Box::new(SlackVerifier::new(secrets, tolerance_secs)),
            Self::Gitlab { secrets } => Box::new(GitlabVerifier::new(secrets)),
            Self::Twilio {
                auth_tokens,
                shared_keys,
                public_url,
            } => Box::new(TwilioVerifier::new(auth_tokens, shared_keys, public_url)),
            Self::Paddle {
                secrets,
                tolerance_secs,
            } => Box::new(PaddleVerifier::new(secrets, tolerance_secs)),
            Self::Square {
                secrets,
                public_url,
            } => Box::new(SquareVerifier::new(secrets, public_url)),
            Self::Linear {
                secrets,
                tolerance_secs,
            } => Box::new(LinearVerifier::new(secrets, tolerance_secs)),
            Self::Hmac { secrets, spec } => Box::new(GenericVerifier::new(secrets, spec)),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
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
    #[error("cannot read config file {path}: {error}")]
    File { path: PathBuf, error: String },
    #[error("route {route}: {message}")]
    Route { route: String, message: String },
    #[error("provider {provider}: {message}")]
    Provider { provider: String, message: String },
}

/// The optional TOML file. Every field may be left out; the environment overrides it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    server: FileServer,
    #[serde(default)]
    store: FileStore,
    #[serde(default)]
    worker: FileWorker,
    /// `[providers.<name>]`: the name is the URL path segment.
    #[serde(default)]
    providers: BTreeMap<String, FileProvider>,
    #[serde(default)]
    routes: Vec<RouteConfig>,
    #[serde(default)]
    redis: FileRedis,
    #[serde(default)]
    smtp: FileSmtp,
    #[serde(default)]
    destinations: FileDestinations,
    #[serde(default)]
    admin: operator::FileAdmin,
    #[serde(default)]
    retention: operator::FileRetention,
    #[serde(default)]
    limits: hardening::FileLimits,
    #[serde(default)]
    tls: hardening::FileTls,
    #[serde(default)]
    schemas: Vec<hardening::FileSchema>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRedis {
    url: Option<String>,
    cluster_nodes: Option<Vec<String>>,
    prefix: Option<String>,
    keep_completed: Option<usize>,
    keep_failed: Option<usize>,
    sweep_grace_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSmtp {
    url: Option<String>,
    from: Option<String>,
    timeout_ms: Option<u64>,
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDestinations {
    concurrency: Option<usize>,
    forward_allow: Option<Vec<String>>,
    allow_private: Option<bool>,
    breaker_failures: Option<u32>,
    breaker_cooldown_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    bind: Option<IpAddr>,
    port: Option<u16>,
    max_body_bytes: Option<usize>,
    shutdown_timeout_secs: Option<u64>,
    public_url: Option<String>,
    internal_addr: Option<SocketAddr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStore {
    database_url: Option<String>,
    pool_size: Option<u32>,
    timeout_ms: Option<u64>,
    read_url: Option<String>,
    batch_window_us: Option<u64>,
    batch_max: Option<usize>,
    wait_secs: Option<u64>,
    replay_window_hours: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWorker {
    workers: Option<usize>,
    lease_secs: Option<u64>,
    poll_ms: Option<u64>,
    max_attempts: Option<u32>,
    retry_base_ms: Option<u64>,
    retry_max_ms: Option<u64>,
    forward_timeout_ms: Option<u64>,
    #[serde(default)]
    provider_concurrency: BTreeMap<String, usize>,
}

/// A `[providers.<name>]` section. Which fields apply depends on the scheme; the others are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileProvider {
    scheme: Option<String>,
    secret: Option<SecretList>,
    tolerance_secs: Option<u64>,
    // PayPal
    webhook_id: Option<SecretList>,
    cert_url_prefixes: Option<Vec<String>>,
    trust_roots: Option<PathBuf>,
    // Twilio
    shared_key_secret: Option<SecretList>,
    // Generic HMAC
    header: Option<String>,
    prefix: Option<String>,
    algorithm: Option<String>,
    encoding: Option<String>,
    signed: Option<String>,
    timestamp_header: Option<String>,
    idempotency_header: Option<String>,
    idempotency_pointer: Option<String>,
    event_type_header: Option<String>,
    event_type_pointer: Option<String>,
}

impl FileProvider {
    /// The fields that are set, each with the schemes it applies to (`None`: every scheme).
    fn set_fields(&self) -> Vec<(&'static str, Option<&'static [Scheme]>)> {
        use Scheme::*;
        const TIMED: &[Scheme] = &[Stripe, Paypal, Standard, Slack, Paddle, Linear, Hmac];
        const NOT_PAYPAL: &[Scheme] = &[
            Stripe, Github, Standard, Shopify, Slack, Gitlab, Twilio, Paddle, Square, Linear, Hmac,
        ];
        let fields: [(&'static str, bool, Option<&'static [Scheme]>); 17] = [
            ("scheme", self.scheme.is_some(), None),
            ("secret", self.secret.is_some(), Some(NOT_PAYPAL)),
            ("tolerance_secs", self.tolerance_secs.is_some(), Some(TIMED)),
            ("webhook_id", self.webhook_id.is_some(), Some(&[Paypal])),
            (
                "cert_url_prefixes",
                self.cert_url_prefixes.is_some(),
                Some(&[Paypal]),
            ),
            ("trust_roots", self.trust_roots.is_some(), Some(&[Paypal])),
            (
                "shared_key_secret",
                self.shared_key_secret.is_some(),
                Some(&[Twilio]),
            ),
            ("header", self.header.is_some(), Some(&[Hmac])),
            ("prefix", self.prefix.is_some(), Some(&[Hmac])),
            ("algorithm", self.algorithm.is_some(), Some(&[Hmac])),
            ("encoding", self.encoding.is_some(), Some(&[Hmac])),
            ("signed", self.signed.is_some(), Some(&[Hmac])),
            (
                "timestamp_header",
                self.timestamp_header.is_some(),
                Some(&[Hmac]),
            ),
            (
                "idempotency_header",
                self.idempotency_header.is_some(),
                Some(&[Hmac]),
            ),
            (
                "idempotency_pointer",
                self.idempotency_pointer.is_some(),
                Some(&[Hmac]),
            ),
            (
                "event_type_header",
                self.event_type_header.is_some(),
                Some(&[Hmac]),
            ),
            (
                "event_type_pointer",
                self.event_type_pointer.is_some(),
                Some(&[Hmac]),
            ),
        ];
        fields
            .into_iter()
            .filter(|(_, set, _)| *set)
            .map(|(name, _, schemes)| (name, schemes))
            .collect()
    }
}

/// `secret = "a"`, `secret = "a,b"` or `secret = ["a", "b"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SecretList {
    One(String),
    Many(Vec<String>),
}

impl SecretList {
    fn secrets(&self) -> Option<Secrets> {
        match self {
            Self::One(s) => Secrets::from_list(s),
            // Array entries are taken whole, so a secret may contain a comma.
            Self::Many(v) => Secrets::new(v.iter().cloned()),
        }
    }
}

/// Reads settings: the environment first, then the file, then the default.
struct Source<'a> {
    env: &'a HashMap<String, String>,
}

impl Source<'_> {
    fn raw(&self, name: &str) -> Option<&str> {
        self.env
            .get(name)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
    }

    fn get<T: FromStr>(
        &self,
        name: &str,
        file: Option<T>,
        default: T,
        expected: &str,
    ) -> Result<T, ConfigError> {
        match self.raw(name) {
            Some(v) => v.parse().map_err(|_| ConfigError::Invalid {
                setting: name.to_owned(),
                value: v.to_owned(),
                expected: expected.to_owned(),
            }),
            None => Ok(file.unwrap_or(default)),
        }
    }

    /// A whole number in `lo..=hi`.
    fn within<T: FromStr + PartialOrd + Copy + std::fmt::Display>(
        &self,
        name: &str,
        file: Option<T>,
        default: T,
        (lo, hi): (T, T),
    ) -> Result<T, ConfigError> {
        let expected = format!("a whole number from {lo} to {hi}");
        let v = self.get(name, file, default, &expected)?;
        if v < lo || v > hi {
            return Err(ConfigError::Invalid {
                setting: name.to_owned(),
                value: self
                    .raw(name)
                    .map_or_else(|| format!("{v} (from the config file)"), str::to_owned),
                expected,
            });
        }
        Ok(v)
    }

    fn positive<T: FromStr + PartialOrd + Default>(
        &self,
        name: &str,
        file: Option<T>,
        default: T,
    ) -> Result<T, ConfigError> {
        let v = self.get(name, file, default, "a positive whole number")?;
        if v <= T::default() {
            return Err(ConfigError::Invalid {
                setting: name.to_owned(),
                value: self
                    .raw(name)
                    .unwrap_or("(from the config file)")
                    .to_owned(),
                expected: "a positive whole number".to_owned(),
            });
        }
        Ok(v)
    }
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
        let src = Source { env: &env };
        let file = load_file(src.raw("HOOKD_CONFIG"))?;
        let config_dir =
            config_path(src.raw("HOOKD_CONFIG")).and_then(|p| p.parent().map(Path::to_path_buf));

        let public_url = match src
            .raw("HOOKD_PUBLIC_URL")
            .or(file.server.public_url.as_deref())
        {
            Some(url) => Some(public_url(url)?),
            None => None,
        };
        let providers = load_providers(&src, &file.providers, public_url.as_deref())?;
        let provider_names: Vec<String> = providers.iter().map(|p| p.name.clone()).collect();

        let operator = operator::load(
            &src,
            &file.admin,
            &file.retention,
            &file.store,
            src.raw("DATABASE_URL")
                .or(file.store.database_url.as_deref())
                .unwrap_or("sqlite:"),
        )?;
        let w = &file.worker;
        let ms = Duration::from_millis;
        let config = Self {
            bind: src.get(
                "HOOKD_BIND",
                file.server.bind,
                IpAddr::from([0, 0, 0, 0]),
                "an IP address",
            )?,
            port: src.get("PORT", file.server.port, 3001, "a TCP port (0-65535)")?,
            internal_addr: match src.raw("HOOKD_INTERNAL_ADDR") {
                Some(_) => Some(src.get(
                    "HOOKD_INTERNAL_ADDR",
                    None,
                    SocketAddr::from(([127, 0, 0, 1], 0)),
                    "an address and port, e.g. 127.0.0.1:9090",
                )?),
                None => file.server.internal_addr,
            },
            database_url: src
                .raw("DATABASE_URL")
                .map(str::to_owned)
                .or(file.store.database_url)
                .unwrap_or_else(|| "sqlite://data/hookd.db".to_owned()),
            db_pool_size: src.positive("HOOKD_DB_POOL_SIZE", file.store.pool_size, 16)?,
            store_timeout: ms(src.positive(
                "HOOKD_STORE_TIMEOUT_MS",
                file.store.timeout_ms,
                5000,
            )?),
            batch_window: Duration::from_micros(src.within(
                "HOOKD_BATCH_WINDOW_US",
                file.store.batch_window_us,
                200,
                (0, 1_000_000),
            )?),
            batch_max: src.within("HOOKD_BATCH_MAX", file.store.batch_max, 256, (1, 10_000))?,
            replay_window: Duration::from_secs(
                src.within(
                    "HOOKD_REPLAY_WINDOW_HOURS",
                    file.store.replay_window_hours,
                    24,
                    (1, 24 * 365),
                )? * 3600,
            ),
            max_body_bytes: src.positive(
                "HOOKD_MAX_BODY_BYTES",
                file.server.max_body_bytes,
                1 << 20,
            )?,
            public_url,
            providers,
            admin_token: src.raw("HOOKD_ADMIN_TOKEN").map(Secret::new),
            workers: src.positive("HOOKD_WORKERS", w.workers, 32)?,
            lease: Duration::from_secs(src.positive("HOOKD_LEASE_SECS", w.lease_secs, 30)?),
            poll_interval: ms(src.positive("HOOKD_POLL_MS", w.poll_ms, 500)?),
            retry: RetryPolicy {
                max_attempts: src.positive("HOOKD_MAX_ATTEMPTS", w.max_attempts, 3)?,
                base: ms(src.positive("HOOKD_RETRY_BASE_MS", w.retry_base_ms, 1000)?),
                cap: ms(src.positive("HOOKD_RETRY_MAX_MS", w.retry_max_ms, 3_600_000)?),
            },
            forward_timeout: ms(src.positive(
                "HOOKD_FORWARD_TIMEOUT_MS",
                w.forward_timeout_ms,
                10_000,
            )?),
            shutdown_timeout: Duration::from_secs(src.positive(
                "HOOKD_SHUTDOWN_TIMEOUT_SECS",
                file.server.shutdown_timeout_secs,
                30,
            )?),
            routes: file.routes,
            redis: redis_config(&src, &file.redis)?,
            provider_concurrency: provider_caps(
                src.raw("HOOKD_PROVIDER_CONCURRENCY"),
                &w.provider_concurrency,
            )?,
            telemetry: telemetry_config(&src)?,
            memory_limit_bytes: src.positive::<u64>("HOOKD_MEMORY_LIMIT_MB", None, 1024)?
                * 1024
                * 1024,
            smtp: smtp_settings(&src, &file.smtp)?,
            breaker: BreakerPolicy {
                failure_threshold: src.positive(
                    "HOOKD_BREAKER_FAILURES",
                    file.destinations.breaker_failures,
                    5,
                )?,
                cooldown: ms(src.positive(
                    "HOOKD_BREAKER_COOLDOWN_MS",
                    file.destinations.breaker_cooldown_ms,
                    30_000,
                )?),
            },
            destination_concurrency: src.positive(
                "HOOKD_DESTINATION_CONCURRENCY",
                file.destinations.concurrency,
                4,
            )?,
            operator,
            store_wait: Duration::from_secs(src.get(
                "HOOKD_STORE_WAIT_SECS",
                file.store.wait_secs,
                60,
                "whole seconds (0: do not wait)",
            )?),
            limits: hardening::limits(&src, &file.limits, &provider_names)?,
            admin_access: hardening::admin_access(&src, &file.admin)?,
            tls: hardening::tls(&src, &file.tls)?,
            egress: hardening::egress(&src, &file.destinations)?,
            schemas: hardening::schemas(&file.schemas, config_dir.as_deref(), &provider_names)?,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !(self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://")
            || self.database_url.starts_with("sqlite:"))
        {
            return Err(ConfigError::Invalid {
                setting: "DATABASE_URL".into(),
                value: redact_url(&self.database_url),
                expected: "postgres://user@host/db or sqlite://path/to/file.db".into(),
            });
        }
        if self.redis.is_some() && self.database_url.starts_with("sqlite:") {
            return Err(ConfigError::Invalid {
                setting: "REDIS_URL".into(),
                value: "(set)".into(),
                expected: "no Redis with the embedded SQLite store: SQLite serves one process, \
                           so there is nothing to share a queue with, and Redis would only add a \
                           second place for jobs to be lost. Set DATABASE_URL=postgres://... to \
                           run several processes over Redis, or unset REDIS_URL/REDIS_HOST"
                    .into(),
            });
        }
        for (i, route) in self.routes.iter().enumerate() {
            route
                .validate(self.smtp.as_ref())
                .map_err(|message| ConfigError::Route {
                    route: route.display_name(i),
                    message,
                })?;
            for url in route.forward_urls() {
                let checked = reqwest::Url::parse(url)
                    .map_err(|e| e.to_string())
                    .and_then(|u| self.egress.check_url(&u));
                checked.map_err(|message| ConfigError::Route {
                    route: route.display_name(i),
                    message,
                })?;
            }
        }
        Ok(())
    }

    /// The verifiers for every provider that has its secret configured; the others are known
    /// but off, and say which setting would turn them on.
    pub fn providers(&self) -> Result<Providers, ConfigError> {
        let mut p = Providers::default();
        for provider in &self.providers {
            match &provider.verifier {
                Some(v) => {
                    let verifier = v.build().map_err(|message| ConfigError::Provider {
                        provider: provider.name.clone(),
                        message,
                    })?;
                    p.insert(&provider.name, verifier);
                }
                None => p.insert_off(&provider.name, &provider.setting),
            }
        }
        Ok(p)
    }

    /// The provider with this name (its URL path segment).
    pub fn provider(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.name == name)
    }
}

/// `HOOKD_PUBLIC_URL`: an http(s) base URL, kept without its trailing slash.
fn public_url(value: &str) -> Result<String, ConfigError> {
    let invalid = || ConfigError::Invalid {
        setting: "HOOKD_PUBLIC_URL".into(),
        value: redact_url(value),
        expected: "the http(s) URL providers call hookd at, e.g. https://hooks.example.com \
                   (no credentials or query)"
            .into(),
    };
    let url = reqwest::Url::parse(value).map_err(|_| invalid())?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(invalid());
    }
    Ok(value.trim_end_matches('/').to_owned())
}

/// The built-in providers, each under its own name unless a section of that name says otherwise,
/// and every `[providers.<name>]` section.
fn load_providers(
    src: &Source<'_>,
    sections: &BTreeMap<String, FileProvider>,
    public_url: Option<&str>,
) -> Result<Vec<ProviderConfig>, ConfigError> {
    let none = FileProvider::default();
    let mut names: Vec<&str> = Scheme::ALL
        .iter()
        .filter(|s| s.is_built_in())
        .map(|s| s.name())
        .collect();
    names.extend(sections.keys().map(String::as_str));
    names.sort_unstable();
    names.dedup();
    let mut providers = Vec::new();
    let mut env_prefixes: HashMap<String, &str> = HashMap::new();
    for name in names {
        let p = load_provider(src, name, sections.get(name).unwrap_or(&none), public_url).map_err(
            |message| ConfigError::Provider {
                provider: name.to_owned(),
                message,
            },
        )?;
        if let Some(other) = env_prefixes.insert(env_prefix(name), name) {
            return Err(ConfigError::Provider {
                provider: name.to_owned(),
                message: format!(
                    "reads the same environment variables as provider {other}: rename one"
                ),
            });
        }
        providers.push(p);
    }
    Ok(providers)
}

/// `stripe-eu` reads `STRIPE_EU_WEBHOOK_SECRET`, `STRIPE_EU_TOLERANCE_SECS`, ...
fn env_prefix(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 64
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// One provider from the environment and its section; the error message names the setting.
fn load_provider(
    src: &Source<'_>,
    name: &str,
    file: &FileProvider,
    public_url: Option<&str>,
) -> Result<ProviderConfig, String> {
    if !valid_name(name) {
        return Err(
            "the name is the URL path segment: up to 64 lower-case letters, digits, '-' and '_'"
                .into(),
        );
    }
    let scheme_names = || {
        Scheme::ALL
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let scheme = match &file.scheme {
        Some(s) => Scheme::from_name(s).ok_or_else(|| {
            format!(
                "scheme {s:?} is unknown; expected one of {}",
                scheme_names()
            )
        })?,
        None => Scheme::from_name(name)
            .filter(|s| s.is_built_in())
            .ok_or_else(|| format!("set scheme (one of {})", scheme_names()))?,
    };
    for (field, schemes) in file.set_fields() {
        if schemes.is_some_and(|s| !s.contains(&scheme)) {
            return Err(format!(
                "providers.{name}.{field} does not apply to scheme {:?}",
                scheme.name()
            ));
        }
    }
    let env = env_prefix(name);
    let list = |var: &str, from_file: &Option<SecretList>| match src.raw(var) {
        Some(v) => Secrets::from_list(v),
        None => from_file.as_ref().and_then(SecretList::secrets),
    };
    let (setting, secrets) = match scheme {
        Scheme::Paypal => {
            let var = format!("{env}_WEBHOOK_ID");
            let ids = list(&var, &file.webhook_id);
            (var, ids)
        }
        _ => {
            let var = format!("{env}_WEBHOOK_SECRET");
            let secrets = list(&var, &file.secret);
            (var, secrets)
        }
    };
    let file_key = |field: &str| format!("{setting} (providers.{name}.{field})");
    let tolerance = |default: u64| -> Result<u64, String> {
        src.positive(
            &format!("{env}_TOLERANCE_SECS"),
            file.tolerance_secs,
            default,
        )
        .map_err(|e| e.to_string())
    };
    let default_tolerance = scheme.default_tolerance_secs().unwrap_or(300);
    // Checked even while the secret is unset, so a mistake shows at start, not when it is set.
    let hmac = match scheme {
        Scheme::Hmac => Some(hmac_spec(name, file, tolerance(default_tolerance)?)?),
        _ => None,
    };
    let Some(secrets) = secrets else {
        return Ok(ProviderConfig {
            name: name.to_owned(),
            setting,
            verifier: None,
        });
    };
    let public_url = public_url.map(str::to_owned);
    let verifier = match scheme {
        Scheme::Stripe => VerifierConfig::Stripe {
            secrets,
            tolerance_secs: tolerance(default_tolerance)?,
        },
        Scheme::Github => VerifierConfig::Github { secrets },
        Scheme::Paypal => VerifierConfig::Paypal(paypal_settings(
            src,
            &env,
            file,
            secrets,
            tolerance(default_tolerance)?,
        )?),
        Scheme::Standard => VerifierConfig::Standard {
            keys: StandardKeys::parse(&secrets)
                .map_err(|e| format!("{}: {e}", file_key("secret")))?,
            tolerance_secs: tolerance(default_tolerance)?,
        },
        Scheme::Shopify => VerifierConfig::Shopify { secrets },
        Scheme::Slack => VerifierConfig::Slack {
            secrets,
            tolerance_secs: tolerance(default_tolerance)?,
        },
        Scheme::Gitlab => VerifierConfig::Gitlab { secrets },
        Scheme::Twilio => VerifierConfig::Twilio {
            auth_tokens: secrets,
            shared_keys: list(&format!("{env}_SHARED_KEY_SECRET"), &file.shared_key_secret),
            public_url,
        },
        Scheme::Paddle => VerifierConfig::Paddle {
            secrets,
            tolerance_secs: tolerance(default_tolerance)?,
        },
        Scheme::Square => VerifierConfig::Square {
            secrets,
            public_url,
        },
        Scheme::Linear => VerifierConfig::Linear {
            secrets,
            tolerance_secs: tolerance(default_tolerance)?,
        },
        Scheme::Hmac => VerifierConfig::Hmac {
            secrets,
            spec: hmac.ok_or("the generic HMAC description is missing")?,
        },
    };
    Ok(ProviderConfig {
        name: name.to_owned(),
        setting,
        verifier: Some(verifier),
    })
}

fn paypal_settings(
    src: &Source<'_>,
    env: &str,
    file: &FileProvider,
    webhook_ids: Secrets,
    tolerance_secs: u64,
) -> Result<PaypalSettings, String> {
    let prefixes_var = format!("{env}_CERT_URL_PREFIXES");
    let prefixes: Vec<String> = match (src.raw(&prefixes_var), &file.cert_url_prefixes) {
        (Some(list), _) => list.split(',').map(|s| s.trim().to_owned()).collect(),
        (None, Some(list)) => list.clone(),
        (None, None) => paypal_certs::DEFAULT_PREFIXES
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    let cert_url_prefixes = prefixes
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| CertUrlPrefix::parse(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{prefixes_var} (cert_url_prefixes): {e}"))?;
    if cert_url_prefixes.is_empty() {
        return Err(format!("{prefixes_var} (cert_url_prefixes) is empty"));
    }
    let roots_var = format!("{env}_TRUST_ROOTS");
    let trust_roots = match src
        .raw(&roots_var)
        .map(PathBuf::from)
        .or(file.trust_roots.clone())
    {
        Some(path) => TrustRoots::from_pem_file(&path)
            .map_err(|e| format!("{roots_var} (trust_roots): {e}"))?,
        None => TrustRoots::PublicWeb,
    };
    Ok(PaypalSettings {
        webhook_ids,
        tolerance_secs,
        cert_url_prefixes,
        trust_roots,
    })
}

/// A generic HMAC scheme from its section.
fn hmac_spec(name: &str, file: &FileProvider, tolerance_secs: u64) -> Result<HmacSpec, String> {
    let key = |field: &str| format!("providers.{name}.{field}");
    let header = file
        .header
        .as_deref()
        .ok_or_else(|| {
            format!(
                "{} is required: the header that carries the signature",
                key("header")
            )
        })
        .and_then(|h| HmacSpec::header_name(h).map_err(|e| format!("{}: {e}", key("header"))))?;
    let algorithm = match file.algorithm.as_deref() {
        None => Algorithm::Sha256,
        Some(a) => Algorithm::from_name(a).ok_or_else(|| {
            format!(
                "{} = {a:?}: expected sha1, sha256 or sha512",
                key("algorithm")
            )
        })?,
    };
    let encoding = match file.encoding.as_deref() {
        None | Some("hex") => HmacEncoding::Hex,
        Some("base64") => HmacEncoding::Base64,
        Some(other) => {
            return Err(format!(
                "{} = {other:?}: expected hex or base64",
                key("encoding")
            ));
        }
    };
    let signed = HmacSpec::parse_template(file.signed.as_deref().unwrap_or("{body}"))
        .map_err(|e| format!("{}: {e}", key("signed")))?;
    let timestamp_header = file
        .timestamp_header
        .as_deref()
        .map(HmacSpec::header_name)
        .transpose()
        .map_err(|e| format!("{}: {e}", key("timestamp_header")))?;
    if timestamp_header.is_none() && file.tolerance_secs.is_some() {
        return Err(format!("{} needs timestamp_header", key("tolerance_secs")));
    }
    let source =
        |header: &Option<String>, pointer: &Option<String>, what: &str| match (header, pointer) {
            (Some(_), Some(_)) => Err(format!(
                "set {what}_header or {what}_pointer in providers.{name}, not both"
            )),
            (Some(h), None) => HmacSpec::header_name(h)
                .map(|h| Some(HmacSource::Header(h)))
                .map_err(|e| format!("{}: {e}", key(&format!("{what}_header")))),
            (None, Some(p)) if p.starts_with('/') => Ok(Some(HmacSource::Pointer(p.clone()))),
            (None, Some(p)) => Err(format!(
                "{} = {p:?}: a JSON pointer starts with '/', e.g. \"/id\"",
                key(&format!("{what}_pointer"))
            )),
            (None, None) => Ok(None),
        };
    let spec = HmacSpec {
        header,
        prefix: file.prefix.clone().unwrap_or_default(),
        algorithm,
        encoding,
        signed,
        timestamp_header,
        tolerance_secs,
        idempotency: source(
            &file.idempotency_header,
            &file.idempotency_pointer,
            "idempotency",
        )?,
        event_type: source(
            &file.event_type_header,
            &file.event_type_pointer,
            "event_type",
        )?,
    };
    spec.check().map_err(|e| format!("providers.{name}: {e}"))?;
    Ok(spec)
}

fn telemetry_config(src: &Source<'_>) -> Result<TelemetryConfig, ConfigError> {
    let invalid = |setting: &str, value: &str, expected: &str| ConfigError::Invalid {
        setting: setting.into(),
        value: value.into(),
        expected: expected.into(),
    };
    let log_format = match src.raw("HOOKD_LOG_FORMAT").unwrap_or("json") {
        "json" => LogFormat::Json,
        "pretty" => LogFormat::Pretty,
        other => return Err(invalid("HOOKD_LOG_FORMAT", other, "json or pretty")),
    };
    // Set but empty turns files off; unset means the default folder.
    let log_dir = match src.env.get("HOOKD_LOG_DIR").map(|s| s.trim()) {
        Some("") => None,
        Some(dir) => Some(PathBuf::from(dir)),
        None => Some(PathBuf::from("logs")),
    };
    let otlp = match src.raw("OTEL_EXPORTER_OTLP_ENDPOINT") {
        None => None,
        Some(endpoint) => {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(invalid(
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    endpoint,
                    "an http:// or https:// URL, e.g. http://jaeger:4318",
                ));
            }
            let protocol = match src
                .raw("OTEL_EXPORTER_OTLP_PROTOCOL")
                .unwrap_or("http/protobuf")
            {
                "http/protobuf" => OtlpProtocol::HttpProtobuf,
                "grpc" => OtlpProtocol::Grpc,
                other => {
                    return Err(invalid(
                        "OTEL_EXPORTER_OTLP_PROTOCOL",
                        other,
                        "http/protobuf (default, port 4318) or grpc (port 4317)",
                    ));
                }
            };
            Some(OtlpConfig {
                endpoint: endpoint.to_owned(),
                protocol,
            })
        }
    };
    Ok(TelemetryConfig {
        log_format,
        log_filter: src.raw("HOOKD_LOG").unwrap_or("info").to_owned(),
        log_dir,
        log_max_files: src.positive("HOOKD_LOG_MAX_FILES", None, 14)?,
        service_name: src.raw("OTEL_SERVICE_NAME").unwrap_or("hookd").to_owned(),
        otlp,
        jaeger_endpoint: src.raw("JAEGER_ENDPOINT").map(str::to_owned),
    })
}

fn redis_config(src: &Source<'_>, file: &FileRedis) -> Result<Option<RedisConfig>, ConfigError> {
    let cluster: Option<Vec<String>> = match src.raw("REDIS_CLUSTER_NODES") {
        Some(list) => Some(
            list.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
        ),
        None => file.cluster_nodes.clone(),
    };
    let single = src
        .raw("REDIS_URL")
        .map(str::to_owned)
        .or_else(|| {
            src.raw("REDIS_HOST").map(|host| {
                let port = src.raw("REDIS_PORT").unwrap_or("6379");
                match src.raw("REDIS_PASSWORD") {
                    Some(pw) => format!("redis://:{pw}@{host}:{port}"),
                    None => format!("redis://{host}:{port}"),
                }
            })
        })
        .or_else(|| file.url.clone());
    let target = match (cluster, single) {
        (Some(nodes), _) if !nodes.is_empty() => RedisTarget::Cluster(nodes),
        (_, Some(url)) => RedisTarget::Single(url),
        _ => return Ok(None),
    };
    let urls = match &target {
        RedisTarget::Single(u) => std::slice::from_ref(u),
        RedisTarget::Cluster(n) => n.as_slice(),
    };
    for u in urls {
        if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
            return Err(ConfigError::Invalid {
                setting: "REDIS_URL".into(),
                value: redact_url(u),
                expected: "redis://host:port (or rediss://), or REDIS_HOST and REDIS_PORT".into(),
            });
        }
    }
    let prefix = src
        .raw("HOOKD_REDIS_PREFIX")
        .map(str::to_owned)
        .or_else(|| file.prefix.clone())
        .unwrap_or_else(|| "hookd".into());
    if prefix.is_empty() || prefix.contains(['{', '}']) {
        return Err(ConfigError::Invalid {
            setting: "HOOKD_REDIS_PREFIX".into(),
            value: prefix,
            expected: "a non-empty name without braces".into(),
        });
    }
    Ok(Some(RedisConfig {
        target,
        prefix,
        keep_completed: src.get(
            "HOOKD_KEEP_COMPLETED",
            file.keep_completed,
            10,
            "a whole number",
        )?,
        keep_failed: src.get("HOOKD_KEEP_FAILED", file.keep_failed, 5, "a whole number")?,
        sweep_grace: Duration::from_secs(src.positive(
            "HOOKD_SWEEP_GRACE_SECS",
            file.sweep_grace_secs,
            30,
        )?),
    }))
}

/// `stripe=4,github=2` (or the TOML table `[worker.provider_concurrency]`).
fn provider_caps(
    env: Option<&str>,
    file: &BTreeMap<String, usize>,
) -> Result<BTreeMap<String, usize>, ConfigError> {
    let Some(list) = env else {
        return Ok(file.clone());
    };
    let invalid = || ConfigError::Invalid {
        setting: "HOOKD_PROVIDER_CONCURRENCY".into(),
        value: list.to_owned(),
        expected: "provider=limit pairs separated by commas, e.g. stripe=4,github=2".into(),
    };
    list.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            let (name, n) = pair.split_once('=').ok_or_else(invalid)?;
            let n: usize = n.trim().parse().map_err(|_| invalid())?;
            if n == 0 {
                return Err(invalid());
            }
            Ok((name.trim().to_owned(), n))
        })
        .collect()
}

/// `SMTP_URL` and its companions; `None` when no URL is set.
fn smtp_settings(src: &Source<'_>, file: &FileSmtp) -> Result<Option<SmtpSettings>, ConfigError> {
    let Some(url) = src.raw("SMTP_URL").map(str::to_owned).or(file.url.clone()) else {
        return Ok(None);
    };
    let invalid = |setting: &str, value: String, expected: String| ConfigError::Invalid {
        setting: setting.to_owned(),
        value,
        expected,
    };
    let mut smtp = SmtpSettings::from_url(&url).map_err(|e| {
        invalid(
            "SMTP_URL",
            redact_url(&url),
            format!("smtp://[user:password@]host[:port][?tls=none] or smtps://... ({e})"),
        )
    })?;
    if let Some(from) = src
        .raw("SMTP_FROM")
        .map(str::to_owned)
        .or(file.from.clone())
    {
        smtp.from =
            Some(from.parse::<Recipient>().map_err(|e| {
                invalid("SMTP_FROM", from.clone(), format!("an email address ({e})"))
            })?);
    }
    smtp.timeout =
        Duration::from_millis(src.positive("HOOKD_SMTP_TIMEOUT_MS", file.timeout_ms, 10_000)?);
    let ca = src
        .raw("HOOKD_SMTP_CA_FILE")
        .map(PathBuf::from)
        .or(file.ca_file.clone());
    if let Some(path) = ca {
        let shown = path.display().to_string();
        let pem = std::fs::read(&path).map_err(|e| {
            invalid(
                "HOOKD_SMTP_CA_FILE",
                shown.clone(),
                format!("a readable PEM file ({e})"),
            )
        })?;
        smtp.trust_pem(&pem).map_err(|e| {
            invalid(
                "HOOKD_SMTP_CA_FILE",
                shown,
                format!("PEM CA certificates ({e})"),
            )
        })?;
    }
    Ok(Some(smtp))
}

/// The config file in use, if any.
fn config_path(explicit: Option<&str>) -> Option<PathBuf> {
    match explicit {
        Some(p) => Some(PathBuf::from(p)),
        None if Path::new("hookd.toml").exists() => Some(PathBuf::from("hookd.toml")),
        None => None,
    }
}

fn load_file(explicit: Option<&str>) -> Result<FileConfig, ConfigError> {
    let Some(path) = config_path(explicit) else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::File {
        path: path.clone(),
        error: e.to_string(),
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::File {
        path,
        error: e.to_string(),
    })
}

/// A database URL without its password, for error messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The secrets a provider was configured with, exposed for the test.
    fn secrets_of(c: &Config, name: &str) -> Vec<String> {
        let secrets = match &c.provider(name).unwrap().verifier {
            Some(VerifierConfig::Stripe { secrets, .. })
            | Some(VerifierConfig::Github { secrets })
            | Some(VerifierConfig::Shopify { secrets })
            | Some(VerifierConfig::Hmac { secrets, .. })
            | Some(VerifierConfig::Twilio {
                auth_tokens: secrets,
                ..
            }) => secrets,
            Some(VerifierConfig::Paypal(p)) => &p.webhook_ids,
            other => panic!("{name}: {other:?}"),
        };
        secrets.iter().map(|s| s.expose().to_owned()).collect()
    }

    /// Load with this TOML file and these variables.
    fn with_file(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hookd.toml");
        std::fs::write(&path, toml).unwrap();
        let mut v = vars(env);
        v.push(("HOOKD_CONFIG".into(), path.to_str().unwrap().into()));
        Config::from_vars(v)
    }

    #[test]
    fn defaults() {
        let c = Config::from_vars(vars(&[("HOOKD_CONFIG", "/dev/null")])).unwrap();
        assert_eq!(c.port, 3001);
        assert_eq!(c.database_url, "sqlite://data/hookd.db");
        assert_eq!(c.workers, 32);
        assert_eq!(c.retry.max_attempts, 3);
        assert_eq!(c.lease, Duration::from_secs(30));
        assert_eq!(c.batch_window, Duration::from_micros(200));
        assert_eq!(c.batch_max, 256);
        assert!(c.admin_token.is_none() && c.public_url.is_none());
        // Every built-in is known, and off until its setting is set.
        for scheme in Scheme::ALL.iter().filter(|s| s.is_built_in()) {
            let p = c.provider(scheme.name()).unwrap();
            assert!(p.verifier.is_none(), "{}", p.name);
        }
        assert_eq!(c.provider("paypal").unwrap().setting, "PAYPAL_WEBHOOK_ID");
        assert_eq!(
            c.provider("standard").unwrap().setting,
            "STANDARD_WEBHOOK_SECRET"
        );
    }

    #[test]
    fn invalid_value_names_the_setting() {
        let err = Config::from_vars(vars(&[
            ("HOOKD_CONFIG", "/dev/null"),
            ("HOOKD_WORKERS", "lots"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("HOOKD_WORKERS"), "{err}");
        let err = Config::from_vars(vars(&[
            ("HOOKD_CONFIG", "/dev/null"),
            ("HOOKD_WORKERS", "0"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("HOOKD_WORKERS"), "{err}");
        let err = Config::from_vars(vars(&[
            ("HOOKD_CONFIG", "/dev/null"),
            ("DATABASE_URL", "mysql://u:pw@h/db"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("DATABASE_URL") && !err.contains("pw"), "{err}");
        let err = Config::from_vars(vars(&[
            ("HOOKD_CONFIG", "/dev/null"),
            ("HOOKD_BATCH_MAX", "0"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("HOOKD_BATCH_MAX") && err.contains("1 to 10000"),
            "{err}"
        );
        let err = Config::from_vars(vars(&[
            ("HOOKD_CONFIG", "/dev/null"),
            ("HOOKD_BATCH_WINDOW_US", "2000000"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("HOOKD_BATCH_WINDOW_US"), "{err}");
    }

    #[test]
    fn settings_of_issue_20_are_checked() {
        let err = |v: &[(&str, &str)]| {
            let mut all = vec![("HOOKD_CONFIG", "/dev/null")];
            all.extend_from_slice(v);
            Config::from_vars(vars(&all)).unwrap_err().to_string()
        };
        for (setting, value) in [
            ("HOOKD_WEBHOOK_RESERVED_CONNECTIONS", "4096"),
            ("HOOKD_WEBHOOK_RESERVED_CONNECTIONS", "many"),
            ("HOOKD_REPLAY_WINDOW_HOURS", "0"),
            ("HOOKD_INTERNAL_ADDR", "9090"),
            ("HOOKD_AUDIT_REDACT_HEADERS", "x-ok,bad header"),
        ] {
            let e = err(&[(setting, value)]);
            assert!(e.contains(setting), "{setting}={value}: {e}");
        }
        let c = Config::from_vars(vars(&[
            ("HOOKD_CONFIG", "/dev/null"),
            ("HOOKD_MAX_CONNECTIONS", "50"),
            ("HOOKD_INTERNAL_ADDR", "127.0.0.1:9090"),
            ("HOOKD_AUDIT_REDACT_HEADERS", "X-Tenant-Key, x-other"),
        ]))
        .unwrap();
        assert_eq!(c.limits.webhook_reserved_connections, 25, "half by default");
        assert_eq!(c.replay_window, Duration::from_secs(24 * 3600));
        assert_eq!(c.internal_addr, Some(([127, 0, 0, 1], 9090).into()));
        assert_eq!(c.limits.audit_redact_headers, ["x-tenant-key", "x-other"]);
    }

    #[test]
    fn secrets_list_and_numeric_secret() {
        let c = Config::from_vars(vars(&[
            ("HOOKD_CONFIG", "/dev/null"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_old, whsec_new"),
            ("GITHUB_WEBHOOK_SECRET", "123456"),
        ]))
        .unwrap();
        assert_eq!(secrets_of(&c, "stripe"), ["whsec_old", "whsec_new"]);
        assert_eq!(secrets_of(&c, "github"), ["123456"]);
    }

    #[test]
    fn file_then_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hookd.toml");
        std::fs::write(
            &path,
            r#"
            [store]
            batch_window_us = 0
            batch_max = 32
            [worker]
            workers = 2
            max_attempts = 5
            [providers.stripe]
            secret = ["whsec_a", "whsec,with,commas"]
            tolerance_secs = 60
            [[routes]]
            provider = "stripe"
            events = ["payment_intent.*"]
            steps = [{ action = "forward", url = "http://127.0.0.1:9000/in" }, { action = "log" }]
            "#,
        )
        .unwrap();
        let c = Config::from_vars(vars(&[
            ("HOOKD_CONFIG", path.to_str().unwrap()),
            ("HOOKD_WORKERS", "4"),
            ("HOOKD_FORWARD_ALLOW_PRIVATE", "true"),
        ]))
        .unwrap();
        assert_eq!(c.workers, 4);
        assert_eq!(c.retry.max_attempts, 5);
        assert_eq!((c.batch_window, c.batch_max), (Duration::ZERO, 32));
        let Some(VerifierConfig::Stripe { tolerance_secs, .. }) =
            &c.provider("stripe").unwrap().verifier
        else {
            panic!("stripe is on")
        };
        assert_eq!(*tolerance_secs, 60);
        assert_eq!(secrets_of(&c, "stripe"), ["whsec_a", "whsec,with,commas"]);
        assert_eq!(c.routes.len(), 1);
    }

    #[test]
    fn smtp_and_destination_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hookd.toml");
        std::fs::write(
            &path,
            r#"
            [smtp]
            url = "smtps://mailer:p%40ss@mail.example.com"
            from = "hookd <hookd@example.com>"
            timeout_ms = 2000
            [destinations]
            concurrency = 2
            breaker_failures = 3
            breaker_cooldown_ms = 1000
            "#,
        )
        .unwrap();
        let c = Config::from_vars(vars(&[
            ("HOOKD_CONFIG", path.to_str().unwrap()),
            ("HOOKD_BREAKER_COOLDOWN_MS", "500"),
        ]))
        .unwrap();
        let smtp = c.smtp.unwrap();
        assert_eq!(
            smtp.destination().to_string(),
            "smtps://mail.example.com:465"
        );
        assert_eq!(smtp.timeout, Duration::from_secs(2));
        assert!(smtp.from.is_some());
        assert!(!format!("{smtp:?}").contains("p@ss"));
        assert_eq!(c.destination_concurrency, 2);
        assert_eq!(c.breaker.failure_threshold, 3);
        assert_eq!(c.breaker.cooldown, Duration::from_millis(500));
        let d = Config::from_vars(vars(&[("HOOKD_CONFIG", "/dev/null")])).unwrap();
        assert!(d.smtp.is_none());
        assert_eq!(
            (d.breaker.failure_threshold, d.destination_concurrency),
            (5, 4)
        );
    }

    #[test]
    fn bad_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hookd.toml");
        std::fs::write(&path, "[worker]\nworkerz = 2\n").unwrap();
        let err = Config::from_vars(vars(&[("HOOKD_CONFIG", path.to_str().unwrap())]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("workerz"), "{err}");
        std::fs::write(
            &path,
            "[[routes]]\nsteps = [{ action = \"forward\", url = \"ftp://x\" }]\n",
        )
        .unwrap();
        let err = Config::from_vars(vars(&[("HOOKD_CONFIG", path.to_str().unwrap())]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("route") && err.contains("ftp"), "{err}");
    }

    #[test]
    fn redis_settings() {
        let c = Config::from_vars(vars(&[
            ("HOOKD_CONFIG", "/dev/null"),
            ("DATABASE_URL", "postgres://u@h/db"),
            ("REDIS_HOST", "10.0.0.5"),
            ("REDIS_PORT", "6380"),
            ("HOOKD_PROVIDER_CONCURRENCY", "stripe=4, github=2"),
        ]))
        .unwrap();
        let r = c.redis.unwrap();
        assert_eq!(
            r.target,
            RedisTarget::Single("redis://10.0.0.5:6380".into())
        );
        assert_eq!(
            (r.keep_completed, r.keep_failed, r.prefix.as_str()),
            (10, 5, "hookd")
        );
        assert_eq!(c.provider_concurrency["github"], 2);
        let c = Config::from_vars(vars(&[
            ("HOOKD_CONFIG", "/dev/null"),
            ("DATABASE_URL", "postgres://u@h/db"),
            (
                "REDIS_CLUSTER_NODES",
                "redis://127.0.0.1:7001,redis://127.0.0.1:7002",
            ),
        ]))
        .unwrap();
        assert!(matches!(c.redis.unwrap().target, RedisTarget::Cluster(n) if n.len() == 2));
        let err = Config::from_vars(vars(&[
            ("HOOKD_CONFIG", "/dev/null"),
            ("REDIS_URL", "redis://x"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("SQLite") && err.contains("DATABASE_URL"),
            "{err}"
        );
        let err = Config::from_vars(vars(&[
            ("HOOKD_CONFIG", "/dev/null"),
            ("HOOKD_PROVIDER_CONCURRENCY", "stripe"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("HOOKD_PROVIDER_CONCURRENCY"), "{err}");
    }

    #[test]
    fn built_ins_can_be_instanced_again_under_another_name() {
        let c = with_file(
            "[providers.stripe-eu]\nscheme = \"stripe\"\ntolerance_secs = 120\n",
            &[
                ("STRIPE_EU_WEBHOOK_SECRET", "whsec_eu"),
                ("STRIPE_WEBHOOK_SECRET", "whsec_us"),
            ],
        )
        .unwrap();
        assert_eq!(secrets_of(&c, "stripe-eu"), ["whsec_eu"]);
        assert_eq!(secrets_of(&c, "stripe"), ["whsec_us"]);
        assert!(matches!(
            c.provider("stripe-eu").unwrap().verifier,
            Some(VerifierConfig::Stripe {
                tolerance_secs: 120,
                ..
            })
        ));
        let p = c.providers().unwrap();
        assert!(matches!(
            p.lookup("stripe-eu"),
            crate::verify::Lookup::Ready(_)
        ));
        // Without its secret the instance is known, and names its own variable.
        let c = with_file("[providers.stripe-eu]\nscheme = \"stripe\"\n", &[]).unwrap();
        let p = c.providers().unwrap();
        assert!(matches!(
            p.lookup("stripe-eu"),
            crate::verify::Lookup::NotConfigured {
                setting: "STRIPE_EU_WEBHOOK_SECRET"
            }
        ));
        assert!(matches!(p.lookup("nosuch"), crate::verify::Lookup::Unknown));
    }

    #[test]
    fn generic_hmac_provider() {
        let toml = r#"
            [providers.acme]
            scheme = "hmac"
            secret = ["old", "new"]
            header = "X-Acme-Signature"
            prefix = "sha512="
            algorithm = "sha512"
            encoding = "base64"
            signed = "{timestamp}.{body}"
            timestamp_header = "X-Acme-Timestamp"
            tolerance_secs = 60
            idempotency_pointer = "/id"
            event_type_header = "X-Acme-Event"
        "#;
        let c = with_file(toml, &[]).unwrap();
        let Some(VerifierConfig::Hmac { spec, .. }) = &c.provider("acme").unwrap().verifier else {
            panic!("acme is on");
        };
        assert_eq!(spec.header, "x-acme-signature");
        assert_eq!(spec.algorithm, Algorithm::Sha512);
        assert_eq!(spec.encoding, HmacEncoding::Base64);
        assert_eq!(spec.tolerance_secs, 60);
        assert_eq!(spec.idempotency, Some(HmacSource::Pointer("/id".into())));
        assert_eq!(
            spec.event_type,
            Some(HmacSource::Header("x-acme-event".into()))
        );
        assert_eq!(secrets_of(&c, "acme"), ["old", "new"]);
        // The environment wins, under the provider's own name.
        let c = with_file(toml, &[("ACME_WEBHOOK_SECRET", "from-env")]).unwrap();
        assert_eq!(secrets_of(&c, "acme"), ["from-env"]);
    }

    #[test]
    fn provider_mistakes_name_the_setting() {
        let cases: &[(&str, &str)] = &[
            ("[providers.acme]\nsecret = \"s\"\n", "set scheme"),
            (
                "[providers.acme]\nscheme = \"nope\"\n",
                "\"nope\" is unknown",
            ),
            ("[providers.Acme]\nscheme = \"stripe\"\n", "lower-case"),
            (
                "[providers.stripe]\nheader = \"x\"\n",
                "providers.stripe.header does not apply",
            ),
            (
                "[providers.paypal]\nsecret = \"x\"\n",
                "providers.paypal.secret does not apply",
            ),
            (
                "[providers.acme]\nscheme = \"hmac\"\n",
                "providers.acme.header is required",
            ),
            (
                "[providers.acme]\nscheme = \"hmac\"\nheader = \"x-sig\"\nalgorithm = \"md5\"\n",
                "providers.acme.algorithm",
            ),
            (
                "[providers.acme]\nscheme = \"hmac\"\nheader = \"x-sig\"\nsigned = \"{timestamp}\"\n",
                "providers.acme.signed",
            ),
            (
                "[providers.acme]\nscheme = \"hmac\"\nheader = \"x-sig\"\ntimestamp_header = \"x-t\"\n",
                "no {timestamp}",
            ),
            (
                "[providers.acme]\nscheme = \"hmac\"\nheader = \"x-sig\"\nidempotency_header = \"a\"\nidempotency_pointer = \"/id\"\n",
                "not both",
            ),
            (
                "[providers.acme]\nscheme = \"hmac\"\nheader = \"x-sig\"\nevent_type_pointer = \"type\"\n",
                "providers.acme.event_type_pointer",
            ),
            (
                "[providers.a-b]\nscheme = \"github\"\n[providers.a_b]\nscheme = \"github\"\n",
                "same environment variables",
            ),
        ];
        for (toml, expected) in cases {
            let err = with_file(toml, &[]).unwrap_err().to_string();
            assert!(err.contains(expected), "{toml}\n=> {err}");
        }
    }

    #[test]
    fn bad_secrets_are_reported_without_their_value() {
        let err = with_file("", &[("STANDARD_WEBHOOK_SECRET", "whsec_%%topsecret%%")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("STANDARD_WEBHOOK_SECRET"), "{err}");
        assert!(!err.contains("topsecret"), "{err}");
    }

    #[test]
    fn paypal_settings() {
        let c = with_file(
            "",
            &[("PAYPAL_WEBHOOK_ID", "8PT597110X687430LKGECATA,WEBHOOK_ID")],
        )
        .unwrap();
        let Some(VerifierConfig::Paypal(p)) = &c.provider("paypal").unwrap().verifier else {
            panic!("paypal is on");
        };
        assert_eq!(p.tolerance_secs, 300);
        assert_eq!(p.cert_url_prefixes.len(), 4);
        assert!(matches!(p.trust_roots, TrustRoots::PublicWeb));
        assert_eq!(p.webhook_ids.iter().count(), 2);
        c.providers().unwrap();
        for (var, value) in [
            ("PAYPAL_CERT_URL_PREFIXES", "ftp://certs.example/"),
            ("PAYPAL_TRUST_ROOTS", "/nonexistent/roots.pem"),
            ("PAYPAL_TOLERANCE_SECS", "0"),
        ] {
            let err = with_file("", &[("PAYPAL_WEBHOOK_ID", "W"), (var, value)])
                .unwrap_err()
                .to_string();
            assert!(err.contains(var), "{var}: {err}");
        }
    }

    #[test]
    fn public_url() {
        let c = with_file(
            "",
            &[
                ("HOOKD_PUBLIC_URL", "https://hooks.example.com/"),
                ("TWILIO_WEBHOOK_SECRET", "t"),
            ],
        )
        .unwrap();
        assert_eq!(c.public_url.as_deref(), Some("https://hooks.example.com"));
        assert!(matches!(
            &c.provider("twilio").unwrap().verifier,
            Some(VerifierConfig::Twilio { public_url: Some(u), .. }) if u == "https://hooks.example.com"
        ));
        for bad in [
            "hooks.example.com",
            "ftp://x",
            "https://x/?a=1",
            "https://u:pw@x/",
        ] {
            let err = with_file("", &[("HOOKD_PUBLIC_URL", bad)])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("HOOKD_PUBLIC_URL") && !err.contains("pw"),
                "{err}"
            );
        }
    }

    #[test]
    fn redacts_password() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("sqlite://data/x.db"), "sqlite://data/x.db");
    }
}

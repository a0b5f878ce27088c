//! Configuration: one typed struct, loaded once at start from the environment and an optional
//! TOML file (`HOOKD_CONFIG`, or `hookd.toml` in the working directory when it exists).
//! The environment wins over the file. Every invalid value fails start-up with a message that
//! names the setting to fix. Nothing else in hookd reads the environment.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::actions::RouteConfig;
use crate::verify::{GithubVerifier, Providers, Secret, Secrets, StripeVerifier};
use crate::worker::RetryPolicy;

/// Everything hookd needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind: IpAddr,
    pub port: u16,
    /// `postgres://...` or `sqlite://...`.
    pub database_url: String,
    pub db_pool_size: u32,
    /// How long a request waits for the store (pool acquire, SQLite lock) before answering 503.
    pub store_timeout: Duration,
    pub max_body_bytes: usize,
    pub stripe: Option<StripeConfig>,
    pub github: Option<Secrets>,
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

#[derive(Debug, Clone)]
pub struct StripeConfig {
    pub secrets: Secrets,
    pub tolerance_secs: u64,
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
    #[serde(default)]
    providers: FileProviders,
    #[serde(default)]
    routes: Vec<RouteConfig>,
    #[serde(default)]
    redis: FileRedis,
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
struct FileServer {
    bind: Option<IpAddr>,
    port: Option<u16>,
    max_body_bytes: Option<usize>,
    shutdown_timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStore {
    database_url: Option<String>,
    pool_size: Option<u32>,
    timeout_ms: Option<u64>,
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileProviders {
    stripe: Option<FileProvider>,
    github: Option<FileProvider>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileProvider {
    secret: Option<SecretList>,
    tolerance_secs: Option<u64>,
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

        let secrets = |name: &str, file: &Option<FileProvider>| match src.raw(name) {
            Some(list) => Secrets::from_list(list),
            None => file
                .as_ref()
                .and_then(|p| p.secret.as_ref())
                .and_then(SecretList::secrets),
        };
        let stripe = match secrets("STRIPE_WEBHOOK_SECRET", &file.providers.stripe) {
            Some(secrets) => Some(StripeConfig {
                secrets,
                tolerance_secs: src.positive(
                    "STRIPE_TOLERANCE_SECS",
                    file.providers
                        .stripe
                        .as_ref()
                        .and_then(|p| p.tolerance_secs),
                    300,
                )?,
            }),
            None => None,
        };
        let github = secrets("GITHUB_WEBHOOK_SECRET", &file.providers.github);

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
            max_body_bytes: src.positive(
                "HOOKD_MAX_BODY_BYTES",
                file.server.max_body_bytes,
                1 << 20,
            )?,
            stripe,
            github,
            admin_token: src.raw("HOOKD_ADMIN_TOKEN").map(Secret::new),
            workers: src.positive("HOOKD_WORKERS", w.workers, 8)?,
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
            route.validate().map_err(|message| ConfigError::Route {
                route: route.display_name(i),
                message,
            })?;
        }
        Ok(())
    }

    /// The verifiers for every provider that has its secret configured.
    pub fn providers(&self) -> Providers {
        let mut p = Providers::default();
        if let Some(s) = &self.stripe {
            p.insert(
                "stripe",
                Box::new(StripeVerifier::new(s.secrets.clone(), s.tolerance_secs)),
            );
        }
        if let Some(s) = &self.github {
            p.insert("github", Box::new(GithubVerifier::new(s.clone())));
        }
        p
    }
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

fn load_file(explicit: Option<&str>) -> Result<FileConfig, ConfigError> {
    let path = match explicit {
        Some(p) => PathBuf::from(p),
        None if Path::new("hookd.toml").exists() => PathBuf::from("hookd.toml"),
        None => return Ok(FileConfig::default()),
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

    #[test]
    fn defaults() {
        let c = Config::from_vars(vars(&[("HOOKD_CONFIG", "/dev/null")])).unwrap();
        assert_eq!(c.port, 3001);
        assert_eq!(c.database_url, "sqlite://data/hookd.db");
        assert_eq!(c.workers, 8);
        assert_eq!(c.retry.max_attempts, 3);
        assert_eq!(c.lease, Duration::from_secs(30));
        assert!(c.stripe.is_none() && c.github.is_none() && c.admin_token.is_none());
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
    }

    #[test]
    fn secrets_list_and_numeric_secret() {
        let c = Config::from_vars(vars(&[
            ("HOOKD_CONFIG", "/dev/null"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_old, whsec_new"),
            ("GITHUB_WEBHOOK_SECRET", "123456"),
        ]))
        .unwrap();
        let s: Vec<_> = c
            .stripe
            .unwrap()
            .secrets
            .iter()
            .map(|s| s.expose().to_owned())
            .collect();
        assert_eq!(s, ["whsec_old", "whsec_new"]);
        assert_eq!(c.github.unwrap().iter().next().unwrap().expose(), "123456");
    }

    #[test]
    fn file_then_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hookd.toml");
        std::fs::write(
            &path,
            r#"
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
        ]))
        .unwrap();
        assert_eq!(c.workers, 4);
        assert_eq!(c.retry.max_attempts, 5);
        let stripe = c.stripe.unwrap();
        assert_eq!(stripe.tolerance_secs, 60);
        let s: Vec<_> = stripe
            .secrets
            .iter()
            .map(|s| s.expose().to_owned())
            .collect();
        assert_eq!(s, ["whsec_a", "whsec,with,commas"]);
        assert_eq!(c.routes.len(), 1);
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
    fn redacts_password() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("sqlite://data/x.db"), "sqlite://data/x.db");
    }
}

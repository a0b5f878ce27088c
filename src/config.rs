//! Configuration: one typed struct, loaded once at start from the environment and an optional
//! TOML file (`HOOKD_CONFIG`, or `hookd.toml` in the working directory when it exists).
//! The environment wins over the file. Every invalid value fails start-up with a message that
//! names the setting to fix. Nothing else in hookd reads the environment.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::actions::RouteConfig;
use crate::actions::breaker::BreakerPolicy;
use crate::actions::email::{Recipient, SmtpSettings};
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
    pub log_format: LogFormat,
    pub log_filter: String,
    /// The mail server for `email` steps (`SMTP_URL`); `None` when email is not configured.
    pub smtp: Option<SmtpSettings>,
    /// When a destination's circuit breaker opens, and for how long.
    pub breaker: BreakerPolicy,
    /// Steps in flight to one destination at once, per process.
    pub destination_concurrency: usize,
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
    smtp: FileSmtp,
    #[serde(default)]
    destinations: FileDestinations,
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
            log_format: match src.raw("HOOKD_LOG_FORMAT").unwrap_or("json") {
                "json" => LogFormat::Json,
                "pretty" => LogFormat::Pretty,
                other => {
                    return Err(ConfigError::Invalid {
                        setting: "HOOKD_LOG_FORMAT".into(),
                        value: other.into(),
                        expected: "json or pretty".into(),
                    });
                }
            },
            log_filter: src.raw("HOOKD_LOG").unwrap_or("info").to_owned(),
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
        for (i, route) in self.routes.iter().enumerate() {
            route
                .validate(self.smtp.as_ref())
                .map_err(|message| ConfigError::Route {
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
    fn redacts_password() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("sqlite://data/x.db"), "sqlite://data/x.db");
    }
}

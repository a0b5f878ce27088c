//! Settings of the HTTP surface: where it listens, TLS, request and rate limits, who may reach
//! the operator surfaces, and the health thresholds. Owns their defaults and the checks of their
//! values. It must never read the environment or a file: the configuration reader fills
//! [`HttpSettings`] and hands it over.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

/// Everything the HTTP surface needs, as configured.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub bind: IpAddr,
    pub port: u16,
    /// Where `/health` and `/metrics` are served instead of the public listener; `None`: on
    /// the public listener (a worker-only process then uses [`WORKER_INTERNAL_ADDR`]).
    pub internal_addr: Option<SocketAddr>,
    /// Largest webhook body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// `/health` reports unhealthy above this resident set size.
    pub memory_limit_bytes: u64,
    /// Rate limits, overload bound, request limits and timeouts.
    pub limits: Limits,
    /// Who may reach `/admin` and `/ui`.
    pub admin_access: AdminAccess,
    /// TLS on the listener; `None`: plain HTTP.
    pub tls: Option<TlsConfig>,
    /// JSON Schemas payloads must match, by provider and event type.
    pub schemas: Vec<SchemaRule>,
    /// On shutdown, how long a process with the API keeps serving everything while
    /// `/health/ready` answers 503 and every answer carries `Connection: close`, before its
    /// listener closes: the time a load balancer needs to notice and move its traffic away.
    pub shutdown_ready_delay: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            bind: IpAddr::from([0, 0, 0, 0]),
            port: 3001,
            internal_addr: None,
            max_body_bytes: 1 << 20,
            memory_limit_bytes: 1024 * 1024 * 1024,
            limits: Limits::default(),
            admin_access: AdminAccess::default(),
            tls: None,
            schemas: Vec::new(),
            shutdown_ready_delay: Self::SHUTDOWN_READY_DELAY,
        }
    }
}

/// Where a worker-only process (`hookd worker`, which has no public listener) serves `/health`,
/// `/health/live`, `/health/ready` and `/metrics` when `HOOKD_INTERNAL_ADDR` is not set.
pub const WORKER_INTERNAL_ADDR: SocketAddr =
    SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 9090);

impl HttpSettings {
    /// The default drain before the listener closes. HAProxy's checks as shipped
    /// (`deploy/haproxy/haproxy.cfg`: `inter 2s fastinter 500ms fall 2`) take a server out
    /// within about 2.5 s of its first 503, so 5 s leaves as much again for a loaded machine.
    pub const SHUTDOWN_READY_DELAY: Duration = Duration::from_secs(5);
    /// The longest drain that may be configured (`HOOKD_SHUTDOWN_READY_DELAY_MS`).
    pub const SHUTDOWN_READY_DELAY_MAX: Duration = Duration::from_secs(300);

    /// The internal listener (health and metrics) of a process with or without the public API:
    /// with it, only when `HOOKD_INTERNAL_ADDR` is set; without it (a worker), always, on
    /// `HOOKD_INTERNAL_ADDR` or else [`WORKER_INTERNAL_ADDR`].
    pub fn internal_listener(&self, api: bool) -> Option<SocketAddr> {
        match (api, self.internal_addr) {
            (true, addr) => addr,
            (false, addr) => Some(addr.unwrap_or(WORKER_INTERNAL_ADDR)),
        }
    }
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
    /// hyper's read buffer holds the headers and cannot be smaller than 8 KiB; more than 1 MiB
    /// of headers is never a webhook.
    pub const HEADER_BYTES: (usize, usize) = (1024, 1 << 20);

    /// A header name to redact, checked and lower-cased; `None` when it is not a header name.
    pub fn redact_header(name: &str) -> Option<String> {
        axum::http::HeaderName::from_bytes(name.as_bytes())
            .ok()
            .map(|h| h.as_str().to_owned())
    }

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

impl Default for AdminAccess {
    fn default() -> Self {
        Self {
            allow: None,
            max_failures: 10,
        }
    }
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

impl TlsConfig {
    /// The default time between checks of the files.
    pub const RELOAD: Duration = Duration::from_secs(10);
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

/// Why a schema file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("a readable JSON Schema file ({source})")]
    Read { source: std::io::Error },
    #[error("a JSON Schema, but it is not JSON: {source}")]
    Json { source: serde_json::Error },
    #[error("a valid JSON Schema: {source}")]
    Invalid {
        source: Box<jsonschema::ValidationError<'static>>,
    },
}

impl SchemaRule {
    /// Read and compile the schema at `file` (already resolved against the config file's
    /// folder); `path` is the path as configured, kept for messages.
    pub fn load(
        provider: String,
        events: Vec<String>,
        path: PathBuf,
        file: &Path,
    ) -> Result<Self, SchemaError> {
        let text = std::fs::read_to_string(file).map_err(|source| SchemaError::Read { source })?;
        let schema: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| SchemaError::Json { source })?;
        let validator = jsonschema::validator_for(&schema).map_err(|e| SchemaError::Invalid {
            source: Box::new(e),
        })?;
        Ok(Self {
            provider,
            events,
            path,
            validator: Arc::new(validator),
        })
    }
}

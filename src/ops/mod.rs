//! The operator service layer: everything an operator does, with typed requests and answers
//! shared by the admin API, the console and the CLI. Who is asking (tokens and scopes, console
//! sessions), events (search, detail, payload, activity, the live stream), replays and
//! redrives (one, or many in a background job), dead letters, providers and their pauses,
//! destination breakers, the configuration stored through the API (`config`: providers, routes,
//! named destinations, export and apply), the audit log, payload retention, and the order keys
//! held up.
//!
//! Owns the rules of an operator action and the only way to the store for them: the admin API
//! and the console call the functions here, never the store. Every operate action is written
//! to the audit log (by the caller, which knows how the action was answered). It must never
//! know about HTTP: its errors are [`OpsError`], mapped to responses once in `http/`.

pub mod audit;
pub mod config;
pub mod events;
pub mod jobs;
pub mod ordering;
pub mod params;
pub mod providers;
pub mod replays;
pub mod retention;
pub mod sessions;
mod settings;
pub mod stream;
pub mod tokens;

pub use settings::{AdminToken, OperatorConfig, Scope, TokenClash, token_clash};

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub use audit::{AuditPage, AuditQuery, WhoAmI};
pub use events::{DlqQuery, EventPage, EventQuery, EventView, Stats, StatsQuery, Window};
pub use jobs::JobList;
pub use ordering::{BlockedLines, BlockedQuery};
pub use providers::{DestinationList, PauseRequest, ProviderList, ProviderView};
pub use replays::{Finished, RedriveRequest, ReplayRequest};
pub use sessions::{ConsoleSession, OpenedSession};
pub use stream::{EventStream, StreamBatch, StreamEvent, StreamQuery, StreamSettings};
pub use tokens::{Principal, Tokens};
// The store's records that are answers as they are: callers name them through `ops`.
pub use crate::store::admin::{
    ActivityBucket, AuditEntry, BlockedLine, EventFilter, EventPayload, EventSummary, Job,
    JobStatus, ReplayKind,
};

use crate::actions::breaker::Destinations;
use crate::live::Live;
use crate::queue::Queue;
use crate::store::{EventStore, StoreError};
use crate::swap::Swap;
use crate::verify::Providers;

/// Why an operator action did not happen.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// No such event or job (an id that cannot be one included).
    #[error("not found")]
    NotFound,
    #[error("unknown provider {0:?}")]
    UnknownProvider(String),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("{0}")]
    Invalid(String),
    /// This process is at a limit (e.g. its cap of event streams); retry later or elsewhere.
    #[error("{0}")]
    Busy(String),
    /// A configuration change that the file would refuse too: `field` names the setting.
    #[error("{message}")]
    InvalidConfig { field: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What [`Ops`] is made of (see the fields of `Ops`).
pub struct OpsParts {
    pub store: Arc<dyn EventStore>,
    pub reads: Arc<dyn EventStore>,
    pub queue: Arc<dyn Queue>,
    /// The live configuration: the providers this process accepts, and the providers, routes
    /// and destinations written through the API.
    pub live: Arc<Live>,
    pub destinations: Option<Arc<Destinations>>,
    pub session_ttl: Duration,
    pub secure_cookies: bool,
    pub shutdown: watch::Receiver<bool>,
    pub stream: StreamSettings,
}

/// What the operator surface shares: the stores, the queue, the providers, this process's
/// breakers and the tokens.
pub struct Ops {
    /// The primary store: every write, and reads that must see them.
    store: Arc<dyn EventStore>,
    /// Where admin reads go: a read replica when `DATABASE_READ_URL` is set, else the primary.
    reads: Arc<dyn EventStore>,
    queue: Arc<dyn Queue>,
    /// The providers this process accepts (shared with the webhook route).
    providers: Arc<Swap<Providers>>,
    live: Arc<Live>,
    /// This process's destination breakers (`None` without the worker role).
    destinations: Option<Arc<Destinations>>,
    /// The admin tokens.
    pub tokens: Tokens,
    session_ttl: Duration,
    /// Console cookies are `Secure` (hookd is reached over https: `HOOKD_PUBLIC_URL`).
    secure_cookies: bool,
    shutdown: watch::Receiver<bool>,
    /// The event streams open in this process.
    streams: stream::Streams,
}

impl Ops {
    /// The operator surface over `parts`, with the admin `tokens`.
    pub fn new(parts: OpsParts, tokens: &[AdminToken]) -> Self {
        Self {
            store: parts.store,
            reads: parts.reads,
            queue: parts.queue,
            providers: parts.live.providers(),
            live: parts.live,
            destinations: parts.destinations,
            tokens: Tokens::new(tokens),
            session_ttl: parts.session_ttl,
            secure_cookies: parts.secure_cookies,
            shutdown: parts.shutdown,
            streams: stream::Streams::new(parts.stream),
        }
    }

    /// Whether any admin token is configured (without one the admin API and console are 404).
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Whether console cookies must be `Secure` whatever the request says.
    pub fn secure_cookies(&self) -> bool {
        self.secure_cookies
    }
}

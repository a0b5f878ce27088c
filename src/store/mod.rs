//! The durable event store: the single source of truth for every event, its status history
//! and its step results. Two engines behind one trait: PostgreSQL and embedded SQLite.
//!
//! Owns the schema (migrations embedded in the binary), idempotent inserts and leases.
//! It must never accept anything but a [`VerifiedWebhook`], never alter a stored body, and
//! never change an event's status without writing the transition that explains it.

pub mod admin;
mod group;
mod postgres;
mod settings;
mod sqlite;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub use admin::AdminStore;
pub use group::{GroupCommit, GroupCommitSettings};
pub use postgres::PgStore;
pub use settings::{StoreSettings, is_postgres_url, is_store_url, redact_url};
pub use sqlite::SqliteStore;

use crate::event::{
    ClaimedEvent, EventDetail, EventId, EventStatus, Outcome, Progress, ProviderPause, StepOutcome,
    StepRecord,
};
use crate::verify::VerifiedWebhook;

/// Result of storing a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Committed as a new event.
    New(EventId),
    /// Already stored under the same (provider, idempotency key).
    Duplicate(EventId),
}

/// What is waiting: unfinished and dead-lettered events by status, and when the oldest event
/// still waiting for its first attempt or a retry was received.
#[derive(Debug, Clone, Default)]
pub struct Backlog {
    pub by_status: BTreeMap<EventStatus, u64>,
    pub oldest_pending: Option<chrono::DateTime<chrono::Utc>>,
}

impl Backlog {
    /// The statuses a backlog counts (`completed` is every event ever finished: a counter's job).
    pub const STATUSES: [EventStatus; 5] = [
        EventStatus::Pending,
        EventStatus::Processing,
        EventStatus::RetryScheduled,
        EventStatus::Compensating,
        EventStatus::DeadLetter,
    ];
}

impl Inserted {
    /// The id of the stored event, new or not.
    pub fn id(self) -> EventId {
        match self {
            Self::New(id) | Self::Duplicate(id) => id,
        }
    }
}

/// A verified webhook as a row to insert: its id is chosen up front and its audit headers are
/// already JSON. Only [`NewEvent::new`] makes one, from a [`VerifiedWebhook`]; the body is the
/// request's own buffer, shared, never copied.
#[derive(Debug, Clone)]
pub struct NewEvent {
    id: EventId,
    provider: String,
    idempotency_key: String,
    event_type: String,
    content_type: Option<String>,
    headers_json: String,
    body: Bytes,
    /// The W3C trace context the worker continues.
    traceparent: Option<String>,
}

impl NewEvent {
    pub fn new(w: &VerifiedWebhook, traceparent: Option<&str>) -> Result<Self, StoreError> {
        Ok(Self {
            id: EventId::new(),
            provider: w.provider().to_owned(),
            idempotency_key: w.idempotency_key().to_owned(),
            event_type: w.event_type().to_owned(),
            content_type: w.content_type().map(str::to_owned),
            headers_json: serde_json::to_string(w.headers())
                .map_err(|e| StoreError::Other(format!("cannot encode headers: {e}")))?,
            body: w.body().clone(),
            traceparent: traceparent.map(str::to_owned),
        })
    }

    pub fn id(&self) -> EventId {
        self.id
    }

    /// The uniqueness key: `(provider, idempotency key)`.
    pub fn key(&self) -> (&str, &str) {
        (&self.provider, &self.idempotency_key)
    }
}

/// Which events a claim may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The most overdue events, at most this many.
    Due { limit: u32 },
    /// These events, those of them that are due (a queue's messages, claimed in one go).
    Events(Vec<EventId>),
}

/// The end of one attempt, for [`EventStore::finish_many`].
#[derive(Debug, Clone)]
pub struct Finish {
    pub id: EventId,
    /// The lease owner that ran the attempt.
    pub owner: String,
    pub outcome: Outcome,
    /// The attempt's last step, when its result is still to be stored.
    pub step: Option<StepRecord>,
}

/// Store failures, split by what the caller should do about them.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is busy: retry later (HTTP 503).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or a schema problem (HTTP 500).
    #[error("store error: {0}")]
    Other(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match &e {
            E::Io(_) | E::PoolTimedOut | E::PoolClosed | E::Tls(_) | E::WorkerCrashed => {
                Self::Unavailable(e.to_string())
            }
            E::Database(db) => {
                let code = db.code().unwrap_or_default();
                // SQLite: 5 BUSY, 6 LOCKED, 10 IOERR, 13 FULL, 14 CANTOPEN (and extended codes).
                // PostgreSQL: 08 connection, 28 authorization, 3D no such database, 40 transaction
                // rollback (deadlock, serialization), 53 resources, 55 not accepting connections,
                // 57 operator intervention (shutdown, terminated), 58 system (I/O).
                // Which engine matters: many SQLSTATEs are numeric too (22021 & 0xff is 5).
                let down = if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                    code.parse::<i32>()
                        .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 10 | 13 | 14))
                } else {
                    ["08", "28", "3D", "40", "53", "55", "57", "58"]
                        .iter()
                        .any(|class| code.starts_with(class))
                };
                if down {
                    Self::Unavailable(e.to_string())
                } else {
                    Self::Other(e.to_string())
                }
            }
            _ => Self::Other(e.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        match e {
            sqlx::migrate::MigrateError::Execute(inner) => inner.into(),
            other => Self::Other(other.to_string()),
        }
    }
}

/// The event store seam.
#[async_trait]
pub trait EventStore: AdminStore + Send + Sync + 'static {
    /// `postgres` or `sqlite`.
    fn backend(&self) -> &'static str;

    /// Apply the embedded migrations.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Store a verified webhook with its first transition, in one transaction. Returns only
    /// after the commit. `traceparent` is the W3C trace context the worker continues.
    async fn insert(
        &self,
        webhook: &VerifiedWebhook,
        traceparent: Option<&str>,
    ) -> Result<Inserted, StoreError> {
        let mut done = self
            .insert_batch(&[NewEvent::new(webhook, traceparent)?])
            .await?;
        done.pop()
            .ok_or_else(|| StoreError::Other("insert_batch returned nothing".into()))
    }

    /// Store several events, each with its first transition, in **one** transaction: all of
    /// them commit or none does. Their keys are distinct. Returns, in input order, `New(id)` for
    /// each event inserted and `Duplicate(stored id)` for each whose key was already stored.
    /// Returns only after the commit.
    async fn insert_batch(&self, events: &[NewEvent]) -> Result<Vec<Inserted>, StoreError>;

    /// Claim due events for `owner`: pending or retry-scheduled events whose time has come, and
    /// processing events whose lease expired (their worker died). Each claim starts a new
    /// attempt and holds a lease of `lease`. An event that is not due, or is leased to a live
    /// worker, is not claimed: the store, not the queue, decides who processes what.
    async fn claim(
        &self,
        owner: &str,
        lease: Duration,
        which: Claim,
    ) -> Result<Vec<ClaimedEvent>, StoreError>;

    /// Extend a lease; false when `owner` no longer holds it.
    async fn renew_lease(
        &self,
        id: EventId,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, StoreError>;

    /// Keys of the steps of `id` that already succeeded in an earlier attempt.
    async fn succeeded_steps(&self, id: EventId) -> Result<Vec<String>, StoreError>;

    /// Record one step's result.
    async fn record_step(&self, record: &StepRecord) -> Result<(), StoreError>;

    /// End the attempt held by `owner`. False when the lease was lost (nothing is changed).
    async fn finish(
        &self,
        id: EventId,
        owner: &str,
        outcome: &Outcome,
    ) -> Result<bool, StoreError> {
        let done = self
            .finish_many(&[Finish {
                id,
                owner: owner.to_owned(),
                outcome: outcome.clone(),
                step: None,
            }])
            .await?;
        Ok(done.first().copied().unwrap_or(false))
    }

    /// End many attempts in one transaction: for each, what [`EventStore::finish`] does, after
    /// recording its last step when one is given. A step is recorded even when its attempt's
    /// lease was lost (as [`EventStore::record_step`] would have, so the new holder does not run
    /// it again); an outcome only while its owner holds the lease. One answer per item, in
    /// order.
    async fn finish_many(&self, items: &[Finish]) -> Result<Vec<bool>, StoreError>;

    /// Hand back every lease `owner` still holds (shutdown): those events are due again now,
    /// and the interrupted attempt does not count.
    async fn release_all(&self, owner: &str) -> Result<u64, StoreError>;

    /// One event with its transitions and step results.
    async fn event(&self, id: EventId) -> Result<Option<EventDetail>, StoreError>;

    /// Events that should have been claimed at least `grace` ago but were not (their queue
    /// message was lost: enqueue failed, the process died, Redis restarted). Their due time is
    /// moved to now, so each is handed out again at most once per grace period.
    async fn requeue_overdue(
        &self,
        grace: Duration,
        limit: u32,
    ) -> Result<Vec<EventId>, StoreError>;

    /// The backlog, from indexed queries cheap enough for every metrics scrape.
    async fn backlog(&self) -> Result<Backlog, StoreError>;
    /// What earlier attempts of `id` did: its step results, in order, and whether it has entered
    /// compensation. Read at the start of every attempt after the first.
    async fn progress(&self, id: EventId) -> Result<Progress, StoreError>;

    /// Pause a provider's processing in every process (claims skip its events) until resumed.
    /// False if it was already paused.
    async fn pause_provider(
        &self,
        provider: &str,
        reason: Option<&str>,
    ) -> Result<bool, StoreError>;

    /// Undo [`EventStore::pause_provider`]. False if it was not paused.
    async fn resume_provider(&self, provider: &str) -> Result<bool, StoreError>;

    /// Every operator pause in force.
    async fn provider_pauses(&self) -> Result<Vec<ProviderPause>, StoreError>;

    /// Number of events in each status (statuses with none are left out).
    async fn counts(&self) -> Result<BTreeMap<EventStatus, u64>, StoreError>;

    /// Cheap check that the store can take writes.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Open the store named by `url` (`postgres://...` or `sqlite://...`).
pub async fn connect(
    url: &str,
    pool_size: u32,
    timeout: Duration,
) -> Result<Arc<dyn EventStore>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(
            SqliteStore::connect(url, pool_size, timeout).await?,
        ))
    } else {
        Ok(Arc::new(PgStore::connect(url, pool_size, timeout).await?))
    }
}

/// Turn `(status, count)` rows into the map `counts` returns.
fn count_map(rows: Vec<(String, i64)>) -> Result<BTreeMap<EventStatus, u64>, StoreError> {
    rows.into_iter()
        .map(|(s, n)| {
            EventStatus::parse(&s)
                .map(|st| (st, n as u64))
                .ok_or_else(|| StoreError::Other(format!("unknown status {s:?}")))
        })
        .collect()
}

/// Turn `(step, outcome)` rows into typed results.
fn step_outcomes(rows: Vec<(String, String)>) -> Result<Vec<(String, StepOutcome)>, StoreError> {
    rows.into_iter()
        .map(|(step, o)| {
            StepOutcome::parse(&o)
                .map(|o| (step, o))
                .ok_or_else(|| StoreError::Other(format!("unknown step outcome {o:?}")))
        })
        .collect()
}

/// Detail of the transition written when a shutdown hands an attempt back.
const RELEASED: &str = "lease released at shutdown; attempt not counted";

/// `(detail, last_error)` written when an attempt ends.
fn outcome_texts(outcome: &Outcome) -> (String, Option<String>) {
    match outcome {
        Outcome::Completed { detail } => (detail.clone(), None),
        Outcome::RetryAt { at, error } => (
            format!("retry at {}: {error}", at.to_rfc3339()),
            Some(error.clone()),
        ),
        Outcome::DeadLetter { error } => (format!("dead-lettered: {error}"), Some(error.clone())),
        Outcome::Compensate { error, detail, .. } => (detail.clone(), Some(error.clone())),
        Outcome::Postpone { at, reason, .. } => (
            format!(
                "{reason}; waiting until {}; attempt not counted",
                at.to_rfc3339()
            ),
            None,
        ),
    }
}

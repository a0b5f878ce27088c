//! The durable event store: the single source of truth for every event, its status history
//! and its step results. Two engines, PostgreSQL and embedded SQLite, share one SQL core
//! (`sql`) and keep only what really differs.
//!
//! Its traits are split by who uses them: [`Intake`] (the accept path's inserts), [`Leases`]
//! (claims, leases and outcomes: the queues), [`Work`] (those plus step results: the workers),
//! [`Reads`] and [`Operator`] (the operator surface), and [`EventStore`], all of them, for the
//! wiring and tools.
//!
//! Owns the schema (migrations embedded in the binary), idempotent inserts and leases.
//! It must never accept anything but a [`VerifiedWebhook`], never alter a stored body, and
//! never change an event's status without writing the transition that explains it.

pub mod admin;
pub mod config;
mod error;
mod postgres;
mod settings;
mod sql;
mod sqlite;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sha2::Digest;

pub use admin::{Operator, Reads};
pub use config::{ConfigVersion, ConfigVersions};
pub use error::{Cause, StoreError};
pub use postgres::PgStore;
pub use settings::{StoreSettings, is_postgres_url, is_store_url, redact_url};
pub use sqlite::SqliteStore;

use crate::event::{ClaimedEvent, EventId, EventStatus, OrderKey, Outcome, Progress, StepRecord};
use crate::verify::VerifiedWebhook;

/// Result of storing a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Committed as a new event.
    New(EventId),
    /// Already stored under the same (provider, idempotency key).
    Duplicate(EventId),
}

/// What is waiting: unfinished and dead-lettered events by status, when the oldest event
/// still waiting for its first attempt or a retry was received, and the order keys held up.
#[derive(Debug, Clone, Default)]
pub struct Backlog {
    pub by_status: BTreeMap<EventStatus, u64>,
    pub oldest_pending: Option<chrono::DateTime<chrono::Utc>>,
    /// Order keys with events waiting behind an unfinished one.
    pub keys_waiting: u64,
    /// When the oldest event waiting behind another of its key was received.
    pub oldest_waiting: Option<chrono::DateTime<chrono::Utc>>,
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
    /// For schemes that sign only the body: its SHA-256 (hex). Unique per provider among the
    /// events received within `replay_window`, so a captured request replayed with a new
    /// delivery id is a duplicate.
    body_digest: Option<String>,
    replay_window: Duration,
    /// Its keys on the ordered routes it matches: the lines it joins at its commit.
    order: Vec<OrderKey>,
}

/// How long a byte-identical body of a scheme that signs only the body counts as a replay,
/// unless `HOOKD_REPLAY_WINDOW_HOURS` says otherwise: a day covers the providers' own retry
/// schedules (Shopify retries for 48 hours with new attempts hours apart, GitHub does not retry
/// by itself) and the time a captured request is most useful to an attacker.
pub const DEFAULT_REPLAY_WINDOW: Duration = Duration::from_secs(24 * 3600);

impl NewEvent {
    pub fn new(w: &VerifiedWebhook, traceparent: Option<&str>) -> Result<Self, StoreError> {
        Ok(Self {
            id: EventId::new(),
            provider: w.provider().to_owned(),
            idempotency_key: w.idempotency_key().to_owned(),
            event_type: w.event_type().to_owned(),
            content_type: w.content_type().map(str::to_owned),
            headers_json: serde_json::to_string(w.headers())?,
            body: w.body().clone(),
            traceparent: traceparent.map(str::to_owned),
            body_digest: w
                .signs_only_body()
                .then(|| hex::encode(sha2::Sha256::digest(w.body()))),
            replay_window: DEFAULT_REPLAY_WINDOW,
            order: Vec::new(),
        })
    }

    /// The same event in the lines of these order keys (one per ordered route it matches).
    pub fn with_order(mut self, order: Vec<OrderKey>) -> Self {
        self.order = order;
        self
    }

    /// The same event with another replay window (see [`DEFAULT_REPLAY_WINDOW`]).
    pub fn with_replay_window(mut self, window: Duration) -> Self {
        self.replay_window = window;
        self
    }

    /// `(provider, body digest)`, for schemes that sign only the body.
    pub fn body_key(&self) -> Option<(&str, &str)> {
        self.body_digest
            .as_deref()
            .map(|d| (self.provider.as_str(), d))
    }

    pub fn id(&self) -> EventId {
        self.id
    }

    /// An event with an empty JSON body, for tests of what handles batches of them.
    #[cfg(test)]
    pub(crate) fn for_test(provider: &str, idempotency_key: &str) -> Self {
        Self {
            id: EventId::new(),
            provider: provider.to_owned(),
            idempotency_key: idempotency_key.to_owned(),
            event_type: "t".to_owned(),
            content_type: None,
            headers_json: "{}".to_owned(),
            body: Bytes::from_static(b"{}"),
            traceparent: None,
            body_digest: None,
            replay_window: DEFAULT_REPLAY_WINDOW,
            order: Vec::new(),
        }
    }

    /// The uniqueness key: `(provider, idempotency key)`.
    pub fn key(&self) -> (&str, &str) {
        (&self.provider, &self.idempotency_key)
    }

    /// This event as its first attempt, claimed by the insert that stored it at `received_at`.
    fn claimed(&self, received_at: chrono::DateTime<chrono::Utc>) -> ClaimedEvent {
        ClaimedEvent {
            id: self.id,
            provider: self.provider.clone(),
            event_type: self.event_type.clone(),
            idempotency_key: self.idempotency_key.clone(),
            content_type: self.content_type.clone(),
            body: self.body.to_vec(),
            attempt: 1,
            received_at,
            traceparent: self.traceparent.clone(),
            delivery: None,
            generation: 0,
            ordered: !self.order.is_empty(),
        }
    }
}

/// A claim made by an insert itself, for the workers of the process that accepted the events:
/// up to `limit` of the new events start attempt 1 leased to `owner`, in the insert's own
/// transaction, so they need no queue message and no separate claim.
#[derive(Debug, Clone)]
pub struct ClaimOnInsert {
    pub owner: String,
    pub lease: Duration,
    pub limit: usize,
}

impl ClaimOnInsert {
    /// Claim nothing: a plain insert.
    pub fn none() -> Self {
        Self {
            owner: String::new(),
            lease: Duration::ZERO,
            limit: 0,
        }
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

/// The end of one attempt, for [`Leases::finish_many`].
#[derive(Debug, Clone)]
pub struct Finish {
    pub id: EventId,
    /// The lease owner that ran the attempt.
    pub owner: String,
    pub outcome: Outcome,
    /// The attempt's last step, when its result is still to be stored.
    pub step: Option<StepRecord>,
    /// The event is in an order line ([`ClaimedEvent::ordered`]): its end may release the next
    /// event of its key, in the same transaction.
    pub ordered: bool,
}

/// What [`Leases::finish_many`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Finished {
    /// One per item, in order: its outcome was written (false: the lease had been lost).
    pub written: Vec<bool>,
    /// The events these ends let start: now first in each of their order lines, held back by
    /// nothing, pending. The queue is told about them (an unordered batch releases nothing).
    pub released: Vec<Released>,
}

/// An event an ordered event's end let start, with its first order line (by `route`, then
/// `key`), for [`crate::queue::Queue::enqueue_in_line`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    pub id: EventId,
    pub route: String,
    pub key: String,
}

/// The accept path's part of the store: committing verified webhooks.
#[async_trait]
pub trait Intake: Send + Sync {
    /// Store several events, each with its first transition, in **one** transaction: all of
    /// them commit or none does. Their keys are distinct. Returns, in input order, `New(id)` for
    /// each event inserted and `Duplicate(stored id)` for each whose key was already stored.
    /// Returns only after the commit.
    async fn insert_batch(&self, events: &[NewEvent]) -> Result<Vec<Inserted>, StoreError> {
        Ok(self
            .insert_and_claim(events, &ClaimOnInsert::none())
            .await?
            .0)
    }

    /// What [`Intake::insert_batch`] does, and in the same transaction start attempt 1 of up to
    /// `claim.limit` of the new events (none of a paused provider) for `claim.owner`, leased for
    /// `claim.lease`, with both transitions (`received`, then the attempt). Returns the results
    /// and the events claimed, which nobody else will process until their lease expires.
    async fn insert_and_claim(
        &self,
        events: &[NewEvent],
        claim: &ClaimOnInsert,
    ) -> Result<(Vec<Inserted>, Vec<ClaimedEvent>), StoreError>;

    /// Store one verified webhook with its first transition, in one transaction. Returns only
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
            .ok_or_else(|| StoreError::other("insert_batch returned nothing"))
    }
}

/// Claims and leases: what decides who processes which event. The queues need only this; the
/// workers need [`Work`], which adds their step results.
#[async_trait]
pub trait Leases: Send + Sync {
    /// Cheap check that the store answers and can take writes (health checks, and a queue
    /// consumer deciding whether it can take work at all).
    async fn ping(&self) -> Result<(), StoreError>;

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

    /// Extend the leases `owner` holds on `ids` to `lease` from now, in one statement (a
    /// process renews all its leases at once). Returns those still held; for the others the
    /// lease was lost (expired and claimed by another worker, or the attempt has ended).
    async fn renew_leases(
        &self,
        ids: &[EventId],
        owner: &str,
        lease: Duration,
    ) -> Result<Vec<EventId>, StoreError>;

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
                // Not known here: the path that locks the lines first is right for any event.
                ordered: true,
            }])
            .await?;
        Ok(done.written.first().copied().unwrap_or(false))
    }

    /// End many attempts in one transaction: for each, what [`Leases::finish`] does, after
    /// recording its last step when one is given. A step is recorded even when its attempt's
    /// lease was lost (as [`Work::record_step`] would have, so the new holder does not run it
    /// again); an outcome only while its owner holds the lease. One answer per item, in order,
    /// and the events the batch released (the next of their keys), from the same transaction.
    async fn finish_many(&self, items: &[Finish]) -> Result<Finished, StoreError>;

    /// Hand back every lease `owner` still holds (shutdown): those events are due again now,
    /// and the interrupted attempt does not count.
    async fn release_all(&self, owner: &str) -> Result<u64, StoreError>;

    /// Events that should have been claimed at least `grace` ago but were not (their queue
    /// message was lost: enqueue failed, the process died, Redis restarted). Their due time is
    /// moved to now, so each is handed out again at most once per grace period.
    async fn requeue_overdue(
        &self,
        grace: Duration,
        limit: u32,
    ) -> Result<Vec<EventId>, StoreError>;
}

/// The workers' part of the store: claims, leases and outcomes, and the step results of each
/// attempt.
#[async_trait]
pub trait Work: Leases {
    /// Keys of the steps of `id` that already succeeded in an earlier attempt.
    async fn succeeded_steps(&self, id: EventId) -> Result<Vec<String>, StoreError>;

    /// Record one step's result.
    async fn record_step(&self, record: &StepRecord) -> Result<(), StoreError>;

    /// What earlier attempts of `id` did: its step results, in order, and whether it has entered
    /// compensation. Read at the start of every attempt after the first.
    async fn progress(&self, id: EventId) -> Result<Progress, StoreError>;

    /// When an operator last replayed `id` (`None`: never): where its retry window starts
    /// again.
    async fn replayed_at(
        &self,
        id: EventId,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError>;
    /// The headers the webhook request of `id` came with, as stored for audit (lower-case
    /// names, credentials redacted); empty for an unknown event. Transforms read them.
    async fn request_headers(
        &self,
        id: EventId,
    ) -> Result<std::collections::BTreeMap<String, String>, StoreError>;
}

/// The whole store: every part, plus what the wiring and health checks need.
#[async_trait]
pub trait EventStore: Intake + Work + Reads + Operator + ConfigVersions + 'static {
    /// `postgres` or `sqlite`.
    fn backend(&self) -> &'static str;

    /// Apply the embedded migrations.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// The versions of the embedded migrations the database has not applied (all of them on an
    /// empty one), in order. Changes nothing.
    async fn missing_migrations(&self) -> Result<Vec<i64>, StoreError>;
}

/// The versions of `migrator`'s migrations that are not in `applied`, in order.
fn missing_versions(migrator: &sqlx::migrate::Migrator, applied: &[i64]) -> Vec<i64> {
    migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration() && !applied.contains(&m.version))
        .map(|m| m.version)
        .collect()
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

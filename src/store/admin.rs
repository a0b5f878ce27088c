//! What the operator surface needs from the store: searching events, replays, payload
//! retention, the audit log, background jobs and console sessions. Its types, and two traits
//! split by direction: [`Reads`] (which a read replica can serve) and [`Operator`] (writes).
//!
//! Separate from the worker's and the accept path's traits so the hot path's contract stays
//! small. Both are implemented once, for either engine, in `store::sql`. This module must never
//! hold SQL.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Backlog, StoreError};
use crate::event::{EventDetail, EventId, EventStatus, ProviderPause};

/// Which events to list (every field optional; all that are set must hold).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventFilter {
    /// Provider name, exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Any of these statuses (empty: any status).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<EventStatus>,
    /// Glob on the event type: `*` matches any run of characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// Received at or after this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_after: Option<DateTime<Utc>>,
    /// Received before this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_before: Option<DateTime<Utc>>,
    /// The provider's idempotency key, exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Text that must occur in the raw payload (case-sensitive, byte for byte).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// A key whose line is held up: its first event has not finished (it is retrying, or is a
/// dead letter on a route that blocks), and events wait behind it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BlockedLine {
    /// The ordered route.
    pub route: String,
    /// The order key.
    pub key: String,
    /// The event first in line, which the others wait for.
    pub head: EventId,
    /// Why it holds the line: `retry_scheduled` (or `pending`/`processing` between attempts,
    /// `compensating`) while it is retried, `dead_letter` on a route with
    /// `on_dead_letter = "block"` until an operator redrives or skips it.
    pub status: EventStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// When the first event was received.
    pub received_at: DateTime<Utc>,
    /// Events waiting behind it.
    pub waiting_behind: u64,
}

/// One event in a list: metadata only.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventSummary {
    pub id: EventId,
    pub provider: String,
    pub event_type: String,
    pub idempotency_key: String,
    pub status: EventStatus,
    pub attempts: u32,
    pub received_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub body_bytes: usize,
    pub replays: u32,
    pub body_purged_at: Option<DateTime<Utc>>,
}

/// The stored request of one event: the headers kept for audit and the raw body.
#[derive(Debug, Clone)]
pub struct EventPayload {
    pub headers: serde_json::Value,
    pub body: Vec<u8>,
    pub content_type: Option<String>,
}

/// One event as the event stream sends it: what was received, with its stored request.
#[derive(Debug, Clone)]
pub struct StreamedEvent {
    pub id: EventId,
    pub provider: String,
    pub event_type: String,
    pub idempotency_key: String,
    pub received_at: DateTime<Utc>,
    pub payload: EventPayload,
}

/// Why a replay is asked for: an operator's replay, or the redrive of a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayKind {
    /// From `completed` or `dead_letter`.
    Replay,
    /// From `dead_letter` only.
    Redrive,
}

impl ReplayKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Replay => "replay",
            Self::Redrive => "redrive",
        }
    }

    /// The statuses an event may be replayed from.
    pub fn from_statuses(self) -> &'static [&'static str] {
        match self {
            Self::Replay => &["completed", "dead_letter"],
            Self::Redrive => &["dead_letter"],
        }
    }
}

/// A stored audit entry: who did what, when, and how it ended.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// The name of the admin token (or console session's token) that acted.
    pub actor: String,
    /// What was done, e.g. `event.replay`, `provider.pause`.
    pub action: String,
    /// What it was done to: an event id, a provider name, a job id.
    pub target: Option<String>,
    /// The HTTP status the action was answered with (403 when the scope did not allow it).
    pub status: u16,
    pub detail: Option<String>,
}

/// An audit entry to append.
#[derive(Debug, Clone)]
pub struct NewAudit {
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub status: u16,
    pub detail: Option<String>,
}

/// Which audit entries to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    /// Entries older than this id (the cursor).
    pub before: Option<i64>,
    pub limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Running,
    Completed,
    Cancelled,
    Failed,
    /// Stored as running, but its process has not reported for a while: it died.
    Interrupted,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => Self::Running,
            "completed" => Self::Completed,
            "cancelled" => Self::Cancelled,
            "failed" => Self::Failed,
            "interrupted" => Self::Interrupted,
            _ => return None,
        })
    }
}

/// A background job (bulk replay or redrive) and its progress.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Job {
    pub id: Uuid,
    /// `replay` or `redrive`.
    pub kind: String,
    /// The filter it works through.
    pub filter: EventFilter,
    pub status: JobStatus,
    /// Events that matched the filter when the job started.
    pub total: u64,
    /// Events looked at so far.
    pub processed: u64,
    /// Events replayed so far.
    pub replayed: u64,
    /// Events passed over (still in progress, or their payload was purged).
    pub skipped: u64,
    pub cancel_requested: bool,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

/// Progress a running job reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct JobProgress {
    pub processed: u64,
    pub replayed: u64,
    pub skipped: u64,
}

/// A console session (the id itself is never stored, only its digest).
#[derive(Debug, Clone)]
pub struct Session {
    pub token_name: String,
    pub scope: String,
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

/// Events that changed state in one time bucket, for the activity chart.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct ActivityBucket {
    pub start: DateTime<Utc>,
    pub received: u64,
    pub completed: u64,
    /// Attempts that failed and were scheduled for a retry.
    pub retried: u64,
    pub dead_lettered: u64,
}

/// Events of one provider in one status.
#[derive(Debug, Clone)]
pub struct ProviderCount {
    pub provider: String,
    pub status: EventStatus,
    pub count: u64,
}

/// What the operator surface, health checks and metrics read: events, their counts and
/// backlog, audit entries, jobs and sessions. Reads only: an implementation may answer from a
/// read replica.
#[async_trait]
pub trait Reads: Send + Sync {
    /// One event with its transitions and step results.
    async fn event(&self, id: EventId) -> Result<Option<EventDetail>, StoreError>;

    /// The backlog, from indexed queries cheap enough for every metrics scrape.
    async fn backlog(&self) -> Result<Backlog, StoreError>;

    /// Number of events in each status (statuses with none are left out).
    async fn counts(&self) -> Result<BTreeMap<EventStatus, u64>, StoreError>;

    /// Every operator pause in force.
    async fn provider_pauses(&self) -> Result<Vec<ProviderPause>, StoreError>;

    /// Events matching `filter`, newest first, older than the event `before` (the cursor).
    async fn list_events(
        &self,
        filter: &EventFilter,
        before: Option<EventId>,
        limit: u32,
    ) -> Result<Vec<EventSummary>, StoreError>;

    /// How many events match `filter`.
    async fn count_events(&self, filter: &EventFilter) -> Result<u64, StoreError>;

    /// The stored headers and raw body of one event.
    async fn event_payload(&self, id: EventId) -> Result<Option<EventPayload>, StoreError>;

    /// Events with an id above `after` (and at most `upto`, when given) that match `filter`,
    /// oldest id first, with their stored requests: the event stream's keyset read, through
    /// the primary key.
    async fn stream_events(
        &self,
        filter: &EventFilter,
        after: EventId,
        upto: Option<EventId>,
        limit: u32,
    ) -> Result<Vec<StreamedEvent>, StoreError>;

    /// Audit entries, newest first.
    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError>;

    async fn job(&self, id: Uuid) -> Result<Option<Job>, StoreError>;

    /// The most recent jobs, newest first.
    async fn jobs(&self, limit: u32) -> Result<Vec<Job>, StoreError>;

    /// Events received, completed, retried and dead-lettered per bucket since `since`.
    async fn activity(
        &self,
        since: DateTime<Utc>,
        bucket_secs: u32,
    ) -> Result<Vec<ActivityBucket>, StoreError>;

    /// Unfinished and dead-lettered events per provider and status.
    async fn provider_counts(&self) -> Result<Vec<ProviderCount>, StoreError>;

    /// A session that has not expired.
    async fn session(&self, digest: &[u8]) -> Result<Option<Session>, StoreError>;

    /// The order lines held up (see [`BlockedLine`]), the oldest first event first.
    async fn blocked_lines(&self, limit: u32) -> Result<Vec<BlockedLine>, StoreError>;
}

/// What operators change: pauses, replays, payload retention, the audit log, background jobs
/// and console sessions.
#[async_trait]
pub trait Operator: Send + Sync {
    /// Pause a provider's processing in every process (claims skip its events) until resumed.
    /// False if it was already paused.
    async fn pause_provider(
        &self,
        provider: &str,
        reason: Option<&str>,
    ) -> Result<bool, StoreError>;

    /// Undo [`Operator::pause_provider`]. False if it was not paused.
    async fn resume_provider(&self, provider: &str) -> Result<bool, StoreError>;

    /// Start a new attempt cycle for each of `ids` that is in a status `kind` allows and still
    /// has its payload: status `pending`, attempts 0, the replay generation one up, and a
    /// transition that says who asked. Returns the ids replayed (the others were left alone).
    async fn replay(
        &self,
        ids: &[EventId],
        kind: ReplayKind,
        actor: &str,
    ) -> Result<Vec<EventId>, StoreError>;

    async fn append_audit(&self, entry: &NewAudit) -> Result<(), StoreError>;

    /// Store a new running job.
    async fn create_job(
        &self,
        id: Uuid,
        kind: &str,
        filter: &EventFilter,
        total: u64,
        created_by: &str,
    ) -> Result<(), StoreError>;

    /// Record progress; returns whether a cancel was requested.
    async fn job_progress(&self, id: Uuid, progress: JobProgress) -> Result<bool, StoreError>;

    /// Record the end of a job.
    async fn finish_job(
        &self,
        id: Uuid,
        status: JobStatus,
        error: Option<&str>,
    ) -> Result<(), StoreError>;

    /// Ask a running job to stop. False when there is no such running job.
    async fn cancel_job(&self, id: Uuid) -> Result<bool, StoreError>;

    /// Purge the payloads of up to `limit` finished events received in `[after, before)` whose
    /// payload is still there, oldest first. Returns how many, and the latest `received_at`
    /// purged (where the next batch may start).
    async fn purge_payloads(
        &self,
        after: DateTime<Utc>,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<(u64, Option<DateTime<Utc>>), StoreError>;

    async fn create_session(&self, digest: &[u8], session: &Session) -> Result<(), StoreError>;

    async fn delete_session(&self, digest: &[u8]) -> Result<(), StoreError>;

    /// Take a dead letter that blocks its order lines out of them, writing the transition that
    /// says who did. Returns the events that may start now, or `None` (nothing changed) when
    /// the event is not a dead letter in a line.
    async fn skip_in_line(
        &self,
        id: EventId,
        actor: &str,
    ) -> Result<Option<Vec<EventId>>, StoreError>;
}

/// Seconds after which a running job that has not reported is shown as interrupted.
pub const JOB_STALE_SECS: i64 = 60;

/// A job's status as shown: running jobs whose process stopped reporting are interrupted.
pub fn shown_status(stored: &str, updated_at: DateTime<Utc>) -> Option<JobStatus> {
    let status = JobStatus::parse(stored)?;
    if status == JobStatus::Running && (Utc::now() - updated_at).num_seconds() > JOB_STALE_SECS {
        return Some(JobStatus::Interrupted);
    }
    Some(status)
}

/// Fill in empty buckets so the chart has one point per bucket, oldest first.
pub fn fill_buckets(
    since: DateTime<Utc>,
    bucket_secs: u32,
    rows: Vec<(i64, String, i64)>,
) -> Vec<ActivityBucket> {
    let size = i64::from(bucket_secs.max(1));
    let first = since.timestamp().div_euclid(size);
    let last = Utc::now().timestamp().div_euclid(size);
    let mut out: Vec<ActivityBucket> = (first..=last)
        .map(|b| ActivityBucket {
            start: DateTime::from_timestamp(b * size, 0).unwrap_or_default(),
            received: 0,
            completed: 0,
            retried: 0,
            dead_lettered: 0,
        })
        .collect();
    for (bucket, what, n) in rows {
        let Some(slot) = usize::try_from(bucket - first)
            .ok()
            .and_then(|i| out.get_mut(i))
        else {
            continue;
        };
        let n = n.max(0) as u64;
        match what.as_str() {
            "received" => slot.received += n,
            "completed" => slot.completed += n,
            "retry_scheduled" => slot.retried += n,
            "dead_letter" => slot.dead_lettered += n,
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_filled() {
        let since = Utc::now() - chrono::Duration::seconds(180);
        let first = since.timestamp().div_euclid(60);
        let rows = vec![
            (first, "received".to_owned(), 3),
            (first + 1, "dead_letter".to_owned(), 1),
        ];
        let b = fill_buckets(since, 60, rows);
        assert!(b.len() >= 4, "{b:?}");
        assert_eq!(b[0].received, 3);
        assert_eq!(b[1].dead_lettered, 1);
        assert_eq!(b[2].received, 0);
    }
}

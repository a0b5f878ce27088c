//! Domain types shared by every layer: typed ids, statuses and the records the store returns.
//!
//! Plain data only: nothing here does I/O.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// The store's id for an event: a UUIDv7, so ids sort by arrival time.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = String, format = Uuid)]
pub struct EventId(pub Uuid);

impl EventId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for EventId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// Lifecycle of an event. Every change is also written as a transition row.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    Pending,
    Processing,
    RetryScheduled,
    Completed,
    DeadLetter,
    /// The last attempt failed and the compensations of the steps that had succeeded are being
    /// run (in reverse order); the event ends as `dead_letter` once they are done.
    Compensating,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processing => "processing",
            Self::RetryScheduled => "retry_scheduled",
            Self::Completed => "completed",
            Self::DeadLetter => "dead_letter",
            Self::Compensating => "compensating",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "processing" => Self::Processing,
            "retry_scheduled" => Self::RetryScheduled,
            "completed" => Self::Completed,
            "dead_letter" => Self::DeadLetter,
            "compensating" => Self::Compensating,
            _ => return None,
        })
    }
}

impl fmt::Display for EventStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event a worker holds the lease on: everything needed to run its actions.
#[derive(Debug, Clone)]
pub struct ClaimedEvent {
    pub id: EventId,
    pub provider: String,
    pub event_type: String,
    pub idempotency_key: String,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    /// The attempt this claim starts (1 for the first).
    pub attempt: u32,
    pub received_at: DateTime<Utc>,
    /// W3C trace context stored at accept time: the worker's spans continue that trace.
    pub traceparent: Option<String>,
    /// The queue's handle for the message that delivered this event (a Redis stream entry id),
    /// so the queue can acknowledge it once the outcome is stored.
    pub delivery: Option<String>,
    /// How many times an operator has replayed the event (0: never). Step results belong to
    /// one generation: a replay runs every step again.
    pub generation: u32,
    /// Whether the event is in the line of an order key (a route's `order_by`): its end may let
    /// the next event of that key start.
    pub ordered: bool,
}

/// An event's place on one ordered route: the route's `order_by` key, read at intake. For one
/// route and one key, an event's steps start only after every event committed before it with
/// that key has finished.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OrderKey {
    /// The route's name (`route<N>` when it has none).
    pub route: String,
    /// The key's value.
    pub key: String,
    /// `on_dead_letter = "block"`: a dead letter keeps the key blocked until an operator
    /// redrives or skips it.
    pub block: bool,
}

/// How a processing attempt ended, as the worker reports it to the store.
#[derive(Debug, Clone)]
pub enum Outcome {
    Completed {
        detail: String,
    },
    RetryAt {
        at: DateTime<Utc>,
        error: String,
    },
    DeadLetter {
        error: String,
    },
    /// Compensations are (still) to run, from `at`. `error` is what sent the event towards the
    /// dead letter (kept as its last error); `detail` says what this attempt did.
    Compensate {
        at: DateTime<Utc>,
        error: String,
        detail: String,
    },
    /// The attempt could not start its work (destination breaker open or busy, provider paused
    /// automatically): the event waits in `to` until `at`, and the attempt does not count.
    Postpone {
        at: DateTime<Utc>,
        to: EventStatus,
        reason: String,
    },
}

impl Outcome {
    pub fn status(&self) -> EventStatus {
        match self {
            Self::Completed { .. } => EventStatus::Completed,
            Self::RetryAt { .. } => EventStatus::RetryScheduled,
            Self::DeadLetter { .. } => EventStatus::DeadLetter,
            Self::Compensate { .. } => EventStatus::Compensating,
            Self::Postpone { to, .. } => *to,
        }
    }

    /// When the event is due again, if it is not finished.
    pub fn next_attempt_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::RetryAt { at, .. } | Self::Compensate { at, .. } | Self::Postpone { at, .. } => {
                Some(*at)
            }
            Self::Completed { .. } | Self::DeadLetter { .. } => None,
        }
    }
}

/// Result of one step in one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    Succeeded,
    Failed,
    /// Its transform returned `null`: nothing was delivered, on purpose. Done, like a success,
    /// but never compensated.
    Skipped,
}

impl StepOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "succeeded" => Some(Self::Succeeded),
            "failed" => Some(Self::Failed),
            "skipped" => Some(Self::Skipped),
            _ => None,
        }
    }
}

/// A step result to record.
#[derive(Debug, Clone)]
pub struct StepRecord {
    pub event_id: EventId,
    /// Stable name of the step within its route, e.g. `stripe-to-ledger/0:forward`.
    pub step: String,
    pub attempt: u32,
    pub outcome: StepOutcome,
    pub error: Option<String>,
    pub duration_ms: u64,
    /// The replay generation of the attempt ([`ClaimedEvent::generation`]).
    pub generation: u32,
}

/// What earlier attempts of an event did, for the worker to resume from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// The event has entered compensation (a transition to `compensating` exists).
    pub compensating: bool,
    /// The event's last error (what sent it towards the dead letter, once compensating).
    pub last_error: Option<String>,
    /// Every recorded step result, oldest first: (step key, outcome).
    pub results: Vec<(String, StepOutcome)>,
}

impl Progress {
    pub fn succeeded(&self, key: &str) -> bool {
        self.results
            .iter()
            .any(|(k, o)| k == key && *o == StepOutcome::Succeeded)
    }

    /// Skipped by its transform in an earlier attempt.
    pub fn skipped(&self, key: &str) -> bool {
        self.results
            .iter()
            .any(|(k, o)| k == key && *o == StepOutcome::Skipped)
    }

    /// Succeeded or skipped: not to run again.
    pub fn done(&self, key: &str) -> bool {
        self.succeeded(key) || self.skipped(key)
    }

    pub fn failures(&self, key: &str) -> u32 {
        self.results
            .iter()
            .filter(|(k, o)| k == key && *o == StepOutcome::Failed)
            .count() as u32
    }
}

/// An operator's pause of one provider's processing (stored, so it holds for every process and
/// across restarts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ProviderPause {
    pub provider: String,
    pub paused_at: DateTime<Utc>,
    pub reason: Option<String>,
}

/// Full history of one event, for the admin API.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventDetail {
    pub id: EventId,
    pub provider: String,
    pub event_type: String,
    pub idempotency_key: String,
    pub status: EventStatus,
    pub attempts: u32,
    pub received_at: DateTime<Utc>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub content_type: Option<String>,
    pub body_bytes: usize,
    /// Operator replays and redrives so far; step results carry the generation they ran in.
    pub replays: u32,
    /// When retention purged the payload (the body is empty from then on).
    pub body_purged_at: Option<DateTime<Utc>>,
    pub transitions: Vec<Transition>,
    pub steps: Vec<StepResultRow>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Transition {
    pub from: Option<EventStatus>,
    pub to: EventStatus,
    pub at: DateTime<Utc>,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StepResultRow {
    pub step: String,
    pub attempt: u32,
    pub outcome: String,
    pub error: Option<String>,
    pub duration_ms: u64,
    pub at: DateTime<Utc>,
    /// Replay generation (0: the original processing).
    pub generation: u32,
}

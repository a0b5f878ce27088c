//! The queue seam: how workers learn which events to process.
//!
//! The store stays the source of truth and the judge of who processes what (claims and leases
//! live there); a queue only delivers work. It must never decide an event's outcome or hold the
//! only copy of anything: losing the whole queue loses no event.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::event::{ClaimedEvent, EventId, Outcome};
use crate::store::{Claim, Leases, StoreError};

mod redis;
mod settings;

pub use self::redis::{Keys as RedisKeys, PartitionKeys, RedisQueue, partition_of, slot};
pub use self::settings::{RedisConfig, RedisSettingError, RedisTarget};

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("redis: {0}")]
    Redis(String),
}

/// Delivers claimed events to workers.
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// `store` or `redis`.
    fn kind(&self) -> &'static str;

    /// Announce an event that has just been committed. Failure here never loses the event.
    async fn enqueue(&self, id: EventId) -> Result<(), QueueError>;

    /// Announce an ordered event with one of its order lines (`route`, `key`): the first by
    /// `(route, key)`, so every announcer of an event names the same line. A partitioned queue
    /// sends every event of a line to one partition, so one process reads a key's events and
    /// fewer claims find the head taken. The order itself is the store's: any partition would
    /// be correct. Failure here never loses the event.
    async fn enqueue_in_line(
        &self,
        id: EventId,
        _route: &str,
        _key: &str,
    ) -> Result<(), QueueError> {
        self.enqueue(id).await
    }

    /// Wait up to `wait` for due events and claim at most `max` of them for `owner`.
    async fn next(
        &self,
        owner: &str,
        lease: Duration,
        max: u32,
        wait: Duration,
    ) -> Result<Vec<ClaimedEvent>, QueueError>;

    /// Called after the store has recorded how an attempt ended. Only then may a queue drop
    /// its copy of the message.
    async fn settle(&self, _event: &ClaimedEvent, _outcome: &Outcome) -> Result<(), QueueError> {
        Ok(())
    }

    /// Whether the queue's backing service answers.
    async fn ping(&self) -> Result<(), QueueError> {
        Ok(())
    }
}

/// The queue for one process without a broker: workers poll the store for due events
/// (`next_attempt_at <= now`), and a local enqueue wakes them at once so a new event does not
/// wait for the next poll. An idle wait also ends at the earliest due time an outcome settled
/// here named (shortly after it, so the worker's own retry timer claims first), not only at
/// the next poll.
pub struct StoreQueue {
    store: Arc<dyn Leases>,
    wake: Notify,
    earliest: Mutex<Option<DateTime<Utc>>>,
}

/// How long after a known due time an idle wait ends: the retry timer claims at the due time
/// itself; this claim takes what it left (no worker was free then).
const DUE_SLACK: Duration = Duration::from_millis(10);

impl StoreQueue {
    pub fn new(store: Arc<dyn Leases>) -> Self {
        Self {
            store,
            wake: Notify::new(),
            earliest: Mutex::new(None),
        }
    }

    /// `wait`, cut to end just after the earliest due time known, if that comes first.
    fn bounded(&self, wait: Duration) -> Duration {
        let mut earliest = self.earliest.lock().unwrap_or_else(|p| p.into_inner());
        let Some(at) = *earliest else {
            return wait;
        };
        match (at - Utc::now()).to_std() {
            Ok(left) => wait.min(left + DUE_SLACK),
            // Passed: the claim that just ran (or the timer) has dealt with it.
            Err(_) => {
                *earliest = None;
                wait
            }
        }
    }
}

#[async_trait]
impl Queue for StoreQueue {
    fn kind(&self) -> &'static str {
        "store"
    }

    async fn enqueue(&self, _id: EventId) -> Result<(), QueueError> {
        self.wake.notify_one();
        Ok(())
    }

    async fn next(
        &self,
        owner: &str,
        lease: Duration,
        max: u32,
        wait: Duration,
    ) -> Result<Vec<ClaimedEvent>, QueueError> {
        let claimed = self
            .store
            .claim(owner, lease, Claim::Due { limit: max })
            .await?;
        if !claimed.is_empty() {
            return Ok(claimed);
        }
        let _ = tokio::time::timeout(self.bounded(wait), self.wake.notified()).await;
        Ok(self
            .store
            .claim(owner, lease, Claim::Due { limit: max })
            .await?)
    }

    async fn settle(&self, _event: &ClaimedEvent, outcome: &Outcome) -> Result<(), QueueError> {
        if let Some(at) = outcome.next_attempt_at() {
            let mut earliest = self.earliest.lock().unwrap_or_else(|p| p.into_inner());
            if earliest.is_none_or(|e| at < e) {
                *earliest = Some(at);
            }
        }
        Ok(())
    }
}

//! The read-ahead between the partitions' readers and the worker's `next()`: messages read from
//! Redis and not yet handed to a worker, bounded by credits.
//!
//! Owns the bound: a reader takes credits before it reads and a message keeps its credit until
//! `next()` takes it, so no more than the read-ahead is ever held in memory (or pending in Redis
//! without a worker). It must never talk to Redis or the store.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, SemaphorePermit};

use crate::event::EventId;

/// One message read from a partition's stream.
#[derive(Debug, Clone)]
pub(super) struct Delivery {
    pub partition: u32,
    /// The stream entry id.
    pub message: String,
    /// The event it announces; `None` for a message hookd did not write.
    pub event: Option<EventId>,
}

/// Messages read ahead, waiting for a worker.
pub(super) struct Inbox {
    items: Mutex<VecDeque<Delivery>>,
    ready: Notify,
    credits: Semaphore,
}

impl Inbox {
    /// An inbox without credits: nothing is read until [`Inbox::open`].
    pub(super) fn new() -> Self {
        Self {
            items: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            credits: Semaphore::new(0),
        }
    }

    /// Allow `read_ahead` messages to be read ahead of the workers.
    pub(super) fn open(&self, read_ahead: usize) {
        self.credits.add_permits(read_ahead);
    }

    /// Wait for `n` credits (the caller reads at most `n` messages with them).
    pub(super) async fn reserve(&self, n: usize) -> Option<SemaphorePermit<'_>> {
        self.credits.acquire_many(n as u32).await.ok()
    }

    /// Add what a reader read with `credits`; the credits it did not use are returned.
    pub(super) fn push(&self, credits: SemaphorePermit<'_>, batch: Vec<Delivery>) {
        let unused = credits.num_permits().saturating_sub(batch.len());
        credits.forget();
        self.credits.add_permits(unused);
        if batch.is_empty() {
            return;
        }
        self.lock().extend(batch);
        self.ready.notify_one();
    }

    /// Up to `max` messages, waiting up to `wait` for the first.
    pub(super) async fn take(&self, max: usize, wait: Duration) -> Vec<Delivery> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let ready = self.ready.notified();
            let got = self.take_now(max);
            if !got.is_empty() {
                return got;
            }
            if tokio::time::timeout_at(deadline, ready).await.is_err() {
                return Vec::new();
            }
        }
    }

    fn take_now(&self, max: usize) -> Vec<Delivery> {
        let got: Vec<Delivery> = {
            let mut items = self.lock();
            let n = max.min(items.len());
            items.drain(..n).collect()
        };
        self.credits.add_permits(got.len());
        if !got.is_empty() && !self.lock().is_empty() {
            // Another waiter may take the rest.
            self.ready.notify_one();
        }
        got
    }

    /// Everything still waiting (at shutdown, to hand it back).
    pub(super) fn drain(&self) -> Vec<Delivery> {
        self.lock().drain(..).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Delivery>> {
        // A panic while holding this lock leaves a plain queue behind; keep using it.
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }
}

//! The retry timer: starts an event again at its due time instead of at the next poll.
//!
//! When this process writes an outcome with a due time (a retry, a postponement, compensations
//! to run), the event is noted here. At the due time the claim loop asks the store for exactly
//! those events (`Claim::Events`) if workers are free, and processes what it gets like any
//! claimed event. The store stays the judge: an event another worker took, or one that
//! finished meanwhile, is simply not returned. The queue (the Redis delayed set, the store's
//! due index) keeps every entry as before, so this is only a shortcut: an entry dropped here
//! (process crash, beyond [`MAX_ENTRIES`] or [`HORIZON`], no worker free at the due time) is
//! found by the queue at its next poll.
//!
//! It must never hold the only record of a due time, and never claim more events than there
//! are free workers.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Worker;
use crate::event::EventId;
use crate::store::Claim;
use crate::telemetry::metrics;

/// Most events the timer holds (about 100 bytes each). Beyond it the latest-due entry is left
/// to the queue, so the soonest are kept.
pub const MAX_ENTRIES: usize = 10_000;
/// Due times further away than this are left to the queue: being a poll late matters little
/// after ten minutes, and entries that far out would mostly fill memory.
pub const HORIZON: Duration = Duration::from_secs(600);
/// An event the store did not return at its due time is asked for once more this much later:
/// PostgreSQL compares due times with its own clock, which may run a little behind this one.
const RECHECK: Duration = Duration::from_millis(25);

/// Due times of events this process scheduled, soonest first.
#[derive(Default)]
pub(super) struct RetryTimer {
    entries: Mutex<Entries>,
    /// Signalled when an entry becomes the earliest, so the waiter re-arms.
    earlier: Notify,
}

#[derive(Default)]
struct Entries {
    by_due: BTreeSet<(Instant, EventId)>,
    due_of: HashMap<EventId, Instant>,
    /// Events being asked for a second time (see [`RECHECK`]).
    rechecks: HashSet<EventId>,
}

impl Entries {
    fn remove(&mut self, id: EventId) {
        if let Some(old) = self.due_of.remove(&id) {
            self.by_due.remove(&(old, id));
        }
    }

    fn insert(&mut self, id: EventId, due: Instant) {
        self.due_of.insert(id, due);
        self.by_due.insert((due, id));
    }
}

impl RetryTimer {
    fn lock(&self) -> MutexGuard<'_, Entries> {
        // The entries stay consistent under every panic point (each change is one call), so a
        // poisoned lock is still usable.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Note that `id` is due again at `at`, replacing any earlier note of it.
    pub(super) fn schedule(&self, id: EventId, at: DateTime<Utc>) {
        let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        let mut entries = self.lock();
        entries.remove(id);
        if wait > HORIZON {
            drop(entries);
            metrics::retry_timer("left", 1);
            return;
        }
        let due = Instant::now() + wait;
        entries.insert(id, due);
        if entries.by_due.len() > MAX_ENTRIES
            && let Some((_, latest)) = entries.by_due.pop_last()
        {
            entries.due_of.remove(&latest);
            metrics::retry_timer("left", 1);
        }
        let earliest = entries.by_due.first() == Some(&(due, id));
        let held = entries.by_due.len();
        drop(entries);
        metrics::retry_timer("scheduled", 1);
        metrics::retry_timer_entries(held);
        if earliest {
            // One waiter (the claim loop); a permit is stored if it is not waiting right now.
            self.earlier.notify_one();
        }
    }

    /// The store's answer at the due time: `claimed` started; each of `missed` is asked for once
    /// more shortly (a database clock a little behind), and left alone after a second miss
    /// (another worker had it, or it had finished).
    fn answered(&self, claimed: &[EventId], missed: &[EventId]) {
        let mut entries = self.lock();
        for id in claimed {
            entries.rechecks.remove(id);
        }
        let again = Instant::now() + RECHECK;
        for &id in missed {
            if entries.rechecks.remove(&id) || entries.due_of.contains_key(&id) {
                continue;
            }
            entries.rechecks.insert(id);
            entries.insert(id, again);
        }
        drop(entries);
        self.earlier.notify_one();
    }

    /// How many entries fall due within `window`, counting up to `max`.
    fn due_within(&self, window: Duration, max: usize) -> usize {
        let until = Instant::now() + window;
        self.lock()
            .by_due
            .iter()
            .take(max)
            .take_while(|(due, _)| *due <= until)
            .count()
    }

    /// Returns once the earliest entry is due; waits for one while there is none.
    async fn wait_due(&self) {
        loop {
            let first = self.lock().by_due.first().map(|(due, _)| *due);
            match first {
                Some(due) if due <= Instant::now() => return,
                Some(due) => tokio::select! {
                    _ = tokio::time::sleep_until(due) => return,
                    _ = self.earlier.notified() => {}
                },
                None => self.earlier.notified().await,
            }
        }
    }

    /// Every due entry, removed: up to `room` of them to claim now; the rest are left to the
    /// queue (they are due in the store, so its next poll finds them).
    fn take_due(&self, room: usize) -> Vec<EventId> {
        let now = Instant::now();
        let mut entries = self.lock();
        let mut ids = Vec::new();
        let mut left = 0;
        while let Some(&(due, id)) = entries.by_due.first()
            && due <= now
        {
            entries.remove(id);
            if ids.len() < room {
                ids.push(id);
            } else {
                left += 1;
            }
        }
        let held = entries.by_due.len();
        drop(entries);
        if left > 0 {
            metrics::retry_timer("left", left);
        }
        metrics::retry_timer_entries(held);
        ids
    }
}

impl Worker {
    /// Of `free` worker permits, how many the queue may be asked to fill: the rest stay free
    /// for the timer's entries due before the queue's wait could end (at most half of them,
    /// so a storm of retries does not starve new events), and at least one.
    pub(super) fn queue_share(&self, free: usize) -> usize {
        let soon = self.timer.due_within(self.settings.poll_interval, free / 2);
        free.saturating_sub(soon).max(1).min(free)
    }

    /// Wait for `next` (the queue's claim) and meanwhile start the timer's entries as they fall
    /// due, each with a permit free at that moment. The queue was asked for fewer events when
    /// entries were due soon ([`Worker::queue_share`]); events it claims beyond the permits left
    /// wait for one in the claim loop, so nothing the timer takes starves them for long. `next` is
    /// never cancelled: a claim cut short would leave leases held for nothing.
    pub(super) async fn alongside<T>(
        self: &Arc<Self>,
        next: impl Future<Output = T>,
        permits: &Arc<Semaphore>,
        tasks: &mut JoinSet<()>,
    ) -> T {
        tokio::pin!(next);
        loop {
            tokio::select! {
                biased;
                r = &mut next => return r,
                () = self.timer.wait_due() => {
                    let room = permits.available_permits();
                    let ids = self.timer.take_due(room);
                    // A handover at accept may take slots meanwhile: whatever is not held
                    // here is left to the queue.
                    let held: Vec<_> = ids
                        .iter()
                        .map_while(|_| permits.clone().try_acquire_owned().ok())
                        .collect();
                    if !ids.is_empty() {
                        let this = self.clone();
                        tasks.spawn(async move { this.start_due(ids, held).await });
                    }
                }
            }
        }
    }

    /// Claim `ids` (those still due and free: the store decides) and process each with one of
    /// `held`.
    async fn start_due(self: Arc<Self>, ids: Vec<EventId>, held: Vec<OwnedSemaphorePermit>) {
        let asked = ids.len().min(held.len());
        let ids: Vec<EventId> = ids.into_iter().take(asked).collect();
        let claimed = match self
            .store
            .claim(&self.owner, self.settings.lease, Claim::Events(ids.clone()))
            .await
        {
            Ok(claimed) => claimed,
            Err(e) => {
                // They are due in the store: the queue's next poll takes them.
                tracing::warn!(error = %e, events = asked, "cannot claim due retries; left to the queue");
                metrics::retry_timer("left", asked);
                return;
            }
        };
        metrics::retry_timer("started", claimed.len());
        metrics::retry_timer("missed", asked - claimed.len());
        let got: Vec<EventId> = claimed.iter().map(|e| e.id).collect();
        let missed: Vec<EventId> = ids.into_iter().filter(|id| !got.contains(id)).collect();
        self.timer.answered(&got, &missed);
        let mut runs = JoinSet::new();
        for (event, permit) in claimed.into_iter().zip(held) {
            let this = self.clone();
            runs.spawn(async move {
                this.process(event).await;
                drop(permit);
            });
        }
        while runs.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> EventId {
        EventId(uuid::Uuid::new_v4())
    }

    #[tokio::test]
    async fn entries_fall_due_in_order_and_a_new_note_replaces_the_old() {
        let t = RetryTimer::default();
        let (a, b) = (id(), id());
        let now = Utc::now();
        t.schedule(a, now + chrono::Duration::milliseconds(200));
        t.schedule(b, now + chrono::Duration::milliseconds(100));
        t.schedule(a, now + chrono::Duration::milliseconds(2000));
        assert_eq!(t.due_within(Duration::from_millis(1000), 10), 1);
        assert_eq!(t.due_within(Duration::from_secs(3), 10), 2);
        let started = std::time::Instant::now();
        t.wait_due().await;
        assert!(started.elapsed() >= Duration::from_millis(90));
        assert_eq!(t.take_due(10), [b]);
        t.wait_due().await;
        assert!(started.elapsed() >= Duration::from_millis(1990));
        assert_eq!(
            t.take_due(0),
            Vec::<EventId>::new(),
            "no room: left to the queue"
        );
        assert_eq!(t.due_within(Duration::from_secs(3600), 10), 0);
    }

    #[tokio::test]
    async fn a_missed_event_is_asked_for_once_more() {
        let t = RetryTimer::default();
        let a = id();
        t.answered(&[], &[a]);
        t.wait_due().await;
        assert_eq!(t.take_due(10), [a]);
        t.answered(&[], &[a]);
        assert_eq!(t.lock().by_due.len(), 0, "not a third time");
        assert!(t.lock().rechecks.is_empty());
    }

    #[tokio::test]
    async fn far_or_too_many_entries_are_left_to_the_queue() {
        let t = RetryTimer::default();
        t.schedule(id(), Utc::now() + chrono::Duration::seconds(3600));
        assert_eq!(t.due_within(Duration::from_secs(7200), 10), 0);
        let soon = Utc::now() + chrono::Duration::seconds(1);
        for _ in 0..MAX_ENTRIES + 5 {
            t.schedule(id(), soon);
        }
        assert_eq!(t.lock().by_due.len(), MAX_ENTRIES);
        assert_eq!(t.lock().due_of.len(), MAX_ENTRIES);
    }
}

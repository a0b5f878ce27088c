//! Lease renewal for a whole process: every attempt in flight registers its event here, and one
//! task renews all of those leases together, in one statement per round
//! ([`crate::store::Leases::renew_leases`]), instead of one task and one write per event.
//!
//! It must never keep renewing a lease the store says is lost: the attempt learns it through
//! its [`LeaseGuard`] and stops writing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use crate::event::EventId;
use crate::store::Work;

/// Most leases renewed in one statement (each is one bound parameter).
const MAX_BATCH: usize = 500;

/// The leases held now, each with the flag its attempt reads.
type Held = Mutex<HashMap<EventId, Arc<AtomicBool>>>;

/// The handle attempts register their leases through.
pub(super) struct Renewer {
    held: Arc<Held>,
}

/// One attempt's lease, renewed while the guard lives; dropping it stops the renewal.
pub(super) struct LeaseGuard {
    id: EventId,
    lost: Arc<AtomicBool>,
    held: Arc<Held>,
}

impl LeaseGuard {
    /// Whether the store said another worker holds the event now.
    pub(super) fn lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        // Only this guard's entry: a later attempt of the same event may hold its own.
        if held
            .get(&self.id)
            .is_some_and(|f| Arc::ptr_eq(f, &self.lost))
        {
            held.remove(&self.id);
        }
    }
}

impl Renewer {
    /// Start the renewal task for leases of `lease` held by `owner`, renewing every third of a
    /// lease; it stops once the handle is dropped.
    pub(super) fn start(store: Arc<dyn Work>, owner: String, lease: Duration) -> Self {
        let held: Arc<Held> = Arc::default();
        let weak = Arc::downgrade(&held);
        let every = (lease / 3).max(Duration::from_millis(100));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(held) = Weak::upgrade(&weak) else {
                    return;
                };
                renew_round(&*store, &owner, lease, &held).await;
            }
        });
        Self { held }
    }

    /// Keep `id`'s lease renewed until the guard is dropped. The claim has just set a full
    /// lease, and the first renewal comes within a third of one.
    pub(super) fn hold(&self, id: EventId) -> LeaseGuard {
        let lost = Arc::new(AtomicBool::new(false));
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, lost.clone());
        LeaseGuard {
            id,
            lost,
            held: self.held.clone(),
        }
    }
}

/// Renew every lease held now; mark those the store no longer gives us as lost.
async fn renew_round(store: &dyn Work, owner: &str, lease: Duration, held: &Held) {
    let ids: Vec<EventId> = held
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .keys()
        .copied()
        .collect();
    for chunk in ids.chunks(MAX_BATCH) {
        match store.renew_leases(chunk, owner, lease).await {
            Ok(kept) => {
                let mut held = held.lock().unwrap_or_else(PoisonError::into_inner);
                for id in chunk.iter().filter(|id| !kept.contains(id)) {
                    // An attempt that ended meanwhile has dropped its guard: nothing to tell.
                    if let Some(lost) = held.remove(id) {
                        lost.store(true, Ordering::Relaxed);
                    }
                }
            }
            // Keep trying next round: the leases are still ours until they expire.
            Err(e) => tracing::warn!(leases = chunk.len(), error = %e, "cannot renew leases"),
        }
    }
}

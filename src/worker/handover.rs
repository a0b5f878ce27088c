//! Events claimed in the accept path's own commit, handed to this process's workers in memory.
//! A process that accepts webhooks and runs workers (`serve`) reserves free worker slots before
//! a group commit, lets the insert start attempt 1 of that many new events leased to this
//! process ([`crate::store::Intake::insert_and_claim`]), and hands them over after the commit:
//! no queue message, no claim, no read of what it already has in memory.
//!
//! At most half of the worker slots go to events handed over: the other half stays for what the
//! queue brings (retries, events accepted while the workers were full, other processes'), so
//! a busy accept path cannot starve them.
//!
//! [`Handover`] is the whole seam the accept path sees. It must never hand over an event
//! without the worker slot reserved for it, nor start an attempt once the workers are draining
//! (such an event keeps its lease; `release_all` or the lease's expiry gives it back).

use std::sync::{Arc, PoisonError};

use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;

use super::Worker;
use crate::event::ClaimedEvent;
use crate::store::ClaimOnInsert;

/// The local workers, as the accept path sees them.
#[derive(Clone)]
pub struct Handover {
    worker: Arc<Worker>,
}

/// Worker slots reserved for the events an insert may claim; given back when dropped.
pub struct Reservation {
    /// As many worker slots as handover slots.
    permits: Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)>,
}

impl Reservation {
    /// How many events the insert may claim.
    pub fn len(&self) -> usize {
        self.permits.as_ref().map_or(0, |(p, _)| p.num_permits())
    }

    /// Whether the insert may claim nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One worker slot and one handover slot.
    fn take_one(&mut self) -> Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)> {
        let (permits, slots) = self.permits.as_mut()?;
        if permits.num_permits() > 1 {
            Some((permits.split(1)?, slots.split(1)?))
        } else {
            self.permits.take()
        }
    }
}

impl Handover {
    pub(super) fn new(worker: Arc<Worker>) -> Self {
        Self { worker }
    }

    /// Reserve up to `want` worker slots that are free now (none while draining).
    pub fn reserve(&self, want: usize) -> Reservation {
        let w = &self.worker;
        let open = w
            .handed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some();
        let n = want
            .min(w.permits.available_permits())
            .min(w.handover_slots.available_permits());
        if !open || n == 0 {
            return Reservation { permits: None };
        }
        // Either may have been taken meanwhile: then nothing is reserved this time.
        let slots = w.handover_slots.clone().try_acquire_many_owned(n as u32);
        let permits = w.permits.clone().try_acquire_many_owned(n as u32);
        Reservation {
            permits: permits.ok().zip(slots.ok()),
        }
    }

    /// The claim an insert makes for `reservation`.
    pub fn claim(&self, reservation: &Reservation) -> ClaimOnInsert {
        ClaimOnInsert {
            owner: self.worker.owner.clone(),
            lease: self.worker.settings.lease,
            limit: reservation.len(),
        }
    }

    /// Start processing `events`, claimed for `reservation` and committed, each in one of its
    /// slots; the slots left are given back.
    pub fn deliver(&self, events: Vec<ClaimedEvent>, mut reservation: Reservation) {
        let mut handed = self
            .worker
            .handed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(tasks) = handed.as_mut() else {
            tracing::info!(
                events = events.len(),
                "workers draining: events claimed at accept wait for their lease"
            );
            return;
        };
        // Finished attempts leave their results here until reaped.
        while tasks.try_join_next().is_some() {}
        for event in events {
            let Some(held) = reservation.take_one() else {
                // Never more events than slots: the claim's limit is the reservation's size.
                tracing::error!(event_id = %event.id, "claimed at accept without a worker slot; it waits for its lease");
                continue;
            };
            let worker = self.worker.clone();
            tasks.spawn(async move {
                worker.process(event).await;
                drop(held);
            });
        }
    }
}

/// Stop handing over (the workers are draining) and return the attempts in flight.
pub(super) fn close(worker: &Worker) -> JoinSet<()> {
    worker
        .handed
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .unwrap_or_default()
}

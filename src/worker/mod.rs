//! Workers: claim due events through the queue (or take over those this process's accept path
//! claimed for them in its commit: `handover`), run their route's steps (or, once an event has
//! failed for good, its compensations), and report each attempt's outcome to the store
//! (completed, retry scheduled, compensating, postponed, or dead-lettered).
//!
//! Owns concurrency, lease renewal, the retry schedule and draining on shutdown; one attempt's
//! logic lives in `attempt`. It must never run a step that already succeeded for the event, and
//! never write an outcome without holding the event's lease (the store fences every write on
//! the lease owner).

mod attempt;
mod finisher;
mod handover;
mod renewer;
mod timer;
mod window;

pub use self::handover::{Handover, Reservation};

use self::attempt::Ending;
use self::finisher::Finisher;
use self::renewer::Renewer;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::actions::breaker::Destinations;
use crate::actions::{Actions, Router};
use crate::event::{ClaimedEvent, Outcome};
use crate::queue::Queue;
use crate::store::{Finish, Work};
use crate::swap::Swap;
use crate::telemetry::liveness::Heartbeat;
use crate::telemetry::{metrics, trace};

/// The retry schedule, as data: attempt `n` failing waits `min(2^n * base, cap)`, and the
/// event is dead-lettered when attempt `max_attempts` fails, or when it has not finished
/// `window` after it was received (or last replayed), however it waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
    pub window: Duration,
}

impl RetryPolicy {
    /// Delay after failed attempt `attempt` (1-based): 2 × base, then 4 × base, ...
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// What a failed attempt leads to.
    pub fn after_failure(&self, attempt: u32, error: String) -> Outcome {
        self.after_failure_at_least(attempt, error, None)
    }

    /// Like [`RetryPolicy::after_failure`], but the retry waits at least `at_least` (a
    /// destination's `Retry-After`), itself capped at `cap`.
    pub fn after_failure_at_least(
        &self,
        attempt: u32,
        error: String,
        at_least: Option<Duration>,
    ) -> Outcome {
        if attempt >= self.max_attempts {
            Outcome::DeadLetter { error }
        } else {
            Outcome::RetryAt {
                at: self.retry_at(attempt, at_least),
                error,
            }
        }
    }

    /// When to try again after failed try number `attempt`, no sooner than `at_least`.
    pub fn retry_at(&self, attempt: u32, at_least: Option<Duration>) -> chrono::DateTime<Utc> {
        let wait = self
            .delay(attempt)
            .max(at_least.unwrap_or_default().min(self.cap));
        Utc::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX)
    }
}

/// Settings of one process's worker pool.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub concurrency: usize,
    pub lease: Duration,
    pub poll_interval: Duration,
    pub retry: RetryPolicy,
    pub drain_timeout: Duration,
    /// Optional cap per provider on events processed at once.
    pub provider_concurrency: BTreeMap<String, usize>,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 32,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
            retry: RetryPolicy {
                max_attempts: 3,
                base: Duration::from_secs(1),
                cap: Duration::from_secs(3600),
                // Stripe's own: it retries an undelivered event for up to three days.
                window: Duration::from_secs(3 * 24 * 3600),
            },
            drain_timeout: Duration::from_secs(30),
            provider_concurrency: BTreeMap::new(),
        }
    }
}

/// A pool of workers in one process, sharing one lease owner name.
pub struct Worker {
    store: Arc<dyn Work>,
    queue: Arc<dyn Queue>,
    /// The routes, swapped by the live configuration; an attempt runs those current when it
    /// starts.
    router: Arc<Swap<Router>>,
    actions: Actions,
    destinations: Arc<Destinations>,
    owner: String,
    settings: WorkerSettings,
    provider_permits: HashMap<String, Arc<Semaphore>>,
    finisher: Finisher,
    /// Due times of the events this process scheduled, to start them on time.
    timer: timer::RetryTimer,
    /// Beaten on every turn of the claim loop, for `/health/live`.
    heartbeat: Arc<Heartbeat>,
    renewer: Renewer,
    /// One per event processed at once, shared by the claim loop and the [`Handover`].
    permits: Arc<Semaphore>,
    /// The share of `permits` events handed over at accept may hold: half.
    handover_slots: Arc<Semaphore>,
    /// Attempts of events handed over at accept; `None` once draining.
    handed: Mutex<Option<JoinSet<()>>>,
}

impl Worker {
    /// Call inside the async runtime: the outcome writer and the lease renewer are tasks.
    pub fn new(
        store: Arc<dyn Work>,
        queue: Arc<dyn Queue>,
        router: Arc<Swap<Router>>,
        actions: Actions,
        destinations: Arc<Destinations>,
        owner: String,
        settings: WorkerSettings,
    ) -> Self {
        let provider_permits = settings
            .provider_concurrency
            .iter()
            .map(|(p, n)| (p.clone(), Arc::new(Semaphore::new(*n))))
            .collect();
        // A claim loop turn waits at most a poll, or a store timeout plus a 10 s backoff; two
        // minutes without one is a hang (a connection that never answers), not load.
        let stall = (settings.poll_interval * 4).max(Duration::from_secs(120));
        Self {
            finisher: Finisher::start(store.clone(), queue.clone()),
            timer: Default::default(),
            heartbeat: Arc::new(Heartbeat::new(stall)),
            renewer: Renewer::start(store.clone(), owner.clone(), settings.lease),
            permits: Arc::new(Semaphore::new(settings.concurrency)),
            handover_slots: Arc::new(Semaphore::new(settings.concurrency.div_ceil(2))),
            handed: Mutex::new(Some(JoinSet::new())),
            store,
            queue,
            router,
            actions,
            destinations,
            owner,
            settings,
            provider_permits,
        }
    }

    /// The claim loop's heartbeat, for `/health/live`.
    pub fn heartbeat(&self) -> Arc<Heartbeat> {
        self.heartbeat.clone()
    }

    /// The name this process's leases are held under.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The way this process's accept path hands events it claimed in its commit to these
    /// workers.
    pub fn handover(self: &Arc<Self>) -> Handover {
        Handover::new(self.clone())
    }

    /// Claim and process events until `shutdown` turns true, then drain in-flight events
    /// (up to the drain timeout) and hand back any lease still held.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let permits = self.permits.clone();
        let mut tasks = JoinSet::new();
        let mut backoff = self.settings.poll_interval;
        tracing::info!(owner = %self.owner, concurrency = self.settings.concurrency, "workers started");
        let heartbeat = self.heartbeat.clone();
        let _running = heartbeat.guard();
        while !*shutdown.borrow() {
            heartbeat.beat();
            while tasks.try_join_next().is_some() {}
            let free = permits.available_permits();
            if free == 0 {
                // Wait for a slot, not for one of `tasks`: attempts handed over at accept
                // hold slots too, and `tasks` may be empty.
                tokio::select! {
                    _ = permits.acquire() => {}
                    _ = shutdown.changed() => {}
                    // Still turning while every worker is busy: liveness, not a poll.
                    _ = tokio::time::sleep(self.settings.poll_interval) => {}
                }
                continue;
            }
            // Leave room for retries due before the queue's wait could end (see `timer`).
            let ask = self.queue_share(free);
            let next = self.queue.next(
                &self.owner,
                self.settings.lease,
                ask as u32,
                self.settings.poll_interval,
            );
            // A claim cut short here may leave leases held by this owner: `release_all` below
            // hands them back.
            let claimed = tokio::select! {
                r = self.alongside(next, &permits, &mut tasks) => r,
                _ = shutdown.changed() => break,
            };
            match claimed {
                Ok(events) => {
                    backoff = self.settings.poll_interval;
                    for event in events {
                        // A handover may have taken the slots counted free before the claim;
                        // the events are claimed, so wait for attempts to end.
                        let Ok(permit) = permits.clone().acquire_owned().await else {
                            break;
                        };
                        let this = self.clone();
                        tasks.spawn(async move {
                            this.process(event).await;
                            drop(permit);
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot claim events");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        self.drain(tasks).await;
        tracing::info!("workers stopped");
    }

    /// Let in-flight attempts end (up to the drain timeout), interrupt what is left, and hand
    /// back every lease still held.
    async fn drain(&self, mut tasks: JoinSet<()>) {
        let mut handed = handover::close(self);
        let in_flight = tasks.len() + handed.len();
        tracing::info!(in_flight, "workers draining");
        let drained = tokio::time::timeout(self.settings.drain_timeout, async {
            while tasks.join_next().await.is_some() {}
            while handed.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = tasks.len() + handed.len(),
                "drain timeout: interrupting remaining events"
            );
            tasks.shutdown().await;
            handed.shutdown().await;
        }
        match self.store.release_all(&self.owner).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(released = n, "leases handed back"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand back leases; they expire on their own")
            }
        }
    }

    /// One attempt at one event.
    async fn process(&self, event: ClaimedEvent) {
        let span = tracing::info_span!(
            "process",
            otel.name = %format!("process {}", event.provider),
            otel.kind = "consumer",
            event_id = %event.id,
            provider = %event.provider,
            event_type = %event.event_type,
            attempt = event.attempt,
            trace_id = tracing::field::Empty,
        );
        // Continue the trace the HTTP request started, whichever process or attempt this is.
        trace::continue_from(&span, event.traceparent.as_deref());
        trace::record_trace_id(&span);
        metrics::attempt(&event.provider);
        async {
            if let Some(ending) = self.attempt(&event).await {
                self.finish(&event, ending).await;
            }
        }
        .instrument(span)
        .await
    }

    /// Write the outcome (with the last step's result, when there is one still to store),
    /// retrying while the store is away for up to a lease (a database restart should not make a
    /// finished step run again). Every outcome write is fenced on the lease owner, so a late one
    /// after another worker took over changes nothing. If it never lands, the lease expires and
    /// the event is attempted again; succeeded steps are not repeated.
    async fn finish(&self, event: &ClaimedEvent, ending: Ending) {
        let Ending { outcome, last_step } = ending;
        let mut delay = Duration::from_millis(100);
        let give_up = tokio::time::Instant::now() + self.settings.lease;
        while tokio::time::Instant::now() < give_up {
            let written = self
                .finisher
                .finish(Finish {
                    id: event.id,
                    owner: self.owner.clone(),
                    outcome: outcome.clone(),
                    step: last_step.clone(),
                    ordered: event.ordered,
                })
                .await;
            match written {
                Ok(true) => {
                    if let Some(at) = outcome.next_attempt_at() {
                        self.timer.schedule(event.id, at);
                    }
                    match &outcome {
                        Outcome::Completed { .. } => {
                            tracing::info!("event completed");
                            metrics::event_processed(&event.provider, "completed");
                            let age = Utc::now() - event.received_at;
                            metrics::processing_duration(
                                &event.provider,
                                age.num_milliseconds() as f64 / 1000.0,
                            );
                        }
                        Outcome::RetryAt { at, error } => {
                            tracing::warn!(retry_at = %at, %error, "attempt failed; retry scheduled");
                            metrics::event_processed(&event.provider, "retried");
                        }
                        Outcome::DeadLetter { error } => {
                            // An operator has to look at this one.
                            tracing::error!(%error, "event dead-lettered");
                            metrics::event_processed(&event.provider, "dead_lettered");
                        }
                        Outcome::Compensate { at, error, .. } => {
                            tracing::warn!(compensate_at = %at, %error, "compensating the steps that succeeded");
                            metrics::event_processed(&event.provider, "compensating");
                        }
                        Outcome::Postpone { at, reason, .. } => {
                            tracing::info!(until = %at, %reason, "attempt postponed; not counted");
                            metrics::event_processed(&event.provider, "postponed");
                        }
                    }
                    if let Err(e) = self.queue.settle(event, &outcome).await {
                        // The store has the outcome; a stale message only leads to a claim
                        // that finds nothing to do.
                        tracing::warn!(error = %e, "cannot settle the queue message");
                    }
                    return;
                }
                Ok(false) => {
                    tracing::warn!("lease lost before the outcome was written");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot write outcome; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        }
        tracing::error!("outcome not written; the event will be retried when its lease expires");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_and_are_capped() {
        let p = RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(1000),
            cap: Duration::from_secs(5),
            window: Duration::from_secs(60),
        };
        assert_eq!(p.delay(1), Duration::from_secs(2));
        assert_eq!(p.delay(2), Duration::from_secs(4));
        assert_eq!(p.delay(3), Duration::from_secs(5));
        assert_eq!(p.delay(100), Duration::from_secs(5));
        assert!(matches!(
            p.after_failure(2, "x".into()),
            Outcome::RetryAt { .. }
        ));
        assert!(matches!(
            p.after_failure(3, "x".into()),
            Outcome::DeadLetter { .. }
        ));
    }

    #[test]
    fn retry_after_raises_the_delay_up_to_the_cap() {
        let p = RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(60),
            window: Duration::from_secs(60),
        };
        let wait = |at: chrono::DateTime<Utc>| (at - Utc::now()).num_milliseconds();
        // Retry-After longer than the backoff wins...
        let at = p.retry_at(1, Some(Duration::from_secs(5)));
        assert!((4_900..=5_000).contains(&wait(at)), "{}", wait(at));
        // ...a shorter one does not shorten the backoff...
        let at = p.retry_at(3, Some(Duration::from_millis(1)));
        assert!((700..=800).contains(&wait(at)), "{}", wait(at));
        // ...and a day is cut to the cap.
        let at = p.retry_at(1, Some(Duration::from_secs(86_400)));
        assert!((59_900..=60_000).contains(&wait(at)), "{}", wait(at));
    }
}

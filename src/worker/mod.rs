//! Workers: claim due events through the queue, run their route's steps, and report each
//! attempt's outcome to the store (completed, retry scheduled, or dead-lettered).
//!
//! Owns concurrency, lease renewal, the retry schedule and draining on shutdown. It must never
//! run a step that already succeeded for the event, and never write an outcome without holding
//! the event's lease (the store fences every write on the lease owner).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::actions::{Actions, Router};
use crate::event::{ClaimedEvent, Outcome, StepOutcome, StepRecord};
use crate::queue::Queue;
use crate::store::EventStore;
use crate::telemetry::{metrics, trace};

/// The retry schedule, as data: attempt `n` failing waits `min(2^n * base, cap)`, and the
/// event is dead-lettered when attempt `max_attempts` fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl RetryPolicy {
    /// Delay after failed attempt `attempt` (1-based): 2 × base, then 4 × base, ...
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// What a failed attempt leads to.
    pub fn after_failure(&self, attempt: u32, error: String) -> Outcome {
        if attempt >= self.max_attempts {
            Outcome::DeadLetter { error }
        } else {
            let delay =
                chrono::Duration::from_std(self.delay(attempt)).unwrap_or(chrono::Duration::MAX);
            Outcome::RetryAt {
                at: Utc::now() + delay,
                error,
            }
        }
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

/// A pool of workers in one process, sharing one lease owner name.
pub struct Worker {
    store: Arc<dyn EventStore>,
    queue: Arc<dyn Queue>,
    router: Router,
    actions: Actions,
    owner: String,
    settings: WorkerSettings,
    provider_permits: HashMap<String, Arc<Semaphore>>,
}

impl Worker {
    pub fn new(
        store: Arc<dyn EventStore>,
        queue: Arc<dyn Queue>,
        router: Router,
        actions: Actions,
        owner: String,
        settings: WorkerSettings,
    ) -> Self {
        let provider_permits = settings
            .provider_concurrency
            .iter()
            .map(|(p, n)| (p.clone(), Arc::new(Semaphore::new(*n))))
            .collect();
        Self {
            store,
            queue,
            router,
            actions,
            owner,
            settings,
            provider_permits,
        }
    }

    /// The name this process's leases are held under.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Claim and process events until `shutdown` turns true, then drain in-flight events
    /// (up to the drain timeout) and hand back any lease still held.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(self.settings.concurrency));
        let mut tasks = JoinSet::new();
        let mut backoff = self.settings.poll_interval;
        tracing::info!(owner = %self.owner, concurrency = self.settings.concurrency, "workers started");
        while !*shutdown.borrow() {
            while tasks.try_join_next().is_some() {}
            let free = permits.available_permits();
            if free == 0 {
                tokio::select! {
                    _ = tasks.join_next() => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let next = self.queue.next(
                &self.owner,
                self.settings.lease,
                free as u32,
                self.settings.poll_interval,
            );
            // A claim cut short here may leave leases held by this owner: `release_all` below
            // hands them back.
            let claimed = tokio::select! {
                r = next => r,
                _ = shutdown.changed() => break,
            };
            match claimed {
                Ok(events) => {
                    backoff = self.settings.poll_interval;
                    for event in events {
                        let Ok(permit) = permits.clone().try_acquire_owned() else {
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
        let in_flight = tasks.len();
        tracing::info!(in_flight, "workers draining");
        let drained = tokio::time::timeout(self.settings.drain_timeout, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = tasks.len(),
                "drain timeout: interrupting remaining events"
            );
            tasks.shutdown().await;
        }
        match self.store.release_all(&self.owner).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(released = n, "leases handed back"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand back leases; they expire on their own")
            }
        }
        tracing::info!("workers stopped");
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
            let outcome = if event.attempt > self.settings.retry.max_attempts {
                // The previous holder died during the last allowed attempt.
                Outcome::DeadLetter {
                    error: format!(
                        "no attempt left: the lease of attempt {} expired",
                        self.settings.retry.max_attempts
                    ),
                }
            } else {
                match self.run_steps(&event).await {
                    Ok(Some(outcome)) => outcome,
                    Ok(None) => return,
                    Err(error) => self.settings.retry.after_failure(event.attempt, error),
                }
            };
            self.finish(&event, outcome).await;
        }
        .instrument(span)
        .await
    }

    /// Run the event's remaining steps under a renewed lease. `Ok(None)` means the lease was
    /// lost and another worker owns the event now: nothing more may be written.
    async fn run_steps(&self, event: &ClaimedEvent) -> Result<Option<Outcome>, String> {
        let steps = self.router.steps_for(&event.provider, &event.event_type);
        if steps.is_empty() {
            tracing::info!("no route matches; completing");
            return Ok(Some(Outcome::Completed {
                detail: "no route matched".into(),
            }));
        }
        let done = if event.attempt > 1 {
            self.store
                .succeeded_steps(event.id)
                .await
                .map_err(|e| format!("cannot read earlier step results: {e}"))?
        } else {
            Vec::new()
        };
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = self.spawn_lease_renewal(event, lost.clone());
        let result = async {
            // Waiting for the provider's cap happens under the renewed lease, like a slow step.
            let _provider_permit = match self.provider_permits.get(&event.provider) {
                Some(p) => p.clone().acquire_owned().await.ok(),
                None => None,
            };
            let mut ran = 0;
            for step in steps.iter().filter(|s| !done.contains(&s.key)) {
                if lost.load(Ordering::Relaxed) {
                    return Ok(None);
                }
                let started = Instant::now();
                let result = self
                    .actions
                    .run(step, event)
                    .instrument(
                        tracing::info_span!("step", otel.name = %step.key, action = step.action()),
                    )
                    .await;
                metrics::step_duration(
                    step.action(),
                    if result.is_ok() {
                        "succeeded"
                    } else {
                        "failed"
                    },
                    started.elapsed(),
                );
                let record = StepRecord {
                    event_id: event.id,
                    step: step.key.clone(),
                    attempt: event.attempt,
                    outcome: if result.is_ok() {
                        StepOutcome::Succeeded
                    } else {
                        StepOutcome::Failed
                    },
                    error: result.as_ref().err().map(|e| e.to_string()),
                    duration_ms: started.elapsed().as_millis() as u64,
                };
                if let Err(e) = self.store.record_step(&record).await {
                    // Without the record a succeeded step would run again on the next attempt.
                    return Err(format!("cannot record step {}: {e}", step.key));
                }
                if let Err(e) = result {
                    tracing::warn!(step = %step.key, error = %e, "step failed");
                    return Err(e.to_string());
                }
                ran += 1;
            }
            Ok(Some(Outcome::Completed {
                detail: format!("{ran} step(s) run, {} already done", steps.len() - ran),
            }))
        }
        .await;
        renewer.abort();
        if lost.load(Ordering::Relaxed) {
            tracing::warn!("lease lost while processing; leaving the event to its new owner");
            return Ok(None);
        }
        result
    }

    fn spawn_lease_renewal(
        &self,
        event: &ClaimedEvent,
        lost: Arc<AtomicBool>,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.store.clone();
        let owner = self.owner.clone();
        let id = event.id;
        let lease = self.settings.lease;
        let every = (lease / 3).max(Duration::from_millis(100));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                match store.renew_lease(id, &owner, lease).await {
                    Ok(true) => {}
                    Ok(false) => {
                        lost.store(true, Ordering::Relaxed);
                        return;
                    }
                    // Keep trying: the lease is still ours until it expires.
                    Err(e) => tracing::warn!(event_id = %id, error = %e, "cannot renew lease"),
                }
            }
        })
    }

    /// Write the outcome, retrying briefly if the store hiccups. If it never lands, the lease
    /// expires and the event is attempted again; succeeded steps are not repeated.
    async fn finish(&self, event: &ClaimedEvent, outcome: Outcome) {
        let mut delay = Duration::from_millis(100);
        for _ in 0..5 {
            match self.store.finish(event.id, &self.owner, &outcome).await {
                Ok(true) => {
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
                    delay *= 2;
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
}

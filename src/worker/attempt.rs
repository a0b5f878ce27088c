//! One attempt at one event: run its remaining steps in order, or, once it has failed for good,
//! the compensations of the steps that had succeeded, in reverse order; then say how the
//! attempt ended as an [`Outcome`].
//!
//! Owns the order of work inside an attempt, asking each step's destination breaker before the
//! step and telling it after, and the rules for what counts as an attempt: a step refused by an
//! open breaker or a busy destination, or a failure that leaves the breaker open, is the
//! outage's fault and postpones the event without using up an attempt. It applies the retry
//! window (`window.rs`) to every attempt and its outcome. It must never run a step (or compensation) that already succeeded, and never write anything
//! once the lease is lost.
//!
//! Crash safety: the phase is derived from the store on every attempt. An event that entered
//! compensation has a transition to `compensating`, and every compensation's results are step
//! results like any other; a worker that dies mid-compensation leaves a `processing` row whose
//! lease expires, and the next claim reads both and resumes where it stopped.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use tracing::Instrument;

use super::Worker;
use super::renewer::LeaseGuard;
use super::window::due_by;
use crate::actions::breaker::{Admission, Health, Pass, Verdict};
use crate::actions::{ActionError, Ran, Step};
use crate::event::{ClaimedEvent, EventStatus, Outcome, Progress, StepOutcome, StepRecord};
use crate::store::StoreError;
use crate::telemetry::metrics;

/// A step's result that the store would not take, even after waiting up to a lease for it.
#[derive(Debug, thiserror::Error)]
#[error("cannot record step {step}: {source}")]
pub(super) struct RecordError {
    step: String,
    source: StoreError,
}

/// How an attempt ended. The result of its last step, when that step succeeded, is not stored
/// yet: it is written in the same transaction as the outcome (see `finisher`), one write per
/// completed event fewer.
pub(super) struct Ending {
    pub outcome: Outcome,
    pub last_step: Option<StepRecord>,
}

impl From<Outcome> for Ending {
    fn from(outcome: Outcome) -> Self {
        Self {
            outcome,
            last_step: None,
        }
    }
}

/// What one step did.
enum StepRun {
    /// `unrecorded`: the result, when the caller asked to store it itself. `skipped`: its
    /// transform returned `null`, so nothing was sent (and there is nothing to compensate).
    Succeeded {
        unrecorded: Option<StepRecord>,
        skipped: bool,
    },
    /// A failure that counts against the event.
    Failed {
        error: String,
        retry_after: Option<Duration>,
    },
    /// Not run (breaker open, destination busy), or failed while its destination is down: the
    /// event waits until then and the attempt does not count.
    Wait { until: Instant, reason: String },
}

/// The payload route filters and templates read. A body that is not JSON (a form) is `null` to
/// them; a body that looks like JSON but does not parse (nested deeper than the accept path
/// allows today, stored before that limit) cannot be matched against filters: an error, so the
/// event is dead-lettered with the reason instead of completing as if no route matched.
fn payload(body: &[u8]) -> Result<Value, String> {
    let json_like = matches!(
        body.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    );
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        Err(_) if !json_like => Ok(Value::Null),
        Err(e) => Err(format!(
            "the body cannot be parsed to evaluate the route filters: {e}"
        )),
    }
}

fn wall_clock(until: Instant) -> DateTime<Utc> {
    let left = until.saturating_duration_since(Instant::now());
    Utc::now() + chrono::Duration::from_std(left).unwrap_or(chrono::Duration::MAX)
}

impl Worker {
    /// Run one attempt. `None` means the lease was lost: another worker owns the event now and
    /// nothing may be written but the results of steps that ran.
    pub(super) async fn attempt(&self, event: &ClaimedEvent) -> Option<Ending> {
        let deadline = self.window_end(event).await;
        let mut ending = self.attempt_by(event, deadline).await?;
        ending.outcome = due_by(ending.outcome, deadline);
        Some(ending)
    }

    /// [`Worker::attempt`], with the retry window ending at `deadline`.
    async fn attempt_by(&self, event: &ClaimedEvent, deadline: DateTime<Utc>) -> Option<Ending> {
        let max = self.settings.retry.max_attempts;
        let payload = match payload(&event.body) {
            Ok(p) => p,
            Err(error) => {
                tracing::error!(%error, "event cannot be evaluated against its routes");
                return Some(Outcome::DeadLetter { error }.into());
            }
        };
        // The routes current now, for the whole attempt (a change applies from the next one).
        let router = self.router.load();
        let steps = router.steps_for(&event.provider, &event.event_type, &payload);
        let progress = match self.progress(event, steps.len()).await {
            Ok(p) => p,
            Err(retry) => return Some(retry.into()),
        };
        if steps.is_empty() && !progress.compensating {
            tracing::info!("no route matches; completing");
            return Some(
                Outcome::Completed {
                    detail: "no route matched".into(),
                }
                .into(),
            );
        }
        if let Some(error) = self.window_over(event, &progress, deadline) {
            let succeeded = succeeded(&steps, &progress);
            return Some(self.failed_for_good(event, &succeeded, error).into());
        }
        if let Some(until) = self.destinations.provider_paused_until(&event.provider) {
            return Some(
                self.postpone(
                    event,
                    progress.compensating,
                    until,
                    "provider paused automatically: every destination of its routes is open".into(),
                )
                .into(),
            );
        }
        if !progress.compensating && event.attempt > max {
            // The previous holder died during the last allowed attempt.
            let error = format!("no attempt left: the lease of attempt {max} expired");
            return Some(
                self.failed_for_good(event, &succeeded(&steps, &progress), error)
                    .into(),
            );
        }

        let lease = self.hold_lease(event);
        // Waiting for the provider's cap happens under the renewed lease, like a slow step.
        let _provider_permit = match self.provider_permits.get(&event.provider) {
            Some(p) => p.clone().acquire_owned().await.ok(),
            None => None,
        };
        let ending = if progress.compensating {
            self.compensate(event, &steps, &progress, &payload, &lease)
                .await
                .map(Ending::from)
        } else {
            self.run_steps(event, &steps, &progress, &payload, &lease)
                .await
        };
        if lease.lost() {
            tracing::warn!("lease lost while processing; leaving the event to its new owner");
            // A step that ran is recorded all the same, so the new owner does not run it again.
            if let Some(Ending {
                last_step: Some(step),
                ..
            }) = &ending
            {
                let _ = self.record(step).await;
            }
            return None;
        }
        ending
    }

    /// What earlier attempts did. When it cannot be read, the outcome to end this attempt with
    /// instead. A postponed attempt is given back uncounted, so a first attempt may follow one
    /// that ran some of its `steps` (and may even be compensating): only the first attempt of a
    /// single-step route, which cannot have left anything behind, skips the read.
    async fn progress(&self, event: &ClaimedEvent, steps: usize) -> Result<Progress, Outcome> {
        if event.attempt <= 1 && steps <= 1 {
            return Ok(Progress::default());
        }
        self.store.progress(event.id).await.map_err(|e| {
            // Without the history a finished step could run again: try later. The attempt
            // counts, so a store that never answers cannot loop forever.
            let error = format!("cannot read earlier step results: {e}");
            self.settings.retry.after_failure(event.attempt, error)
        })
    }

    /// The normal phase: every step that has not succeeded yet, in order, stopping at the first
    /// failure.
    async fn run_steps(
        &self,
        event: &ClaimedEvent,
        steps: &[&Step],
        progress: &Progress,
        payload: &Value,
        lease: &LeaseGuard,
    ) -> Option<Ending> {
        let retry = &self.settings.retry;
        let mut ran = 0;
        let mut skipped: Vec<&str> = Vec::new();
        let mut last_step = None;
        for (i, step) in steps.iter().enumerate() {
            if progress.done(&step.key) {
                continue;
            }
            if lease.lost() {
                return None;
            }
            let last = i + 1 == steps.len();
            match self.run_step(step, event, payload, last).await {
                Err(e) => return Some(retry.after_failure(event.attempt, e.to_string()).into()),
                Ok(StepRun::Succeeded {
                    unrecorded,
                    skipped: skip,
                }) => {
                    ran += 1;
                    if skip {
                        skipped.push(&step.key);
                    }
                    last_step = unrecorded;
                }
                Ok(StepRun::Wait { until, reason }) => {
                    return Some(self.postpone(event, false, until, reason).into());
                }
                Ok(StepRun::Failed { error, retry_after }) => {
                    tracing::warn!(step = %step.key, %error, "step failed");
                    if event.attempt < retry.max_attempts {
                        return Some(
                            retry
                                .after_failure_at_least(event.attempt, error, retry_after)
                                .into(),
                        );
                    }
                    // Steps run in order and stop at the first failure: every step before this
                    // one has succeeded or was skipped, in this attempt or an earlier one. A
                    // skipped step sent nothing, so it has nothing to compensate.
                    let succeeded: Vec<&Step> = steps[..i]
                        .iter()
                        .copied()
                        .filter(|s| !progress.skipped(&s.key) && !skipped.contains(&&*s.key))
                        .collect();
                    return Some(self.failed_for_good(event, &succeeded, error).into());
                }
            }
        }
        let mut detail = format!("{ran} step(s) run, {} already done", steps.len() - ran);
        if !skipped.is_empty() {
            detail.push_str(&format!(
                "; skipped by their transform: {}",
                skipped.join(", ")
            ));
        }
        Some(Ending {
            outcome: Outcome::Completed { detail },
            last_step,
        })
    }

    /// The last attempt failed: compensate the succeeded steps that name a compensation, or
    /// dead-letter the event at once if there are none.
    fn failed_for_good(&self, event: &ClaimedEvent, succeeded: &[&Step], error: String) -> Outcome {
        let to_undo = succeeded
            .iter()
            .filter(|s| s.compensation.is_some())
            .count();
        if to_undo == 0 {
            return Outcome::DeadLetter { error };
        }
        tracing::warn!(%error, compensations = to_undo, "event failed for good; compensating");
        Outcome::Compensate {
            at: Utc::now(),
            detail: format!(
                "attempt {} failed: {error}; compensating {to_undo} succeeded step(s) in reverse order",
                event.attempt
            ),
            error,
        }
    }

    /// The compensation phase: the compensations of the steps that had succeeded, last step
    /// first. Each compensation is retried on its own (up to `max_attempts` tries); one that
    /// never succeeds is given up, recorded, and the next one runs. When none is left the event
    /// is dead-lettered with a summary.
    async fn compensate(
        &self,
        event: &ClaimedEvent,
        steps: &[&Step],
        progress: &Progress,
        payload: &Value,
        lease: &LeaseGuard,
    ) -> Option<Outcome> {
        let retry = &self.settings.retry;
        let max = retry.max_attempts;
        let error = progress
            .last_error
            .clone()
            .unwrap_or_else(|| "failed for good".into());
        let compensations: Vec<&Step> = steps
            .iter()
            .filter(|s| progress.succeeded(&s.key))
            .filter_map(|s| s.compensation.as_deref())
            .rev()
            .collect();
        let budget = compensation_budget(max, compensations.len());
        let mut report = Vec::new();
        for comp in &compensations {
            if let Some(settled) = settled(comp, progress, max, event.attempt > budget) {
                report.push(settled);
                continue;
            }
            let failures = progress.failures(&comp.key);
            if lease.lost() {
                return None;
            }
            match self.run_step(comp, event, payload, false).await {
                Err(e) => {
                    return Some(Outcome::Compensate {
                        at: retry.retry_at(1, None),
                        error,
                        detail: format!("compensation {} interrupted: {e}", comp.key),
                    });
                }
                Ok(StepRun::Succeeded { skipped: true, .. }) => {
                    report.push(format!("{} skipped by its transform", comp.key));
                }
                Ok(StepRun::Succeeded { .. }) => report.push(format!("{} succeeded", comp.key)),
                Ok(StepRun::Wait { until, reason }) => {
                    return Some(self.postpone(event, true, until, reason));
                }
                Ok(StepRun::Failed {
                    error: e,
                    retry_after,
                }) => {
                    let tries = failures + 1;
                    if tries >= max {
                        tracing::error!(step = %comp.key, error = %e, tries, "compensation failed for good");
                        report.push(format!("{} gave up after {tries} tries", comp.key));
                        continue;
                    }
                    tracing::warn!(step = %comp.key, error = %e, tries, "compensation failed");
                    let at = retry.retry_at(tries, retry_after);
                    return Some(Outcome::Compensate {
                        at,
                        error,
                        detail: format!(
                            "compensation {} failed (try {tries} of {max}): {e}; retry at {}",
                            comp.key,
                            at.to_rfc3339()
                        ),
                    });
                }
            }
        }
        let summary = if report.is_empty() {
            "no compensation to run".to_owned()
        } else {
            format!("compensations: {}", report.join(", "))
        };
        Some(Outcome::DeadLetter {
            error: format!("{error}; {summary}"),
        })
    }

    /// Run one step through its destination's breaker and limit, record the result, and tell
    /// the breaker. `Err` only when the result cannot be recorded (the store is unwell). With
    /// `defer_success`, a success is not recorded but handed back to be written with the outcome.
    async fn run_step(
        &self,
        step: &Step,
        event: &ClaimedEvent,
        payload: &Value,
        defer_success: bool,
    ) -> Result<StepRun, RecordError> {
        let headers = match self.transform_headers(step, event).await {
            Ok(h) => h,
            Err(wait) => return Ok(wait),
        };
        let pass = match &step.destination {
            None => None,
            Some(dest) => {
                let timeout = self.actions.timeout(step);
                match self.destinations.admit(dest, timeout).await {
                    Admission::Go(pass) => Some(pass),
                    Admission::Wait { until, reason } => {
                        return Ok(StepRun::Wait { until, reason });
                    }
                }
            }
        };
        let started = Instant::now();
        let result = self
            .actions
            .run(step, event, payload, &headers)
            .instrument(tracing::info_span!("step", otel.name = %step.key, action = step.action()))
            .await;
        let duration_ms = started.elapsed().as_millis() as u64;
        let outcome = match &result {
            Ok(Ran::Done) => StepOutcome::Succeeded,
            Ok(Ran::Skipped) => StepOutcome::Skipped,
            Err(_) => StepOutcome::Failed,
        };
        metrics::step_duration(step.action(), outcome.as_str(), started.elapsed());
        let health = self.tell_breaker(pass, &result);
        if let (Err(e), Some(Health::Open { until })) = (&result, health)
            && e.is_destination_failure()
        {
            // The destination is down: this failure is the outage's, not the event's. It is
            // kept in the transition that postpones the event, not as a step result.
            let asked = e.retry_after().unwrap_or_default();
            let until = until.max(Instant::now() + asked.min(self.settings.retry.cap));
            tracing::warn!(step = %step.key, error = %e, "step failed while its destination is down; not counted");
            return Ok(StepRun::Wait {
                until,
                reason: format!("{} failed: {e}; circuit breaker open", step.key),
            });
        }
        let record = StepRecord {
            event_id: event.id,
            step: step.key.clone(),
            attempt: event.attempt,
            outcome,
            error: result.as_ref().err().map(|e| e.to_string()),
            duration_ms,
            generation: event.generation,
        };
        let deferred = defer_success && result.is_ok();
        if !deferred {
            self.record(&record).await?;
        }
        Ok(match result {
            Ok(ran) => StepRun::Succeeded {
                unrecorded: deferred.then_some(record),
                skipped: ran == Ran::Skipped,
            },
            Err(e) => StepRun::Failed {
                retry_after: e.retry_after(),
                error: e.to_string(),
            },
        })
    }

    /// Tell the destination's breaker what the step's result says about it. A step that its
    /// transform skipped or failed never reached the destination: its pass goes back unreported,
    /// as if the step had not run (a half-open breaker's probe stays available).
    fn tell_breaker(
        &self,
        pass: Option<Pass>,
        result: &Result<Ran, ActionError>,
    ) -> Option<Health> {
        let verdict = match result {
            Ok(Ran::Skipped) | Err(ActionError::Transform(_)) => return None,
            Err(e) if e.is_destination_failure() => Verdict::Failed,
            Ok(Ran::Done) | Err(_) => Verdict::Answered,
        };
        pass.map(|pass| self.destinations.record(pass, verdict))
    }

    /// The webhook request's headers, when the step has a transform (which reads them). `Err`:
    /// the store cannot say, which is not the event's fault: the step waits, uncounted.
    async fn transform_headers(
        &self,
        step: &Step,
        event: &ClaimedEvent,
    ) -> Result<BTreeMap<String, String>, StepRun> {
        if step.transform.is_none() {
            return Ok(BTreeMap::new());
        }
        self.store
            .request_headers(event.id)
            .await
            .map_err(|e| StepRun::Wait {
                until: Instant::now() + Duration::from_secs(1),
                reason: format!(
                    "cannot read the event's headers for the transform of {}: {e}",
                    step.key
                ),
            })
    }

    /// Store a step's result. Without it a succeeded step would run again on the next attempt:
    /// for up to a lease, wait for a store that is restarting rather than give the attempt up.
    async fn record(&self, record: &StepRecord) -> Result<(), RecordError> {
        let give_up = tokio::time::Instant::now() + self.settings.lease;
        let mut delay = std::time::Duration::from_millis(100);
        loop {
            match self.store.record_step(record).await {
                Ok(()) => return Ok(()),
                Err(e) if tokio::time::Instant::now() + delay < give_up => {
                    tracing::warn!(step = %record.step, error = %e, "cannot record the step result; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(1));
                }
                Err(source) => {
                    return Err(RecordError {
                        step: record.step.clone(),
                        source,
                    });
                }
            }
        }
    }

    /// Put the event back without counting the attempt.
    fn postpone(
        &self,
        event: &ClaimedEvent,
        compensating: bool,
        until: Instant,
        reason: String,
    ) -> Outcome {
        let to = if compensating {
            EventStatus::Compensating
        } else if event.attempt <= 1 {
            EventStatus::Pending
        } else {
            EventStatus::RetryScheduled
        };
        tracing::info!(%reason, "attempt postponed");
        Outcome::Postpone {
            at: wall_clock(until),
            to,
            reason,
        }
    }

    fn hold_lease(&self, event: &ClaimedEvent) -> LeaseGuard {
        self.renewer.hold(event.id)
    }
}

/// The steps of this delivery that have succeeded, in order.
fn succeeded<'s>(steps: &[&'s Step], progress: &Progress) -> Vec<&'s Step> {
    steps
        .iter()
        .copied()
        .filter(|s| progress.succeeded(&s.key))
        .collect()
}

/// Claims the compensation phase may use. Crashes during compensation use up claims without
/// recording a result. Allow the normal phase's attempts, then twice the tries per
/// compensation; the bound keeps a compensation that always kills its worker from looping
/// forever.
fn compensation_budget(max: u32, compensations: usize) -> u32 {
    max.saturating_add(1)
        .saturating_add(max.saturating_mul(2).saturating_mul(compensations as u32))
}

/// What the report says of a compensation that is not to run now: it succeeded, it was given
/// up, or no attempts are left. `None` when it should run.
fn settled(comp: &Step, progress: &Progress, max: u32, out_of_attempts: bool) -> Option<String> {
    if progress.succeeded(&comp.key) {
        return Some(format!("{} succeeded", comp.key));
    }
    if progress.skipped(&comp.key) {
        return Some(format!("{} skipped by its transform", comp.key));
    }
    let failures = progress.failures(&comp.key);
    if failures >= max {
        return Some(format!("{} gave up after {failures} tries", comp.key));
    }
    out_of_attempts.then(|| format!("{} not run: no attempts left", comp.key))
}

//! [`Work`] for any engine: the reads of earlier attempts and the step results, written once
//! (the claim, lease and finish statements are the engine's own [`crate::store::Leases`]: they
//! lock differently).
//!
//! It must never change an event's status: only the engine's fenced statements do.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Dialect, Engine, Record, Sql, since_replay};
use crate::event::{ClaimedEvent, EventId, Outcome, Progress, StepOutcome, StepRecord};
use crate::store::{StoreError, Work};

/// A claimed event from the row a claim returns (the event's columns, with its delivery's
/// `attempts` and `replays` after the update, and `ordered`: whether it is in an order line).
pub fn claimed(r: &impl Record) -> Result<ClaimedEvent, StoreError> {
    Ok(ClaimedEvent {
        id: EventId(r.get("id")?),
        provider: r.get("provider")?,
        event_type: r.get("event_type")?,
        idempotency_key: r.get("idempotency_key")?,
        content_type: r.get("content_type")?,
        body: r.get("body")?,
        attempt: r.small("attempts")?,
        received_at: r.time("received_at")?,
        traceparent: r.get("traceparent")?,
        delivery: None,
        generation: r.small("replays")?,
        ordered: r.get("ordered")?,
    })
}

/// The statement that extends `owner`'s leases on `ids` by `lease` from now (one statement for
/// all the leases a process holds); it returns the `event_id` of each lease still held.
pub fn renew_leases(d: Dialect, ids: &[EventId], owner: &str, lease: Duration) -> Sql {
    // The database's clock on PostgreSQL, as for every lease; SQLite's is the process's own.
    let until = match d {
        Dialect::Postgres => "now() + $1 * interval '1 millisecond'",
        Dialect::Sqlite => "{now} + $1",
    };
    let mut q = Sql::new(&format!(
        "UPDATE deliveries SET next_attempt_at = {until}, updated_at = {{now}}
         WHERE lease_owner = $2 AND status = 'processing' AND event_id IN (NULL"
    ))
    .arg(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX))
    .arg(owner);
    for id in ids {
        q.push(", ").bind(*id);
    }
    q.push(") RETURNING event_id");
    q
}

/// The ids [`renew_leases`] returned.
pub fn renewed(rows: &[impl Record]) -> Result<Vec<EventId>, StoreError> {
    rows.iter()
        .map(|r| Ok(EventId(r.get("event_id")?)))
        .collect()
}

/// The statement that records one step's result.
pub fn insert_step(r: &StepRecord) -> Sql {
    Sql::new(
        "INSERT INTO step_results (event_id, step, attempt, outcome, error, duration_ms, at, generation)
         VALUES ($1, $2, $3, $4, $5, $6, {now}, $7)",
    )
    .arg(r.event_id)
    .arg(&r.step)
    .arg(i32::try_from(r.attempt).unwrap_or(i32::MAX))
    .arg(r.outcome.as_str())
    .arg(r.error.as_deref())
    .arg(r.duration_ms as i64)
    .arg(i32::try_from(r.generation).unwrap_or(i32::MAX))
}

#[async_trait]
impl<E: Engine> Work for E {
    async fn succeeded_steps(&self, id: EventId) -> Result<Vec<String>, StoreError> {
        let q = Sql::new(
            "SELECT DISTINCT step FROM step_results s JOIN deliveries d ON d.event_id = s.event_id
             WHERE s.event_id = $1 AND s.outcome = 'succeeded' AND s.generation = d.replays",
        )
        .arg(id);
        self.read(q).await?.iter().map(|r| r.get("step")).collect()
    }

    async fn record_step(&self, record: &StepRecord) -> Result<(), StoreError> {
        self.write(insert_step(record)).await?;
        Ok(())
    }

    async fn progress(&self, id: EventId) -> Result<Progress, StoreError> {
        // Only this replay generation counts: its compensations and its step results.
        let head = Sql::new(&format!(
            "SELECT last_error, EXISTS (
                SELECT 1 FROM event_transitions t WHERE t.event_id = d.event_id
                    AND t.to_status = 'compensating' AND t.id > {}
             ) AS compensating
             FROM deliveries d WHERE event_id = $1",
            since_replay("d.event_id")
        ))
        .arg(id);
        let Some(head) = self.read(head).await?.into_iter().next() else {
            return Ok(Progress::default());
        };
        let results = Sql::new(
            "SELECT s.step, s.outcome FROM step_results s JOIN deliveries d ON d.event_id = s.event_id
             WHERE s.event_id = $1 AND s.generation = d.replays ORDER BY s.id",
        )
        .arg(id);
        let results = self
            .read(results)
            .await?
            .iter()
            .map(|r| {
                let outcome: String = r.get("outcome")?;
                let parsed = StepOutcome::parse(&outcome).ok_or_else(|| {
                    StoreError::other(format!("unknown step outcome {outcome:?}"))
                })?;
                Ok((r.get("step")?, parsed))
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Progress {
            compensating: head.get("compensating")?,
            last_error: head.get("last_error")?,
            results,
        })
    }

    async fn replayed_at(&self, id: EventId) -> Result<Option<DateTime<Utc>>, StoreError> {
        let q = Sql::new(&format!(
            "SELECT at FROM event_transitions WHERE event_id = $1 AND id = {}",
            since_replay("$1")
        ))
        .arg(id);
        match self.read(q).await?.first() {
            Some(r) => Ok(Some(r.time("at")?)),
            None => Ok(None),
        }
    }

    async fn request_headers(&self, id: EventId) -> Result<BTreeMap<String, String>, StoreError> {
        let q =
            Sql::new("SELECT CAST(headers AS TEXT) AS headers FROM events WHERE id = $1").arg(id);
        let Some(r) = self.read(q).await?.into_iter().next() else {
            return Ok(BTreeMap::new());
        };
        let headers: String = r.get("headers")?;
        Ok(serde_json::from_str(&headers)?)
    }
}

/// `(detail, last_error)` written when an attempt ends.
pub fn outcome_texts(outcome: &Outcome) -> (String, Option<String>) {
    match outcome {
        Outcome::Completed { detail } => (detail.clone(), None),
        Outcome::RetryAt { at, error } => (
            format!("retry at {}: {error}", at.to_rfc3339()),
            Some(error.clone()),
        ),
        Outcome::DeadLetter { error } => (format!("dead-lettered: {error}"), Some(error.clone())),
        Outcome::Compensate { error, detail, .. } => (detail.clone(), Some(error.clone())),
        Outcome::Postpone { at, reason, .. } => (
            format!(
                "{reason}; waiting until {}; attempt not counted",
                at.to_rfc3339()
            ),
            None,
        ),
    }
}

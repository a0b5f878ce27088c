//! SQLite claims: pick the due events, then start an attempt on each, all inside the writer's
//! transaction (one writer at a time is SQLite's `SKIP LOCKED`).
//!
//! It must never commit: the caller owns the transaction.

use std::time::Duration;

use sqlx::{AssertSqlSafe, SqliteConnection};
use uuid::Uuid;

use super::now_ms;
use crate::event::ClaimedEvent;
use crate::store::sql::claimed;
use crate::store::{Claim, StoreError};

// INDEXED BY: without statistics SQLite prefers the status index, then sorts every pending row
// by time: 0.8 s per claim with a 70 000-event backlog (bench/run.sh).
const DUE: &str = "SELECT event_id, status FROM deliveries INDEXED BY deliveries_due
     WHERE status IN ('pending', 'processing', 'retry_scheduled', 'compensating')
         AND next_attempt_at <= ?1
         -- Not behind an unfinished event of its order key (only these are in the index).
         AND held = 0
         AND NOT EXISTS (SELECT 1 FROM provider_pauses p WHERE p.provider = deliveries.provider)";

/// Claim what `which` names for `owner` inside `tx`.
pub(super) async fn claim(
    tx: &mut SqliteConnection,
    owner: &str,
    lease: Duration,
    which: Claim,
) -> Result<Vec<ClaimedEvent>, StoreError> {
    claim_at(tx, owner, lease, which, now_ms()).await
}

/// [`claim`] as of `now` (milliseconds): an insert claims its own events at its own time.
pub(super) async fn claim_at(
    tx: &mut SqliteConnection,
    owner: &str,
    lease: Duration,
    which: Claim,
    now: i64,
) -> Result<Vec<ClaimedEvent>, StoreError> {
    let lease_until = now + lease.as_millis() as i64;
    let due = due(tx, which, now).await?;
    let mut out = Vec::with_capacity(due.len());
    for (id, from) in due {
        out.push(start_attempt(tx, id, &from, owner, lease_until, now).await?);
    }
    Ok(out)
}

/// The due events among those `which` names, with the status each is claimed from.
async fn due(
    tx: &mut SqliteConnection,
    which: Claim,
    now: i64,
) -> Result<Vec<(Uuid, String)>, StoreError> {
    match which {
        Claim::Due { limit } => Ok(sqlx::query_as(AssertSqlSafe(format!(
            "{DUE} ORDER BY next_attempt_at LIMIT ?2"
        )))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?),
        Claim::Events(ids) => {
            // One writer transaction already; one indexed lookup per id costs nothing more.
            let mut due = Vec::with_capacity(ids.len());
            for id in ids {
                due.extend(
                    sqlx::query_as::<_, (Uuid, String)>(AssertSqlSafe(format!(
                        "{DUE} AND event_id = ?2"
                    )))
                    .bind(now)
                    .bind(id.0)
                    .fetch_optional(&mut *tx)
                    .await?,
                );
            }
            Ok(due)
        }
    }
}

/// Start a new attempt of `id` under a lease until `lease_until`, with its transition.
async fn start_attempt(
    tx: &mut SqliteConnection,
    id: Uuid,
    from: &str,
    owner: &str,
    lease_until: i64,
    now: i64,
) -> Result<ClaimedEvent, StoreError> {
    sqlx::query(
        "UPDATE deliveries SET status = 'processing', attempts = attempts + 1, lease_owner = ?2,
             next_attempt_at = ?3, updated_at = ?4
         WHERE event_id = ?1",
    )
    .bind(id)
    .bind(owner)
    .bind(lease_until)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    // The event itself is only read.
    let r = sqlx::query(
        "SELECT e.id, e.provider, e.event_type, e.idempotency_key, e.content_type, e.body,
                d.attempts, e.received_at, e.traceparent, d.replays,
                EXISTS (SELECT 1 FROM event_order o WHERE o.event_id = e.id) AS ordered
         FROM events e JOIN deliveries d ON d.event_id = e.id WHERE e.id = ?1",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    let event = claimed(&r)?;
    let expired = if from == "processing" {
        " (previous lease expired)"
    } else {
        ""
    };
    sqlx::query(
        "INSERT INTO event_transitions (event_id, from_status, to_status, at, detail)
         VALUES (?1, ?2, 'processing', ?3, ?4)",
    )
    .bind(id)
    .bind(from)
    .bind(now)
    .bind(format!("attempt {} by {owner}{expired}", event.attempt))
    .execute(&mut *tx)
    .await?;
    Ok(event)
}

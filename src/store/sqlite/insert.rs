//! SQLite batch inserts: many rows per statement, in a few fixed statement sizes, inside the
//! writer's transaction.
//!
//! It must never commit: the caller owns the transaction, so a batch commits whole or not at
//! all.

use sqlx::{AssertSqlSafe, SqliteConnection};

use super::replays;
use crate::store::{Inserted, NewEvent, StoreError};

/// Rows per multi-row statement. Every statement costs a round trip to the connection's
/// thread, so rows go many to a statement; a few fixed sizes keep the number of distinct
/// statement texts (each prepared once per connection) small.
const CHUNK_SIZES: [usize; 4] = [64, 16, 4, 1];

/// How many of the `left` events the next statement takes.
pub(super) fn chunk_size(left: usize) -> usize {
    CHUNK_SIZES.into_iter().find(|&c| c <= left).unwrap_or(1)
}

/// `(?a, ?b, ...), (...)`: `rows` groups of `cols` numbered parameters, starting at `first`,
/// each group followed by `tail` (text shared by every row).
pub(super) fn placeholders(rows: usize, cols: usize, first: usize, tail: &str) -> String {
    (0..rows)
        .map(|r| {
            let ps: Vec<String> = (0..cols)
                .map(|c| format!("?{}", first + r * cols + c))
                .collect();
            format!("({}{tail})", ps.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Insert one chunk of new events, their delivery rows and their first transitions inside
/// `tx`; returns each event's result in order. Three statements when every key is new, four
/// otherwise.
pub(super) async fn insert_chunk(
    tx: &mut SqliteConnection,
    chunk: &[NewEvent],
    now: i64,
) -> Result<Vec<Inserted>, StoreError> {
    // Byte-identical bodies older than their replay window are no longer replays.
    replays::expire(tx, chunk, now).await?;
    let inserted = insert_events(tx, chunk, now).await?;
    if inserted > 0 {
        insert_state(tx, chunk, now).await?;
    }
    if inserted == chunk.len() {
        return Ok(chunk.iter().map(|e| Inserted::New(e.id)).collect());
    }
    // Some conflicted, by idempotency key or by body digest: find with whom.
    replays::resolve(tx, chunk).await
}

/// The events whose key (and, for schemes that sign only the body, body digest) is new;
/// returns how many.
async fn insert_events(
    tx: &mut SqliteConnection,
    chunk: &[NewEvent],
    now: i64,
) -> Result<usize, StoreError> {
    // The time is parameter 1, shared by every row.
    let sql = format!(
        "INSERT INTO events (id, provider, idempotency_key, event_type, content_type, headers, body,
                             traceparent, body_digest, received_at)
         VALUES {}
         ON CONFLICT DO NOTHING",
        placeholders(chunk.len(), 9, 2, ", ?1")
    );
    let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now);
    for e in chunk {
        q = q
            .bind(e.id.0)
            .bind(e.provider.as_str())
            .bind(e.idempotency_key.as_str())
            .bind(e.event_type.as_str())
            .bind(e.content_type.as_deref())
            .bind(e.headers_json.as_str())
            .bind(e.body.as_ref())
            .bind(e.traceparent.as_deref())
            .bind(e.body_digest.as_deref());
    }
    Ok(q.execute(&mut *tx).await?.rows_affected() as usize)
}

/// The delivery row (pending, due now) and the first transition of each event of `chunk` that
/// was inserted.
async fn insert_state(
    tx: &mut SqliteConnection,
    chunk: &[NewEvent],
    now: i64,
) -> Result<(), StoreError> {
    // Our ids are fresh, so only the rows this chunk inserted match them.
    let ids = (0..chunk.len())
        .map(|i| format!("?{}", i + 2))
        .collect::<Vec<_>>()
        .join(", ");
    for sql in [
        format!(
            "INSERT INTO deliveries (event_id, provider, received_at, next_attempt_at, updated_at)
             SELECT id, provider, ?1, ?1, ?1 FROM events WHERE id IN ({ids})"
        ),
        format!(
            "INSERT INTO event_transitions (event_id, from_status, to_status, at, detail)
             SELECT id, NULL, 'pending', ?1, 'received' FROM events WHERE id IN ({ids})"
        ),
    ] {
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now);
        for e in chunk {
            q = q.bind(e.id.0);
        }
        q.execute(&mut *tx).await?;
    }
    Ok(())
}

//! The two halves of an insert chunk that deal with conflicts on SQLite: expiring body digests
//! older than their replay window (so a byte-identical body after the window is a new event),
//! and finding the stored event of each insert that conflicted, by idempotency key or by body
//! digest.
//!
//! Owns only these statements; it must never insert or change anything but `body_digest`.

use sqlx::{AssertSqlSafe, SqliteConnection};
use uuid::Uuid;

use super::insert::placeholders;
use crate::event::EventId;
use crate::store::{Inserted, NewEvent, StoreError};

/// Clear the digests of earlier events with the same provider and body as one of `chunk`
/// received before that event's replay window (`now` in milliseconds). No statement when no
/// event of the chunk has a digest.
pub(super) async fn expire(
    tx: &mut SqliteConnection,
    chunk: &[NewEvent],
    now: i64,
) -> Result<(), StoreError> {
    for e in chunk {
        let Some(digest) = e.body_digest.as_deref() else {
            continue;
        };
        let window = i64::try_from(e.replay_window.as_millis()).unwrap_or(i64::MAX);
        sqlx::query(
            "UPDATE events SET body_digest = NULL
             WHERE provider = ?1 AND body_digest = ?2 AND received_at < ?3",
        )
        .bind(e.provider.as_str())
        .bind(digest)
        .bind(now.saturating_sub(window))
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Each event's result, after an insert in which some conflicted: its own row is new; otherwise
/// the row with its idempotency key, or else the row with its body digest, is the one it
/// duplicates.
pub(super) async fn resolve(
    tx: &mut SqliteConnection,
    chunk: &[NewEvent],
) -> Result<Vec<Inserted>, StoreError> {
    let n = chunk.len();
    let sql = format!(
        "SELECT provider, idempotency_key, body_digest, id FROM events
         WHERE (provider, idempotency_key) IN (VALUES {})
            OR (provider, body_digest) IN (VALUES {})",
        placeholders(n, 2, 1, ""),
        placeholders(n, 2, 2 * n + 1, "")
    );
    let mut q = sqlx::query_as::<_, (String, String, Option<String>, Uuid)>(AssertSqlSafe(sql));
    for e in chunk {
        q = q.bind(e.provider.as_str()).bind(e.idempotency_key.as_str());
    }
    for e in chunk {
        q = q.bind(e.provider.as_str()).bind(e.body_digest.as_deref());
    }
    let stored = q.fetch_all(&mut *tx).await?;
    chunk
        .iter()
        .map(|e| {
            if stored.iter().any(|r| r.3 == e.id.0) {
                return Ok(Inserted::New(e.id));
            }
            let by_key = stored
                .iter()
                .find(|(p, k, _, _)| *p == e.provider && *k == e.idempotency_key);
            let by_body = || {
                stored
                    .iter()
                    .find(|(p, _, d, _)| *p == e.provider && d.is_some() && *d == e.body_digest)
            };
            match by_key.or_else(by_body) {
                Some(r) => Ok(Inserted::Duplicate(EventId(r.3))),
                None => Err(StoreError::other("an event of the batch is missing")),
            }
        })
        .collect()
}

//! The two halves of an insert batch that deal with conflicts on PostgreSQL: expiring body
//! digests older than their replay window (so a byte-identical body after the window is a new
//! event), and finding the stored event of each insert that conflicted with a row the batch's
//! statement could not see.
//!
//! Owns only these statements; it must never insert or change anything but `body_digest`.

use sqlx::postgres::PgPool;
use uuid::Uuid;

use crate::event::EventId;
use crate::store::{Inserted, NewEvent, StoreError};

/// Clear the digests of earlier events with the same provider and body as one of `events`
/// received longer ago than that event's replay window. A no-op (no statement) when no event of
/// the batch has a digest.
pub(super) async fn expire(pool: &PgPool, events: &[NewEvent]) -> Result<(), StoreError> {
    let keyed: Vec<&NewEvent> = events.iter().filter(|e| e.body_digest.is_some()).collect();
    if keyed.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE events e SET body_digest = NULL
         FROM unnest($1::text[], $2::text[], $3::float8[]) AS d(provider, digest, window_secs)
         WHERE e.provider = d.provider AND e.body_digest = d.digest
           AND e.received_at < now() - make_interval(secs => d.window_secs)",
    )
    .bind(
        keyed
            .iter()
            .map(|e| e.provider.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        keyed
            .iter()
            .map(|e| e.body_digest.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        keyed
            .iter()
            .map(|e| e.replay_window.as_secs_f64())
            .collect::<Vec<_>>(),
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Fill in each `None` of `out` with the stored event its insert conflicted with, by
/// idempotency key first, then by body digest: a row committed while the insert ran was not in
/// its snapshot, but ON CONFLICT waited for its commit, so a new statement sees it.
pub(super) async fn resolve_conflicts(
    pool: &PgPool,
    events: &[NewEvent],
    out: &mut [Option<Inserted>],
) -> Result<(), StoreError> {
    let open: Vec<usize> = (0..events.len()).filter(|&i| out[i].is_none()).collect();
    if open.is_empty() {
        return Ok(());
    }
    let rows: Vec<(i64, Uuid)> = sqlx::query_as(
        "SELECT k.i, e.id FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY
             AS k(provider, idempotency_key, body_digest, i)
         JOIN events e USING (provider, idempotency_key)
         UNION ALL
         SELECT k.i, e.id FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY
             AS k(provider, idempotency_key, body_digest, i)
         JOIN events e USING (provider, body_digest)",
    )
    .bind(
        open.iter()
            .map(|&i| events[i].provider.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        open.iter()
            .map(|&i| events[i].idempotency_key.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        open.iter()
            .map(|&i| events[i].body_digest.as_deref())
            .collect::<Vec<_>>(),
    )
    .fetch_all(pool)
    .await?;
    // Ordinality counts from 1; key matches come first, so they win.
    for (k, id) in rows.into_iter().rev() {
        let Some(&i) = usize::try_from(k - 1).ok().and_then(|k| open.get(k)) else {
            continue;
        };
        out[i] = Some(if id == events[i].id.0 {
            Inserted::New(events[i].id)
        } else {
            Inserted::Duplicate(EventId(id))
        });
    }
    Ok(())
}

//! The end of attempts on PostgreSQL: the one statement that writes a batch of outcomes, and
//! the one that takes the ordered events of the batch out of their order lines.
//!
//! It must never write an outcome without the lease (every update is fenced on the owner).

use uuid::Uuid;

use crate::event::{Outcome, StepRecord};
use crate::store::sql::outcome_texts;
use crate::store::{Finish, StoreError};

/// Take the events `$1` that ended (`$2`: completed, so out of every line; else a dead letter,
/// out of the lines of routes that release) out of their lines, and let the next event of each
/// line start: `order::leave` for a whole batch in one statement. An event that ran was first
/// in all its lines, so the next one in each is the new head. Runs after the lines were locked
/// (`order::LOCK_LINES`), so it sees every event that joined them, and each line's `waiting` is
/// its latest; the statement's own changes are not visible to it, hence the events leaving are
/// left out by hand, and a line its last events leave is deleted rather than decremented (the
/// table holds only lines with events in them; with a key per event, that is every line, and
/// nothing else is written). Returns the events it let start (held by nothing now, pending),
/// each with its first line (`route`, `key`), for the queue to be told: none when no line had
/// anyone waiting.
pub(super) const RELEASE: &str = "WITH e AS (
        SELECT * FROM unnest($1::uuid[], $2::bool[]) AS e(event_id, all_lines)
     ), gone AS (
        UPDATE event_order o SET pos = NULL FROM e
        WHERE o.event_id = e.event_id AND o.pos IS NOT NULL AND (e.all_lines OR NOT o.block)
        RETURNING o.event_id, o.route, o.key
     ), c AS (
        SELECT route, key, count(*)::int AS k FROM gone GROUP BY route, key
     ), emptied AS (
        DELETE FROM order_lines l USING c
        WHERE l.route = c.route AND l.key = c.key AND l.waiting <= c.k
     ), dec AS (
        UPDATE order_lines l SET waiting = l.waiting - c.k FROM c
        WHERE l.route = c.route AND l.key = c.key AND l.waiting > c.k
        RETURNING l.route, l.key
     ), next AS (
        SELECT (SELECT o.event_id FROM event_order o
                WHERE o.route = dec.route AND o.key = dec.key AND o.pos IS NOT NULL
                  AND o.event_id NOT IN (SELECT event_id FROM gone)
                ORDER BY o.pos LIMIT 1) AS event_id
        FROM dec
     ), freed AS (
        UPDATE deliveries d SET held = d.held - x.n
        FROM (SELECT event_id, count(*)::int AS n FROM next WHERE event_id IS NOT NULL
              GROUP BY event_id) x
        WHERE d.event_id = x.event_id
        RETURNING d.event_id, d.held, d.status
     )
     SELECT f.event_id, k.route, k.key FROM freed f
     CROSS JOIN LATERAL (SELECT o.route, o.key FROM event_order o WHERE o.event_id = f.event_id
                         ORDER BY o.route, o.key LIMIT 1) k
     WHERE f.held = 0 AND f.status = 'pending'";

/// [`Leases::finish_many`]'s one statement, on `db` (the pool, or a transaction): the ids whose
/// outcome was written.
pub(super) async fn finish_statement<'c>(
    items: &[Finish],
    db: impl sqlx::PgExecutor<'c>,
) -> Result<Vec<Uuid>, StoreError> {
    // One statement, so one transaction and one round trip for the whole batch; rows travel
    // as arrays, so the statement text (and its cached plan) is the same for any batch.
    // PostgreSQL runs every data-modifying CTE to completion: the steps go in even for
    // items whose fenced update matches nothing.
    let texts: Vec<(String, Option<String>)> =
        items.iter().map(|f| outcome_texts(&f.outcome)).collect();
    let steps: Vec<&StepRecord> = items.iter().filter_map(|f| f.step.as_ref()).collect();
    Ok(sqlx::query_scalar(
            "WITH f AS (
                SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[],
                                     $5::text[], $6::text[], $7::bool[])
                    AS f(id, owner, status, next_at, last_error, detail, postponed)
             ), steps AS (
                INSERT INTO step_results (event_id, step, attempt, outcome, error, duration_ms, generation)
                SELECT * FROM unnest($8::uuid[], $9::text[], $10::int[], $11::text[], $12::text[],
                                     $13::bigint[], $14::int[])
             ), upd AS (
                UPDATE deliveries d SET status = f.status, lease_owner = NULL,
                    next_attempt_at = COALESCE(f.next_at, d.next_attempt_at),
                    -- A postponed attempt never ran its work: it does not count, and the last
                    -- error stays.
                    last_error = CASE WHEN f.postponed THEN d.last_error ELSE f.last_error END,
                    attempts = d.attempts - CASE WHEN f.postponed THEN 1 ELSE 0 END,
                    updated_at = now()
                FROM f
                WHERE d.event_id = f.id AND d.lease_owner = f.owner AND d.status = 'processing'
                RETURNING d.event_id AS id, f.status, f.detail
             ), t AS (
                INSERT INTO event_transitions (event_id, from_status, to_status, detail)
                SELECT id, 'processing', status, detail FROM upd
             )
             SELECT id FROM upd",
        )
        .bind(items.iter().map(|f| f.id.0).collect::<Vec<_>>())
        .bind(items.iter().map(|f| f.owner.as_str()).collect::<Vec<_>>())
        .bind(
            items
                .iter()
                .map(|f| f.outcome.status().as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            items
                .iter()
                .map(|f| f.outcome.next_attempt_at())
                .collect::<Vec<_>>(),
        )
        .bind(texts.iter().map(|(_, e)| e.as_deref()).collect::<Vec<_>>())
        .bind(texts.iter().map(|(d, _)| d.as_str()).collect::<Vec<_>>())
        .bind(
            items
                .iter()
                .map(|f| matches!(f.outcome, Outcome::Postpone { .. }))
                .collect::<Vec<_>>(),
        )
        .bind(steps.iter().map(|r| r.event_id.0).collect::<Vec<_>>())
        .bind(steps.iter().map(|r| r.step.as_str()).collect::<Vec<_>>())
        .bind(steps.iter().map(|r| r.attempt as i32).collect::<Vec<_>>())
        .bind(steps.iter().map(|r| r.outcome.as_str()).collect::<Vec<_>>())
        .bind(steps.iter().map(|r| r.error.as_deref()).collect::<Vec<_>>())
        .bind(steps.iter().map(|r| r.duration_ms as i64).collect::<Vec<_>>())
        .bind(steps.iter().map(|r| r.generation as i32).collect::<Vec<_>>())
        .fetch_all(db)
        .await?)
}

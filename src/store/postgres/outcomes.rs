//! The end of attempts on PostgreSQL: the one statement that writes a batch of outcomes and,
//! for ordered events, takes them out of their order lines and lets the next event of each
//! line start.
//!
//! It must never write an outcome without the lease (every update is fenced on the owner).

use sqlx::postgres::{PgArguments, PgConnection, Postgres};
use sqlx::query::Query;
use sqlx::{PgExecutor, Row};
use uuid::Uuid;

use crate::event::{EventId, Outcome, StepRecord};
use crate::store::sql::outcome_texts;
use crate::store::{Finish, Released, StoreError};

/// The outcomes of a batch: each item's delivery row updated (fenced on its lease), its step
/// result, its transition. `upd` holds the rows written. PostgreSQL runs every data-modifying
/// CTE to completion: the steps go in even for items whose fenced update matches nothing.
macro_rules! outcomes_ctes {
    () => {
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
         )"
    };
}

/// From `next` (the new first event of each line that had one, or NULL), the events that may
/// start now: one fewer line holds each back, and those held by nothing any more (and pending)
/// are `started`, each with its first line (`route`, `key`) for the queue to be told.
macro_rules! started_ctes {
    () => {
        ", freed AS (
            UPDATE deliveries d SET held = d.held - x.n
            FROM (SELECT event_id, count(*)::int AS n FROM next WHERE event_id IS NOT NULL
                  GROUP BY event_id) x
            WHERE d.event_id = x.event_id
            RETURNING d.event_id, d.held, d.status
         ), started AS (
            SELECT f.event_id, k.route, k.key FROM freed f
            CROSS JOIN LATERAL (SELECT o.route, o.key FROM event_order o
                                WHERE o.event_id = f.event_id
                                ORDER BY o.route, o.key LIMIT 1) k
            WHERE f.held = 0 AND f.status = 'pending'
         )"
    };
}

/// A batch without ordered events: the outcomes alone, one statement, one round trip. Rows
/// travel as arrays, so the statement text (and its cached plan) is the same for any batch.
const FINISH: &str = concat!(outcomes_ctes!(), " SELECT id FROM upd");

/// A batch with ordered events (`$15`, their ids): the outcomes, then the events that ended
/// leave their lines (completed: every line; dead letters: the lines of routes that release),
/// and the next event of each line is released, all in one statement.
///
/// Lines are locked in one order (`locked`, as the inserts take them: no deadlock) and read
/// at their latest version, so a line's `waiting` counts an event that joined while this
/// statement waited for the lock; a line its last events leave is deleted (the table holds
/// only lines with events in them). An event that ran was first in all its lines, so the
/// next one in each is the new head, looked up through `event_order_line` (`event_order`
/// keeps its rows for good: only ever reached through an index). The statement's own changes
/// are not visible to it, hence the events leaving are left out by hand; and an event that
/// joined while it waited is not visible to it either. Any event it sees joined before any it
/// does not (the line's lock orders the joins), so the first it sees is the head; a line with
/// events left but none it can see comes back as `unseen`, for [`NEXT`] to settle in a
/// statement of its own.
///
/// Rows: `written` (an outcome written), `started` (an event released), `unseen` (a line).
const FINISH_ORDERED: &str = concat!(
    outcomes_ctes!(),
    ", gone AS (
        UPDATE event_order o SET pos = NULL FROM upd
        WHERE o.event_id = ANY($15) AND o.event_id = upd.id AND o.pos IS NOT NULL
            AND (upd.status = 'completed' OR (upd.status = 'dead_letter' AND NOT o.block))
        RETURNING o.route, o.key
     ), c AS (
        SELECT route, key, count(*)::int AS k FROM gone GROUP BY route, key
     ), locked AS (
        SELECT l.route, l.key, l.waiting - c.k AS remaining
        FROM order_lines l JOIN c USING (route, key)
        ORDER BY l.route, l.key
        FOR UPDATE OF l
     ), emptied AS (
        DELETE FROM order_lines l USING locked x
        WHERE l.route = x.route AND l.key = x.key AND x.remaining <= 0
     ), dec AS (
        UPDATE order_lines l SET waiting = x.remaining FROM locked x
        WHERE l.route = x.route AND l.key = x.key AND x.remaining > 0
        RETURNING l.route, l.key
     ), next AS (
        SELECT dec.route, dec.key,
            (SELECT o.event_id FROM event_order o
             WHERE o.route = dec.route AND o.key = dec.key AND o.pos IS NOT NULL
               AND o.event_id <> ALL($15)
             ORDER BY o.pos LIMIT 1) AS event_id
        FROM dec
     )",
    started_ctes!(),
    " SELECT 'written' AS kind, id AS event_id, NULL AS route, NULL AS key FROM upd
      UNION ALL SELECT 'started', event_id, route, key FROM started
      UNION ALL SELECT 'unseen', NULL, route, key FROM next WHERE event_id IS NULL"
);

/// The lines `$1`/`$2` (route, key) that [`FINISH_ORDERED`] left with events it could not
/// see, in a later statement of the same transaction: it sees every event that joined them,
/// and the lines are still locked. Releases the first event of each, as `started`.
const NEXT: &str = concat!(
    "WITH next AS (
        SELECT (SELECT o.event_id FROM event_order o
                WHERE o.route = x.route AND o.key = x.key AND o.pos IS NOT NULL
                ORDER BY o.pos LIMIT 1) AS event_id
        FROM unnest($1::text[], $2::text[]) AS x(route, key)
     )",
    started_ctes!(),
    " SELECT event_id, route, key FROM started"
);

/// The outcome statement `sql` with the batch's arrays bound (`$1` to `$14`).
fn bind_outcomes<'q>(
    sql: &'static str,
    items: &'q [Finish],
    texts: &'q [(String, Option<String>)],
) -> Query<'q, Postgres, PgArguments> {
    let steps: Vec<&StepRecord> = items.iter().filter_map(|f| f.step.as_ref()).collect();
    sqlx::query(sql)
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
        .bind(steps.iter().map(|r| r.step.clone()).collect::<Vec<_>>())
        .bind(steps.iter().map(|r| r.attempt as i32).collect::<Vec<_>>())
        .bind(steps.iter().map(|r| r.outcome.as_str()).collect::<Vec<_>>())
        .bind(steps.iter().map(|r| r.error.clone()).collect::<Vec<_>>())
        .bind(
            steps
                .iter()
                .map(|r| r.duration_ms as i64)
                .collect::<Vec<_>>(),
        )
        .bind(
            steps
                .iter()
                .map(|r| r.generation as i32)
                .collect::<Vec<_>>(),
        )
}

fn texts_of(items: &[Finish]) -> Vec<(String, Option<String>)> {
    items.iter().map(|f| outcome_texts(&f.outcome)).collect()
}

/// Write the outcomes of a batch without ordered events, on `db`: the ids written.
pub(super) async fn finish<'c>(
    items: &[Finish],
    db: impl PgExecutor<'c>,
) -> Result<Vec<Uuid>, StoreError> {
    let texts = texts_of(items);
    let rows = bind_outcomes(FINISH, items, &texts).fetch_all(db).await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get::<Uuid, _>(0))
        .collect::<Result<_, _>>()?)
}

/// Write the outcomes of a batch with the ordered events `ordered` and let the next events of
/// their lines start, inside the caller's transaction `tx` (the outcome and the release commit
/// together): the ids written, and the events released.
pub(super) async fn finish_ordered(
    items: &[Finish],
    ordered: &[Uuid],
    tx: &mut PgConnection,
) -> Result<(Vec<Uuid>, Vec<Released>), StoreError> {
    let texts = texts_of(items);
    let rows = bind_outcomes(FINISH_ORDERED, items, &texts)
        .bind(ordered)
        .fetch_all(&mut *tx)
        .await?;
    let (mut written, mut released, mut unseen) = (Vec::new(), Vec::new(), (vec![], vec![]));
    for r in &rows {
        let route: Option<String> = r.try_get("route")?;
        let key: Option<String> = r.try_get("key")?;
        let id: Option<Uuid> = r.try_get("event_id")?;
        match (r.try_get::<&str, _>("kind")?, id, route, key) {
            ("written", Some(id), _, _) => written.push(id),
            ("started", Some(id), Some(route), Some(key)) => released.push(Released {
                id: EventId(id),
                route,
                key,
            }),
            ("unseen", _, Some(route), Some(key)) => {
                unseen.0.push(route);
                unseen.1.push(key);
            }
            _ => {
                return Err(StoreError::other(
                    "unexpected row from the outcome statement",
                ));
            }
        }
    }
    if !unseen.0.is_empty() {
        let rows: Vec<(Uuid, String, String)> = sqlx::query_as(NEXT)
            .bind(&unseen.0)
            .bind(&unseen.1)
            .fetch_all(&mut *tx)
            .await?;
        released.extend(rows.into_iter().map(|(id, route, key)| Released {
            id: EventId(id),
            route,
            key,
        }));
    }
    Ok((written, released))
}

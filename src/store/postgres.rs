//! PostgreSQL event store. Workers claim with `FOR UPDATE SKIP LOCKED`, so any number of
//! processes can share one database; every write is a single statement (its own transaction),
//! and the database clock is the only clock used for leases.
//!
//! Holds only what PostgreSQL does its own way: array-bound batch inserts and outcomes, claims,
//! leases and replays that lock rows; every other statement is in the shared `sql` core. It
//! must never hold a statement the SQLite engine could run as written.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow, Postgres};
use uuid::Uuid;

use super::admin::ReplayKind;
use super::sql::order;
use super::sql::{
    Dialect, Engine, RELEASED, Side, Sql, claimed, renew_leases, renewed, since_replay,
};
use super::{
    Claim, ClaimOnInsert, Finish, Finished, Inserted, Intake, Leases, NewEvent, StoreError,
};
use crate::event::{ClaimedEvent, EventId, OrderKey};

mod outcomes;
mod replays;

/// The PostgreSQL engine: one pool for reads and writes.
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub async fn connect(url: &str, pool_size: u32, timeout: Duration) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(pool_size)
            .acquire_timeout(timeout)
            .connect(url)
            .await?;
        Ok(Self { pool })
    }

    /// The pool, for tests and tools that need raw SQL.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Insert `arrived` (in key order), their delivery state, their first transitions and their
    /// places in their order lines in one statement; up to `claim.limit` of the new ones start attempt 1 in it (see
    /// [`Intake::insert_and_claim`]). Returns, per input id, the stored id: the same for an
    /// event inserted, the earlier event's for a key (or, for schemes that sign only the body, a
    /// body digest) stored before this statement began; a key match wins over a digest match.
    /// Keys stored while it ran are missing. For each event claimed, its `received_at`.
    async fn insert_rows(
        &self,
        arrived: &[NewEvent],
        claim: &ClaimOnInsert,
    ) -> Result<(HashMap<Uuid, Uuid>, HashMap<Uuid, DateTime<Utc>>), StoreError> {
        // Rows go in key order: two batches that share keys then take their unique-index locks
        // in the same order and cannot deadlock.
        let mut events: Vec<&NewEvent> = arrived.iter().collect();
        events.sort_unstable_by(|a, b| a.key().cmp(&b.key()));
        let col = |f: fn(&NewEvent) -> &str| -> Vec<&str> { events.iter().map(|e| f(e)).collect() };
        let opt = |f: fn(&NewEvent) -> Option<&str>| -> Vec<Option<&str>> {
            events.iter().map(|e| f(e)).collect()
        };
        // Each event's place in the lines of its order keys, in arrival order: events of one
        // line in one batch commit together and keep the order they came in.
        let joins: Vec<(EventId, &OrderKey)> = arrived
            .iter()
            .flat_map(|e| e.order.iter().map(move |k| (e.id, k)))
            .collect();
        // One statement, so one transaction: every new event, its delivery row, its first
        // transition and its place in its order lines commit together or not at all, and so does
        // the claim of those `pick`ed for this process's workers. Arrays keep the statement text (and so its prepared form,
        // cached per connection) the same whatever the batch size.
        let rows: Vec<(Uuid, Uuid, Option<DateTime<Utc>>)> = sqlx::query_as(INSERT)
            .bind(events.iter().map(|e| e.id.0).collect::<Vec<_>>())
            .bind(col(|e| &e.provider))
            .bind(col(|e| &e.idempotency_key))
            .bind(col(|e| &e.event_type))
            .bind(opt(|e| e.content_type.as_deref()))
            .bind(col(|e| &e.headers_json))
            .bind(events.iter().map(|e| e.body.as_ref()).collect::<Vec<_>>())
            .bind(opt(|e| e.traceparent.as_deref()))
            .bind(opt(|e| e.body_digest.as_deref()))
            .bind(&claim.owner)
            .bind(claim.lease.as_secs_f64())
            .bind(i64::try_from(claim.limit).unwrap_or(i64::MAX))
            .bind(joins.iter().map(|(id, _)| id.0).collect::<Vec<_>>())
            .bind(
                joins
                    .iter()
                    .map(|(_, k)| k.route.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                joins
                    .iter()
                    .map(|(_, k)| k.key.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(joins.iter().map(|(_, k)| k.block).collect::<Vec<_>>())
            .fetch_all(&self.pool)
            .await?;
        let mut stored = HashMap::with_capacity(rows.len());
        let mut claimed = HashMap::new();
        for (input, id, received_at) in rows {
            stored.entry(input).or_insert(id);
            if let Some(at) = received_at {
                claimed.insert(id, at);
            }
        }
        Ok((stored, claimed))
    }
}

/// The insert of a batch (see `PgStore::insert_rows`): events, their delivery rows and first
/// transitions, and the claim of the events `pick`ed for this process's workers.
const INSERT: &str = "WITH n AS (
        SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                             $6::text[], $7::bytea[], $8::text[], $9::text[])
            AS n(id, provider, idempotency_key, event_type, content_type, headers, body,
                 traceparent, body_digest)
     ), ins AS (
        INSERT INTO events (id, provider, idempotency_key, event_type, content_type, headers, body,
                            traceparent, body_digest)
        SELECT id, provider, idempotency_key, event_type, content_type, headers::jsonb, body,
               traceparent, body_digest
        FROM n
        -- Either key: (provider, idempotency key), or (provider, body digest).
        ON CONFLICT DO NOTHING
        RETURNING id, provider, received_at
     ), j AS (
        -- The order keys of the events inserted (not of duplicates), in arrival order.
        SELECT j.* FROM unnest($13::uuid[], $14::text[], $15::text[], $16::bool[])
            WITH ORDINALITY AS j(id, route, key, block, n)
        WHERE j.id IN (SELECT id FROM ins)
     ), c AS (
        SELECT route, key, count(*)::int AS k FROM j GROUP BY route, key
     ), l AS (
        -- Each line's row, locked until the commit (so positions follow commit order) and
        -- read at its latest version; lines in one order, so batches cannot deadlock on them.
        INSERT INTO order_lines (route, key, next_pos, waiting)
        SELECT route, key, k, k FROM c ORDER BY route, key
        ON CONFLICT (route, key) DO UPDATE
            SET next_pos = order_lines.next_pos + EXCLUDED.next_pos,
                waiting = order_lines.waiting + EXCLUDED.waiting
        RETURNING route, key, next_pos, waiting
     ), p AS (
        SELECT j.id, j.route, j.key, j.block,
            l.next_pos - c.k + row_number() OVER w AS pos,
            -- Someone before it: an earlier event of the batch, or one before the batch.
            (row_number() OVER w > 1 OR l.waiting > c.k) AS behind
        FROM j JOIN c USING (route, key) JOIN l USING (route, key)
        WINDOW w AS (PARTITION BY j.route, j.key ORDER BY j.n)
     ), h AS (
        SELECT id, count(*) FILTER (WHERE behind)::int AS held FROM p GROUP BY id
     ), m AS (
        INSERT INTO event_order (event_id, route, key, block, pos)
        SELECT id, route, key, block, pos FROM p
     ), pick AS (
        -- Only events first in every line they joined may start.
        SELECT id FROM ins
        WHERE provider NOT IN (SELECT p.provider FROM provider_pauses p)
            AND id NOT IN (SELECT id FROM h WHERE held > 0)
        LIMIT $12
     ), d AS (
        INSERT INTO deliveries (event_id, provider, received_at, status, attempts,
                                lease_owner, next_attempt_at, updated_at, held)
        SELECT i.id, i.provider, i.received_at,
            CASE WHEN p.id IS NULL THEN 'pending' ELSE 'processing' END,
            CASE WHEN p.id IS NULL THEN 0 ELSE 1 END,
            CASE WHEN p.id IS NULL THEN NULL ELSE $10 END,
            i.received_at + CASE WHEN p.id IS NULL THEN interval '0'
                                 ELSE make_interval(secs => $11) END,
            i.received_at, COALESCE(h.held, 0)
        FROM ins i LEFT JOIN pick p USING (id) LEFT JOIN h USING (id)
     ), t AS (
        -- Sorted so that each event's `received` comes before its attempt.
        INSERT INTO event_transitions (event_id, from_status, to_status, detail)
        SELECT id, from_status, to_status, detail FROM (
            SELECT id, NULL::text AS from_status, 'pending' AS to_status, 'received' AS detail,
                0 AS k
            FROM ins
            UNION ALL
            SELECT id, 'pending', 'processing', 'attempt 1 by ' || $10, 1 FROM pick
        ) x ORDER BY id, k
     )
     SELECT id, id, CASE WHEN id IN (SELECT id FROM pick) THEN received_at END FROM ins
     UNION ALL
     SELECT n.id, e.id, NULL FROM n JOIN events e USING (provider, idempotency_key)
     UNION ALL
     SELECT n.id, e.id, NULL FROM n JOIN events e USING (provider, body_digest)";

enum ClaimParam {
    Limit(i64),
    Ids(Vec<Uuid>),
}

#[async_trait]
impl Engine for PgStore {
    type Row = PgRow;
    const DIALECT: Dialect = Dialect::Postgres;

    /// One pool serves reads and writes alike.
    async fn rows(&self, q: Sql, _: Side) -> Result<Vec<PgRow>, StoreError> {
        Ok(q.query::<Postgres>()?.fetch_all(&self.pool).await?)
    }

    async fn write(&self, q: Sql) -> Result<u64, StoreError> {
        let done = q.query::<Postgres>()?.execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut migrator = sqlx::migrate!("migrations/postgres");
        // A newer release may have applied migrations this binary does not have: the previous
        // release keeps running (and restarting) during a rolling upgrade, and can be rolled
        // back to, because migrations are written expand-then-contract (docs/operations.md).
        migrator.set_ignore_missing(true);
        migrator.run(&self.pool).await?;
        Ok(())
    }

    async fn missing_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let table: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            .fetch_one(&self.pool)
            .await?;
        let applied: Vec<i64> = if table {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await?
        } else {
            Vec::new()
        };
        Ok(super::missing_versions(
            &sqlx::migrate!("migrations/postgres"),
            &applied,
        ))
    }

    async fn replay(
        &self,
        ids: &[EventId],
        kind: ReplayKind,
        actor: &str,
    ) -> Result<Vec<EventId>, StoreError> {
        let ids: Vec<Uuid> = ids.iter().map(|i| i.0).collect();
        let from: Vec<String> = kind.from_statuses().iter().map(|s| s.to_string()).collect();
        // The lines of the ordered ones first (see `order`), then one statement: the new cycle
        // and the transition that records it commit together. The status is checked again once
        // the row is locked (a purge may have come first). Then each ordered event replayed
        // goes to the back of its lines, in the same transaction.
        let mut tx = self.pool.begin().await?;
        sqlx::query(order::LOCK_LINES)
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        let done: Vec<Uuid> = sqlx::query_scalar(
            "WITH target AS (
                SELECT d.event_id AS id, d.status AS from_status
                FROM deliveries d JOIN events e ON e.id = d.event_id
                WHERE d.event_id = ANY($1) AND d.status = ANY($2) AND e.body_purged_at IS NULL
                -- Both rows: a purge locks both too, so the two cannot pass each other.
                FOR UPDATE OF d, e
             ), upd AS (
                UPDATE deliveries d SET status = 'pending', attempts = 0, replays = d.replays + 1,
                    lease_owner = NULL, next_attempt_at = now(), last_error = NULL, updated_at = now()
                FROM target WHERE d.event_id = target.id
                RETURNING d.event_id AS id, target.from_status, d.replays
             ), t AS (
                INSERT INTO event_transitions (event_id, from_status, to_status, detail)
                SELECT id, from_status, 'pending', $3 || ' ' || replays || ' by ' || $4 FROM upd
             )
             SELECT id FROM upd",
        )
        .bind(&ids)
        .bind(&from)
        .bind(kind.as_str())
        .bind(actor)
        .fetch_all(&mut *tx)
        .await?;
        let ordered: Vec<Uuid> = sqlx::query_scalar(
            "SELECT DISTINCT event_id FROM event_order WHERE event_id = ANY($1)",
        )
        .bind(&done)
        .fetch_all(&mut *tx)
        .await?;
        for id in ordered {
            order::rejoin(&mut *tx, EventId(id)).await?;
        }
        tx.commit().await?;
        Ok(done.into_iter().map(EventId).collect())
    }

    async fn skip_in_line(
        &self,
        id: EventId,
        actor: &str,
    ) -> Result<Option<Vec<EventId>>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(order::LOCK_LINES)
            .bind(vec![id.0])
            .execute(&mut *tx)
            .await?;
        let released = order::skip(&mut *tx, id, actor).await?;
        tx.commit().await?;
        Ok(released)
    }

    async fn purge_payloads(
        &self,
        after: DateTime<Utc>,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<(u64, Option<DateTime<Utc>>), StoreError> {
        // A small batch per statement, rows a worker holds skipped: no long lock on anything.
        let purged: Vec<DateTime<Utc>> = sqlx::query_scalar(
            "UPDATE events SET body = ''::bytea, body_purged_at = now()
             WHERE id IN (
                SELECT e.id FROM events e JOIN deliveries d ON d.event_id = e.id
                WHERE d.status IN ('completed', 'dead_letter') AND e.body_purged_at IS NULL
                  AND e.received_at >= $1 AND e.received_at < $2
                ORDER BY e.received_at
                LIMIT $3
                -- The delivery too: a replay of the event (which locks both) waits, or is skipped.
                FOR UPDATE OF e, d SKIP LOCKED
             )
             RETURNING received_at",
        )
        .bind(after)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok((purged.len() as u64, purged.into_iter().max()))
    }
}

#[async_trait]
impl Intake for PgStore {
    async fn insert_and_claim(
        &self,
        events: &[NewEvent],
        claim: &ClaimOnInsert,
    ) -> Result<(Vec<Inserted>, Vec<ClaimedEvent>), StoreError> {
        // Byte-identical bodies older than their replay window are no longer replays.
        replays::expire(&self.pool, events).await?;
        let (stored, claimed) = self.insert_rows(events, claim).await?;
        let mut out: Vec<Option<Inserted>> = events
            .iter()
            .map(|e| {
                stored.get(&e.id.0).map(|&s| {
                    if s == e.id.0 {
                        Inserted::New(e.id)
                    } else {
                        Inserted::Duplicate(EventId(s))
                    }
                })
            })
            .collect();
        replays::resolve_conflicts(&self.pool, events, &mut out).await?;
        let out = out
            .into_iter()
            .map(|o| o.ok_or_else(|| StoreError::other("a conflicting event vanished")))
            .collect::<Result<_, _>>()?;
        let claimed = events
            .iter()
            .filter_map(|e| claimed.get(&e.id.0).map(|&at| e.claimed(at)))
            .collect();
        Ok((out, claimed))
    }
}

#[async_trait]
impl Leases for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn claim(
        &self,
        owner: &str,
        lease: Duration,
        which: Claim,
    ) -> Result<Vec<ClaimedEvent>, StoreError> {
        // `held = 0`: not behind an unfinished event of its order key; only these are in
        // `deliveries_due`, so a blocked line costs the claim nothing.
        const DUE: &str = "status IN ('pending', 'processing', 'retry_scheduled', 'compensating')
                    AND next_attempt_at <= now() AND held = 0";
        let (filter, selector, param) = match which {
            Claim::Due { limit } => (
                DUE.to_owned(),
                "ORDER BY next_attempt_at LIMIT $3",
                ClaimParam::Limit(i64::from(limit)),
            ),
            // The same test, written so that no index can serve it: the planner then looks the
            // events up by key. Without statistics (a table autovacuum has not analyzed yet) or
            // with some taken while few events were due, it walked `deliveries_due` instead and
            // filtered every due row: a scan per claim that grows with the backlog (12 ms with
            // 50,000 due; 60,000 to 130,000 rows read per claim in the benchmark).
            Claim::Events(ids) => (
                format!("({DUE}) IS TRUE"),
                "AND event_id = ANY($3)",
                ClaimParam::Ids(ids.into_iter().map(|id| id.0).collect()),
            ),
        };
        let sql = format!(
            "WITH due AS (
                SELECT event_id, status AS from_status FROM deliveries
                WHERE {filter}
                    -- NOT IN (a hashed subplan) rather than NOT EXISTS: an anti-join makes the
                    -- planner scan and sort every due row, 75 ms a claim with 100,000 waiting.
                    AND provider NOT IN (SELECT p.provider FROM provider_pauses p)
                {selector}
                FOR UPDATE SKIP LOCKED
             ), claimed AS (
                UPDATE deliveries d SET status = 'processing', attempts = d.attempts + 1,
                    lease_owner = $1, next_attempt_at = now() + make_interval(secs => $2),
                    updated_at = now()
                FROM due WHERE d.event_id = due.event_id
                RETURNING d.event_id, due.from_status, d.attempts, d.replays
             ), t AS (
                INSERT INTO event_transitions (event_id, from_status, to_status, detail)
                SELECT event_id, from_status, 'processing',
                    'attempt ' || attempts || ' by ' || $1
                    || CASE WHEN from_status = 'processing' THEN ' (previous lease expired)' ELSE '' END
                FROM claimed
             )
             -- The event itself is only read.
             SELECT e.id, e.provider, e.event_type, e.idempotency_key, e.content_type, e.body,
                 c.attempts, e.received_at, e.traceparent, c.replays,
                 EXISTS (SELECT 1 FROM event_order o WHERE o.event_id = c.event_id) AS ordered
             FROM claimed c JOIN events e ON e.id = c.event_id"
        );
        let query = sqlx::query(AssertSqlSafe(sql))
            .bind(owner)
            .bind(lease.as_secs_f64());
        let query = match param {
            ClaimParam::Limit(n) => query.bind(n),
            ClaimParam::Ids(ids) => query.bind(ids),
        };
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(claimed).collect()
    }

    async fn renew_leases(
        &self,
        ids: &[EventId],
        owner: &str,
        lease: Duration,
    ) -> Result<Vec<EventId>, StoreError> {
        renewed(
            &self
                .write_rows(renew_leases(Self::DIALECT, ids, owner, lease))
                .await?,
        )
    }

    async fn finish_many(&self, items: &[Finish]) -> Result<Finished, StoreError> {
        let ordered: Vec<Uuid> = items.iter().filter(|f| f.ordered).map(|f| f.id.0).collect();
        let (done, released) = if ordered.is_empty() {
            (outcomes::finish(items, &self.pool).await?, Vec::new())
        } else {
            // The outcomes and the release of the next events of their keys commit together.
            let mut tx = self.pool.begin().await?;
            let out = outcomes::finish_ordered(items, &ordered, &mut tx).await?;
            tx.commit().await?;
            out
        };
        Ok(Finished {
            written: items.iter().map(|f| done.contains(&f.id.0)).collect(),
            released,
        })
    }

    async fn release_all(&self, owner: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(AssertSqlSafe(format!(
            "WITH upd AS (
                UPDATE deliveries SET lease_owner = NULL, attempts = attempts - 1,
                    next_attempt_at = now(), updated_at = now(),
                    -- An event in compensation goes back to compensating, not to the start.
                    status = CASE WHEN EXISTS (
                        SELECT 1 FROM event_transitions t
                        WHERE t.event_id = deliveries.event_id AND t.to_status = 'compensating'
                          AND t.id > {SINCE_REPLAY}
                    ) THEN 'compensating' ELSE 'pending' END
                WHERE lease_owner = $1 AND status = 'processing'
                RETURNING event_id AS id, status
             )
             INSERT INTO event_transitions (event_id, from_status, to_status, detail)
             SELECT id, 'processing', status, $2 FROM upd",
            SINCE_REPLAY = since_replay("deliveries.event_id"),
        )))
        .bind(owner)
        .bind(RELEASED)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn requeue_overdue(
        &self,
        grace: Duration,
        limit: u32,
    ) -> Result<Vec<EventId>, StoreError> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "UPDATE deliveries SET next_attempt_at = now()
             WHERE event_id IN (
                SELECT event_id FROM deliveries
                WHERE status IN ('pending', 'processing', 'retry_scheduled', 'compensating')
                  AND next_attempt_at <= now() - make_interval(secs => $1)
                  AND held = 0
                  AND provider NOT IN (SELECT provider FROM provider_pauses)
                ORDER BY next_attempt_at
                LIMIT $2
                FOR UPDATE SKIP LOCKED
             )
             RETURNING event_id",
        )
        .bind(grace.as_secs_f64())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().map(EventId).collect())
    }
}

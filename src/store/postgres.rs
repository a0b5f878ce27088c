//! PostgreSQL event store. Workers claim with `FOR UPDATE SKIP LOCKED`, so any number of
//! processes can share one database; every write is a single statement (its own transaction),
//! and the database clock is the only clock used for leases.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Row};
use uuid::Uuid;

use super::{
    Backlog, Claim, EventStore, Finish, Inserted, NewEvent, RELEASED, StoreError, count_map,
    outcome_texts, step_outcomes,
};
use crate::event::{
    ClaimedEvent, EventDetail, EventId, EventStatus, Outcome, Progress, ProviderPause, StepRecord,
    StepResultRow, Transition,
};

mod admin;
mod replays;

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
}

/// SQL for the id of the transition that started the event's current replay generation (0 when
/// never replayed): a replay is the only way out of `completed` or `dead_letter`.
fn since_replay(event_id: &str) -> String {
    format!(
        "COALESCE((SELECT max(r.id) FROM event_transitions r WHERE r.event_id = {event_id}
                   AND r.from_status IN ('completed', 'dead_letter')), 0)"
    )
}

enum ClaimParam {
    Limit(i64),
    Ids(Vec<Uuid>),
}

fn status(row: &PgRow, col: &str) -> Result<EventStatus, StoreError> {
    let s: String = row.try_get(col)?;
    EventStatus::parse(&s).ok_or_else(|| StoreError::Other(format!("unknown status {s:?}")))
}

#[async_trait]
impl EventStore for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    async fn insert_batch(&self, events: &[NewEvent]) -> Result<Vec<Inserted>, StoreError> {
        // Rows go in key order: two batches that share keys then take their unique-index locks
        // in the same order and cannot deadlock.
        let mut order: Vec<usize> = (0..events.len()).collect();
        order.sort_unstable_by(|&a, &b| events[a].key().cmp(&events[b].key()));
        let col = |f: fn(&NewEvent) -> &str| -> Vec<&str> {
            order.iter().map(|&i| f(&events[i])).collect()
        };
        // One statement, so one transaction: every new event and its first transition commit
        // together or not at all. Arrays keep the statement text (and so its prepared form,
        // cached per connection) the same whatever the batch size. Each row returned pairs an
        // input id with the stored id: the same for an inserted event, the earlier event's for
        // a key stored before this statement began.
        // Byte-identical bodies older than their replay window are no longer replays.
        replays::expire(&self.pool, events).await?;
        let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
            "WITH n AS (
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
                RETURNING id
             ), t AS (
                INSERT INTO event_transitions (event_id, from_status, to_status, detail)
                SELECT id, NULL, 'pending', 'received' FROM ins
             )
             SELECT id, id FROM ins
             UNION ALL
             SELECT n.id, e.id FROM n JOIN events e USING (provider, idempotency_key)
             UNION ALL
             SELECT n.id, e.id FROM n JOIN events e USING (provider, body_digest)",
        )
        .bind(order.iter().map(|&i| events[i].id.0).collect::<Vec<_>>())
        .bind(col(|e| &e.provider))
        .bind(col(|e| &e.idempotency_key))
        .bind(col(|e| &e.event_type))
        .bind(
            order
                .iter()
                .map(|&i| events[i].content_type.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(col(|e| &e.headers_json))
        .bind(
            order
                .iter()
                .map(|&i| events[i].body.as_ref())
                .collect::<Vec<_>>(),
        )
        .bind(
            order
                .iter()
                .map(|&i| events[i].traceparent.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            order
                .iter()
                .map(|&i| events[i].body_digest.as_deref())
                .collect::<Vec<_>>(),
        )
        .fetch_all(&self.pool)
        .await?;
        let stored: HashMap<Uuid, Uuid> = rows.into_iter().collect();
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
        if out.iter().all(Option::is_some) {
            return Ok(out.into_iter().flatten().collect());
        }
        // A key that conflicted with a row committed while this statement ran (or with another
        // row of this statement): its snapshot could not see that row, but ON CONFLICT waited
        // for the commit, so a new statement does.
        replays::resolve_conflicts(&self.pool, events, &mut out).await?;
        out.into_iter()
            .map(|o| o.ok_or_else(|| StoreError::Other("a conflicting event vanished".into())))
            .collect()
    }

    async fn claim(
        &self,
        owner: &str,
        lease: Duration,
        which: Claim,
    ) -> Result<Vec<ClaimedEvent>, StoreError> {
        let (selector, param) = match which {
            Claim::Due { limit } => (
                "ORDER BY next_attempt_at LIMIT $3",
                ClaimParam::Limit(i64::from(limit)),
            ),
            Claim::Events(ids) => (
                "AND id = ANY($3)",
                ClaimParam::Ids(ids.into_iter().map(|id| id.0).collect()),
            ),
        };
        let sql = format!(
            "WITH due AS (
                SELECT id, status AS from_status FROM events
                WHERE status IN ('pending', 'processing', 'retry_scheduled', 'compensating')
                    AND next_attempt_at <= now()
                    -- NOT IN (a hashed subplan) rather than NOT EXISTS: an anti-join makes the
                    -- planner scan and sort every due row, 75 ms a claim with 100,000 waiting.
                    AND provider NOT IN (SELECT p.provider FROM provider_pauses p)
                {selector}
                FOR UPDATE SKIP LOCKED
             ), claimed AS (
                UPDATE events e SET status = 'processing', attempts = e.attempts + 1, lease_owner = $1,
                    next_attempt_at = now() + make_interval(secs => $2), updated_at = now()
                FROM due WHERE e.id = due.id
                RETURNING e.id, due.from_status, e.provider, e.event_type, e.idempotency_key,
                    e.content_type, e.body, e.attempts, e.received_at, e.traceparent, e.replays
             ), t AS (
                INSERT INTO event_transitions (event_id, from_status, to_status, detail)
                SELECT id, from_status, 'processing',
                    'attempt ' || attempts || ' by ' || $1
                    || CASE WHEN from_status = 'processing' THEN ' (previous lease expired)' ELSE '' END
                FROM claimed
             )
             SELECT * FROM claimed"
        );
        let query = sqlx::query(AssertSqlSafe(sql))
            .bind(owner)
            .bind(lease.as_secs_f64());
        let query = match param {
            ClaimParam::Limit(n) => query.bind(n),
            ClaimParam::Ids(ids) => query.bind(ids),
        };
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(ClaimedEvent {
                    id: EventId(r.try_get("id")?),
                    provider: r.try_get("provider")?,
                    event_type: r.try_get("event_type")?,
                    idempotency_key: r.try_get("idempotency_key")?,
                    content_type: r.try_get("content_type")?,
                    body: r.try_get("body")?,
                    attempt: r.try_get::<i32, _>("attempts")? as u32,
                    received_at: r.try_get("received_at")?,
                    traceparent: r.try_get("traceparent")?,
                    delivery: None,
                    generation: r.try_get::<i32, _>("replays")? as u32,
                })
            })
            .collect()
    }

    async fn renew_lease(
        &self,
        id: EventId,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE events SET next_attempt_at = now() + make_interval(secs => $3), updated_at = now()
             WHERE id = $1 AND lease_owner = $2 AND status = 'processing'",
        )
        .bind(id.0)
        .bind(owner)
        .bind(lease.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn succeeded_steps(&self, id: EventId) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT step FROM step_results s JOIN events e ON e.id = s.event_id
             WHERE s.event_id = $1 AND s.outcome = 'succeeded' AND s.generation = e.replays",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn record_step(&self, r: &StepRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO step_results (event_id, step, attempt, outcome, error, duration_ms, generation)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(r.event_id.0)
        .bind(&r.step)
        .bind(r.attempt as i32)
        .bind(r.outcome.as_str())
        .bind(r.error.as_deref())
        .bind(r.duration_ms as i64)
        .bind(r.generation as i32)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn finish_many(&self, items: &[Finish]) -> Result<Vec<bool>, StoreError> {
        // One statement, so one transaction and one round trip for the whole batch; rows travel
        // as arrays, so the statement text (and its cached plan) is the same for any batch.
        // PostgreSQL runs every data-modifying CTE to completion: the steps go in even for
        // items whose fenced update matches nothing.
        let texts: Vec<(String, Option<String>)> =
            items.iter().map(|f| outcome_texts(&f.outcome)).collect();
        let steps: Vec<&StepRecord> = items.iter().filter_map(|f| f.step.as_ref()).collect();
        let done: Vec<Uuid> = sqlx::query_scalar(
            "WITH f AS (
                SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[],
                                     $5::text[], $6::text[], $7::bool[])
                    AS f(id, owner, status, next_at, last_error, detail, postponed)
             ), steps AS (
                INSERT INTO step_results (event_id, step, attempt, outcome, error, duration_ms, generation)
                SELECT * FROM unnest($8::uuid[], $9::text[], $10::int[], $11::text[], $12::text[],
                                     $13::bigint[], $14::int[])
             ), upd AS (
                UPDATE events e SET status = f.status, lease_owner = NULL,
                    next_attempt_at = COALESCE(f.next_at, e.next_attempt_at),
                    -- A postponed attempt never ran its work: it does not count, and the last
                    -- error stays.
                    last_error = CASE WHEN f.postponed THEN e.last_error ELSE f.last_error END,
                    attempts = e.attempts - CASE WHEN f.postponed THEN 1 ELSE 0 END,
                    updated_at = now()
                FROM f
                WHERE e.id = f.id AND e.lease_owner = f.owner AND e.status = 'processing'
                RETURNING e.id, f.status, f.detail
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
        .fetch_all(&self.pool)
        .await?;
        Ok(items.iter().map(|f| done.contains(&f.id.0)).collect())
    }

    async fn release_all(&self, owner: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(AssertSqlSafe(format!(
            "WITH upd AS (
                UPDATE events SET lease_owner = NULL, attempts = attempts - 1,
                    next_attempt_at = now(), updated_at = now(),
                    -- An event in compensation goes back to compensating, not to the start.
                    status = CASE WHEN EXISTS (
                        SELECT 1 FROM event_transitions t
                        WHERE t.event_id = events.id AND t.to_status = 'compensating'
                          AND t.id > {SINCE_REPLAY}
                    ) THEN 'compensating' ELSE 'pending' END
                WHERE lease_owner = $1 AND status = 'processing'
                RETURNING id, status
             )
             INSERT INTO event_transitions (event_id, from_status, to_status, detail)
             SELECT id, 'processing', status, $2 FROM upd",
            SINCE_REPLAY = since_replay("events.id"),
        )))
        .bind(owner)
        .bind(RELEASED)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn event(&self, id: EventId) -> Result<Option<EventDetail>, StoreError> {
        let Some(e) = sqlx::query(
            "SELECT id, provider, event_type, idempotency_key, status, attempts, received_at,
                    next_attempt_at, last_error, content_type, length(body) AS body_bytes,
                    replays, body_purged_at
             FROM events WHERE id = $1",
        )
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let transitions = sqlx::query(
            "SELECT from_status, to_status, at, detail FROM event_transitions WHERE event_id = $1 ORDER BY id",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(Transition {
                from: r
                    .try_get::<Option<String>, _>("from_status")?
                    .and_then(|s| EventStatus::parse(&s)),
                to: status(r, "to_status")?,
                at: r.try_get("at")?,
                detail: r.try_get("detail")?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
        let steps = sqlx::query(
            "SELECT step, attempt, outcome, error, duration_ms, at, generation FROM step_results WHERE event_id = $1 ORDER BY id",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(StepResultRow {
                step: r.try_get("step")?,
                attempt: r.try_get::<i32, _>("attempt")? as u32,
                outcome: r.try_get("outcome")?,
                error: r.try_get("error")?,
                duration_ms: r.try_get::<i64, _>("duration_ms")? as u64,
                at: r.try_get("at")?,
                generation: r.try_get::<i32, _>("generation")? as u32,
            })
        })
        .collect::<Result<_, StoreError>>()?;
        let status_now = status(&e, "status")?;
        Ok(Some(EventDetail {
            id: EventId(e.try_get("id")?),
            provider: e.try_get("provider")?,
            event_type: e.try_get("event_type")?,
            idempotency_key: e.try_get("idempotency_key")?,
            status: status_now,
            attempts: e.try_get::<i32, _>("attempts")? as u32,
            received_at: e.try_get("received_at")?,
            next_attempt_at: matches!(
                status_now,
                EventStatus::Pending | EventStatus::RetryScheduled | EventStatus::Compensating
            )
            .then(|| e.try_get("next_attempt_at"))
            .transpose()?,
            last_error: e.try_get("last_error")?,
            content_type: e.try_get("content_type")?,
            body_bytes: e.try_get::<i32, _>("body_bytes")? as usize,
            replays: e.try_get::<i32, _>("replays")? as u32,
            body_purged_at: e.try_get("body_purged_at")?,
            transitions,
            steps,
        }))
    }

    async fn requeue_overdue(
        &self,
        grace: Duration,
        limit: u32,
    ) -> Result<Vec<EventId>, StoreError> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "UPDATE events SET next_attempt_at = now()
             WHERE id IN (
                SELECT id FROM events
                WHERE status IN ('pending', 'processing', 'retry_scheduled', 'compensating')
                  AND next_attempt_at <= now() - make_interval(secs => $1)
                  AND provider NOT IN (SELECT provider FROM provider_pauses)
                ORDER BY next_attempt_at
                LIMIT $2
                FOR UPDATE SKIP LOCKED
             )
             RETURNING id",
        )
        .bind(grace.as_secs_f64())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().map(EventId).collect())
    }

    async fn backlog(&self) -> Result<Backlog, StoreError> {
        // Unfinished statuses are counted through the partial due index, dead letters through
        // (status, received_at); completed events are never scanned.
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, count(*) FROM events
             WHERE status IN ('pending', 'processing', 'retry_scheduled', 'compensating') GROUP BY status
             UNION ALL
             SELECT 'dead_letter', count(*) FROM events WHERE status = 'dead_letter'",
        )
        .fetch_all(&self.pool)
        .await?;
        let oldest: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT min(received_at) FROM events WHERE status IN ('pending', 'retry_scheduled')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Backlog {
            by_status: count_map(rows)?,
            oldest_pending: oldest,
        })
    }

    async fn progress(&self, id: EventId) -> Result<Progress, StoreError> {
        // Only this replay generation counts: its compensations and its step results.
        let head = sqlx::query(AssertSqlSafe(format!(
            "SELECT last_error, EXISTS (
                SELECT 1 FROM event_transitions t WHERE t.event_id = e.id AND t.to_status = 'compensating'
                    AND t.id > {}
             ) AS compensating
             FROM events e WHERE id = $1",
            since_replay("e.id")
        )))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        let Some(head) = head else {
            return Ok(Progress::default());
        };
        let results = sqlx::query_as::<_, (String, String)>(
            "SELECT s.step, s.outcome FROM step_results s JOIN events e ON e.id = s.event_id
             WHERE s.event_id = $1 AND s.generation = e.replays ORDER BY s.id",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await?;
        Ok(Progress {
            compensating: head.try_get("compensating")?,
            last_error: head.try_get("last_error")?,
            results: step_outcomes(results)?,
        })
    }

    async fn pause_provider(
        &self,
        provider: &str,
        reason: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO provider_pauses (provider, reason) VALUES ($1, $2)
             ON CONFLICT (provider) DO NOTHING",
        )
        .bind(provider)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn resume_provider(&self, provider: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM provider_pauses WHERE provider = $1")
            .bind(provider)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn provider_pauses(&self) -> Result<Vec<ProviderPause>, StoreError> {
        sqlx::query("SELECT provider, paused_at, reason FROM provider_pauses ORDER BY provider")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(ProviderPause {
                    provider: r.try_get("provider")?,
                    paused_at: r.try_get("paused_at")?,
                    reason: r.try_get("reason")?,
                })
            })
            .collect()
    }

    async fn counts(&self) -> Result<BTreeMap<EventStatus, u64>, StoreError> {
        count_map(
            sqlx::query_as("SELECT status, count(*) FROM events GROUP BY status")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

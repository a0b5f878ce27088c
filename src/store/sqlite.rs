//! Embedded SQLite event store (the zero-setup default). SQLite has one writer at a time, so
//! every write goes through a single-connection pool inside `BEGIN IMMEDIATE`: claims are
//! serialised in-process, which is the single-writer equivalent of `SKIP LOCKED`. Reads use a
//! separate pool and run beside the writer (WAL mode). One process per database file.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
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

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

const BEGIN: &str = "BEGIN IMMEDIATE";

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn to_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// SQL for the id of the transition that started the event's current replay generation (0 when
/// never replayed): a replay is the only way out of `completed` or `dead_letter`.
fn since_replay(event_id: &str) -> String {
    format!(
        "COALESCE((SELECT max(r.id) FROM event_transitions r WHERE r.event_id = {event_id}
                   AND r.from_status IN ('completed', 'dead_letter')), 0)"
    )
}

fn status(row: &SqliteRow, col: &str) -> Result<EventStatus, StoreError> {
    let s: String = row.try_get(col)?;
    EventStatus::parse(&s).ok_or_else(|| StoreError::Other(format!("unknown status {s:?}")))
}

/// Rows per multi-row statement. Every statement costs a round trip to the connection's
/// thread, so rows go many to a statement; a few fixed sizes keep the number of distinct
/// statement texts (each prepared once per connection) small.
const CHUNK_SIZES: [usize; 4] = [64, 16, 4, 1];

fn chunk_size(left: usize) -> usize {
    CHUNK_SIZES.into_iter().find(|&c| c <= left).unwrap_or(1)
}

/// `(?a, ?b, ...), (...)`: `rows` groups of `cols` numbered parameters, starting at `first`.
fn placeholders(rows: usize, cols: usize, first: usize) -> String {
    (0..rows)
        .map(|r| {
            let ps: Vec<String> = (0..cols)
                .map(|c| format!("?{}", first + r * cols + c))
                .collect();
            format!("({})", ps.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Insert one chunk of new events and their first transitions inside `tx`; returns each
/// event's result in order. Two statements when every key is new, three otherwise.
async fn insert_chunk(
    tx: &mut sqlx::SqliteConnection,
    chunk: &[NewEvent],
    now: i64,
) -> Result<Vec<Inserted>, StoreError> {
    let n = chunk.len();
    // Byte-identical bodies older than their replay window are no longer replays.
    replays::expire(tx, chunk, now).await?;
    let sql = format!(
        "INSERT INTO events (id, provider, idempotency_key, event_type, content_type, headers, body,
                             traceparent, body_digest, received_at, next_attempt_at, updated_at)
         VALUES {}
         ON CONFLICT DO NOTHING",
        // The time is parameter 1, shared by every row.
        (0..n)
            .map(|r| {
                let b = 2 + r * 9;
                let ps: Vec<String> = (b..b + 9).map(|p| format!("?{p}")).collect();
                format!("({}, ?1, ?1, ?1)", ps.join(", "))
            })
            .collect::<Vec<_>>()
            .join(", ")
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
    let inserted = q.execute(&mut *tx).await?.rows_affected() as usize;
    if inserted > 0 {
        // Our ids are fresh, so only the rows this statement inserted match them.
        let sql = format!(
            "INSERT INTO event_transitions (event_id, from_status, to_status, at, detail)
             SELECT id, NULL, 'pending', ?1, 'received' FROM events WHERE id IN ({})",
            (0..n)
                .map(|i| format!("?{}", i + 2))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now);
        for e in chunk {
            q = q.bind(e.id.0);
        }
        q.execute(&mut *tx).await?;
    }
    if inserted == n {
        return Ok(chunk.iter().map(|e| Inserted::New(e.id)).collect());
    }
    // Some conflicted, by idempotency key or by body digest: find whom with.
    replays::resolve(tx, chunk).await
}

impl SqliteStore {
    pub async fn connect(url: &str, pool_size: u32, timeout: Duration) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Other(format!("invalid DATABASE_URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before hookd answers 2xx, even across a power loss.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(timeout)
            .foreign_keys(true);
        if let Some(dir) = opts
            .get_filename()
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(timeout)
            .connect_with(opts.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(pool_size.max(1))
            .acquire_timeout(timeout)
            .connect_with(opts.read_only(true))
            .await?;
        Ok(Self { writer, reader })
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("migrations/sqlite")
            .run(&self.writer)
            .await?;
        Ok(())
    }

    async fn insert_batch(&self, events: &[NewEvent]) -> Result<Vec<Inserted>, StoreError> {
        // One write transaction for the whole batch: one lock, one fsync of the WAL.
        let now = now_ms();
        let mut tx = self.writer.begin_with(BEGIN).await?;
        let mut out = Vec::with_capacity(events.len());
        let mut rest = events;
        while !rest.is_empty() {
            let size = chunk_size(rest.len());
            let (chunk, tail) = rest.split_at(size);
            rest = tail;
            out.extend(insert_chunk(&mut tx, chunk, now).await?);
        }
        if out.iter().any(|o| matches!(o, Inserted::New(_))) {
            tx.commit().await?;
        } else {
            // Only duplicates: nothing to make durable, so no fsync.
            tx.rollback().await?;
        }
        Ok(out)
    }

    async fn claim(
        &self,
        owner: &str,
        lease: Duration,
        which: Claim,
    ) -> Result<Vec<ClaimedEvent>, StoreError> {
        let now = now_ms();
        let lease_until = now + lease.as_millis() as i64;
        let mut tx = self.writer.begin_with(BEGIN).await?;
        // INDEXED BY: without statistics SQLite prefers the status index, then sorts every
        // pending row by time: 0.8 s per claim with a 70 000-event backlog (bench/run.sh).
        const DUE: &str = "SELECT id, status FROM events INDEXED BY events_due
             WHERE status IN ('pending', 'processing', 'retry_scheduled', 'compensating')
                 AND next_attempt_at <= ?1
                 AND NOT EXISTS (SELECT 1 FROM provider_pauses p WHERE p.provider = events.provider)";
        let due: Vec<(Uuid, String)> = match which {
            Claim::Due { limit } => {
                sqlx::query_as(AssertSqlSafe(format!(
                    "{DUE} ORDER BY next_attempt_at LIMIT ?2"
                )))
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await?
            }
            Claim::Events(ids) => {
                // One writer transaction already; one indexed lookup per id costs nothing more.
                let mut due = Vec::with_capacity(ids.len());
                for id in ids {
                    due.extend(
                        sqlx::query_as::<_, (Uuid, String)>(AssertSqlSafe(format!(
                            "{DUE} AND id = ?2"
                        )))
                        .bind(now)
                        .bind(id.0)
                        .fetch_optional(&mut *tx)
                        .await?,
                    );
                }
                due
            }
        };
        let mut claimed = Vec::with_capacity(due.len());
        for (id, from) in due {
            let r = sqlx::query(
                "UPDATE events SET status = 'processing', attempts = attempts + 1, lease_owner = ?2,
                     next_attempt_at = ?3, updated_at = ?4
                 WHERE id = ?1
                 RETURNING provider, event_type, idempotency_key, content_type, body, attempts, received_at,
                           traceparent, replays",
            )
            .bind(id)
            .bind(owner)
            .bind(lease_until)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            let attempt = r.try_get::<i64, _>("attempts")? as u32;
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
            .bind(&from)
            .bind(now)
            .bind(format!("attempt {attempt} by {owner}{expired}"))
            .execute(&mut *tx)
            .await?;
            claimed.push(ClaimedEvent {
                id: EventId(id),
                provider: r.try_get("provider")?,
                event_type: r.try_get("event_type")?,
                idempotency_key: r.try_get("idempotency_key")?,
                content_type: r.try_get("content_type")?,
                body: r.try_get("body")?,
                attempt,
                received_at: to_time(r.try_get("received_at")?),
                traceparent: r.try_get("traceparent")?,
                delivery: None,
                generation: r.try_get::<i64, _>("replays")? as u32,
            });
        }
        tx.commit().await?;
        Ok(claimed)
    }

    async fn renew_lease(
        &self,
        id: EventId,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE events SET next_attempt_at = ?3, updated_at = ?4
             WHERE id = ?1 AND lease_owner = ?2 AND status = 'processing'",
        )
        .bind(id.0)
        .bind(owner)
        .bind(now + lease.as_millis() as i64)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn succeeded_steps(&self, id: EventId) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT step FROM step_results s JOIN events e ON e.id = s.event_id
             WHERE s.event_id = ?1 AND s.outcome = 'succeeded' AND s.generation = e.replays",
        )
        .bind(id.0)
        .fetch_all(&self.reader)
        .await?)
    }

    async fn record_step(&self, r: &StepRecord) -> Result<(), StoreError> {
        insert_step(r).execute(&self.writer).await?;
        Ok(())
    }

    async fn finish_many(&self, items: &[Finish]) -> Result<Vec<bool>, StoreError> {
        let mut tx = self.writer.begin_with(BEGIN).await?;
        let mut done = Vec::with_capacity(items.len());
        for f in items {
            if let Some(step) = &f.step {
                insert_step(step).execute(&mut *tx).await?;
            }
            done.push(finish_in(&mut tx, f.id, &f.owner, &f.outcome).await?);
        }
        tx.commit().await?;
        Ok(done)
    }

    async fn release_all(&self, owner: &str) -> Result<u64, StoreError> {
        let now = now_ms();
        let mut tx = self.writer.begin_with(BEGIN).await?;
        let ids: Vec<(Uuid, String)> = sqlx::query_as(AssertSqlSafe(format!(
            "UPDATE events SET lease_owner = NULL, attempts = attempts - 1,
                 next_attempt_at = ?2, updated_at = ?2,
                 -- An event in compensation goes back to compensating, not to the start.
                 status = CASE WHEN EXISTS (
                     SELECT 1 FROM event_transitions t
                     WHERE t.event_id = events.id AND t.to_status = 'compensating'
                       AND t.id > {}
                 ) THEN 'compensating' ELSE 'pending' END
             WHERE lease_owner = ?1 AND status = 'processing'
             RETURNING id, status",
            since_replay("events.id")
        )))
        .bind(owner)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        for (id, to) in &ids {
            sqlx::query(
                "INSERT INTO event_transitions (event_id, from_status, to_status, at, detail)
                 VALUES (?1, 'processing', ?4, ?2, ?3)",
            )
            .bind(id)
            .bind(now)
            .bind(RELEASED)
            .bind(to)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(ids.len() as u64)
    }

    async fn event(&self, id: EventId) -> Result<Option<EventDetail>, StoreError> {
        let Some(e) = sqlx::query(
            "SELECT id, provider, event_type, idempotency_key, status, attempts, received_at,
                    next_attempt_at, last_error, content_type, length(body) AS body_bytes,
                    replays, body_purged_at
             FROM events WHERE id = ?1",
        )
        .bind(id.0)
        .fetch_optional(&self.reader)
        .await?
        else {
            return Ok(None);
        };
        let transitions = sqlx::query(
            "SELECT from_status, to_status, at, detail FROM event_transitions WHERE event_id = ?1 ORDER BY id",
        )
        .bind(id.0)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(|r| {
            Ok(Transition {
                from: r
                    .try_get::<Option<String>, _>("from_status")?
                    .and_then(|s| EventStatus::parse(&s)),
                to: status(r, "to_status")?,
                at: to_time(r.try_get("at")?),
                detail: r.try_get("detail")?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
        let steps = sqlx::query(
            "SELECT step, attempt, outcome, error, duration_ms, at, generation FROM step_results WHERE event_id = ?1 ORDER BY id",
        )
        .bind(id.0)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(|r| {
            Ok(StepResultRow {
                step: r.try_get("step")?,
                attempt: r.try_get::<i64, _>("attempt")? as u32,
                outcome: r.try_get("outcome")?,
                error: r.try_get("error")?,
                duration_ms: r.try_get::<i64, _>("duration_ms")? as u64,
                at: to_time(r.try_get("at")?),
                generation: r.try_get::<i64, _>("generation")? as u32,
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
            attempts: e.try_get::<i64, _>("attempts")? as u32,
            received_at: to_time(e.try_get("received_at")?),
            next_attempt_at: matches!(
                status_now,
                EventStatus::Pending | EventStatus::RetryScheduled | EventStatus::Compensating
            )
            .then(|| e.try_get("next_attempt_at").map(to_time))
            .transpose()?,
            last_error: e.try_get("last_error")?,
            content_type: e.try_get("content_type")?,
            body_bytes: e.try_get::<i64, _>("body_bytes")? as usize,
            replays: e.try_get::<i64, _>("replays")? as u32,
            body_purged_at: e.try_get::<Option<i64>, _>("body_purged_at")?.map(to_time),
            transitions,
            steps,
        }))
    }

    async fn requeue_overdue(
        &self,
        grace: Duration,
        limit: u32,
    ) -> Result<Vec<EventId>, StoreError> {
        let now = now_ms();
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "UPDATE events SET next_attempt_at = ?1
             WHERE id IN (
                SELECT id FROM events INDEXED BY events_due
                WHERE status IN ('pending', 'processing', 'retry_scheduled', 'compensating') AND next_attempt_at <= ?2
                  AND provider NOT IN (SELECT provider FROM provider_pauses)
                ORDER BY next_attempt_at LIMIT ?3
             )
             RETURNING id",
        )
        .bind(now)
        .bind(now - grace.as_millis() as i64)
        .bind(i64::from(limit))
        .fetch_all(&self.writer)
        .await?;
        Ok(ids.into_iter().map(EventId).collect())
    }

    async fn backlog(&self) -> Result<Backlog, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, count(*) FROM events
             WHERE status IN ('pending', 'processing', 'retry_scheduled', 'compensating') GROUP BY status
             UNION ALL
             SELECT 'dead_letter', count(*) FROM events WHERE status = 'dead_letter'",
        )
        .fetch_all(&self.reader)
        .await?;
        let oldest: Option<i64> = sqlx::query_scalar(
            "SELECT min(received_at) FROM events WHERE status IN ('pending', 'retry_scheduled')",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(Backlog {
            by_status: count_map(rows)?,
            oldest_pending: oldest.map(to_time),
        })
    }

    async fn progress(&self, id: EventId) -> Result<Progress, StoreError> {
        // Only this replay generation counts: its compensations and its step results.
        let head = sqlx::query(AssertSqlSafe(format!(
            "SELECT last_error, EXISTS (
                SELECT 1 FROM event_transitions t WHERE t.event_id = e.id AND t.to_status = 'compensating'
                    AND t.id > {}
             ) AS compensating
             FROM events e WHERE id = ?1",
            since_replay("e.id")
        )))
        .bind(id.0)
        .fetch_optional(&self.reader)
        .await?;
        let Some(head) = head else {
            return Ok(Progress::default());
        };
        let results = sqlx::query_as::<_, (String, String)>(
            "SELECT s.step, s.outcome FROM step_results s JOIN events e ON e.id = s.event_id
             WHERE s.event_id = ?1 AND s.generation = e.replays ORDER BY s.id",
        )
        .bind(id.0)
        .fetch_all(&self.reader)
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
            "INSERT INTO provider_pauses (provider, paused_at, reason) VALUES (?1, ?2, ?3)
             ON CONFLICT (provider) DO NOTHING",
        )
        .bind(provider)
        .bind(now_ms())
        .bind(reason)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn resume_provider(&self, provider: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM provider_pauses WHERE provider = ?1")
            .bind(provider)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn provider_pauses(&self) -> Result<Vec<ProviderPause>, StoreError> {
        sqlx::query("SELECT provider, paused_at, reason FROM provider_pauses ORDER BY provider")
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(|r| {
                Ok(ProviderPause {
                    provider: r.try_get("provider")?,
                    paused_at: to_time(r.try_get("paused_at")?),
                    reason: r.try_get("reason")?,
                })
            })
            .collect()
    }

    async fn counts(&self) -> Result<BTreeMap<EventStatus, u64>, StoreError> {
        count_map(
            sqlx::query_as("SELECT status, count(*) FROM events GROUP BY status")
                .fetch_all(&self.reader)
                .await?,
        )
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // Taking the write lock proves the store can commit, not merely be read.
        let tx = self.writer.begin_with(BEGIN).await?;
        tx.rollback().await?;
        Ok(())
    }
}

fn insert_step(
    r: &StepRecord,
) -> sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    sqlx::query(
        "INSERT INTO step_results (event_id, step, attempt, outcome, error, duration_ms, at, generation)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .bind(r.event_id.0)
    .bind(&r.step)
    .bind(i64::from(r.attempt))
    .bind(r.outcome.as_str())
    .bind(r.error.as_deref())
    .bind(r.duration_ms as i64)
    .bind(now_ms())
    .bind(i64::from(r.generation))
}

/// The end of an attempt inside `tx`, fenced on the lease owner: false when the lease was lost.
async fn finish_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    id: EventId,
    owner: &str,
    outcome: &Outcome,
) -> Result<bool, StoreError> {
    let (detail, last_error) = outcome_texts(outcome);
    let next = outcome.next_attempt_at().map(|at| at.timestamp_millis());
    // A postponed attempt never ran its work: it does not count, and the last error stays.
    let postponed = matches!(outcome, Outcome::Postpone { .. });
    let now = now_ms();
    let to = outcome.status().as_str();
    let updated = sqlx::query(
        "UPDATE events SET status = ?3, lease_owner = NULL,
             next_attempt_at = COALESCE(?4, next_attempt_at),
             last_error = CASE WHEN ?7 THEN last_error ELSE ?5 END,
             attempts = attempts - CASE WHEN ?7 THEN 1 ELSE 0 END,
             updated_at = ?6
         WHERE id = ?1 AND lease_owner = ?2 AND status = 'processing'",
    )
    .bind(id.0)
    .bind(owner)
    .bind(to)
    .bind(next)
    .bind(last_error)
    .bind(now)
    .bind(postponed)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    if updated {
        sqlx::query(
            "INSERT INTO event_transitions (event_id, from_status, to_status, at, detail)
             VALUES (?1, 'processing', ?2, ?3, ?4)",
        )
        .bind(id.0)
        .bind(to)
        .bind(now)
        .bind(detail)
        .execute(&mut **tx)
        .await?;
    }
    Ok(updated)
}

//! Embedded SQLite event store (the zero-setup default). SQLite has one writer at a time, so
//! every write goes through a single-connection pool inside `BEGIN IMMEDIATE`: claims are
//! serialised in-process, which is the single-writer equivalent of `SKIP LOCKED`. Reads use a
//! separate pool and run beside the writer (WAL mode). One process per database file.
//!
//! Holds only what SQLite does its own way: multi-row inserts, claims, outcomes and replays as
//! several statements in one write transaction; every other statement is in the shared `sql`
//! core. It must never hold a statement the PostgreSQL engine could run as written.

mod claim;
mod insert;
mod replays;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row};
use uuid::Uuid;

use super::admin::ReplayKind;
use super::sql::order;
use super::sql::{
    Dialect, Engine, RELEASED, Side, Sql, Time, insert_step, outcome_texts, renew_leases, renewed,
    since_replay,
};
use super::{
    Cause, Claim, ClaimOnInsert, Finish, Finished, Inserted, Intake, Leases, NewEvent, StoreError,
};
use crate::event::{ClaimedEvent, EventId, OrderKey, Outcome};

/// The SQLite engine: one writer connection, a pool of readers beside it.
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

const BEGIN: &str = "BEGIN IMMEDIATE";

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl SqliteStore {
    pub async fn connect(url: &str, pool_size: u32, timeout: Duration) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Other(Cause::Database(Arc::new(e))))?
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
                StoreError::Unavailable(Cause::Io {
                    context: format!("cannot create {}", dir.display()),
                    source: Arc::new(e),
                })
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

    /// The writer pool, for tests and tools that need raw SQL.
    pub fn writer(&self) -> &SqlitePool {
        &self.writer
    }
}

#[async_trait]
impl Engine for SqliteStore {
    type Row = SqliteRow;
    const DIALECT: Dialect = Dialect::Sqlite;

    async fn rows(&self, q: Sql, side: Side) -> Result<Vec<SqliteRow>, StoreError> {
        let pool = match side {
            Side::Read => &self.reader,
            Side::Write => &self.writer,
        };
        Ok(q.query::<Sqlite>()?.fetch_all(pool).await?)
    }

    /// Every write goes through the one writer connection.
    async fn write(&self, q: Sql) -> Result<u64, StoreError> {
        let done = q.query::<Sqlite>()?.execute(&self.writer).await?;
        Ok(done.rows_affected())
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut migrator = sqlx::migrate!("migrations/sqlite");
        // As on PostgreSQL: an older release still starts on a schema a newer one migrated.
        migrator.set_ignore_missing(true);
        migrator.run(&self.writer).await?;
        Ok(())
    }

    async fn missing_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let table: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master
                            WHERE type = 'table' AND name = '_sqlx_migrations')",
        )
        .fetch_one(&self.writer)
        .await?;
        let applied: Vec<i64> = if table {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.writer)
                .await?
        } else {
            Vec::new()
        };
        Ok(crate::store::missing_versions(
            &sqlx::migrate!("migrations/sqlite"),
            &applied,
        ))
    }

    async fn replay(
        &self,
        ids: &[EventId],
        kind: ReplayKind,
        actor: &str,
    ) -> Result<Vec<EventId>, StoreError> {
        let now = now_ms();
        let from = kind.from_statuses();
        let mut tx = self.writer.begin_with(BEGIN).await?;
        let mut done = Vec::with_capacity(ids.len());
        for id in ids {
            let row = sqlx::query(
                "SELECT d.status FROM deliveries d JOIN events e ON e.id = d.event_id
                 WHERE d.event_id = ?1 AND e.body_purged_at IS NULL AND d.status IN (?2, ?3)",
            )
            .bind(id.0)
            .bind(from[0])
            .bind(from[from.len() - 1])
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else { continue };
            let from_status: String = row.try_get("status")?;
            let replays: i64 = sqlx::query_scalar(
                "UPDATE deliveries SET status = 'pending', attempts = 0, replays = replays + 1,
                     lease_owner = NULL, next_attempt_at = ?2, last_error = NULL, updated_at = ?2
                 WHERE event_id = ?1 RETURNING replays",
            )
            .bind(id.0)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO event_transitions (event_id, from_status, to_status, at, detail)
                 VALUES (?1, ?2, 'pending', ?3, ?4)",
            )
            .bind(id.0)
            .bind(&from_status)
            .bind(now)
            .bind(format!("{} {replays} by {actor}", kind.as_str()))
            .execute(&mut *tx)
            .await?;
            // A replay or redrive goes to the back of its key's line.
            order::rejoin(&mut *tx, *id).await?;
            done.push(*id);
        }
        tx.commit().await?;
        Ok(done)
    }

    async fn skip_in_line(
        &self,
        id: EventId,
        actor: &str,
    ) -> Result<Option<Vec<EventId>>, StoreError> {
        let mut tx = self.writer.begin_with(BEGIN).await?;
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
        // One small batch per write transaction: the writer is free again between batches.
        let purged: Vec<Time> = sqlx::query_scalar(
            "UPDATE events SET body = X'', body_purged_at = ?1
             WHERE id IN (
                SELECT e.id FROM events e JOIN deliveries d ON d.event_id = e.id
                WHERE d.status IN ('completed', 'dead_letter') AND e.body_purged_at IS NULL
                  AND e.received_at >= ?2 AND e.received_at < ?3
                ORDER BY e.received_at
                LIMIT ?4
             )
             RETURNING received_at",
        )
        .bind(now_ms())
        .bind(after.timestamp_millis())
        .bind(before.timestamp_millis())
        .bind(i64::from(limit))
        .fetch_all(&self.writer)
        .await?;
        Ok((purged.len() as u64, purged.into_iter().max().map(|t| t.0)))
    }
}

#[async_trait]
impl Intake for SqliteStore {
    async fn insert_and_claim(
        &self,
        events: &[NewEvent],
        claim: &ClaimOnInsert,
    ) -> Result<(Vec<Inserted>, Vec<ClaimedEvent>), StoreError> {
        // One write transaction for the whole batch: one lock, one fsync of the WAL.
        let now = now_ms();
        let mut tx = self.writer.begin_with(BEGIN).await?;
        let mut out = Vec::with_capacity(events.len());
        let mut rest = events;
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(insert::chunk_size(rest.len()));
            rest = tail;
            out.extend(insert::insert_chunk(&mut tx, chunk, now).await?);
        }
        let new: Vec<EventId> = out
            .iter()
            .filter_map(|o| match o {
                Inserted::New(id) => Some(*id),
                Inserted::Duplicate(_) => None,
            })
            .collect();
        if new.is_empty() {
            // Only duplicates: nothing to make durable, so no fsync.
            tx.rollback().await?;
            return Ok((out, Vec::new()));
        }
        // The new events join the lines of their order keys, in arrival order (one writer:
        // that is commit order); one held behind another is not claimed below.
        let joins: Vec<(EventId, &OrderKey)> = events
            .iter()
            .filter(|e| new.contains(&e.id))
            .flat_map(|e| e.order.iter().map(move |k| (e.id, k)))
            .collect();
        order::join(&mut *tx, &joins).await?;
        // In the same transaction, as of the insert's own time (so they are due).
        let picked: Vec<EventId> = new.into_iter().take(claim.limit).collect();
        let claimed = if picked.is_empty() {
            Vec::new()
        } else {
            let which = Claim::Events(picked);
            claim::claim_at(&mut tx, &claim.owner, claim.lease, which, now).await?
        };
        tx.commit().await?;
        Ok((out, claimed))
    }
}

#[async_trait]
impl Leases for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        // Taking the write lock proves the store can commit, not merely be read.
        let tx = self.writer.begin_with(BEGIN).await?;
        tx.rollback().await?;
        Ok(())
    }

    async fn claim(
        &self,
        owner: &str,
        lease: Duration,
        which: Claim,
    ) -> Result<Vec<ClaimedEvent>, StoreError> {
        let mut tx = self.writer.begin_with(BEGIN).await?;
        let claimed = claim::claim(&mut tx, owner, lease, which).await?;
        tx.commit().await?;
        Ok(claimed)
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
        let mut tx = self.writer.begin_with(BEGIN).await?;
        let mut done = Finished::default();
        for f in items {
            if let Some(step) = &f.step {
                insert_step(step)
                    .query::<Sqlite>()?
                    .execute(&mut *tx)
                    .await?;
            }
            let written = finish_in(&mut tx, f.id, &f.owner, &f.outcome).await?;
            if written && f.ordered {
                let released = order::settle(&mut *tx, f.id, f.outcome.status()).await?;
                done.released.extend(released);
            }
            done.written.push(written);
        }
        tx.commit().await?;
        Ok(done)
    }

    async fn release_all(&self, owner: &str) -> Result<u64, StoreError> {
        let now = now_ms();
        let mut tx = self.writer.begin_with(BEGIN).await?;
        let ids: Vec<(Uuid, String)> = sqlx::query_as(AssertSqlSafe(format!(
            "UPDATE deliveries SET lease_owner = NULL, attempts = attempts - 1,
                 next_attempt_at = ?2, updated_at = ?2,
                 -- An event in compensation goes back to compensating, not to the start.
                 status = CASE WHEN EXISTS (
                     SELECT 1 FROM event_transitions t
                     WHERE t.event_id = deliveries.event_id AND t.to_status = 'compensating'
                       AND t.id > {}
                 ) THEN 'compensating' ELSE 'pending' END
             WHERE lease_owner = ?1 AND status = 'processing'
             RETURNING event_id, status",
            since_replay("deliveries.event_id")
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

    async fn requeue_overdue(
        &self,
        grace: Duration,
        limit: u32,
    ) -> Result<Vec<EventId>, StoreError> {
        let now = now_ms();
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "UPDATE deliveries SET next_attempt_at = ?1
             WHERE event_id IN (
                SELECT event_id FROM deliveries INDEXED BY deliveries_due
                WHERE status IN ('pending', 'processing', 'retry_scheduled', 'compensating') AND next_attempt_at <= ?2
                  AND held = 0
                  AND provider NOT IN (SELECT provider FROM provider_pauses)
                ORDER BY next_attempt_at LIMIT ?3
             )
             RETURNING event_id",
        )
        .bind(now)
        .bind(now - grace.as_millis() as i64)
        .bind(i64::from(limit))
        .fetch_all(&self.writer)
        .await?;
        Ok(ids.into_iter().map(EventId).collect())
    }
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
        "UPDATE deliveries SET status = ?3, lease_owner = NULL,
             next_attempt_at = COALESCE(?4, next_attempt_at),
             last_error = CASE WHEN ?7 THEN last_error ELSE ?5 END,
             attempts = attempts - CASE WHEN ?7 THEN 1 ELSE 0 END,
             updated_at = ?6
         WHERE event_id = ?1 AND lease_owner = ?2 AND status = 'processing'",
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

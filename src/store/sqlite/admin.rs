//! [`AdminStore`] on SQLite. Reads use the read pool; every write goes through the one writer
//! connection inside `BEGIN IMMEDIATE`, as in the rest of the engine.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{Sqlite, SqliteRow};
use sqlx::{QueryBuilder, Row};
use uuid::Uuid;

use super::{BEGIN, SqliteStore, now_ms, status, to_time};
use crate::event::EventId;
use crate::store::StoreError;
use crate::store::admin::{
    ActivityBucket, AdminStore, AuditEntry, AuditFilter, EventFilter, EventPayload, EventSummary,
    Job, JobProgress, JobStatus, NewAudit, ProviderCount, ReplayKind, Session, fill_buckets,
    provider_counts, shown_status,
};

const SUMMARY: &str = "SELECT id, provider, event_type, idempotency_key, status, attempts,
    received_at, updated_at, last_error, length(body) AS body_bytes, replays, body_purged_at
    FROM events WHERE 1";

fn push_filter(q: &mut QueryBuilder<Sqlite>, f: &EventFilter) {
    if let Some(p) = &f.provider {
        q.push(" AND provider = ").push_bind(p.clone());
    }
    if !f.statuses.is_empty() {
        q.push(" AND status IN (");
        let mut list = q.separated(", ");
        for s in &f.statuses {
            list.push_bind(s.as_str());
        }
        q.push(")");
    }
    if let Some(glob) = &f.event_type {
        // GLOB, not LIKE: SQLite's LIKE ignores ASCII case, PostgreSQL's does not.
        q.push(" AND event_type GLOB ").push_bind(sqlite_glob(glob));
    }
    if let Some(t) = f.received_after {
        q.push(" AND received_at >= ")
            .push_bind(t.timestamp_millis());
    }
    if let Some(t) = f.received_before {
        q.push(" AND received_at < ")
            .push_bind(t.timestamp_millis());
    }
    if let Some(k) = &f.idempotency_key {
        q.push(" AND idempotency_key = ").push_bind(k.clone());
    }
    if let Some(text) = &f.text {
        // A byte search over the raw body (both arguments are blobs).
        q.push(" AND instr(body, ")
            .push_bind(text.as_bytes().to_vec())
            .push(") > 0");
    }
}

/// An event-type glob (only `*` is special) as a SQLite GLOB pattern: `?` and `[` are
/// bracketed so they match themselves.
fn sqlite_glob(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len());
    for c in glob.chars() {
        match c {
            '?' => out.push_str("[?]"),
            '[' => out.push_str("[[]"),
            c => out.push(c),
        }
    }
    out
}

fn summary(r: &SqliteRow) -> Result<EventSummary, StoreError> {
    Ok(EventSummary {
        id: EventId(r.try_get("id")?),
        provider: r.try_get("provider")?,
        event_type: r.try_get("event_type")?,
        idempotency_key: r.try_get("idempotency_key")?,
        status: status(r, "status")?,
        attempts: r.try_get::<i64, _>("attempts")? as u32,
        received_at: to_time(r.try_get("received_at")?),
        updated_at: to_time(r.try_get("updated_at")?),
        last_error: r.try_get("last_error")?,
        body_bytes: r.try_get::<i64, _>("body_bytes")? as usize,
        replays: r.try_get::<i64, _>("replays")? as u32,
        body_purged_at: r.try_get::<Option<i64>, _>("body_purged_at")?.map(to_time),
    })
}

fn job(r: &SqliteRow) -> Result<Job, StoreError> {
    let stored: String = r.try_get("status")?;
    let updated_at = to_time(r.try_get("updated_at")?);
    let params: String = r.try_get("params")?;
    Ok(Job {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        filter: serde_json::from_str(&params).map_err(|e| StoreError::Other(e.to_string()))?,
        status: shown_status(&stored, updated_at)
            .ok_or_else(|| StoreError::Other(format!("unknown job status {stored:?}")))?,
        total: r.try_get::<i64, _>("total")? as u64,
        processed: r.try_get::<i64, _>("processed")? as u64,
        replayed: r.try_get::<i64, _>("replayed")? as u64,
        skipped: r.try_get::<i64, _>("skipped")? as u64,
        cancel_requested: r.try_get("cancel_requested")?,
        created_by: r.try_get("created_by")?,
        created_at: to_time(r.try_get("created_at")?),
        updated_at,
        finished_at: r.try_get::<Option<i64>, _>("finished_at")?.map(to_time),
        error: r.try_get("error")?,
    })
}

#[async_trait]
impl AdminStore for SqliteStore {
    async fn list_events(
        &self,
        filter: &EventFilter,
        before: Option<EventId>,
        limit: u32,
    ) -> Result<Vec<EventSummary>, StoreError> {
        let mut q = QueryBuilder::<Sqlite>::new(SUMMARY);
        push_filter(&mut q, filter);
        if let Some(b) = before {
            q.push(" AND id < ").push_bind(b.0);
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(limit));
        q.build()
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(summary)
            .collect()
    }

    async fn count_events(&self, filter: &EventFilter) -> Result<u64, StoreError> {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT count(*) FROM events WHERE 1");
        push_filter(&mut q, filter);
        let n: i64 = q.build_query_scalar().fetch_one(&self.reader).await?;
        Ok(n as u64)
    }

    async fn event_payload(&self, id: EventId) -> Result<Option<EventPayload>, StoreError> {
        let row = sqlx::query("SELECT headers, body, content_type FROM events WHERE id = ?1")
            .bind(id.0)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| {
            let headers: String = r.try_get("headers")?;
            Ok(EventPayload {
                headers: serde_json::from_str(&headers)
                    .map_err(|e| StoreError::Other(e.to_string()))?,
                body: r.try_get("body")?,
                content_type: r.try_get("content_type")?,
            })
        })
        .transpose()
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
                "SELECT status FROM events WHERE id = ?1 AND body_purged_at IS NULL
                   AND status IN (?2, ?3)",
            )
            .bind(id.0)
            .bind(from[0])
            .bind(from[from.len() - 1])
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else { continue };
            let from_status: String = row.try_get("status")?;
            let replays: i64 = sqlx::query_scalar(
                "UPDATE events SET status = 'pending', attempts = 0, replays = replays + 1,
                     lease_owner = NULL, next_attempt_at = ?2, last_error = NULL, updated_at = ?2
                 WHERE id = ?1 RETURNING replays",
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
            done.push(*id);
        }
        tx.commit().await?;
        Ok(done)
    }

    async fn append_audit(&self, e: &NewAudit) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, target, status, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(now_ms())
        .bind(&e.actor)
        .bind(&e.action)
        .bind(e.target.as_deref())
        .bind(i64::from(e.status))
        .bind(e.detail.as_deref())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn audit(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT id, at, actor, action, target, status, detail FROM audit_log WHERE 1",
        );
        if let Some(a) = &f.actor {
            q.push(" AND actor = ").push_bind(a.clone());
        }
        if let Some(a) = &f.action {
            q.push(" AND action = ").push_bind(a.clone());
        }
        if let Some(b) = f.before {
            q.push(" AND id < ").push_bind(b);
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(f.limit));
        q.build()
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at: to_time(r.try_get("at")?),
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    status: r.try_get::<i64, _>("status")? as u16,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }

    async fn create_job(
        &self,
        id: Uuid,
        kind: &str,
        filter: &EventFilter,
        total: u64,
        created_by: &str,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let params = serde_json::to_string(filter).map_err(|e| StoreError::Other(e.to_string()))?;
        sqlx::query(
            "INSERT INTO admin_jobs (id, kind, params, status, total, created_by, created_at, updated_at)
             VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6, ?6)",
        )
        .bind(id)
        .bind(kind)
        .bind(params)
        .bind(total as i64)
        .bind(created_by)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn job_progress(&self, id: Uuid, p: JobProgress) -> Result<bool, StoreError> {
        let cancel: Option<bool> = sqlx::query_scalar(
            "UPDATE admin_jobs SET processed = ?2, replayed = ?3, skipped = ?4, updated_at = ?5
             WHERE id = ?1 RETURNING cancel_requested",
        )
        .bind(id)
        .bind(p.processed as i64)
        .bind(p.replayed as i64)
        .bind(p.skipped as i64)
        .bind(now_ms())
        .fetch_optional(&self.writer)
        .await?;
        Ok(cancel.unwrap_or(true))
    }

    async fn finish_job(
        &self,
        id: Uuid,
        status: JobStatus,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        sqlx::query(
            "UPDATE admin_jobs SET status = ?2, error = ?3, finished_at = ?4, updated_at = ?4
             WHERE id = ?1",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(error)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn cancel_job(&self, id: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE admin_jobs SET cancel_requested = 1 WHERE id = ?1 AND status = 'running'",
        )
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn job(&self, id: Uuid) -> Result<Option<Job>, StoreError> {
        sqlx::query("SELECT * FROM admin_jobs WHERE id = ?1")
            .bind(id)
            .fetch_optional(&self.reader)
            .await?
            .as_ref()
            .map(job)
            .transpose()
    }

    async fn jobs(&self, limit: u32) -> Result<Vec<Job>, StoreError> {
        sqlx::query("SELECT * FROM admin_jobs ORDER BY created_at DESC, id LIMIT ?1")
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(job)
            .collect()
    }

    async fn purge_payloads(
        &self,
        after: DateTime<Utc>,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<(u64, Option<DateTime<Utc>>), StoreError> {
        // One small batch per write transaction: the writer is free again between batches.
        let purged: Vec<i64> = sqlx::query_scalar(
            "UPDATE events SET body = X'', body_purged_at = ?1
             WHERE id IN (
                SELECT id FROM events
                WHERE status IN ('completed', 'dead_letter') AND body_purged_at IS NULL
                  AND received_at >= ?2 AND received_at < ?3
                ORDER BY received_at
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
        Ok((purged.len() as u64, purged.into_iter().max().map(to_time)))
    }

    async fn activity(
        &self,
        since: DateTime<Utc>,
        bucket_secs: u32,
    ) -> Result<Vec<ActivityBucket>, StoreError> {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT at / (?2 * 1000) AS bucket,
                    CASE WHEN from_status IS NULL THEN 'received' ELSE to_status END AS what,
                    count(*)
             FROM event_transitions
             WHERE at >= ?1 AND (from_status IS NULL
                   OR to_status IN ('completed', 'retry_scheduled', 'dead_letter'))
             GROUP BY 1, 2",
        )
        .bind(since.timestamp_millis())
        .bind(i64::from(bucket_secs))
        .fetch_all(&self.reader)
        .await?;
        Ok(fill_buckets(since, bucket_secs, rows))
    }

    async fn provider_counts(&self) -> Result<Vec<ProviderCount>, StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT provider, status, count(*) FROM events
             WHERE status IN ('pending', 'processing', 'retry_scheduled', 'compensating', 'dead_letter')
             GROUP BY provider, status",
        )
        .fetch_all(&self.reader)
        .await?;
        provider_counts(rows)
    }

    async fn create_session(&self, digest: &[u8], s: &Session) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.writer.begin_with(BEGIN).await?;
        sqlx::query("DELETE FROM admin_sessions WHERE expires_at < ?1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO admin_sessions (id_digest, token_name, scope, csrf, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(digest)
        .bind(&s.token_name)
        .bind(&s.scope)
        .bind(&s.csrf)
        .bind(now)
        .bind(s.expires_at.timestamp_millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn session(&self, digest: &[u8]) -> Result<Option<Session>, StoreError> {
        sqlx::query(
            "SELECT token_name, scope, csrf, expires_at FROM admin_sessions
             WHERE id_digest = ?1 AND expires_at > ?2",
        )
        .bind(digest)
        .bind(now_ms())
        .fetch_optional(&self.reader)
        .await?
        .map(|r| {
            Ok(Session {
                token_name: r.try_get("token_name")?,
                scope: r.try_get("scope")?,
                csrf: r.try_get("csrf")?,
                expires_at: to_time(r.try_get("expires_at")?),
            })
        })
        .transpose()
    }

    async fn delete_session(&self, digest: &[u8]) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM admin_sessions WHERE id_digest = ?1")
            .bind(digest)
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn globs_keep_only_the_star_special() {
        assert_eq!(super::sqlite_glob("a?b[c]*"), "a[?]b[[]c]*");
    }
}

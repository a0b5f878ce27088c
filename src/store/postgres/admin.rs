//! [`AdminStore`] on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgRow, Postgres};
use sqlx::types::Json;
use sqlx::{QueryBuilder, Row};
use uuid::Uuid;

use super::{PgStore, status};
use crate::event::EventId;
use crate::store::StoreError;
use crate::store::admin::{
    ActivityBucket, AdminStore, AuditEntry, AuditFilter, EventFilter, EventPayload, EventSummary,
    Job, JobProgress, JobStatus, NewAudit, ProviderCount, ReplayKind, Session, fill_buckets,
    provider_counts, shown_status,
};

const SUMMARY: &str = "SELECT id, provider, event_type, idempotency_key, status, attempts,
    received_at, updated_at, last_error, length(body) AS body_bytes, replays, body_purged_at
    FROM events WHERE true";

fn push_filter(q: &mut QueryBuilder<Postgres>, f: &EventFilter) {
    if let Some(p) = &f.provider {
        q.push(" AND provider = ").push_bind(p.clone());
    }
    if !f.statuses.is_empty() {
        let list: Vec<String> = f.statuses.iter().map(|s| s.as_str().to_owned()).collect();
        q.push(" AND status = ANY(").push_bind(list).push(")");
    }
    if let Some(like) = f.type_like() {
        q.push(" AND event_type LIKE ")
            .push_bind(like)
            .push(" ESCAPE '\\'");
    }
    if let Some(t) = f.received_after {
        q.push(" AND received_at >= ").push_bind(t);
    }
    if let Some(t) = f.received_before {
        q.push(" AND received_at < ").push_bind(t);
    }
    if let Some(k) = &f.idempotency_key {
        q.push(" AND idempotency_key = ").push_bind(k.clone());
    }
    if let Some(text) = &f.text {
        // A byte search over the raw body: works for any payload, JSON or not.
        q.push(" AND position(")
            .push_bind(text.as_bytes().to_vec())
            .push(" IN body) > 0");
    }
}

fn summary(r: &PgRow) -> Result<EventSummary, StoreError> {
    Ok(EventSummary {
        id: EventId(r.try_get("id")?),
        provider: r.try_get("provider")?,
        event_type: r.try_get("event_type")?,
        idempotency_key: r.try_get("idempotency_key")?,
        status: status(r, "status")?,
        attempts: r.try_get::<i32, _>("attempts")? as u32,
        received_at: r.try_get("received_at")?,
        updated_at: r.try_get("updated_at")?,
        last_error: r.try_get("last_error")?,
        body_bytes: r.try_get::<i32, _>("body_bytes")? as usize,
        replays: r.try_get::<i32, _>("replays")? as u32,
        body_purged_at: r.try_get("body_purged_at")?,
    })
}

fn job(r: &PgRow) -> Result<Job, StoreError> {
    let stored: String = r.try_get("status")?;
    let updated_at: DateTime<Utc> = r.try_get("updated_at")?;
    let Json(filter): Json<EventFilter> = r.try_get("params")?;
    Ok(Job {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        filter,
        status: shown_status(&stored, updated_at)
            .ok_or_else(|| StoreError::Other(format!("unknown job status {stored:?}")))?,
        total: r.try_get::<i64, _>("total")? as u64,
        processed: r.try_get::<i64, _>("processed")? as u64,
        replayed: r.try_get::<i64, _>("replayed")? as u64,
        skipped: r.try_get::<i64, _>("skipped")? as u64,
        cancel_requested: r.try_get("cancel_requested")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        updated_at,
        finished_at: r.try_get("finished_at")?,
        error: r.try_get("error")?,
    })
}

#[async_trait]
impl AdminStore for PgStore {
    async fn list_events(
        &self,
        filter: &EventFilter,
        before: Option<EventId>,
        limit: u32,
    ) -> Result<Vec<EventSummary>, StoreError> {
        let mut q = QueryBuilder::<Postgres>::new(SUMMARY);
        push_filter(&mut q, filter);
        if let Some(b) = before {
            q.push(" AND id < ").push_bind(b.0);
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(limit));
        q.build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(summary)
            .collect()
    }

    async fn count_events(&self, filter: &EventFilter) -> Result<u64, StoreError> {
        let mut q = QueryBuilder::<Postgres>::new("SELECT count(*) FROM events WHERE true");
        push_filter(&mut q, filter);
        let n: i64 = q.build_query_scalar().fetch_one(&self.pool).await?;
        Ok(n as u64)
    }

    async fn event_payload(&self, id: EventId) -> Result<Option<EventPayload>, StoreError> {
        let row = sqlx::query("SELECT headers, body, content_type FROM events WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let Json(headers): Json<serde_json::Value> = r.try_get("headers")?;
            Ok(EventPayload {
                headers,
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
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = ids.iter().map(|i| i.0).collect();
        let from: Vec<String> = kind.from_statuses().iter().map(|s| s.to_string()).collect();
        // One statement: the new cycle and the transition that records it commit together.
        // The status is checked again once the row is locked (a purge may have come first).
        let done: Vec<Uuid> = sqlx::query_scalar(
            "WITH target AS (
                SELECT id, status AS from_status FROM events
                WHERE id = ANY($1) AND status = ANY($2) AND body_purged_at IS NULL
                FOR UPDATE
             ), upd AS (
                UPDATE events e SET status = 'pending', attempts = 0, replays = e.replays + 1,
                    lease_owner = NULL, next_attempt_at = now(), last_error = NULL, updated_at = now()
                FROM target WHERE e.id = target.id
                RETURNING e.id, target.from_status, e.replays
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
        .fetch_all(&self.pool)
        .await?;
        Ok(done.into_iter().map(EventId).collect())
    }

    async fn append_audit(&self, e: &NewAudit) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (actor, action, target, status, detail) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&e.actor)
        .bind(&e.action)
        .bind(e.target.as_deref())
        .bind(i32::from(e.status))
        .bind(e.detail.as_deref())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn audit(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let mut q = QueryBuilder::<Postgres>::new(
            "SELECT id, at, actor, action, target, status, detail FROM audit_log WHERE true",
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
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    status: r.try_get::<i32, _>("status")? as u16,
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
        sqlx::query(
            "INSERT INTO admin_jobs (id, kind, params, status, total, created_by)
             VALUES ($1, $2, $3, 'running', $4, $5)",
        )
        .bind(id)
        .bind(kind)
        .bind(Json(filter))
        .bind(total as i64)
        .bind(created_by)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn job_progress(&self, id: Uuid, p: JobProgress) -> Result<bool, StoreError> {
        let cancel: Option<bool> = sqlx::query_scalar(
            "UPDATE admin_jobs SET processed = $2, replayed = $3, skipped = $4, updated_at = now()
             WHERE id = $1 RETURNING cancel_requested",
        )
        .bind(id)
        .bind(p.processed as i64)
        .bind(p.replayed as i64)
        .bind(p.skipped as i64)
        .fetch_optional(&self.pool)
        .await?;
        Ok(cancel.unwrap_or(true))
    }

    async fn finish_job(
        &self,
        id: Uuid,
        status: JobStatus,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE admin_jobs SET status = $2, error = $3, finished_at = now(), updated_at = now()
             WHERE id = $1",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn cancel_job(&self, id: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE admin_jobs SET cancel_requested = true WHERE id = $1 AND status = 'running'",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn job(&self, id: Uuid) -> Result<Option<Job>, StoreError> {
        sqlx::query("SELECT * FROM admin_jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(job)
            .transpose()
    }

    async fn jobs(&self, limit: u32) -> Result<Vec<Job>, StoreError> {
        sqlx::query("SELECT * FROM admin_jobs ORDER BY created_at DESC, id LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
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
        // A small batch per statement, rows a worker holds skipped: no long lock on anything.
        let purged: Vec<DateTime<Utc>> = sqlx::query_scalar(
            "UPDATE events SET body = ''::bytea, body_purged_at = now()
             WHERE id IN (
                SELECT id FROM events
                WHERE status IN ('completed', 'dead_letter') AND body_purged_at IS NULL
                  AND received_at >= $1 AND received_at < $2
                ORDER BY received_at
                LIMIT $3
                FOR UPDATE SKIP LOCKED
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

    async fn activity(
        &self,
        since: DateTime<Utc>,
        bucket_secs: u32,
    ) -> Result<Vec<ActivityBucket>, StoreError> {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT floor(extract(epoch FROM at) / $2)::bigint AS bucket,
                    CASE WHEN from_status IS NULL THEN 'received' ELSE to_status END AS what,
                    count(*)
             FROM event_transitions
             WHERE at >= $1 AND (from_status IS NULL
                   OR to_status IN ('completed', 'retry_scheduled', 'dead_letter'))
             GROUP BY 1, 2",
        )
        .bind(since)
        .bind(f64::from(bucket_secs))
        .fetch_all(&self.pool)
        .await?;
        Ok(fill_buckets(since, bucket_secs, rows))
    }

    async fn provider_counts(&self) -> Result<Vec<ProviderCount>, StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT provider, status, count(*) FROM events
             WHERE status IN ('pending', 'processing', 'retry_scheduled', 'compensating', 'dead_letter')
             GROUP BY provider, status",
        )
        .fetch_all(&self.pool)
        .await?;
        provider_counts(rows)
    }

    async fn create_session(&self, digest: &[u8], s: &Session) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM admin_sessions WHERE expires_at < now()")
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO admin_sessions (id_digest, token_name, scope, csrf, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(digest)
        .bind(&s.token_name)
        .bind(&s.scope)
        .bind(&s.csrf)
        .bind(s.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn session(&self, digest: &[u8]) -> Result<Option<Session>, StoreError> {
        sqlx::query(
            "SELECT token_name, scope, csrf, expires_at FROM admin_sessions
             WHERE id_digest = $1 AND expires_at > now()",
        )
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| {
            Ok(Session {
                token_name: r.try_get("token_name")?,
                scope: r.try_get("scope")?,
                csrf: r.try_get("csrf")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    async fn delete_session(&self, digest: &[u8]) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM admin_sessions WHERE id_digest = $1")
            .bind(digest)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

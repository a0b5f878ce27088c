//! [`Operator`] for any engine: pauses, the audit log, jobs and sessions written once; replays
//! and payload purges come from the engine (they lock rows differently).
//!
//! It must never touch an event's body except through the engine's purge.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Dialect, Engine, Record, Sql};
use crate::event::EventId;
use crate::store::StoreError;
use crate::store::admin::{
    EventFilter, JobProgress, JobStatus, NewAudit, Operator, ReplayKind, Session,
};

#[async_trait]
impl<E: Engine> Operator for E {
    async fn pause_provider(
        &self,
        provider: &str,
        reason: Option<&str>,
    ) -> Result<bool, StoreError> {
        let q = Sql::new(
            "INSERT INTO provider_pauses (provider, paused_at, reason) VALUES ($1, {now}, $2)
             ON CONFLICT (provider) DO NOTHING",
        )
        .arg(provider)
        .arg(reason);
        Ok(self.write(q).await? == 1)
    }

    async fn resume_provider(&self, provider: &str) -> Result<bool, StoreError> {
        let q = Sql::new("DELETE FROM provider_pauses WHERE provider = $1").arg(provider);
        Ok(self.write(q).await? == 1)
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
        Engine::replay(self, ids, kind, actor).await
    }

    async fn skip_in_line(
        &self,
        id: EventId,
        actor: &str,
    ) -> Result<Option<Vec<EventId>>, StoreError> {
        Engine::skip_in_line(self, id, actor).await
    }

    async fn append_audit(&self, e: &NewAudit) -> Result<(), StoreError> {
        let q = Sql::new(
            "INSERT INTO audit_log (at, actor, action, target, status, detail)
             VALUES ({now}, $1, $2, $3, $4, $5)",
        )
        .arg(&e.actor)
        .arg(&e.action)
        .arg(e.target.as_deref())
        .arg(i32::from(e.status))
        .arg(e.detail.as_deref());
        self.write(q).await?;
        Ok(())
    }

    async fn create_job(
        &self,
        id: Uuid,
        kind: &str,
        filter: &EventFilter,
        total: u64,
        created_by: &str,
    ) -> Result<(), StoreError> {
        let params = match E::DIALECT {
            Dialect::Postgres => "CAST($3 AS jsonb)",
            Dialect::Sqlite => "$3",
        };
        let q = Sql::new(&format!(
            "INSERT INTO admin_jobs (id, kind, params, status, total, created_by, created_at, updated_at)
             VALUES ($1, $2, {params}, 'running', $4, $5, {{now}}, {{now}})"
        ))
        .arg(id)
        .arg(kind)
        .arg(serde_json::to_string(filter)?.as_str())
        .arg(total as i64)
        .arg(created_by);
        self.write(q).await?;
        Ok(())
    }

    async fn job_progress(&self, id: Uuid, p: JobProgress) -> Result<bool, StoreError> {
        let q = Sql::new(
            "UPDATE admin_jobs SET processed = $2, replayed = $3, skipped = $4, updated_at = {now}
             WHERE id = $1 RETURNING cancel_requested",
        )
        .arg(id)
        .arg(p.processed as i64)
        .arg(p.replayed as i64)
        .arg(p.skipped as i64);
        match self.write_rows(q).await?.first() {
            Some(r) => r.get("cancel_requested"),
            // The job is gone: stop.
            None => Ok(true),
        }
    }

    async fn finish_job(
        &self,
        id: Uuid,
        status: JobStatus,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let q = Sql::new(
            "UPDATE admin_jobs SET status = $2, error = $3, finished_at = {now}, updated_at = {now}
             WHERE id = $1",
        )
        .arg(id)
        .arg(status.as_str())
        .arg(error);
        self.write(q).await?;
        Ok(())
    }

    async fn cancel_job(&self, id: Uuid) -> Result<bool, StoreError> {
        let q = Sql::new(
            "UPDATE admin_jobs SET cancel_requested = true WHERE id = $1 AND status = 'running'",
        )
        .arg(id);
        Ok(self.write(q).await? == 1)
    }

    async fn purge_payloads(
        &self,
        after: DateTime<Utc>,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<(u64, Option<DateTime<Utc>>), StoreError> {
        Engine::purge_payloads(self, after, before, limit).await
    }

    async fn create_session(&self, digest: &[u8], s: &Session) -> Result<(), StoreError> {
        self.write(Sql::new(
            "DELETE FROM admin_sessions WHERE expires_at < {now}",
        ))
        .await?;
        let q = Sql::new(
            "INSERT INTO admin_sessions (id_digest, token_name, scope, csrf, created_at, expires_at)
             VALUES ($1, $2, $3, $4, {now}, $5)",
        )
        .arg(digest)
        .arg(&s.token_name)
        .arg(&s.scope)
        .arg(&s.csrf)
        .arg(s.expires_at);
        self.write(q).await?;
        Ok(())
    }

    async fn delete_session(&self, digest: &[u8]) -> Result<(), StoreError> {
        let q = Sql::new("DELETE FROM admin_sessions WHERE id_digest = $1").arg(digest);
        self.write(q).await?;
        Ok(())
    }
}

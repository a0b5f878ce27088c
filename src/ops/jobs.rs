//! Bulk replays and redrives as background jobs: they page through the events a filter matches
//! (newest first, each event once), replay them a batch at a time and store their progress, so
//! any API process can report on a job and cancel it.
//!
//! Owns the job's pace and its record (progress, cancel, end). It must never hold the store
//! for long: one batch per write, with a pause between batches.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Ops, OpsError, Principal, params};
use crate::event::EventId;
use crate::store::admin::{EventFilter, Job, JobProgress, JobStatus, ReplayKind};

// No doc comment: it would become the schema's description and change docs/openapi.json.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<Job>,
}

/// Events replayed per batch (one store write each batch).
const BATCH: u32 = 100;
/// Pause between batches, so a large job leaves the store to the webhooks and workers.
const PACE: Duration = Duration::from_millis(100);

impl Ops {
    /// Start replaying (or redriving) every event `filter` matches. Returns the job as stored.
    pub async fn start_job(
        self: &Arc<Self>,
        kind: ReplayKind,
        filter: EventFilter,
        who: &Principal,
    ) -> Result<Job, OpsError> {
        let total = self.store.count_events(&filter).await?;
        let id = Uuid::now_v7();
        let actor = who.actor();
        self.store
            .create_job(id, kind.as_str(), &filter, total, &actor)
            .await?;
        let ops = self.clone();
        tokio::spawn(async move {
            let (status, error) = match ops.run_job(id, kind, &filter, &actor).await {
                Ok(status) => (status, None),
                Err(e) => (JobStatus::Failed, Some(e.to_string())),
            };
            tracing::info!(job = %id, status = status.as_str(), error, "bulk {} job ended", kind.as_str());
            for _ in 0..5 {
                match ops.store.finish_job(id, status, error.as_deref()).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(job = %id, error = %e, "cannot record the end of a job");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        self.store
            .job(id)
            .await?
            .ok_or_else(|| OpsError::Invalid("the job vanished".into()))
    }

    /// The `limit` most recent jobs, newest first.
    pub async fn jobs(&self, limit: u32) -> Result<JobList, OpsError> {
        Ok(JobList {
            jobs: self.store.jobs(limit).await?,
        })
    }

    /// One job and its progress, by the id as given.
    pub async fn job(&self, id: &str) -> Result<Job, OpsError> {
        let id = params::job_id(id)?;
        self.store.job(id).await?.ok_or(OpsError::NotFound)
    }

    /// Ask a running job to stop after its current batch. Returns the job as it is now.
    pub async fn cancel_job(&self, id: &str) -> Result<Job, OpsError> {
        let id = params::job_id(id)?;
        if !self.store.cancel_job(id).await? {
            let job = self.store.job(id).await?.ok_or(OpsError::NotFound)?;
            return Err(OpsError::Conflict {
                code: "job_not_running",
                message: format!("the job is {}", job.status.as_str()),
            });
        }
        self.store.job(id).await?.ok_or(OpsError::NotFound)
    }

    async fn run_job(
        &self,
        id: Uuid,
        kind: ReplayKind,
        filter: &EventFilter,
        actor: &str,
    ) -> Result<JobStatus, OpsError> {
        let mut shutdown = self.shutdown.clone();
        let mut progress = JobProgress::default();
        let mut cursor: Option<EventId> = None;
        let allowed: Vec<&str> = kind.from_statuses().to_vec();
        loop {
            // Pages come from the primary: a replica may lag behind the replays just made.
            let page = self.store.list_events(filter, cursor, BATCH).await?;
            let Some(last) = page.last() else {
                return Ok(JobStatus::Completed);
            };
            cursor = Some(last.id);
            let candidates: Vec<EventId> = page
                .iter()
                .filter(|e| allowed.contains(&e.status.as_str()) && e.body_purged_at.is_none())
                .map(|e| e.id)
                .collect();
            let done = self.store.replay(&candidates, kind, actor).await?;
            for id in &done {
                self.enqueue(*id).await;
            }
            progress.processed += page.len() as u64;
            progress.replayed += done.len() as u64;
            progress.skipped += (page.len() - done.len()) as u64;
            if self.store.job_progress(id, progress).await? {
                return Ok(JobStatus::Cancelled);
            }
            if (page.len() as u32) < BATCH {
                return Ok(JobStatus::Completed);
            }
            tokio::select! {
                _ = tokio::time::sleep(PACE) => {}
                _ = shutdown.wait_for(|s| *s) => {
                    return Err(OpsError::Invalid("interrupted by shutdown".into()));
                }
            }
        }
    }
}

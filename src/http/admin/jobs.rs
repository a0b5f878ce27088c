//! `/admin/replays` and `/admin/jobs`: starting a bulk replay, and following or cancelling the
//! background jobs of bulk replays and redrives.
//!
//! Thin handlers over `ops::jobs`, with their OpenAPI annotations.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AuditNote;
use super::openapi::ErrorBody;
use crate::http::extract::json_body;
use crate::http::{ApiError, AppState};
use crate::ops::{EventFilter, Job, JobList, Principal, ReplayKind, ReplayRequest};

/// Start a job over `filter`: 202 with the job, and a note for the audit log.
pub(super) async fn start(
    state: &Arc<AppState>,
    who: &Principal,
    kind: ReplayKind,
    filter: EventFilter,
) -> Result<Response, ApiError> {
    let job = state.ops.start_job(kind, filter, who).await?;
    let mut resp = (StatusCode::ACCEPTED, Json(&job)).into_response();
    resp.extensions_mut().insert(AuditNote(format!(
        "job {} over {} event(s)",
        job.id, job.total
    )));
    Ok(resp)
}

/// Replay every completed or dead-lettered event a filter matches, in the background. The
/// answer is the job; follow it at `/admin/jobs/{id}`.
#[utoipa::path(post, path = "/admin/replays", tag = "jobs", request_body = ReplayRequest,
    responses(
        (status = 202, body = Job, description = "The job started"),
        (status = 400, body = ErrorBody, description = "A parameter or the body is invalid"),
        (status = 403, body = ErrorBody, description = "The token has the read scope"),
    ))]
pub async fn replay_many(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let filter = json_body::<ReplayRequest>(&body)?.filter()?;
    start(&state, &who, ReplayKind::Replay, filter).await
}

/// The 50 most recent bulk jobs.
#[utoipa::path(get, path = "/admin/jobs", tag = "jobs",
    responses((status = 200, body = JobList, description = "OK")))]
pub async fn jobs(State(state): State<Arc<AppState>>) -> Result<Json<JobList>, ApiError> {
    Ok(Json(state.ops.jobs(50).await?))
}

/// One bulk job and its progress.
#[utoipa::path(get, path = "/admin/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, format = Uuid, description = "Job id")),
    responses((status = 200, body = Job, description = "OK"), (status = 404, body = ErrorBody, description = "No such thing")))]
pub async fn job(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(state.ops.job(&id).await?))
}

/// Ask a running job to stop after its current batch.
#[utoipa::path(post, path = "/admin/jobs/{id}/cancel", tag = "jobs",
    params(("id" = String, Path, format = Uuid, description = "Job id")),
    responses(
        (status = 200, body = Job, description = "Cancel requested"),
        (status = 403, body = ErrorBody, description = "The token has the read scope"),
        (status = 404, body = ErrorBody, description = "No such thing"),
        (status = 409, body = ErrorBody, description = "The job is no longer running"),
    ))]
pub async fn cancel_job(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(state.ops.cancel_job(&id).await?))
}

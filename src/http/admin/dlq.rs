//! `/admin/dlq`: the dead letters, and redriving them (one at once, or all that match a filter
//! as a background job).
//!
//! Thin handlers over `ops`, with their OpenAPI annotations.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::Uri;
use axum::response::Response;

use super::jobs::start;
use super::openapi::ErrorBody;
use crate::event::EventDetail;
use crate::http::extract::{json_body, query};
use crate::http::{ApiError, AppState};
use crate::ops::{DlqQuery, EventPage, Job, Principal, RedriveRequest, ReplayKind, params};

/// The dead letters, newest first, with the error that put each there (`last_error`).
#[utoipa::path(get, path = "/admin/dlq", tag = "dead letters", params(DlqQuery),
    responses(
        (status = 200, body = EventPage, description = "OK"),
        (status = 400, body = ErrorBody, description = "A parameter or the body is invalid"),
    ))]
pub async fn dlq(
    State(state): State<Arc<AppState>>,
    uri: Uri,
) -> Result<Json<EventPage>, ApiError> {
    let q: DlqQuery = query(&uri)?;
    Ok(Json(state.ops.dead_letters(&q).await?))
}

/// Redrive one dead-lettered event (a replay of a dead letter).
#[utoipa::path(post, path = "/admin/dlq/{id}/redrive", tag = "dead letters",
    params(("id" = String, Path, format = Uuid, description = "Event id")),
    responses(
        (status = 200, body = EventDetail, description = "Redriven: the event is pending again"),
        (status = 403, body = ErrorBody, description = "The token has the read scope"),
        (status = 404, body = ErrorBody, description = "No such thing"),
        (status = 409, body = ErrorBody, description = "Not dead-lettered, or the payload was purged"),
    ))]
pub async fn redrive(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<EventDetail>, ApiError> {
    let id = params::event_id(&id)?;
    Ok(Json(state.ops.replay(id, ReplayKind::Redrive, &who).await?))
}

/// Redrive every dead letter (or those a filter matches), in the background.
#[utoipa::path(post, path = "/admin/dlq/redrive", tag = "dead letters",
    request_body(content = Option<RedriveRequest>, description = "Optional filter"),
    responses(
        (status = 202, body = Job, description = "The job started"),
        (status = 400, body = ErrorBody, description = "A parameter or the body is invalid"),
        (status = 403, body = ErrorBody, description = "The token has the read scope"),
    ))]
pub async fn redrive_all(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let filter = json_body::<RedriveRequest>(&body)?.filter()?;
    start(&state, &who, ReplayKind::Redrive, filter).await
}

//! `/admin/ordering`: the order keys held up (a route's `order_by`), and skipping a dead letter
//! that blocks its key.
//!
//! Thin handlers over `ops`, with their OpenAPI annotations.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::Uri;

use super::openapi::ErrorBody;
use crate::event::EventDetail;
use crate::http::extract::query;
use crate::http::{ApiError, AppState};
use crate::ops::{BlockedLines, BlockedQuery, Principal, params};

/// The keys whose first event has not finished (retrying, or a blocking dead letter), with
/// how many events wait behind it.
#[utoipa::path(get, path = "/admin/ordering/blocked", tag = "ordering", params(BlockedQuery),
    responses(
        (status = 200, body = BlockedLines, description = "OK"),
        (status = 400, body = ErrorBody, description = "A parameter is invalid"),
    ))]
pub async fn blocked(
    State(state): State<Arc<AppState>>,
    uri: Uri,
) -> Result<Json<BlockedLines>, ApiError> {
    let q: BlockedQuery = query(&uri)?;
    Ok(Json(state.ops.blocked_lines(&q).await?))
}

/// Take a dead letter that blocks its keys out of their lines: the events behind it start. It
/// stays a dead letter.
#[utoipa::path(post, path = "/admin/ordering/skip/{id}", tag = "ordering",
    params(("id" = String, Path, format = Uuid, description = "Event id")),
    responses(
        (status = 200, body = EventDetail, description = "Skipped: its keys' next events start"),
        (status = 403, body = ErrorBody, description = "The token has the read scope"),
        (status = 404, body = ErrorBody, description = "No such thing"),
        (status = 409, body = ErrorBody, description = "Not a dead letter blocking a key"),
    ))]
pub async fn skip(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<EventDetail>, ApiError> {
    let id = params::event_id(&id)?;
    Ok(Json(state.ops.skip_in_line(id, &who).await?))
}

//! `/admin/events` and `/admin/stats`: searching events, one event with its stored request,
//! its raw body as a download, replaying one event, and the activity for charts.
//!
//! Thin handlers over `ops::events` and `ops::replays`, with their OpenAPI annotations. They
//! must never render a stored body as anything a browser would display.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};

use super::openapi::ErrorBody;
use crate::event::EventDetail;
use crate::http::extract::query;
use crate::http::{ApiError, AppState};
use crate::ops::{
    EventPage, EventQuery, EventView, Principal, ReplayKind, Stats, StatsQuery, params,
};

/// List events, newest first.
#[utoipa::path(get, path = "/admin/events", tag = "events", params(EventQuery),
    responses(
        (status = 200, body = EventPage, description = "OK"),
        (status = 400, body = ErrorBody, description = "A filter is invalid"),
    ))]
pub async fn list_events(
    State(state): State<Arc<AppState>>,
    uri: Uri,
) -> Result<Json<EventPage>, ApiError> {
    let q: EventQuery = query(&uri)?;
    Ok(Json(state.ops.events(&q).await?))
}

/// One event: transitions, step results, audit headers and the raw body.
#[utoipa::path(get, path = "/admin/events/{id}", tag = "events",
    params(("id" = String, Path, format = Uuid, description = "Event id")),
    responses(
        (status = 200, body = EventView, description = "OK"),
        (status = 404, body = ErrorBody, description = "No such thing"),
    ))]
pub async fn event(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<EventView>, ApiError> {
    Ok(Json(state.ops.event(params::event_id(&id)?).await?))
}

/// The raw body of one event, byte for byte, as a download (never rendered by a browser).
#[utoipa::path(get, path = "/admin/events/{id}/raw", tag = "events",
    params(("id" = String, Path, format = Uuid, description = "Event id")),
    responses(
        (status = 200, content_type = "application/octet-stream", body = Vec<u8>, description = "OK"),
        (status = 404, body = ErrorBody, description = "No such thing"),
    ))]
pub async fn event_raw(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = params::event_id(&id)?;
    let payload = state.ops.payload(id).await?;
    let mut resp = payload.body.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!("attachment; filename=\"{id}.body\""))
            .unwrap_or(HeaderValue::from_static("attachment")),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    Ok(resp)
}

/// Replay one completed or dead-lettered event: a new attempt cycle in which every step runs
/// again (also those that had succeeded). The replay is recorded as a transition.
#[utoipa::path(post, path = "/admin/events/{id}/replay", tag = "events",
    params(("id" = String, Path, format = Uuid, description = "Event id")),
    responses(
        (status = 200, body = EventDetail, description = "Replayed: the event is pending again"),
        (status = 403, body = ErrorBody, description = "The token has the read scope"),
        (status = 404, body = ErrorBody, description = "No such thing"),
        (status = 409, body = ErrorBody, description = "Still in progress, or the payload was purged"),
    ))]
pub async fn replay(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<EventDetail>, ApiError> {
    let id = params::event_id(&id)?;
    Ok(Json(state.ops.replay(id, ReplayKind::Replay, &who).await?))
}

/// Throughput and failures over time, and the backlog now.
#[utoipa::path(get, path = "/admin/stats", tag = "events", params(StatsQuery),
    responses((status = 200, body = Stats, description = "OK"), (status = 400, body = ErrorBody, description = "A parameter or the body is invalid")))]
pub async fn stats(State(state): State<Arc<AppState>>, uri: Uri) -> Result<Json<Stats>, ApiError> {
    let q: StatsQuery = query(&uri)?;
    Ok(Json(
        state.ops.activity(q.window.unwrap_or_default()).await?,
    ))
}

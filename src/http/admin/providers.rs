//! `/admin/providers` and `/admin/destinations`: providers (operator pause and resume) and this
//! process's destination breakers.
//!
//! Thin handlers over `ops::providers`, with their OpenAPI annotations.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};

use super::openapi::ErrorBody;
use crate::http::extract::json_body;
use crate::http::{ApiError, AppState};
use crate::ops::{DestinationList, PauseRequest, ProviderList, ProviderView};

/// Every provider: configured (accepting), paused, breakers and event counts.
#[utoipa::path(get, path = "/admin/providers", tag = "providers",
    responses((status = 200, body = ProviderList, description = "OK")))]
pub async fn providers(State(state): State<Arc<AppState>>) -> Result<Json<ProviderList>, ApiError> {
    Ok(Json(state.ops.providers().await?))
}

/// Pause a provider's processing in every process until resumed; its webhooks are still
/// accepted and stored.
#[utoipa::path(post, path = "/admin/providers/{name}/pause", tag = "providers",
    params(("name" = String, Path, description = "Provider name")),
    request_body(content = Option<PauseRequest>),
    responses(
        (status = 200, body = ProviderView, description = "OK"),
        (status = 400, body = ErrorBody, description = "A parameter or the body is invalid"),
        (status = 403, body = ErrorBody, description = "The token has the read scope"),
        (status = 404, body = ErrorBody, description = "No such thing"),
    ))]
pub async fn pause(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<ProviderView>, ApiError> {
    // An unknown provider is a 404 whatever the body says.
    state.ops.known_provider(&name)?;
    let req: PauseRequest = json_body(&body)?;
    Ok(Json(state.ops.pause(&name, &req).await?))
}

/// End an operator's pause; waiting events are processed at once.
#[utoipa::path(post, path = "/admin/providers/{name}/resume", tag = "providers",
    params(("name" = String, Path, description = "Provider name")),
    responses(
        (status = 200, body = ProviderView, description = "OK"),
        (status = 403, body = ErrorBody, description = "The token has the read scope"),
        (status = 404, body = ErrorBody, description = "No such thing"),
    ))]
pub async fn resume(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<ProviderView>, ApiError> {
    Ok(Json(state.ops.resume(&name).await?))
}

/// This process's destination breakers and limits.
#[utoipa::path(get, path = "/admin/destinations", tag = "providers",
    responses((status = 200, body = Object, description = "OK")))]
pub async fn destinations(State(state): State<Arc<AppState>>) -> Json<DestinationList> {
    Json(state.ops.destinations())
}

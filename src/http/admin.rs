//! `/admin`: bearer-token protected access to events, providers (operator pause and resume) and
//! destination breakers. With no admin token set the whole tree answers 404, so an
//! unconfigured admin API is indistinguishable from none. The rest of the API (events,
//! replays, dead letters, jobs, audit) is in `admin_api.rs`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use utoipa::ToSchema;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{ApiError, AppState};
use crate::actions::breaker::Destination;
use crate::event::ProviderPause;
use crate::store::admin::ProviderCount;
use crate::verify::Lookup;

pub async fn require_token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if !state.ops.enabled() {
        return Err(ApiError::NotFound);
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(ApiError::Unauthorized)?;
    // Compared in constant time against every token (see `ops::Tokens`).
    let who = state
        .ops
        .tokens
        .authenticate(presented.trim())
        .ok_or(ApiError::Unauthorized)?;
    request.extensions_mut().insert(who);
    Ok(next.run(request).await)
}

/// One provider as `GET /admin/providers` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderView {
    name: String,
    /// It has a secret configured and accepts webhooks.
    accepting: bool,
    /// Paused by an operator (stored: holds for every process and across restarts).
    paused: bool,
    paused_at: Option<DateTime<Utc>>,
    reason: Option<String>,
    /// Paused automatically because every destination of its routes has an open breaker, in
    /// this process. `null` in a process without workers.
    auto_paused: Option<bool>,
    /// Destinations of the routes that apply to it (scheme, host and port; `smtp://...`).
    #[schema(value_type = Vec<String>)]
    destinations: Vec<Destination>,
    /// Its events waiting or dead-lettered, by status (statuses with none are left out).
    #[schema(value_type = Object)]
    counts: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderList {
    providers: Vec<ProviderView>,
}

fn view(
    state: &AppState,
    name: &str,
    pause: Option<&ProviderPause>,
    counts: &[ProviderCount],
) -> ProviderView {
    let dests = state.destinations.as_ref();
    ProviderView {
        name: name.to_owned(),
        accepting: matches!(state.providers.lookup(name), Lookup::Ready(_)),
        paused: pause.is_some(),
        paused_at: pause.map(|p| p.paused_at),
        reason: pause.and_then(|p| p.reason.clone()),
        auto_paused: dests.map(|d| d.provider_paused_until(name).is_some()),
        destinations: dests
            .map(|d| d.provider_destinations(name))
            .unwrap_or_default(),
        counts: counts
            .iter()
            .filter(|c| c.provider == name)
            .map(|c| (c.status.as_str().to_owned(), c.count.into()))
            .collect(),
    }
}

/// Every provider: configured (accepting), paused, breakers and event counts.
#[utoipa::path(get, path = "/admin/providers", tag = "providers",
    responses((status = 200, body = ProviderList, description = "OK")))]
pub async fn providers(State(state): State<Arc<AppState>>) -> Result<Json<ProviderList>, ApiError> {
    let pauses = state.store.provider_pauses().await?;
    let counts = state.ops.reads.provider_counts().await?;
    let mut names: Vec<String> = state.providers.names().map(str::to_owned).collect();
    names.extend(pauses.iter().map(|p| p.provider.clone()));
    names.extend(counts.iter().map(|c| c.provider.clone()));
    names.sort();
    names.dedup();
    let providers = names
        .iter()
        .map(|n| view(&state, n, pauses.iter().find(|p| &p.provider == n), &counts))
        .collect();
    Ok(Json(ProviderList { providers }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    /// Why, for the other operators.
    #[schema(nullable = false, max_length = 1000, pattern = "^[^\\x00]*$")]
    reason: Option<String>,
}

/// Pause a provider's processing in every process until resumed; its webhooks are still
/// accepted and stored.
#[utoipa::path(post, path = "/admin/providers/{name}/pause", tag = "providers",
    params(("name" = String, Path, description = "Provider name")),
    request_body(content = Option<PauseRequest>),
    responses(
        (status = 200, body = ProviderView, description = "OK"),
        (status = 400, body = super::admin_api::ErrorBody, description = "A parameter or the body is invalid"),
        (status = 403, body = super::admin_api::ErrorBody, description = "The token has the read scope"),
        (status = 404, body = super::admin_api::ErrorBody, description = "No such thing"),
    ))]
pub async fn pause(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<ProviderView>, ApiError> {
    known(&state, &name)?;
    let req: PauseRequest = if body.iter().all(u8::is_ascii_whitespace) {
        PauseRequest::default()
    } else {
        serde_json::from_slice::<Option<PauseRequest>>(&body)
            .map_err(|e| ApiError::BadBody(e.to_string()))?
            .unwrap_or_default()
    };
    let reason = req.reason.as_deref().filter(|r| !r.trim().is_empty());
    if reason.is_some_and(|r| r.contains('\0') || r.len() > 1000) {
        return Err(ApiError::InvalidParam(
            "reason must be at most 1000 bytes, without NUL characters".into(),
        ));
    }
    if state.store.pause_provider(&name, reason).await? {
        tracing::warn!(provider = %name, reason, "provider paused by an operator: its events wait");
    }
    provider_now(&state, &name).await
}

/// End an operator's pause; waiting events are processed at once.
#[utoipa::path(post, path = "/admin/providers/{name}/resume", tag = "providers",
    params(("name" = String, Path, description = "Provider name")),
    responses(
        (status = 200, body = ProviderView, description = "OK"),
        (status = 403, body = super::admin_api::ErrorBody, description = "The token has the read scope"),
        (status = 404, body = super::admin_api::ErrorBody, description = "No such thing"),
    ))]
pub async fn resume(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<ProviderView>, ApiError> {
    known(&state, &name)?;
    if state.store.resume_provider(&name).await? {
        tracing::info!(provider = %name, "provider resumed by an operator");
    }
    provider_now(&state, &name).await
}

fn known(state: &AppState, name: &str) -> Result<(), ApiError> {
    match state.providers.lookup(name) {
        Lookup::Unknown => Err(ApiError::UnknownProvider(name.to_owned())),
        _ => Ok(()),
    }
}

async fn provider_now(state: &AppState, name: &str) -> Result<Json<ProviderView>, ApiError> {
    let pauses = state.store.provider_pauses().await?;
    let counts = state.ops.store.provider_counts().await?;
    Ok(Json(view(
        state,
        name,
        pauses.iter().find(|p| p.provider == name),
        &counts,
    )))
}

/// This process's destination breakers and limits.
#[utoipa::path(get, path = "/admin/destinations", tag = "providers",
    responses((status = 200, body = Object, description = "OK")))]
pub async fn destinations(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let list = state
        .destinations
        .as_ref()
        .map(|d| d.snapshot())
        .unwrap_or_default();
    Json(json!({
        // Breakers are kept per process (see README, Circuit breakers).
        "scope": "process",
        "workers": state.destinations.is_some(),
        "destinations": list,
    }))
}

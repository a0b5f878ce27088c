//! `/admin`: bearer-token protected access to events, providers (operator pause and resume) and
//! destination breakers. With no `HOOKD_ADMIN_TOKEN` set the whole tree answers 404, so an
//! unconfigured admin API is indistinguishable from none.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{ApiError, AppState};
use crate::actions::breaker::Destination;
use crate::event::{EventDetail, EventId, ProviderPause};
use crate::verify::Lookup;

pub async fn require_token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(token) = &state.admin_token else {
        return Err(ApiError::NotFound);
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(ApiError::Unauthorized)?;
    // Comparing digests keeps the comparison constant-time and independent of the token length.
    let ok: bool = Sha256::digest(presented.trim().as_bytes())
        .ct_eq(&Sha256::digest(token.expose().as_bytes()))
        .into();
    if !ok {
        return Err(ApiError::Unauthorized);
    }
    Ok(next.run(request).await)
}

pub async fn event(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<EventDetail>, ApiError> {
    let id: EventId = id.parse().map_err(|_| ApiError::NotFound)?;
    state
        .store
        .event(id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound)
}

/// One provider as `GET /admin/providers` shows it.
#[derive(Debug, Serialize)]
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
    /// Destinations of the routes that apply to it.
    destinations: Vec<Destination>,
}

fn view(state: &AppState, name: &str, pause: Option<&ProviderPause>) -> ProviderView {
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
    }
}

pub async fn providers(
    State(state): State<Arc<AppState>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let pauses = state.store.provider_pauses().await?;
    let mut names: Vec<String> = state.providers.names().map(str::to_owned).collect();
    names.extend(pauses.iter().map(|p| p.provider.clone()));
    names.sort();
    names.dedup();
    let list: Vec<ProviderView> = names
        .iter()
        .map(|n| view(&state, n, pauses.iter().find(|p| &p.provider == n)))
        .collect();
    Ok(Json(json!({ "providers": list })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PauseRequest {
    reason: Option<String>,
}

/// `POST /admin/providers/{name}/pause`, optional body `{"reason": "..."}`.
pub async fn pause(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<ProviderView>, ApiError> {
    known(&state, &name)?;
    let req: PauseRequest = if body.iter().all(u8::is_ascii_whitespace) {
        PauseRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::BadBody(e.to_string()))?
    };
    let reason = req.reason.as_deref().filter(|r| !r.trim().is_empty());
    if state.store.pause_provider(&name, reason).await? {
        tracing::warn!(provider = %name, reason, "provider paused by an operator: its events wait");
    }
    provider_now(&state, &name).await
}

/// `POST /admin/providers/{name}/resume`.
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
    Ok(Json(view(
        state,
        name,
        pauses.iter().find(|p| p.provider == name),
    )))
}

/// `GET /admin/destinations`: this process's breakers and limits.
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

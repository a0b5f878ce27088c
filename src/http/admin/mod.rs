//! `/admin`: the admin API, thin handlers over the operator layer (`ops`), one file per
//! resource: events (and their live stream), dead letters, jobs (bulk replays and redrives),
//! providers (pauses and destination breakers), the audit log, the order keys held up, the
//! configuration; and the OpenAPI document of the whole tree.
//!
//! Every request needs an admin token ([`require_token`]); with no admin token set the whole
//! tree answers 404, so an unconfigured admin API is indistinguishable from none. Every `POST`
//! goes through [`operate_guard`], which refuses tokens without the `operate` scope (403) and
//! writes the audit log entry for every attempt, allowed or not. Handlers must never reach the
//! store: they call `ops`, and their errors become responses in `http::error`.

mod audit;
mod config;
mod dlq;
mod events;
mod jobs;
mod openapi;
mod ordering;
mod providers;
mod stream;

use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::Method;
use axum::http::{HeaderMap, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};

pub use openapi::openapi_json;

use super::{ApiError, AppState, trace_layer};
use crate::ops::Principal;

/// The `/admin` tree, to be nested there.
pub fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    // Every state-changing admin endpoint: operate scope required, audited.
    let operate = Router::new()
        .route("/events/{id}/replay", post(events::replay))
        .route("/replays", post(jobs::replay_many))
        .route("/dlq/{id}/redrive", post(dlq::redrive))
        .route("/dlq/redrive", post(dlq::redrive_all))
        .route("/jobs/{id}/cancel", post(jobs::cancel_job))
        .route("/providers/{name}/pause", post(providers::pause))
        .route("/providers/{name}/resume", post(providers::resume))
        .route(
            "/config/providers/{name}",
            put(config::put_provider).delete(config::delete_provider),
        )
        .route("/config/providers/{name}/secrets", post(config::add_secret))
        .route("/config/apply", post(config::apply))
        .route(
            "/config/routes/{name}",
            put(config::put_route).delete(config::delete_route),
        )
        .route(
            "/config/destinations/{name}",
            put(config::put_destination).delete(config::delete_destination),
        )
        .route("/ordering/skip/{id}", post(ordering::skip))
        .route_layer(middleware::from_fn_with_state(state.clone(), operate_guard));
    Router::new()
        .route("/events", get(events::list_events))
        .route("/events/stream", get(stream::stream))
        .route("/events/{id}", get(events::event))
        .route("/events/{id}/raw", get(events::event_raw))
        .route("/dlq", get(dlq::dlq))
        .route("/jobs", get(jobs::jobs))
        .route("/jobs/{id}", get(jobs::job))
        .route("/audit", get(audit::audit))
        .route("/stats", get(events::stats))
        .route("/whoami", get(audit::whoami))
        .route("/openapi.json", get(openapi::openapi_doc))
        .route("/providers", get(providers::providers))
        .route("/destinations", get(providers::destinations))
        .route("/config", get(config::config))
        .route("/config/export", get(config::export))
        .route("/config/providers/{name}", get(config::provider))
        .route("/ordering/blocked", get(ordering::blocked))
        .merge(operate)
        .layer(middleware::from_fn_with_state(state, require_token))
        .route_layer(middleware::from_fn(trace_layer::trace_requests))
}

/// Layer of the whole tree: a configured admin token, as `Authorization: Bearer <token>`.
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

/// A note a handler leaves for the audit log entry of its request.
#[derive(Debug, Clone)]
pub struct AuditNote(pub String);

/// The audit log's name for an operate endpoint.
fn action_name<'a>(method: &Method, path: &'a str) -> &'a str {
    let delete = method == Method::DELETE;
    match path {
        "/admin/config/providers/{name}" if delete => "config.provider.delete",
        "/admin/config/providers/{name}" => "config.provider.put",
        "/admin/config/providers/{name}/secrets" => "config.provider.secret.add",
        "/admin/config/apply" => "config.apply",
        "/admin/config/routes/{name}" if delete => "config.route.delete",
        "/admin/config/routes/{name}" => "config.route.put",
        "/admin/config/destinations/{name}" if delete => "config.destination.delete",
        "/admin/config/destinations/{name}" => "config.destination.put",
        "/admin/events/{id}/replay" => "event.replay",
        "/admin/replays" => "events.replay",
        "/admin/dlq/{id}/redrive" => "event.redrive",
        "/admin/dlq/redrive" => "dlq.redrive",
        "/admin/jobs/{id}/cancel" => "job.cancel",
        "/admin/providers/{name}/pause" => "provider.pause",
        "/admin/providers/{name}/resume" => "provider.resume",
        "/admin/ordering/skip/{id}" => "ordering.skip",
        other => other,
    }
}

/// Route layer of every state-changing admin endpoint: the `operate` scope, and the audit log.
pub async fn operate_guard(
    State(state): State<Arc<AppState>>,
    path: MatchedPath,
    params: RawPathParams,
    request: Request,
    next: Next,
) -> Response {
    let Some(who) = request.extensions().get::<Principal>().cloned() else {
        return ApiError::Unauthorized.into_response();
    };
    let action = action_name(request.method(), path.as_str()).to_owned();
    let target = params.iter().next().map(|(_, v)| v.to_owned());
    if !who.may_operate() {
        state
            .ops
            .audit(
                &who,
                &action,
                target,
                403,
                Some("refused: read scope".into()),
            )
            .await;
        return ApiError::Forbidden(format!(
            "token {:?} has the read scope; this needs an operate token",
            who.name
        ))
        .into_response();
    }
    let response = next.run(request).await;
    let detail = response
        .extensions()
        .get::<AuditNote>()
        .map(|n| n.0.clone());
    state
        .ops
        .audit(&who, &action, target, response.status().as_u16(), detail)
        .await;
    response
}

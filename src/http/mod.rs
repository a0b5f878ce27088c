//! The HTTP surface: the webhook endpoint, health, and the admin API.
//!
//! Owns routing, request extraction and the mapping of every error to a response (in `error`).
//! It must never answer 2xx to a webhook before the store has committed it, and never hand
//! unverified bytes to anything but a verifier.

mod access;
mod admin;
pub mod admin_api;
mod error;
mod health;
pub mod limits;
pub mod server;
mod settings;
pub mod tls;
mod trace_layer;
mod ui;
pub mod validate;
mod webhooks;

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Mutex, watch};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use error::ApiError;
pub use settings::{AdminAccess, HttpSettings, Limits, RateQuota, TlsConfig};

use crate::actions::breaker::Destinations;
use crate::ops::Ops;
use crate::queue::Queue;
use crate::store::{Backlog, EventStore};
use crate::verify::Providers;

/// What the handlers share.
pub struct AppState {
    pub store: Arc<dyn EventStore>,
    pub queue: Arc<dyn Queue>,
    pub providers: Providers,
    /// Admin tokens, replays, jobs and the audit log (the operator surface).
    pub ops: Arc<Ops>,
    pub max_body_bytes: usize,
    pub memory_limit_bytes: u64,
    /// Turns true when shutdown starts: readiness fails from then on.
    pub shutting_down: watch::Receiver<bool>,
    pub backlog: BacklogCache,
    /// This process's destination breakers (`None` without the worker role).
    pub destinations: Option<Arc<Destinations>>,
    /// Request limits (ids, event types) checked after verification.
    pub limits: Limits,
    /// In-flight bound and per-provider rate limits of the webhook route.
    pub admission: limits::Admission,
    /// Allow-list and failed-login limit of `/admin` and `/ui`.
    pub access: access::AccessGuard,
    /// JSON Schemas payloads must match.
    pub schemas: Vec<validate::SchemaRule>,
}

pub use access::AccessGuard;

/// The store backlog as last read, for `/metrics` and `/health` (see `health.rs`).
#[derive(Default)]
pub struct BacklogCache(Mutex<Option<(Instant, Backlog)>>);

/// The full HTTP application.
pub fn router(state: Arc<AppState>) -> Router {
    // Every state-changing admin endpoint: operate scope required, audited.
    let operate = Router::new()
        .route("/events/{id}/replay", post(admin_api::replay))
        .route("/replays", post(admin_api::replay_many))
        .route("/dlq/{id}/redrive", post(admin_api::redrive))
        .route("/dlq/redrive", post(admin_api::redrive_all))
        .route("/jobs/{id}/cancel", post(admin_api::cancel_job))
        .route("/providers/{name}/pause", post(admin::pause))
        .route("/providers/{name}/resume", post(admin::resume))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            admin_api::operate_guard,
        ));
    let admin = Router::new()
        .route("/events", get(admin_api::list_events))
        .route("/events/{id}", get(admin_api::event))
        .route("/events/{id}/raw", get(admin_api::event_raw))
        .route("/dlq", get(admin_api::dlq))
        .route("/jobs", get(admin_api::jobs))
        .route("/jobs/{id}", get(admin_api::job))
        .route("/audit", get(admin_api::audit))
        .route("/stats", get(admin_api::stats))
        .route("/whoami", get(admin_api::whoami))
        .route("/openapi.json", get(admin_api::openapi_doc))
        .route("/providers", get(admin::providers))
        .route("/destinations", get(admin::destinations))
        .merge(operate)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            admin::require_token,
        ))
        .route_layer(axum::middleware::from_fn(trace_layer::trace_requests));
    let webhooks = Router::new()
        .route(
            "/webhooks/{provider}",
            post(webhooks::receive).layer(DefaultBodyLimit::max(state.max_body_bytes)),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::admit,
        ))
        .route_layer(axum::middleware::from_fn(trace_layer::trace_requests));
    Router::new()
        .merge(webhooks)
        .route("/health", get(health::health))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(health::metrics_page))
        .nest("/admin", admin)
        .nest("/ui", ui::router(state.clone()))
        .fallback(|| async { ApiError::NotFound })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::guard,
        ))
        .with_state(state)
}

//! The HTTP surface: the webhook endpoint, health, the admin API and the console.
//!
//! Owns routing, request extraction and the mapping of every error to a response (in `error`).
//! It must never answer 2xx to a webhook before the store has committed it, and never hand
//! unverified bytes to anything but a verifier.

mod access;
pub mod admin;
mod error;
mod extract;
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
pub use settings::{
    AdminAccess, HttpSettings, Limits, RateQuota, SchemaError, SchemaRule, TlsConfig,
};

use crate::ops::Ops;
use crate::queue::Queue;
use crate::store::{Backlog, EventStore};
use crate::verify::Providers;

/// What the handlers share.
pub struct AppState {
    pub store: Arc<dyn EventStore>,
    pub queue: Arc<dyn Queue>,
    /// The providers webhooks are accepted for (shared with `ops`).
    pub providers: Arc<Providers>,
    /// The operator surface: tokens, events, replays, jobs, providers, breakers, the audit log.
    pub ops: Arc<Ops>,
    pub max_body_bytes: usize,
    pub memory_limit_bytes: u64,
    /// Turns true when shutdown starts: readiness fails from then on.
    pub shutting_down: watch::Receiver<bool>,
    pub backlog: BacklogCache,
    /// Request limits (ids, event types) checked after verification.
    pub limits: Limits,
    /// In-flight bound and per-provider rate limits of the webhook route.
    pub admission: limits::Admission,
    /// Allow-list and failed-login limit of `/admin` and `/ui`.
    pub access: access::AccessGuard,
    /// JSON Schemas payloads must match.
    pub schemas: Vec<SchemaRule>,
}

pub use access::AccessGuard;

/// The store backlog as last read, for `/metrics` and `/health` (see `health.rs`).
#[derive(Default)]
pub struct BacklogCache(Mutex<Option<(Instant, Backlog)>>);

/// The full HTTP application.
pub fn router(state: Arc<AppState>) -> Router {
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
        .nest("/admin", admin::router(state.clone()))
        .nest("/ui", ui::router(state.clone()))
        .fallback(|| async { ApiError::NotFound })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::guard,
        ))
        .with_state(state)
}

//! The HTTP surface: the webhook endpoint, health, and the admin API.
//!
//! Owns routing, request extraction and the mapping of every error to a response (in `error`).
//! It must never answer 2xx to a webhook before the store has committed it, and never hand
//! unverified bytes to anything but a verifier.

mod admin;
mod error;
mod health;
mod trace_layer;
mod webhooks;

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Mutex, watch};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use error::ApiError;

use crate::queue::Queue;
use crate::store::{Backlog, EventStore};
use crate::verify::{Providers, Secret};

/// What the handlers share.
pub struct AppState {
    pub store: Arc<dyn EventStore>,
    pub queue: Arc<dyn Queue>,
    pub providers: Providers,
    pub admin_token: Option<Secret>,
    pub max_body_bytes: usize,
    pub memory_limit_bytes: u64,
    /// Turns true when shutdown starts: readiness fails from then on.
    pub shutting_down: watch::Receiver<bool>,
    backlog: Mutex<Option<(Instant, Backlog)>>,
}

impl AppState {
    pub fn new(
        store: Arc<dyn EventStore>,
        queue: Arc<dyn Queue>,
        providers: Providers,
        admin_token: Option<Secret>,
        max_body_bytes: usize,
        memory_limit_bytes: u64,
        shutting_down: watch::Receiver<bool>,
    ) -> Self {
        Self {
            store,
            queue,
            providers,
            admin_token,
            max_body_bytes,
            memory_limit_bytes,
            shutting_down,
            backlog: Mutex::new(None),
        }
    }
}

/// The full HTTP application.
pub fn router(state: Arc<AppState>) -> Router {
    let admin = Router::new()
        .route("/events/{id}", get(admin::event))
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
        .route_layer(axum::middleware::from_fn(trace_layer::trace_requests));
    Router::new()
        .merge(webhooks)
        .route("/health", get(health::health))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(health::metrics_page))
        .nest("/admin", admin)
        .fallback(|| async { ApiError::NotFound })
        .with_state(state)
}

//! The HTTP surface: the webhook endpoint, health, the admin API and the console.
//!
//! Owns routing, request extraction and the mapping of every error to a response (in `error`).
//! It must never answer 2xx to a webhook before the store has committed it, and never hand
//! unverified bytes to anything but a verifier.

mod access;
pub mod admin;
mod bodies;
mod error;
mod extract;
pub mod group_commit;
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

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use error::ApiError;
pub use health::{BacklogCache, HealthState};
pub use settings::{
    AdminAccess, HttpSettings, Limits, RateQuota, SchemaError, SchemaRule, TlsConfig,
    WORKER_INTERNAL_ADDR,
};

use crate::actions::Router as Routes;
use crate::live::LiveSchema;
use crate::ops::Ops;
use crate::queue::Queue;
use crate::store::EventStore;
use crate::swap::Swap;
use crate::verify::Providers;

/// What the handlers share.
pub struct AppState {
    /// The webhook route's way into the store: inserts committed in groups.
    pub intake: group_commit::GroupCommit,
    pub store: Arc<dyn EventStore>,
    pub queue: Arc<dyn Queue>,
    /// The providers webhooks are accepted for (shared with `ops`), swapped by the live
    /// configuration.
    pub providers: Arc<Swap<Providers>>,
    /// The operator surface: tokens, events, replays, jobs, providers, breakers, the audit log.
    pub ops: Arc<Ops>,
    pub max_body_bytes: usize,
    /// What health and metrics read (shared with the internal listener).
    pub health: Arc<HealthState>,
    /// Request limits (ids, event types) checked after verification.
    pub limits: Limits,
    /// In-flight bound and per-provider rate limits of the webhook route.
    pub admission: limits::Admission,
    /// Allow-list and failed-login limit of `/admin` and `/ui`.
    pub access: access::AccessGuard,
    /// JSON Schemas payloads must match (the file's `[[schemas]]`).
    pub schemas: Vec<SchemaRule>,
    /// The stored providers' JSON Schemas, swapped by the live configuration.
    pub stored_schemas: Arc<Swap<Vec<LiveSchema>>>,
    /// The routes, swapped by the live configuration: an accepted event's order keys (`order_by`)
    /// are read from its payload with the routes current when it arrives.
    pub routes: Arc<Swap<Routes>>,
}

pub use access::AccessGuard;

/// The full HTTP application. With `internal_listener` (`HOOKD_INTERNAL_ADDR` is set), `/health`
/// and `/metrics` are served only by [`internal_router`]; the status-only probes
/// `/health/live` and `/health/ready` stay here for load balancers.
pub fn router(state: Arc<AppState>, internal_listener: bool) -> Router {
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
        .merge(probes(state.health.clone(), !internal_listener))
        .nest("/admin", admin::router(state.clone()))
        .nest("/ui", ui::router(state.clone()))
        .fallback(|| async { ApiError::NotFound })
        // Inside the allow-list: a refused address is answered before its body is read.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            bodies::bounded,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::guard,
        ))
        .with_state(state)
}

/// What the internal listener serves (`HOOKD_INTERNAL_ADDR` of an api; every worker-only
/// process, which has no other listener): health in detail, the probes and the metrics, and
/// nothing of the public surface (no webhooks, admin API or console). It needs only a
/// [`HealthState`], so a process without the API serves it too.
pub fn internal_router(health: Arc<HealthState>) -> Router {
    probes(health, true).fallback(|| async { ApiError::NotFound })
}

/// The liveness and readiness probes, and with `details` the full health report and metrics.
fn probes<S: Clone + Send + Sync + 'static>(health: Arc<HealthState>, details: bool) -> Router<S> {
    let r = Router::new()
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready));
    let r = if details {
        r.route("/health", get(health::health))
            .route("/metrics", get(health::metrics_page))
    } else {
        r
    };
    r.with_state(health)
}

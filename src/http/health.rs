//! Health for orchestrators and people, served by every process that runs (the api's public or
//! internal listener, a worker's own listener), from a state of its own ([`HealthState`]) so a
//! process without the HTTP API serves it too:
//! - `GET /health`: every component with its status and latency; 503 when the store cannot
//!   take writes, memory is over `HOOKD_MEMORY_LIMIT_MB`, or (with workers) the worker loop is
//!   not running. The queue is reported but does not fail it: with the queue down, webhooks are
//!   still accepted, and the sweeper enqueues them once it is back.
//! - `GET /health/live`: the process is up and, with workers, their claim loop still turns.
//! - `GET /health/ready`: migrations done (they run before the server starts), store reachable
//!   and not shutting down (503 from the start of the drain, while requests are still served);
//!   in a worker-only process also the queue reachable (a worker without its queue processes
//!   nothing).
//! - `GET /metrics`: Prometheus text, with this process's breakers brought up to date.
//!
//! It must never change anything: every check only reads.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use tokio::sync::{Mutex, watch};

use crate::actions::breaker::Destinations;
use crate::queue::Queue;
use crate::store::{Backlog, EventStore};
use crate::telemetry::liveness::{Heartbeat, LoopState};
use crate::telemetry::metrics;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// Store gauges are recomputed at most this often, however often Prometheus scrapes.
const BACKLOG_CACHE: Duration = Duration::from_secs(5);

/// What the health and metrics handlers read: shared by the api's routers and a worker's own
/// listener, built once per process by the wiring.
pub struct HealthState {
    pub store: Arc<dyn EventStore>,
    pub queue: Arc<dyn Queue>,
    /// This process's breakers (`None` without workers).
    pub destinations: Option<Arc<Destinations>>,
    /// The worker loop's heartbeat (`None` without workers).
    pub workers: Option<Arc<Heartbeat>>,
    pub memory_limit_bytes: u64,
    /// Turns true when the process starts to drain, before its listener closes (see
    /// `HOOKD_SHUTDOWN_READY_DELAY_MS`): readiness fails from then on, so load balancers stop
    /// sending it traffic while it still serves what they send.
    pub shutting_down: watch::Receiver<bool>,
    /// Readiness needs the queue to answer too (a worker-only process).
    pub ready_needs_queue: bool,
    pub backlog: BacklogCache,
}

/// The store backlog as last read, for `/metrics` and `/health`.
#[derive(Default)]
pub struct BacklogCache(Mutex<Option<(Instant, Backlog)>>);

/// Run one check with a timeout; its status, latency and error as JSON.
async fn check<E: std::fmt::Display>(f: impl Future<Output = Result<(), E>>) -> Value {
    let started = Instant::now();
    let result = tokio::time::timeout(CHECK_TIMEOUT, f).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(Ok(())) => json!({ "status": "up", "latency_ms": latency_ms }),
        Ok(Err(e)) => json!({ "status": "down", "latency_ms": latency_ms, "error": e.to_string() }),
        Err(_) => {
            json!({ "status": "down", "latency_ms": latency_ms, "error": "timed out after 2 s" })
        }
    }
}

/// The worker loop as JSON, and whether it counts as alive.
fn workers(state: &HealthState) -> (Value, bool) {
    let Some(beat) = &state.workers else {
        return (Value::Null, true);
    };
    match beat.state() {
        LoopState::Running { ago } => (
            json!({ "status": "up", "last_turn_ms_ago": ago.as_millis() as u64 }),
            true,
        ),
        LoopState::Stalled { ago } => (
            json!({ "status": "stalled", "last_turn_ms_ago": ago.as_millis() as u64 }),
            false,
        ),
        LoopState::Ended => (json!({ "status": "stopped" }), false),
    }
}

fn status_code(ok: bool) -> StatusCode {
    if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

pub async fn health(State(state): State<Arc<HealthState>>) -> (StatusCode, Json<Value>) {
    let (mut store, mut queue) = tokio::join!(check(state.store.ping()), check(state.queue.ping()));
    store["backend"] = state.store.backend().into();
    queue["kind"] = state.queue.kind().into();
    let rss = metrics::process::rss_bytes();
    let memory_ok = rss.is_none_or(|r| r <= state.memory_limit_bytes);
    let memory = json!({
        "status": if memory_ok { "up" } else { "over_limit" },
        "rss_bytes": rss,
        "limit_bytes": state.memory_limit_bytes,
    });
    let backlog = match state.cached_backlog().await {
        Some(b) => json!({
            "events": b.by_status.iter().map(|(s, n)| (s.as_str(), *n)).collect::<std::collections::BTreeMap<_, _>>(),
            "oldest_pending_age_seconds": b.oldest_pending.map(|t| (chrono::Utc::now() - t).num_seconds().max(0)),
        }),
        None => Value::Null,
    };
    let (workers, workers_ok) = workers(&state);
    let up = store["status"] == "up" && memory_ok && workers_ok;
    let body = json!({
        "status": if up { "ok" } else { "unavailable" },
        "store": store,
        "queue": queue,
        "memory": memory,
        "backlog": backlog,
        "workers": workers,
        "version": env!("CARGO_PKG_VERSION"),
    });
    (status_code(up), Json(body))
}

pub async fn live(State(state): State<Arc<HealthState>>) -> (StatusCode, Json<Value>) {
    let (workers, alive) = workers(&state);
    let body = json!({ "status": if alive { "alive" } else { "not_alive" }, "workers": workers });
    (status_code(alive), Json(body))
}

pub async fn ready(State(state): State<Arc<HealthState>>) -> (StatusCode, Json<Value>) {
    if *state.shutting_down.borrow() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "shutting_down" })),
        );
    }
    let mut body = json!({});
    let mut ready = true;
    let store = check(state.store.ping()).await;
    ready &= store["status"] == "up";
    body["store"] = store;
    if state.ready_needs_queue {
        let mut queue = check(state.queue.ping()).await;
        queue["kind"] = state.queue.kind().into();
        ready &= queue["status"] == "up";
        body["queue"] = queue;
    }
    body["status"] = if ready { "ready" } else { "not_ready" }.into();
    (status_code(ready), Json(body))
}

pub async fn metrics_page(State(state): State<Arc<HealthState>>) -> impl IntoResponse {
    let backlog = state.cached_backlog().await;
    if let Some(destinations) = &state.destinations {
        for d in destinations.snapshot() {
            let c = &d.counters;
            let counts = metrics::DestinationCounts {
                answered: c.healthy,
                failed: c.failures,
                deferred: c.deferred,
                opened: c.opened,
            };
            metrics::destination(&d.destination.to_string(), d.state, d.in_flight, counts);
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(backlog.as_ref()),
    )
}

impl HealthState {
    /// The store backlog, recomputed at most every few seconds; `None` while the store is down.
    async fn cached_backlog(&self) -> Option<Backlog> {
        let mut cache = self.backlog.0.lock().await;
        if let Some((at, b)) = cache.as_ref()
            && at.elapsed() < BACKLOG_CACHE
        {
            return Some(b.clone());
        }
        match tokio::time::timeout(CHECK_TIMEOUT, self.store.backlog()).await {
            Ok(Ok(b)) => {
                *cache = Some((Instant::now(), b.clone()));
                Some(b)
            }
            _ => None,
        }
    }
}

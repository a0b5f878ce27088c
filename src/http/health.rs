//! Health for orchestrators and people:
//! - `GET /health`: every component with its status and latency; 503 when the store cannot
//!   take writes or memory is over `HOOKD_MEMORY_LIMIT_MB`. The queue is reported but does not
//!   fail it: with the queue down, webhooks are still accepted, and the sweeper enqueues them
//!   once it is back.
//! - `GET /health/live`: the process is up.
//! - `GET /health/ready`: migrations done (they run before the server starts), store reachable
//!   and not shutting down.
//! - `GET /metrics`: Prometheus text.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::AppState;
use crate::store::Backlog;
use crate::telemetry::metrics;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// Store gauges are recomputed at most this often, however often Prometheus scrapes.
const BACKLOG_CACHE: Duration = Duration::from_secs(5);

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

pub async fn health(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
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
    let up = store["status"] == "up" && memory_ok;
    let body = json!({
        "status": if up { "ok" } else { "unavailable" },
        "store": store,
        "queue": queue,
        "memory": memory,
        "backlog": backlog,
        "version": env!("CARGO_PKG_VERSION"),
    });
    let code = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

pub async fn live() -> Json<Value> {
    Json(json!({ "status": "alive" }))
}

pub async fn ready(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
    if *state.shutting_down.borrow() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "shutting_down" })),
        );
    }
    let store = check(state.store.ping()).await;
    let ready = store["status"] == "up";
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(json!({ "status": if ready { "ready" } else { "not_ready" }, "store": store })),
    )
}

pub async fn metrics_page(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let backlog = state.cached_backlog().await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(backlog.as_ref()),
    )
}

impl AppState {
    /// The store backlog, recomputed at most every few seconds; `None` while the store is down.
    pub(super) async fn cached_backlog(&self) -> Option<Backlog> {
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

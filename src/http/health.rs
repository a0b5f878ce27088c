//! `GET /health`: 200 when the store can take writes, 503 when it cannot.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;

use super::AppState;

pub async fn health(State(state): State<Arc<AppState>>) -> (StatusCode, Json<serde_json::Value>) {
    let store = match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => json!({ "backend": state.store.backend(), "status": "up" }),
        Ok(Err(e)) => {
            json!({ "backend": state.store.backend(), "status": "down", "error": e.to_string() })
        }
        Err(_) => {
            json!({ "backend": state.store.backend(), "status": "down", "error": "timed out after 2 s" })
        }
    };
    // The queue is reported but does not decide readiness: with the queue down, webhooks are
    // still accepted and committed, and the sweeper enqueues them once it is back.
    let queue = match tokio::time::timeout(Duration::from_secs(2), state.queue.ping()).await {
        Ok(Ok(())) => json!({ "kind": state.queue.kind(), "status": "up" }),
        Ok(Err(e)) => {
            json!({ "kind": state.queue.kind(), "status": "down", "error": e.to_string() })
        }
        Err(_) => {
            json!({ "kind": state.queue.kind(), "status": "down", "error": "timed out after 2 s" })
        }
    };
    let up = store["status"] == "up";
    let body = json!({
        "status": if up { "ok" } else { "unavailable" },
        "store": store,
        "queue": queue,
        "memory": { "rss_bytes": rss_bytes() },
        "version": env!("CARGO_PKG_VERSION"),
    });
    let code = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

/// Resident set size of this process, from `/proc` (None where there is no `/proc`).
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

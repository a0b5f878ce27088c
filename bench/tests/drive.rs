//! The load generator against a small real server that checks every signature with hookd's own
//! Stripe verifier and answers like hookd (202 new, 200 redelivery). No timing assertions:
//! these tests check what was sent and counted, not how fast.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use bytes::Bytes;
use hookd::verify::{RawRequest, Secrets, StripeVerifier, Verifier};
use hookd_bench::events::{Prepared, stored_headers_json};
use hookd_bench::load::{self, Mode, Settings};

const SECRET: &str = "whsec_bench_test";

struct Seen {
    verifier: StripeVerifier,
    ids: Mutex<HashSet<String>>,
}

async fn receive(
    State(s): State<Arc<Seen>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let req = RawRequest {
        headers: &headers,
        body: &body,
        uri: &uri,
        now_unix: now,
    };
    match s.verifier.verify("stripe", &req).await {
        // The pgbench ceiling inserts these headers as hookd would store them.
        Ok(w) if serde_json::to_string(w.headers()).unwrap() != stored_headers_json() => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        Ok(w) if s.ids.lock().unwrap().insert(w.idempotency_key().to_owned()) => {
            StatusCode::ACCEPTED
        }
        Ok(_) => StatusCode::OK,
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

async fn server() -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen {
        verifier: StripeVerifier::new(Secrets::new([SECRET]).unwrap(), 300),
        ids: Mutex::new(HashSet::new()),
    });
    let app = axum::Router::new()
        .route("/webhooks/stripe", axum::routing::post(receive))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

fn prepared(addr: &str, requests: usize, duplicates: f64) -> Arc<Prepared> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    Arc::new(Prepared::new(
        addr,
        "/webhooks/stripe",
        SECRET,
        "test",
        now,
        requests,
        duplicates,
        1500,
        3,
    ))
}

#[tokio::test]
async fn closed_loop_sends_every_request_once_with_valid_signatures() {
    let (addr, seen) = server().await;
    let p = prepared(&addr, 400, 0.25);
    let unique = p.unique() as u64;
    let s = load::run(
        p,
        0.25,
        Settings {
            addr,
            mode: Mode::Closed { concurrency: 8 },
            duration: Duration::from_secs(120),
            timeout: Duration::from_secs(30),
        },
    )
    .await;
    assert_eq!(s.sent, 400);
    assert_eq!(s.responses, 400);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.status["202"], unique, "{:?}", s.status);
    assert_eq!(s.status["200"], 400 - unique, "{:?}", s.status);
    assert!(!s.status.contains_key("400"));
    assert_eq!(seen.ids.lock().unwrap().len() as u64, unique);
    assert!(s.latency_ms.p50 > 0.0 && s.latency_ms.max >= s.latency_ms.p99);
}

#[tokio::test]
async fn open_loop_sends_at_most_what_fits_in_the_duration() {
    let (addr, _seen) = server().await;
    // 200 requests are due over 0.4 s; the run may not send past its duration.
    let p = prepared(&addr, 1000, 0.0);
    let s = load::run(
        p,
        0.0,
        Settings {
            addr,
            mode: Mode::Open {
                rate: 500.0,
                connections: 16,
            },
            duration: Duration::from_millis(400),
            timeout: Duration::from_secs(30),
        },
    )
    .await;
    assert_eq!(s.sent, 200);
    assert_eq!(s.status["202"], 200);
    assert_eq!(s.rate, Some(500.0));
}

#[tokio::test]
async fn unreachable_target_counts_errors_not_responses() {
    // A port nobody listens on.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let p = prepared(&addr, 5, 0.0);
    let s = load::run(
        p,
        0.0,
        Settings {
            addr,
            mode: Mode::Closed { concurrency: 1 },
            duration: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
        },
    )
    .await;
    assert_eq!(s.responses, 0);
    assert_eq!(s.errors["connect"], 5);
}

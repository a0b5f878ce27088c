//! Abuse and overload at the front door, over real sockets: per-provider rate limits, the
//! in-flight bound, slow clients (headers and bodies), oversized headers, connection caps and
//! ids or event types hookd will not store.

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn addr(server: &TestServer) -> String {
    server.url.trim_start_matches("http://").to_owned()
}

/// Read whatever the server sends until it closes the connection (or `within` passes).
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_rate_limit_answers_429_with_retry_after() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(
        &db,
        "",
        &[
            ("STRIPE_RATE_LIMIT_PER_SEC", "1"),
            ("STRIPE_RATE_LIMIT_BURST", "3"),
            ("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET),
        ],
    )
    .await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..5 {
        let (_, body) = stripe_event("charge.succeeded");
        let r = server.post_stripe(&body).await;
        statuses.push(r.status().as_u16());
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            retry_after = r.headers().get("retry-after").cloned();
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(v["error"], "rate_limited");
        }
    }
    assert_eq!(statuses, [202, 202, 202, 429, 429]);
    let secs: u64 = retry_after.unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&secs), "Retry-After {secs}");
    // Rejected before anything was stored; another provider has its own bucket (none here).
    assert_eq!(server.total_events().await, 3);
    let body = r#"{"zen":"limits"}"#;
    let r = server
        .post(
            "github",
            &[
                ("x-hub-signature-256", github_signature(GITHUB_SECRET, body)),
                ("x-github-event", "ping".into()),
                ("x-github-delivery", uuid::Uuid::new_v4().to_string()),
            ],
            body,
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // The bucket refills.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, body) = stripe_event("charge.succeeded");
    assert_eq!(server.post_stripe(&body).await.status(), 202);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_bound_sheds_load_at_once_and_slow_bodies_time_out() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(
        &db,
        "",
        &[
            ("HOOKD_MAX_IN_FLIGHT", "2"),
            ("HOOKD_BODY_TIMEOUT_MS", "1500"),
        ],
    )
    .await;
    // Two clients announce a body and then send almost nothing: each holds a slot.
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr(&server)).await.unwrap();
        s.write_all(
            b"POST /webhooks/stripe HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
              content-length: 100\r\n\r\n{\"id\":",
        )
        .await
        .unwrap();
        slow.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let (_, body) = stripe_event("charge.succeeded");
    let r = server.post_stripe(&body).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "shed at once"
    );
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "overloaded"
    );
    // The trickling bodies are cut off with 408 and the connection closed.
    for mut s in slow {
        let answer = read_until_closed(&mut s, Duration::from_secs(5))
            .await
            .expect("closed after the body timeout");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("body_timeout"), "{answer}");
    }
    // Slots are free again.
    assert_eq!(server.post_stripe(&body).await.status(), 202);
    assert_eq!(server.total_events().await, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_idle_connections_are_closed_and_capped() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(
        &db,
        "",
        &[
            ("HOOKD_HEADER_TIMEOUT_MS", "700"),
            ("HOOKD_MAX_CONNECTIONS", "3"),
        ],
    )
    .await;
    // Slowloris: headers that never end, and connections that never send anything.
    let mut held = Vec::new();
    for i in 0..3 {
        let mut s = TcpStream::connect(addr(&server)).await.unwrap();
        if i == 0 {
            s.write_all(b"POST /webhooks/stripe HTTP/1.1\r\nhost: x\r\nx-slow: ")
                .await
                .unwrap();
        }
        held.push(s);
    }
    // All three slots are taken: a fourth client waits (in the kernel's backlog)...
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    assert!(
        quick
            .get(format!("{}/health/live", server.url))
            .send()
            .await
            .is_err()
    );
    // ...until the header timeout closes the slow ones.
    for s in &mut held {
        assert!(
            read_until_closed(s, Duration::from_secs(3)).await.is_some(),
            "connection closed by the header timeout"
        );
    }
    let r = server
        .http
        .get(format!("{}/health/live", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_or_too_many_headers_get_431() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(
        &db,
        "",
        &[
            ("HOOKD_MAX_HEADER_BYTES", "4096"),
            ("HOOKD_MAX_HEADERS", "20"),
        ],
    )
    .await;
    let (_, body) = stripe_event("charge.succeeded");
    let sig = stripe_header(STRIPE_SECRET, &body, now());
    let big = server
        .post(
            "stripe",
            &[
                ("stripe-signature", sig.clone()),
                ("x-pad", "a".repeat(5000)),
            ],
            body.clone(),
        )
        .await;
    assert_eq!(big.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let many: Vec<(&str, String)> = (0..30)
        .map(|i| (["x-a", "x-b", "x-c"][i % 3], i.to_string()))
        .chain([("stripe-signature", sig)])
        .collect();
    let r = server.post("stripe", &many, body).await;
    assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(server.total_events().await, 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_and_event_types_must_be_short_and_printable() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db, "", &[("HOOKD_MAX_ID_BYTES", "64")]).await;
    let cases = [
        (
            format!("evt_{}", "x".repeat(80)),
            "charge.succeeded",
            "invalid_idempotency_key",
        ),
        (
            "evt_\\u0001bell".to_owned(),
            "charge.succeeded",
            "invalid_idempotency_key",
        ),
        (
            "evt ok".to_owned(),
            "charge.succeeded",
            "invalid_idempotency_key",
        ),
        (
            "evt_ok".to_owned(),
            "charge.\\nsucceeded",
            "invalid_event_type",
        ),
        ("evt_ok".to_owned(), "caf\u{e9}", "invalid_event_type"),
    ];
    for (id, event_type, reason) in cases {
        let body = format!(r#"{{"id":"{id}","object":"event","type":"{event_type}"}}"#);
        let r = server.post_stripe(&body).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"], reason, "{body}: {v}");
    }
    assert_eq!(server.total_events().await, 0);
    let body = r#"{"id":"evt_fine","object":"event","type":"charge.succeeded"}"#;
    assert_eq!(server.post_stripe(body).await.status(), 202);
    server.stop().await;
}

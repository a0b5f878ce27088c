//! Abuse and overload at the front door, over real sockets: per-provider rate limits, the
//! in-flight bound, slow clients (headers and bodies), oversized headers, connection caps and
//! ids or event types hookd will not store.

use std::time::{Duration, Instant};

use crate::support::*;
use reqwest::StatusCode;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

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

/// A small deterministic generator (the test must be reproducible, and fails with its seed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// One hostile request, as raw bytes, and whether it is well-formed HTTP (so an answer is due).
fn garbage(rng: &mut Rng) -> (Vec<u8>, bool) {
    let deep = |open: &str, close: &str, n: usize| format!("{}{}", open.repeat(n), close.repeat(n));
    let body: Vec<u8> = match rng.below(9) {
        0 => {
            let n = rng.below(4096);
            rng.bytes(n)
        }
        1 => b"\xff\xfe{\"id\":\"\xc3\x28\",\"type\":\"\xed\xa0\x80\"}".to_vec(),
        2 => deep("[", "]", 100_000).into_bytes(),
        3 => deep("{\"a\":", "}", 50_000).into_bytes(),
        4 => format!(
            r#"{{"id":"evt_{}","type":{}}}"#,
            "\\u0000".repeat(rng.below(50)),
            rng.below(1000)
        )
        .into_bytes(),
        5 => format!(r#"{{"id":{},"type":"t"}}"#, "9".repeat(400)).into_bytes(),
        6 => stripe_event("charge.succeeded").1.into_bytes(),
        7 => Vec::new(),
        _ => String::from_utf8_lossy(&rng.bytes(2000))
            .into_owned()
            .into_bytes(),
    };
    let path = *rng.pick(&[
        "/webhooks/stripe",
        "/webhooks/github",
        "/webhooks/%00%ff",
        "/webhooks/../../etc/passwd",
        "/webhooks/",
        "/admin/events/x",
        "/webhooks/stripe?x=%zz",
        "/health",
    ]);
    let method = *rng.pick(&["POST", "POST", "POST", "GET", "PUT", "DELETE", "OPTIONS"]);
    let mut headers: Vec<(String, Vec<u8>)> = vec![("host".into(), b"x".to_vec())];
    // A valid signature over garbage, so the parsers behind verification see it too.
    if rng.below(2) == 0 {
        let t = now();
        let mut mac =
            <hmac::Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(STRIPE_SECRET.as_bytes())
                .unwrap();
        hmac::Mac::update(&mut mac, format!("{t}.").as_bytes());
        hmac::Mac::update(&mut mac, &body);
        let sig = hex::encode(hmac::Mac::finalize(mac).into_bytes());
        headers.push((
            "stripe-signature".into(),
            format!("t={t},v1={sig}").into_bytes(),
        ));
    } else {
        let n = rng.below(200);
        headers.push((
            "stripe-signature".into(),
            rng.bytes(n)
                .into_iter()
                .filter(|b| *b >= 0x20 && *b != 0x7f)
                .collect(),
        ));
    }
    for _ in 0..rng.below(6) {
        let value = match rng.below(4) {
            0 => "a".repeat(rng.below(20_000)).into_bytes(),
            1 => b"\xc3\x28\xa0\xa1 latin-1 \xe9".to_vec(),
            2 => b"gzip, br, deflate, identity;q=0".to_vec(),
            _ => rng
                .bytes(30)
                .into_iter()
                .filter(|b| *b >= 0x20 && *b != 0x7f)
                .collect(),
        };
        let name = *rng.pick(&[
            "x-github-event",
            "x-github-delivery",
            "content-encoding",
            "transfer-encoding-x",
            "content-type",
            "x-hub-signature-256",
            "traceparent",
            "authorization",
        ]);
        headers.push((name.into(), value));
    }
    let mut well_formed = true;
    let mut req = format!("{method} {path} HTTP/1.1\r\n").into_bytes();
    match rng.below(10) {
        // Broken framing: hyper must refuse it without a 5xx.
        0 => {
            req = rng.bytes(200);
            well_formed = false;
        }
        1 => {
            req.extend_from_slice(b"content-length: 5\r\ncontent-length: 7\r\n");
            well_formed = false;
        }
        2 => {
            req.extend_from_slice(b"transfer-encoding: chunked\r\n\r\nzz\r\n");
            well_formed = false;
        }
        _ => {}
    }
    for (k, v) in headers {
        req.extend_from_slice(k.as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(&v);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(
        format!(
            "content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    req.extend_from_slice(&body);
    (req, well_formed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_garbage_requests_never_get_a_5xx() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db, "", &[("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET)]).await;
    let seed = 0x5eed_0000_0000_0001u64 ^ now() as u64;
    let mut rng = Rng(seed);
    let requests: Vec<_> = (0..1000).map(|_| garbage(&mut rng)).collect();
    let addr = addr(&server);
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(8));
    let mut handles = Vec::new();
    for (i, (req, well_formed)) in requests.into_iter().enumerate() {
        let permit = permits.clone().acquire_owned().await.unwrap();
        let addr = addr.clone();
        handles.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(&addr).await.unwrap();
            // The server may answer and close before it has read everything (413, 431).
            let _ = s.write_all(&req).await;
            let answer = read_until_closed(&mut s, Duration::from_secs(20)).await;
            drop(permit);
            (i, well_formed, answer)
        }));
    }
    let mut codes = std::collections::BTreeMap::new();
    for h in handles {
        let (i, well_formed, answer) = h.await.unwrap();
        let answer =
            answer.unwrap_or_else(|| panic!("request {i} (seed {seed:#x}): no answer in 20 s"));
        let code: u16 = answer
            .strip_prefix("HTTP/1.1 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        assert!(
            code < 500,
            "request {i} (seed {seed:#x}) got {code}: {answer}"
        );
        assert!(
            code > 0 || !well_formed,
            "request {i} (seed {seed:#x}): no answer: {answer:?}"
        );
        *codes.entry(code).or_insert(0) += 1;
    }
    eprintln!("garbage answers by status: {codes:?}");
    // Still serving, and nothing hostile was stored except well-signed, well-formed events.
    let r = server
        .http
        .get(format!("{}/health", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_must_match_the_configured_json_schema() {
    let db = TestDb::new(Backend::Sqlite).await;
    let schemas = db.dir.path().join("schemas");
    std::fs::create_dir_all(&schemas).unwrap();
    std::fs::write(
        schemas.join("stripe-payment.json"),
        r#"{
          "type": "object",
          "required": ["id", "type", "data"],
          "properties": {
            "data": {"type": "object", "required": ["object"], "properties": {
              "object": {"type": "object", "required": ["amount", "currency"], "properties": {
                "amount": {"type": "integer", "minimum": 1},
                "currency": {"type": "string", "pattern": "^[a-z]{3}$"}
              }}
            }}
          }
        }"#,
    )
    .unwrap();
    // Relative to the config file's folder.
    let config = r#"
[[schemas]]
provider = "stripe"
events = ["payment_intent.*"]
schema = "schemas/stripe-payment.json"
"#;
    let server = TestServer::start(&db, config, &[]).await;
    let (_, good) = stripe_event("payment_intent.succeeded");
    assert_eq!(server.post_stripe(&good).await.status(), 202);
    let bad = r#"{"id":"evt_schema_1","type":"payment_intent.succeeded","data":{"object":{"amount":"2000","currency":"usd"}}}"#;
    let r = server.post_stripe(bad).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"], "schema_violation", "{v}");
    assert_eq!(v["path"], "/data/object/amount", "{v}");
    let message = v["message"].as_str().unwrap();
    assert!(
        message.contains("integer") && message.contains("stripe-payment.json"),
        "{message}"
    );
    let missing = r#"{"id":"evt_schema_2","type":"payment_intent.created"}"#;
    let v: serde_json::Value = server.post_stripe(missing).await.json().await.unwrap();
    assert_eq!(v["error"], "schema_violation", "{v}");
    // Other event types are not held to it.
    let other = r#"{"id":"evt_schema_3","type":"charge.succeeded"}"#;
    assert_eq!(server.post_stripe(other).await.status(), 202);
    assert_eq!(server.total_events().await, 2);
    server.stop().await;

    // A missing or broken schema stops start-up, naming the entry.
    for (file, text) in [
        ("missing.json", None),
        ("broken.json", Some(r#"{"type": 12}"#)),
    ] {
        if let Some(t) = text {
            std::fs::write(schemas.join(file), t).unwrap();
        }
        let vars = base_vars(&db, &format!("[[schemas]]\nschema = \"schemas/{file}\"\n"));
        let err = hookd::config::Config::from_vars(vars)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("schemas[0].schema") && err.contains(file),
            "{err}"
        );
    }
}

//! Traces, metrics, logs and health, observed from outside: a real OTLP receiver decoding the
//! protobuf hookd exports, a Prometheus text parser over `/metrics`, and the JSON log lines of
//! the real binary.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;
use axum::body::Bytes;
use axum::extract::State;
use hookd::event::EventStatus;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use reqwest::StatusCode;

#[derive(Debug, Clone)]
struct SpanSeen {
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    service: String,
}

/// An OTLP/HTTP receiver on loopback, keeping every span it is sent.
struct OtlpReceiver {
    endpoint: String,
    spans: Arc<Mutex<Vec<SpanSeen>>>,
}

async fn receive_traces(State(spans): State<Arc<Mutex<Vec<SpanSeen>>>>, body: Bytes) -> StatusCode {
    let request = ExportTraceServiceRequest::decode(body).expect("valid OTLP protobuf");
    let mut seen = spans.lock().unwrap();
    for rs in request.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter())
            .find(|a| a.key == "service.name")
            .and_then(|a| a.value.as_ref())
            .map(|v| format!("{:?}", v.value))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                seen.push(SpanSeen {
                    name: s.name,
                    kind: s.kind,
                    trace_id: hex::encode(s.trace_id),
                    span_id: hex::encode(s.span_id),
                    parent_span_id: hex::encode(s.parent_span_id),
                    service: service.clone(),
                });
            }
        }
    }
    StatusCode::OK
}

impl OtlpReceiver {
    async fn start() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(receive_traces))
            .with_state(spans.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            endpoint: format!("http://{addr}"),
            spans,
        }
    }

    /// Wait until a span matching `pred` has arrived.
    async fn wait_for(&self, what: &str, pred: impl Fn(&SpanSeen) -> bool) -> SpanSeen {
        let spans = eventually(
            format!("a {what} span"),
            Duration::from_secs(20),
            || async { self.spans.lock().unwrap().clone() },
            |spans| spans.iter().any(&pred),
        )
        .await;
        spans.into_iter().find(pred).expect("eventually found one")
    }
}

const SPAN_KIND_SERVER: i32 = 2;
const SPAN_KIND_CLIENT: i32 = 3;
const SPAN_KIND_CONSUMER: i32 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_from_provider_to_the_users_service_across_processes() {
    let db = TestDb::new(Backend::Postgres).await;
    let otlp = OtlpReceiver::start().await;
    let target = Target::start(Behaviour::default()).await;
    let routes = forward_route(&target.url);
    let vars = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint.clone()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ("OTEL_SERVICE_NAME", "hookd-test".to_owned()),
    ];
    // The API and the worker are separate processes: the trace has to travel with the event.
    let api = Hookd::spawn_with(&db, &routes, "api", &vars, "api.log").await;
    let _worker = Hookd::spawn_with(&db, &routes, "worker", &vars, "worker.log").await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let (_, body) = stripe_event("payment_intent.succeeded");
    let r = stripe_request(&reqwest::Client::new(), &api.url, &body)
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    let received = target.wait_received(1, Duration::from_secs(20)).await;
    let forwarded = received[0].headers["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    let parts: Vec<&str> = forwarded.split('-').collect();
    assert_eq!(
        parts[1], trace_id,
        "the user's service joins the same trace: {forwarded}"
    );

    let server = otlp
        .wait_for("HTTP server", |s| {
            s.kind == SPAN_KIND_SERVER && s.trace_id == trace_id
        })
        .await;
    assert_eq!(server.name, "POST /webhooks/{provider}");
    assert_eq!(
        server.parent_span_id, caller_span,
        "continues the provider's traceparent"
    );
    assert!(server.service.contains("hookd-test"), "{}", server.service);
    let verify = otlp
        .wait_for("verify", |s| s.name == "verify" && s.trace_id == trace_id)
        .await;
    assert_eq!(verify.parent_span_id, server.span_id);
    let insert = otlp
        .wait_for("store", |s| {
            s.name == "store.insert" && s.trace_id == trace_id
        })
        .await;
    assert_eq!(insert.parent_span_id, server.span_id);
    let process = otlp
        .wait_for("worker", |s| {
            s.kind == SPAN_KIND_CONSUMER && s.trace_id == trace_id
        })
        .await;
    assert_eq!(
        process.parent_span_id, server.span_id,
        "the worker continues the request's trace"
    );
    let step = otlp
        .wait_for("step", |s| {
            s.name == "fwd/0:forward" && s.trace_id == trace_id
        })
        .await;
    assert_eq!(step.parent_span_id, process.span_id);
    let client = otlp
        .wait_for("forward", |s| {
            s.kind == SPAN_KIND_CLIENT && s.trace_id == trace_id
        })
        .await;
    assert_eq!(client.parent_span_id, step.span_id);
    assert_eq!(
        parts[2], client.span_id,
        "the forwarded traceparent names the client span"
    );
}

fn scrape(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("valid exposition format")
}

fn value(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .map(|b| b.count)
                .unwrap_or(0.0),
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_exactly_what_happened() {
    let db = TestDb::new(Backend::Sqlite).await;
    let ok = Target::start(Behaviour::default()).await;
    let failing = Target::start(Behaviour {
        always_fail: true,
        ..Default::default()
    })
    .await;
    let routes = format!(
        r#"[[routes]]
provider = "stripe"
events = ["ok.*"]
steps = [{{ action = "forward", url = "{}" }}]
[[routes]]
provider = "stripe"
events = ["fail.*"]
steps = [{{ action = "forward", url = "{}" }}]
"#,
        ok.url, failing.url
    );
    let vars = vec![
        ("HOOKD_MAX_ATTEMPTS", "2".to_owned()),
        ("HOOKD_RETRY_BASE_MS", "50".to_owned()),
    ];
    let hookd = Hookd::spawn_with(&db, &routes, "serve", &vars, "serve.log").await;
    let http = reqwest::Client::new();
    let post = |body: String, sig: String, provider: &'static str| {
        let (http, url) = (http.clone(), format!("{}/webhooks/{provider}", hookd.url));
        async move {
            http.post(url)
                .header("stripe-signature", sig)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let (_, a) = stripe_event("ok.one");
    let (_, b) = stripe_event("ok.two");
    let (_, f) = stripe_event("fail.always");
    assert_eq!(
        post(a.clone(), stripe_header(STRIPE_SECRET, &a, now()), "stripe").await,
        202
    );
    assert_eq!(
        post(b.clone(), stripe_header(STRIPE_SECRET, &b, now()), "stripe").await,
        202
    );
    assert_eq!(
        post(a.clone(), stripe_header(STRIPE_SECRET, &a, now()), "stripe").await,
        200
    );
    assert_eq!(
        post(a.clone(), stripe_header("whsec_wrong", &a, now()), "stripe").await,
        400
    );
    assert_eq!(
        post(
            a.clone(),
            stripe_header(STRIPE_SECRET, &a, now()),
            "no-such-provider"
        )
        .await,
        404
    );
    let r = stripe_request(&http, &hookd.url, &f).send().await.unwrap();
    let id = id_of(r).await;
    hookd
        .wait_status(id, EventStatus::DeadLetter, Duration::from_secs(15))
        .await;
    ok.wait_hits(2, Duration::from_secs(10)).await;
    // Completion is written just after the forward answers: give it a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Store gauges are cached for a few seconds: scrape until they show the dead letter.
    let metrics = format!("{}/metrics", hookd.url);
    let text = eventually(
        "/metrics to count the dead letter in hookd_events",
        Duration::from_secs(15),
        || async {
            http.get(&metrics)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        },
        |text| value(&scrape(text), "hookd_events", &[("status", "dead_letter")]) == Some(1.0),
    )
    .await;
    let m = scrape(&text);
    let received = |outcome: &str, provider: &str| {
        value(
            &m,
            "hookd_webhooks_received_total",
            &[("provider", provider), ("outcome", outcome)],
        )
    };
    assert_eq!(received("accepted", "stripe"), Some(3.0), "{text}");
    assert_eq!(received("duplicate", "stripe"), Some(1.0));
    assert_eq!(received("invalid_signature", "stripe"), Some(1.0));
    assert_eq!(
        received("unknown_provider", "unknown"),
        Some(1.0),
        "unknown names never become labels"
    );
    let processed = |outcome: &str| {
        value(
            &m,
            "hookd_events_processed_total",
            &[("provider", "stripe"), ("outcome", outcome)],
        )
    };
    assert_eq!(processed("completed"), Some(2.0));
    assert_eq!(processed("retried"), Some(1.0));
    assert_eq!(processed("dead_lettered"), Some(1.0));
    assert_eq!(
        value(&m, "hookd_attempts_total", &[("provider", "stripe")]),
        Some(4.0)
    );
    assert_eq!(
        value(&m, "hookd_events", &[("status", "dead_letter")]),
        Some(1.0)
    );
    assert_eq!(
        value(&m, "hookd_events", &[("status", "pending")]),
        Some(0.0)
    );
    assert_eq!(
        value(
            &m,
            "hookd_accept_duration_seconds",
            &[("provider", "stripe")]
        ),
        Some(5.0)
    );
    assert_eq!(
        value(
            &m,
            "hookd_processing_duration_seconds",
            &[("provider", "stripe")]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &m,
            "hookd_step_duration_seconds",
            &[("action", "forward"), ("outcome", "failed")]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &m,
            "hookd_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert!(value(&m, "process_resident_memory_bytes", &[]).unwrap() > 1e6);
    assert!(value(&m, "process_open_fds", &[]).unwrap() > 0.0);
    assert!(value(&m, "process_cpu_seconds_total", &[]).is_some());
    assert!(value(&m, "hookd_oldest_pending_event_age_seconds", &[]).is_some());

    // The shipped dashboard and alert rules only use metrics hookd really exposes.
    let shipped = [
        include_str!("../../deploy/grafana/hookd-dashboard.json"),
        include_str!("../../deploy/prometheus/alerts.yml"),
    ];
    for text_file in shipped {
        for word in text_file.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("hookd_") || word.starts_with("process_") {
                let base = word.trim_end_matches("_bucket");
                assert!(
                    text.contains(base),
                    "{base} is used by a dashboard or alert but not exposed"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_flat_json_with_context_errors_apart_and_no_secrets() {
    let db = TestDb::new(Backend::Sqlite).await;
    let failing = Target::start(Behaviour {
        always_fail: true,
        ..Default::default()
    })
    .await;
    let log_dir = db.dir.path().join("logs");
    let vars = vec![
        ("HOOKD_LOG_DIR", log_dir.to_str().unwrap().to_owned()),
        ("HOOKD_MAX_ATTEMPTS", "1".to_owned()),
    ];
    let mut hookd = Hookd::spawn_with(
        &db,
        &forward_route(&failing.url),
        "serve",
        &vars,
        "stdout.log",
    )
    .await;
    let (_, body) = stripe_event("charge.failed");
    let signature = stripe_header(STRIPE_SECRET, &body, now());
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/webhooks/stripe", hookd.url))
        .header("stripe-signature", &signature)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let id = id_of(r).await;
    let bad = http
        .post(format!("{}/webhooks/stripe", hookd.url))
        .header(
            "stripe-signature",
            stripe_header("whsec_attacker", &body, now()),
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    hookd
        .wait_status(id, EventStatus::DeadLetter, Duration::from_secs(15))
        .await;
    let pid = hookd.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(hookd.child.wait().unwrap().success());

    let stdout = std::fs::read_to_string(db.dir.path().join("stdout.log")).unwrap();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let find = |message: &str| {
        lines
            .iter()
            .find(|l| l["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} line in:\n{stdout}"))
            .clone()
    };
    let accepted = find("webhook accepted");
    assert_eq!(accepted["event_id"], id.to_string());
    assert_eq!(accepted["provider"], "stripe");
    assert_eq!(accepted["level"], "INFO");
    let trace_id = accepted["trace_id"]
        .as_str()
        .expect("trace_id on request lines");
    assert_eq!(trace_id.len(), 32);
    assert_ne!(trace_id, "0".repeat(32), "a real trace id");
    let dead = find("event dead-lettered");
    assert_eq!(dead["event_id"], id.to_string());
    assert_eq!(dead["provider"], "stripe");
    assert_eq!(
        dead["trace_id"], trace_id,
        "the job's lines carry the request's trace id"
    );
    assert_eq!(dead["level"], "ERROR");
    let rejected = find("webhook rejected");
    assert_eq!(rejected["reason"], "invalid_signature");
    assert_eq!(rejected["provider"], "stripe");

    let combined = std::fs::read_to_string(log_dir.join("combined.log")).expect("combined.log");
    let errors = std::fs::read_to_string(log_dir.join("error.log")).expect("error.log");
    assert!(combined.contains("webhook accepted"));
    assert!(!errors.is_empty());
    for line in errors.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["level"], "ERROR", "error.log holds only errors: {line}");
    }
    assert!(errors.contains("event dead-lettered"));

    let v1 = signature.split("v1=").nth(1).unwrap();
    for (name, text) in [
        ("stdout", &stdout),
        ("combined.log", &combined),
        ("error.log", &errors),
    ] {
        for secret in [STRIPE_SECRET, ADMIN_TOKEN, v1, "whsec_attacker"] {
            assert!(
                !text.contains(secret),
                "{name} contains a secret ({secret})"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_stays_up_while_readiness_follows_the_store() {
    let db = TestDb::new(Backend::Postgres).await;
    let server = TestServer::start(&db, "", &[("HOOKD_STORE_TIMEOUT_MS", "1000")]).await;
    let get = |path: &str| server.http.get(format!("{}{path}", server.url)).send();
    assert_eq!(get("/health/ready").await.unwrap().status(), StatusCode::OK);
    let health: serde_json::Value = get("/health").await.unwrap().json().await.unwrap();
    for component in ["store", "queue", "memory"] {
        assert_eq!(health[component]["status"], "up", "{health}");
    }
    assert!(health["store"]["latency_ms"].as_f64().is_some());
    assert!(health["backlog"]["events"].is_object(), "{health}");
    let outage = db.take_down().await;
    assert_eq!(get("/health/live").await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        get("/health/ready").await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get("/health").await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    outage.end().await;
    eventually(
        "/health/ready to answer 200 after the outage",
        Duration::from_secs(10),
        || async { get("/health/ready").await.unwrap().status() },
        |&ready| ready == StatusCode::OK,
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_over_the_limit_is_unhealthy() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db, "", &[("HOOKD_MEMORY_LIMIT_MB", "1")]).await;
    let r = server
        .http
        .get(format!("{}/health", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["memory"]["status"], "over_limit");
    server.stop().await;
}

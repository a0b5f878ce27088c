//! Worker processes seen from outside: `hookd worker` serves its own health and metrics (its
//! processing counters, step durations and breakers move as it works; readiness follows its
//! store; a taken port stops it at start), and retries start at their due time rather than at
//! the next poll, in the store and the Redis profile.

use std::time::Duration;

use crate::support::*;
use hookd::event::{EventDetail, EventId, EventStatus};
use reqwest::StatusCode;

fn scrape(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("valid exposition format")
}

/// The sum of a counter's samples whose labels include `labels`.
fn total(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            _ => 0.0,
        })
        .sum()
}

async fn get(url: String) -> reqwest::Response {
    reqwest::Client::new().get(url).send().await.unwrap()
}

async fn metrics_of(process: &Hookd) -> prometheus_parse::Scrape {
    let r = get(format!("{}/metrics", process.url)).await;
    assert_eq!(r.status(), StatusCode::OK);
    scrape(&r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_worker_process_serves_its_own_metrics_and_health() {
    let db = TestDb::new(Backend::Postgres).await;
    // Each step takes a moment and each worker runs one at a time, so both workers get events.
    let target = Target::start(Behaviour {
        delay: Duration::from_millis(50),
        ..Default::default()
    })
    .await;
    let routes = forward_route(&target.url);
    let vars = [("HOOKD_WORKERS", "1".to_owned())];
    let api = Hookd::spawn_with(&db, &routes, "api", &vars, "api.log").await;
    let workers = [
        Hookd::spawn_with(&db, &routes, "worker", &vars, "worker0.log").await,
        Hookd::spawn_with(&db, &routes, "worker", &vars, "worker1.log").await,
    ];
    for w in &workers {
        for path in ["/health/live", "/health/ready", "/health"] {
            let r = get(format!("{}{path}", w.url)).await;
            assert_eq!(r.status(), StatusCode::OK, "worker {path}");
        }
        let health: serde_json::Value =
            get(format!("{}/health", w.url)).await.json().await.unwrap();
        assert_eq!(health["workers"]["status"], "up", "{health}");
        // Only health and metrics: nothing of the public surface.
        let r = get(format!("{}/admin/events", w.url)).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    let n = 12;
    let mut ids = Vec::new();
    for _ in 0..n {
        let (_, body) = stripe_event("payment_intent.succeeded");
        let r = post_stripe(&api.url, &body).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        ids.push(id_of(r).await);
    }
    for id in &ids {
        api.wait_status(*id, EventStatus::Completed, Duration::from_secs(30))
            .await;
    }
    let completed = [("outcome", "completed")];
    let mut sum = 0.0;
    for (i, w) in workers.iter().enumerate() {
        let m = metrics_of(w).await;
        let done = total(&m, "hookd_events_processed_total", &completed);
        assert!(done >= 1.0, "worker {i} processed nothing: {:?}", m.samples);
        assert!(total(&m, "hookd_attempts_total", &[]) >= done);
        let steps = total(
            &m,
            "hookd_step_duration_seconds_count",
            &[("action", "forward")],
        );
        assert!(steps >= done, "worker {i}: step durations");
        let dest = target.url.trim_end_matches("/in");
        let breaker = [("destination", dest)];
        assert!(
            m.samples
                .iter()
                .any(|s| s.metric == "hookd_destination_breaker_state"
                    && s.labels.get("destination") == Some(dest)),
            "worker {i}: breaker of {dest}"
        );
        assert_eq!(total(&m, "hookd_destination_breaker_state", &breaker), 0.0);
        assert!(total(&m, "hookd_destination_steps_total", &breaker) >= done);
        sum += done;
    }
    assert_eq!(sum, n as f64, "every event completed once, by one worker");
    // The api accepted them and processed none.
    let m = metrics_of(&api).await;
    let accepted = [("outcome", "accepted")];
    assert_eq!(
        total(&m, "hookd_webhooks_received_total", &accepted),
        n as f64
    );
    assert_eq!(total(&m, "hookd_events_processed_total", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_readiness_follows_its_store_and_liveness_stays() {
    let db = TestDb::new(Backend::Postgres).await;
    let vars = [("HOOKD_STORE_TIMEOUT_MS", "1000".to_owned())];
    let worker = Hookd::spawn_with(&db, "", "worker", &vars, "worker.log").await;
    let status = |path: &'static str| {
        let url = format!("{}{path}", worker.url);
        async move { get(url).await.status() }
    };
    assert_eq!(status("/health/ready").await, StatusCode::OK);
    let outage = db.take_down().await;
    eventually(
        "the worker's /health/ready to answer 503 with its store down",
        Duration::from_secs(10),
        || status("/health/ready"),
        |s| *s == StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert_eq!(status("/health/live").await, StatusCode::OK);
    outage.end().await;
    eventually(
        "the worker's /health/ready to answer 200 after the outage",
        Duration::from_secs(15),
        || status("/health/ready"),
        |s| *s == StatusCode::OK,
    )
    .await;
    assert_eq!(status("/health/live").await, StatusCode::OK);
}

/// In the Redis profile a worker without its queue processes nothing: not ready, still alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_readiness_needs_its_redis() {
    let db = TestDb::new(Backend::Postgres).await;
    let mut redis = PrivateRedis::start().await;
    let vars = [
        ("REDIS_URL", redis.url()),
        ("HOOKD_REDIS_PREFIX", unique_prefix()),
        ("HOOKD_STORE_TIMEOUT_MS", "1000".to_owned()),
    ];
    let worker = Hookd::spawn_with(&db, "", "worker", &vars, "worker.log").await;
    let status = |path: &'static str| {
        let url = format!("{}{path}", worker.url);
        async move { get(url).await.status() }
    };
    eventually(
        "the worker to be ready",
        Duration::from_secs(10),
        || status("/health/ready"),
        |s| *s == StatusCode::OK,
    )
    .await;
    redis.kill();
    let ready: serde_json::Value = eventually(
        "the worker's /health/ready to answer 503 with Redis down",
        Duration::from_secs(10),
        || async {
            let r = get(format!("{}/health/ready", worker.url)).await;
            (r.status(), r.json::<serde_json::Value>().await.unwrap())
        },
        |(s, _)| *s == StatusCode::SERVICE_UNAVAILABLE,
    )
    .await
    .1;
    assert_eq!(ready["queue"]["status"], "down", "{ready}");
    assert_eq!(ready["store"]["status"], "up", "{ready}");
    assert_eq!(status("/health/live").await, StatusCode::OK);
    redis.up().await;
    eventually(
        "the worker's /health/ready to answer 200 with Redis back",
        Duration::from_secs(15),
        || status("/health/ready"),
        |s| *s == StatusCode::OK,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_port_is_taken_stops_at_start_and_says_which_setting() {
    let db = TestDb::new(Backend::Sqlite).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookd"))
        .arg("worker")
        .env_clear()
        .envs(base_vars(&db, ""))
        .env("HOOKD_INTERNAL_ADDR", &addr)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&addr) && err.contains("HOOKD_INTERNAL_ADDR"),
        "{err}"
    );
}

/// The deployment files health-check and scrape each worker where `hookd worker` listens by
/// default.
#[test]
fn deployment_files_use_the_workers_default_port() {
    let port = hookd::http::WORKER_INTERNAL_ADDR.port();
    let prometheus = include_str!("../../deploy/prometheus/prometheus.yml");
    let job = prometheus
        .split("job_name: hookd-worker")
        .nth(1)
        .expect("a scrape job for the workers");
    assert!(job.contains(&format!("port: {port}")), "{job}");
    let compose = include_str!("../../docker-compose.yml");
    assert!(compose.contains(&format!("127.0.0.1:{port}/health/ready")));
    assert!(compose.contains(&format!("HOOKD_INTERNAL_ADDR: 0.0.0.0:{port}")));
    let dockerfile = include_str!("../../Dockerfile");
    assert!(dockerfile.contains(&format!("127.0.0.1:{port}/health")));
}

/// How late, in milliseconds, the retry of `event` started: from its due time (the "retry at
/// ..." transition) to the transition that started the next attempt. Stores keep times to the
/// millisecond (SQLite) or microsecond, so "on time" may read a fraction of a millisecond early.
fn retry_lateness(event: &EventDetail) -> f64 {
    let t = &event.transitions;
    let i = t
        .iter()
        .position(|t| t.to == EventStatus::RetryScheduled)
        .unwrap_or_else(|| panic!("no retry in {t:#?}"));
    let detail = t[i].detail.as_deref().unwrap_or("");
    let due = detail
        .strip_prefix("retry at ")
        .and_then(|rest| rest.split_once(": "))
        .and_then(|(at, _)| chrono::DateTime::parse_from_rfc3339(at).ok())
        .unwrap_or_else(|| panic!("no due time in {detail:?}"));
    let started = &t[i + 1];
    assert_eq!(started.to, EventStatus::Processing, "{t:#?}");
    let ms = (started.at - due.to_utc())
        .num_microseconds()
        .unwrap_or(i64::MAX) as f64
        / 1000.0;
    assert!(
        ms > -1.0,
        "an attempt never starts before it is due: {ms} ms"
    );
    ms
}

/// `n` events whose first attempt fails, retried once: how late each retry started. Polls are
/// 5 s apart, so only the retry timer can start them sooner.
async fn retry_latenesses(db: &TestDb, extra: &[(&str, &str)], n: usize) -> Vec<f64> {
    let target = Target::start(Behaviour {
        fail_first: n,
        ..Default::default()
    })
    .await;
    // The failures are the event's, not an outage: the breaker stays closed.
    let mut vars = vec![
        ("HOOKD_POLL_MS", "5000"),
        ("HOOKD_RETRY_BASE_MS", "500"),
        ("HOOKD_BREAKER_FAILURES", "1000"),
    ];
    vars.extend_from_slice(extra);
    let server = TestServer::start(db, &forward_route(&target.url), &vars).await;
    let mut ids: Vec<EventId> = Vec::new();
    // All first attempts fail before the first retry is due (1 s after its failure).
    for _ in 0..n {
        let (_, body) = stripe_event("payment_intent.succeeded");
        let r = server.post_stripe(&body).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        ids.push(id_of(r).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut late = Vec::new();
    for id in ids {
        let e = server
            .wait_status(id, EventStatus::Completed, Duration::from_secs(30))
            .await;
        assert_eq!(e.attempts, 2, "{e:#?}");
        late.push(retry_lateness(&e));
    }
    server.stop().await;
    late
}

/// Retries whose first attempts failed: each must start well before the next poll (polls are
/// 5 s apart). The lateness is printed (median and max: `--no-capture`); it is a measurement,
/// not an assertion. Three events, sent 20 ms apart, so that every first attempt meets one of
/// the target's failures before any retry is due.
async fn retries_start_on_time(name: &str, db: &TestDb, vars: &[(&str, &str)]) {
    let mut late = retry_latenesses(db, vars, 3).await;
    late.sort_by(f64::total_cmp);
    println!(
        "{name}: {} retries, lateness median {:.1} ms, max {:.1} ms",
        late.len(),
        late[late.len() / 2],
        late[late.len() - 1],
    );
    for ms in late {
        assert!(ms < 1000.0, "{ms} ms late (polls are 5 s apart)");
    }
}

async fn retries_start_at_their_due_time_not_at_the_next_poll(b: Backend) {
    let db = TestDb::new(b).await;
    retries_start_on_time(&format!("{b:?}"), &db, &[]).await;
}

both_backends!(retries_start_at_their_due_time_not_at_the_next_poll);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_start_at_their_due_time_with_redis() {
    let db = TestDb::new(Backend::Postgres).await;
    let (redis, prefix) = (redis_url(), unique_prefix());
    let vars = [
        ("REDIS_URL", redis.as_str()),
        ("HOOKD_REDIS_PREFIX", prefix.as_str()),
    ];
    retries_start_on_time("postgres+redis", &db, &vars).await;
}

//! hookd behind a load balancer: the drain that makes a restart invisible to clients. On SIGTERM
//! an api first turns readiness off while it still serves everything (each answer closing its
//! connection), for `HOOKD_SHUTDOWN_READY_DELAY_MS`; only then does its listener close. Proved
//! on one process, and with a real HAProxy running the committed configuration
//! (`deploy/haproxy/haproxy.cfg`) in front of two `hookd api` processes, restarted one after the
//! other under load: no client sees a failed request and nothing acknowledged is lost.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;
use hookd::http::HttpSettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A signed Stripe webhook as raw HTTP/1.1 bytes (keep-alive, the HTTP/1.1 default).
fn raw_webhook(body: &str) -> String {
    format!(
        "POST /webhooks/stripe HTTP/1.1\r\nHost: hookd\r\nContent-Type: application/json\r\n\
         Stripe-Signature: {}\r\nContent-Length: {}\r\n\r\n{body}",
        stripe_header(STRIPE_SECRET, body, now()),
        body.len()
    )
}

/// Read one response (head and its `Content-Length` body) from a keep-alive connection; the
/// head in lower case.
async fn read_response(conn: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "closed before an answer: {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).to_lowercase();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse().unwrap())
                    .unwrap_or(0);
                if body.len() >= length {
                    return head.to_owned();
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("an answer within 20 s")
}

/// A SIGTERM does not close the door at once: readiness goes first, while every request is still
/// served, keep-alive connections included (each answer then says `Connection: close`). A second
/// signal ends the drain early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_readiness_off_first_and_serves_on_until_the_delay_ends() {
    let db = TestDb::new(Backend::Postgres).await;
    // Longer than the test: only the second signal can end the drain in time.
    let delay = [("HOOKD_SHUTDOWN_READY_DELAY_MS", "120000".to_owned())];
    let mut hookd = Hookd::spawn_with(&db, "", "api", &delay, "drain.log").await;
    let http = reqwest::Client::new();
    let ready = format!("{}/health/ready", hookd.url);
    assert_eq!(http.get(&ready).send().await.unwrap().status(), 200);
    let mut keys = Vec::new();
    // A keep-alive connection opened before the signal.
    let addr = hookd.url.trim_start_matches("http://").to_owned();
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    let (key, body) = stripe_event("payment_intent.succeeded");
    conn.write_all(raw_webhook(&body).as_bytes()).await.unwrap();
    let head = read_response(&mut conn).await;
    assert!(head.starts_with("http/1.1 202"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    keys.push(key);

    hookd.signal("TERM");
    let not_ready = eventually(
        "/health/ready to answer 503 once the drain starts",
        Duration::from_secs(20),
        || async {
            let r = http.get(&ready).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        },
        |(status, _)| *status == 503,
    )
    .await;
    assert!(not_ready.1.contains("shutting_down"), "{not_ready:?}");
    let live = http.get(format!("{}/health/live", hookd.url)).send().await;
    assert_eq!(live.unwrap().status(), 200, "alive while draining");

    // The connection from before is still served, and told to go.
    let (key, body) = stripe_event("payment_intent.succeeded");
    conn.write_all(raw_webhook(&body).as_bytes()).await.unwrap();
    let head = read_response(&mut conn).await;
    assert!(head.starts_with("http/1.1 202"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    keys.push(key);
    let rest = read_until_closed(&mut conn, Duration::from_secs(20)).await;
    assert_eq!(rest.as_deref(), Some(""), "closed after that answer");
    // New connections are still accepted and served.
    for _ in 0..3 {
        let (key, body) = stripe_event("payment_intent.succeeded");
        let mut conn = TcpStream::connect(&addr).await.unwrap();
        conn.write_all(raw_webhook(&body).as_bytes()).await.unwrap();
        let head = read_response(&mut conn).await;
        assert!(head.starts_with("http/1.1 202"), "{head}");
        assert!(head.contains("connection: close"), "{head}");
        keys.push(key);
    }

    // A second signal ends the drain: the process stops long before the two minutes are over.
    hookd.signal("TERM");
    let status = hookd.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "exit status {status:?}");
    let log = std::fs::read_to_string(db.dir.path().join("drain.log")).unwrap();
    assert!(log.contains("ending the drain early"), "{log}");

    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let stored: Vec<String> = sqlx::query_scalar("SELECT idempotency_key FROM events")
        .fetch_all(&pool)
        .await
        .unwrap();
    let stored: HashSet<String> = stored.into_iter().collect();
    assert_eq!(
        stored,
        keys.into_iter().collect(),
        "every answered webhook stored"
    );
    pool.close().await;
}

/// What the clients saw.
#[derive(Default)]
struct Seen {
    /// Idempotency keys answered 2xx.
    acked: Vec<String>,
    /// Everything else: `(seconds into the run, status or error)`.
    failed: Vec<(f64, String)>,
}

/// `clients` connections (one client with a keep-alive pool) posting signed webhooks to `url`
/// one after another, a pause of `pace` between two, until `stop`. Never retries: a failure is
/// what a provider would have seen.
fn load(
    url: String,
    clients: usize,
    pace: Duration,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<Seen> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(clients)
            .build()
            .unwrap();
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (http, url, stop, answered) =
                (http.clone(), url.clone(), stop.clone(), answered.clone());
            tasks.push(tokio::spawn(async move {
                let mut seen = Seen::default();
                while !stop.load(Ordering::Relaxed) {
                    let (key, body) = stripe_event("payment_intent.succeeded");
                    let sent = stripe_request(&http, &url, &body).send().await;
                    let at = started.elapsed().as_secs_f64();
                    match sent {
                        Ok(r) if r.status().is_success() => {
                            seen.acked.push(key);
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => {
                            let status = r.status();
                            let text = r.text().await.unwrap_or_default();
                            seen.failed.push((at, format!("{status} {text}")));
                        }
                        Err(e) => seen.failed.push((at, format!("{e:?}"))),
                    }
                    tokio::time::sleep(pace).await;
                }
                seen
            }));
        }
        let mut all = Seen::default();
        for t in tasks {
            let seen = t.await.unwrap();
            all.acked.extend(seen.acked);
            all.failed.extend(seen.failed);
        }
        all
    })
}

/// The events table's statuses, as counts.
#[derive(Debug, PartialEq)]
struct Counts {
    rows: i64,
    completed: i64,
}

/// A rolling restart behind HAProxy, twice around, under load: SIGTERM one api, wait for it to
/// exit, start it again on its port, wait until HAProxy sees it up, then the next. With the
/// default drain (`HOOKD_SHUTDOWN_READY_DELAY_MS`) and the committed check timings, HAProxy takes
/// each api out on its 503 before its listener closes: no client sees a failed request, not even
/// a retry is needed, and every acknowledged event is stored once and completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_behind_haproxy_fails_no_request_and_loses_nothing() {
    let db = TestDb::new(Backend::Postgres).await;
    let delay = HttpSettings::SHUTDOWN_READY_DELAY.as_millis().to_string();
    let ports = [stable_port(), stable_port()];
    let vars = |port: u16| {
        vec![
            ("PORT", port.to_string()),
            ("HOOKD_SHUTDOWN_READY_DELAY_MS", delay.clone()),
            ("HOOKD_DB_POOL_SIZE", "6".to_owned()),
        ]
    };
    // No route: every event completes as soon as a worker takes it.
    let mut apis = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let log = format!("api{}-0.log", i + 1);
        apis.push(Hookd::spawn_with(&db, "", "api", &vars(*port), &log).await);
    }
    let workers = [("HOOKD_WORKERS", "16".to_owned())];
    let worker = Hookd::spawn_with(&db, "", "worker", &workers, "worker.log").await;
    let proxy = Haproxy::start(db.dir.path(), &ports, "haproxy.log").await;
    for server in ["api1", "api2"] {
        proxy
            .wait_server(server, "UP", Duration::from_secs(30))
            .await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let running = load(
        proxy.url.clone(),
        8,
        Duration::from_millis(50),
        stop.clone(),
        answered.clone(),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    for round in 1..=2 {
        for (i, port) in ports.iter().enumerate() {
            let server = format!("api{}", i + 1);
            let before = answered.load(Ordering::Relaxed);
            let signalled = Instant::now();
            apis[i].signal("TERM");
            // Seen DOWN (during its drain, as the log shows below) before it starts again, so
            // seeing it UP means the new process was checked.
            proxy
                .wait_server(&server, "DOWN", Duration::from_secs(30))
                .await;
            let out = signalled.elapsed();
            let status = apis[i].wait_exit(Duration::from_secs(60)).await;
            assert!(status.success(), "{server} exit status {status:?}");
            let exited = signalled.elapsed();
            let log = format!("{server}-{round}.log");
            apis[i] = Hookd::spawn_with(&db, "", "api", &vars(*port), &log).await;
            proxy
                .wait_server(&server, "UP", Duration::from_secs(30))
                .await;
            let during = answered.load(Ordering::Relaxed) - before;
            eprintln!(
                "round {round}: {server} out of HAProxy {:.1} s after SIGTERM, exited after \
                 {:.1} s, up again at {:.1} s into the run; {during} requests answered meanwhile",
                out.as_secs_f64(),
                exited.as_secs_f64(),
                started.elapsed().as_secs_f64()
            );
            assert!(
                during > 0,
                "the other api kept answering while {server} restarted"
            );
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = running.await.unwrap();
    let stats = proxy.stats().await;
    let backend = &stats["BACKEND"];
    eprintln!(
        "{} webhooks answered 2xx through HAProxy, {} failed; HAProxy: {} retries, {} redispatches, {} 5xx",
        seen.acked.len(),
        seen.failed.len(),
        backend.count("wretr"),
        backend.count("wredis"),
        backend.count("hrsp_5xx"),
    );
    assert!(
        seen.failed.is_empty(),
        "failed requests (see {}): {:?}",
        proxy.log.display(),
        &seen.failed[..seen.failed.len().min(20)]
    );
    assert!(seen.acked.len() >= 200, "load ran: {}", seen.acked.len());
    // HAProxy took each api out on its 503 (the drain), never on a refused connection.
    // The checks that changed a server's state, with their reason (`option log-health-checks`;
    // each is logged twice, as a log line and on stderr: the log lines).
    let log = std::fs::read_to_string(&proxy.log).unwrap();
    let checks: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("Health check for server hookd/"))
        .collect();
    for server in ["api1", "api2"] {
        let own: Vec<&str> = checks
            .iter()
            .copied()
            .filter(|l| l.starts_with(&format!("Health check for server hookd/{server} ")))
            .collect();
        // Taken out: a failed check (1/2 left), then another (DOWN). Checks logged after that
        // only say why it stays down (its port refused while it restarts).
        let takeouts: Vec<&[&str]> = own
            .windows(2)
            .filter(|w| w[0].ends_with("status: 1/2 UP.") && w[1].ends_with("status: 0/2 DOWN."))
            .collect();
        assert!(
            takeouts.len() == 2
                && takeouts
                    .iter()
                    .flat_map(|w| w.iter())
                    .all(|l| l.contains("wrong status, code: 503")),
            "{server} taken out twice, each time on its 503: {own:#?}"
        );
    }
    assert_eq!(
        (backend.count("wretr"), backend.count("wredis")),
        (0, 0),
        "no request needed a retry"
    );

    let acked: HashSet<&str> = seen.acked.iter().map(String::as_str).collect();
    assert_eq!(acked.len(), seen.acked.len(), "every key sent once");
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let want = Counts {
        rows: acked.len() as i64,
        completed: acked.len() as i64,
    };
    eventually(
        "every acknowledged event to be stored and completed",
        Duration::from_secs(120),
        || async {
            let (rows, completed): (i64, i64) = sqlx::query_as(
                "SELECT count(*), count(*) FILTER (WHERE status = 'completed') FROM deliveries",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            Counts { rows, completed }
        },
        |c| *c == want,
    )
    .await;
    let stored: Vec<String> = sqlx::query_scalar("SELECT idempotency_key FROM events")
        .fetch_all(&pool)
        .await
        .unwrap();
    let stored: HashSet<&str> = stored.iter().map(String::as_str).collect();
    assert_eq!(stored, acked, "stored exactly what was acknowledged");
    pool.close().await;
    drop((proxy, apis, worker));
}

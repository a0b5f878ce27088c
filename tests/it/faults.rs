//! Faults on purpose, under load, with the real binary, real PostgreSQL and real Redis. Every
//! test delivers events the way a provider does (retrying on 5xx and connection errors until a
//! 2xx) and then reconciles: each event acknowledged with a 2xx is stored once and ends
//! `completed`, nothing else is stored, and the target saw each event at least once, with
//! repeats only where the test allows them (a worker killed mid-step).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::support::*;
use sqlx::Row;
use tokio::sync::Semaphore;

/// One request of a delivery.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Try {
    pub(crate) start: Instant,
    pub(crate) end: Instant,
    /// 0: no answer (connection refused or reset).
    pub(crate) status: u16,
}

/// One event delivered as a provider would.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) key: String,
    pub(crate) tries: Vec<Try>,
    pub(crate) acked: bool,
}

/// Where the live API processes listen, as a load balancer would know it: a restarted process
/// gets a new port (reusing the old one could take a port another test was just given).
pub(crate) type Apis = Arc<RwLock<Vec<String>>>;

pub(crate) fn apis(urls: Vec<String>) -> Apis {
    Arc::new(RwLock::new(urls))
}

/// Deliver `body` to the APIs (round robin), retrying every 200 ms until a 2xx or `give_up`.
async fn deliver(
    http: reqwest::Client,
    urls: Apis,
    first: usize,
    key: String,
    body: String,
    give_up: Duration,
) -> Delivery {
    let started = Instant::now();
    let mut tries = Vec::new();
    let mut n = first;
    loop {
        let url = {
            let urls = urls.read().unwrap();
            urls[n % urls.len()].clone()
        };
        n += 1;
        let start = Instant::now();
        let status = match stripe_request(&http, &url, &body).send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        };
        tries.push(Try {
            start,
            end: Instant::now(),
            status,
        });
        if (200..300).contains(&status) {
            return Delivery {
                key,
                tries,
                acked: true,
            };
        }
        assert!(
            status == 0 || status >= 500 || status == 429,
            "a provider would give up on {status}"
        );
        if started.elapsed() > give_up {
            return Delivery {
                key,
                tries,
                acked: false,
            };
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `n` events, a new one every `pace`, at most `concurrency` in flight; runs in the background.
pub(crate) fn load(
    urls: Apis,
    n: usize,
    concurrency: usize,
    pace: Duration,
) -> tokio::task::JoinHandle<Vec<Delivery>> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let permits = Arc::new(Semaphore::new(concurrency));
        let mut handles = Vec::new();
        for i in 0..n {
            let permit = permits.clone().acquire_owned().await.unwrap();
            let (key, body) = stripe_event("payment_intent.succeeded");
            let (http, urls) = (http.clone(), urls.clone());
            handles.push(tokio::spawn(async move {
                let d = deliver(http, urls, i, key, body, Duration::from_secs(90)).await;
                drop(permit);
                d
            }));
            tokio::time::sleep(pace).await;
        }
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    })
}

/// The events table as the reconciliation reads it. It shows as its counts: the rows themselves
/// would bury a failure message.
struct Stored(Vec<sqlx::postgres::PgRow>);

impl Stored {
    fn completed(&self) -> usize {
        self.0
            .iter()
            .filter(|r| r.get::<String, _>("status") == "completed")
            .count()
    }
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (done, all) = (self.completed(), self.0.len());
        write!(f, "{done} of {all} stored events completed")
    }
}

/// The reconciliation every fault test ends with. Returns how many forwards were repeats.
pub(crate) async fn reconcile(
    db_url: &str,
    deliveries: &[Delivery],
    target: &Target,
    timeout: Duration,
) -> usize {
    let unacked: Vec<_> = deliveries.iter().filter(|d| !d.acked).collect();
    assert!(unacked.is_empty(), "never acknowledged: {unacked:?}");
    let acked: HashSet<&str> = deliveries.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(acked.len(), deliveries.len());
    let pool = sqlx::PgPool::connect(db_url).await.unwrap();
    let Stored(rows) = eventually(
        format!(
            "every stored event, and at least the {} acknowledged, to complete",
            acked.len()
        ),
        timeout,
        || async {
            let q = sqlx::query(
                "SELECT id::text AS id, idempotency_key, COALESCE(status, 'no delivery') AS status
                 FROM events e LEFT JOIN deliveries d ON d.event_id = e.id",
            );
            Stored(q.fetch_all(&pool).await.unwrap())
        },
        |stored| stored.completed() == stored.0.len() && stored.completed() >= acked.len(),
    )
    .await;
    // Stored exactly what was acknowledged: nothing lost, nothing extra.
    let stored: HashSet<String> = rows.iter().map(|r| r.get("idempotency_key")).collect();
    assert_eq!(stored.len(), rows.len(), "one row per key");
    let missing: Vec<_> = acked.iter().filter(|k| !stored.contains(**k)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not stored: {missing:?}"
    );
    assert_eq!(stored.len(), acked.len(), "stored but never acknowledged");
    // Each event reached the target, once or (after a crash mid-step) more.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ids: HashSet<String> = rows.iter().map(|r| r.get("id")).collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in target.succeeded() {
        let id = r.headers["x-hookd-event-id"].to_str().unwrap().to_owned();
        assert!(
            ids.contains(&id),
            "forwarded an event that is not stored: {id}"
        );
        *seen.entry(id).or_default() += 1;
    }
    assert_eq!(seen.len(), ids.len(), "every event forwarded");
    pool.close().await;
    seen.values().map(|n| n - 1).sum()
}

/// Variables that put a process on Redis under a prefix of its own.
pub(crate) fn fleet_vars(redis: &str, prefix: &str) -> Vec<(&'static str, String)> {
    vec![
        ("REDIS_URL", redis.to_owned()),
        ("HOOKD_REDIS_PREFIX", prefix.to_owned()),
        ("HOOKD_SWEEP_GRACE_SECS", "1".to_owned()),
        ("HOOKD_WORKERS", "8".to_owned()),
        ("HOOKD_LEASE_SECS", "4".to_owned()),
        ("HOOKD_DB_POOL_SIZE", "4".to_owned()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_apis_and_workers_under_load_repeatedly_loses_nothing() {
    let db = TestDb::new(Backend::Postgres).await;
    let target = Target::start(Behaviour {
        delay: Duration::from_millis(10),
        ..Default::default()
    })
    .await;
    let routes = forward_route(&target.url);
    let vars = fleet_vars(&redis_url(), &unique_prefix());
    let mut apis = Vec::new();
    let mut workers = Vec::new();
    for i in 0..2 {
        apis.push(Hookd::spawn_with(&db, &routes, "api", &vars, &format!("api{i}.log")).await);
        workers.push(
            Hookd::spawn_with(&db, &routes, "worker", &vars, &format!("worker{i}.log")).await,
        );
    }
    let live = self::apis(apis.iter().map(|a| a.url.clone()).collect());
    let running = load(live.clone(), 800, 16, Duration::from_millis(8));
    let mut kills = 0;
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let i = round % 2;
        apis[i].child.kill().unwrap();
        apis[i].child.wait().unwrap();
        workers[i].child.kill().unwrap();
        workers[i].child.wait().unwrap();
        kills += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
        apis[i] = Hookd::spawn_with(&db, &routes, "api", &vars, &format!("api{i}.log")).await;
        live.write().unwrap()[i] = apis[i].url.clone();
        workers[i] =
            Hookd::spawn_with(&db, &routes, "worker", &vars, &format!("worker{i}.log")).await;
    }
    let deliveries = running.await.unwrap();
    let retried = deliveries.iter().filter(|d| d.tries.len() > 1).count();
    let repeats = reconcile(&db.url, &deliveries, &target, Duration::from_secs(120)).await;
    // Only steps in flight in a killed worker (at most HOOKD_WORKERS each) may run again.
    assert!(repeats <= kills * 8, "{repeats} repeated forwards");
    eprintln!("kill -9 x{kills}: {retried} deliveries retried, {repeats} forwards repeated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_nothing_and_repeats_nothing() {
    let db = TestDb::new(Backend::Postgres).await;
    let target = Target::start(Behaviour {
        delay: Duration::from_millis(30),
        ..Default::default()
    })
    .await;
    let routes = forward_route(&target.url);
    let vars = fleet_vars(&redis_url(), &unique_prefix());
    let mut api = Hookd::spawn_with(&db, &routes, "api", &vars, "api.log").await;
    let mut worker = Hookd::spawn_with(&db, &routes, "worker", &vars, "worker.log").await;
    let live = apis(vec![api.url.clone()]);
    let running = load(live.clone(), 600, 16, Duration::from_millis(6));
    let term = |child: &mut std::process::Child| {
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let status = child.wait().unwrap();
        assert!(status.success(), "clean exit after SIGTERM: {status:?}");
    };
    for round in 0..2 {
        // The worker has steps in flight (the target takes 30 ms each): they finish, the rest
        // of its leases are handed back.
        target
            .wait_hits(100 * (round + 1), Duration::from_secs(90))
            .await;
        term(&mut worker.child);
        worker =
            Hookd::spawn_with(&db, &routes, "worker", &vars, &format!("worker{round}.log")).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        // The API finishes the requests it has and stops listening; clients retry.
        term(&mut api.child);
        // Clients keep retrying the old address until the new one is known, as behind a
        // load balancer that notices the replacement.
        api = Hookd::spawn_with(&db, &routes, "api", &vars, &format!("api{round}.log")).await;
        live.write().unwrap()[0] = api.url.clone();
    }
    let deliveries = running.await.unwrap();
    let repeats = reconcile(&db.url, &deliveries, &target, Duration::from_secs(120)).await;
    assert_eq!(repeats, 0, "a graceful stop never repeats a step");
    drop((api, worker));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load_answers_503_then_recovers_by_itself() {
    let pg = PrivatePostgres::start();
    let db = TestDb::at(pg.url("postgres"));
    let target = Target::start(Behaviour::default()).await;
    let routes = forward_route(&target.url);
    let vars = [
        // A request waits this long for the store before its 503.
        ("HOOKD_STORE_TIMEOUT_MS", "500".to_owned()),
        // Longer than the outage: workers wait for the store while they hold their events.
        ("HOOKD_LEASE_SECS", "15".to_owned()),
    ];
    let hookd = Hookd::spawn_with(&db, &routes, "serve", &vars, "serve.log").await;
    let running = load(
        apis(vec![hookd.url.clone()]),
        500,
        8,
        Duration::from_millis(12),
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    pg.crash();
    let down_at = Instant::now();
    // Long enough for requests to begin and end inside the outage.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let up_at = Instant::now();
    pg.up();
    let deliveries = running.await.unwrap();
    let during: Vec<Try> = deliveries
        .iter()
        .flat_map(|d| d.tries.iter().copied())
        .filter(|t| t.start >= down_at && t.end <= up_at)
        .collect();
    assert!(!during.is_empty(), "requests arrived during the outage");
    let not_503: Vec<_> = during.iter().filter(|t| t.status != 503).collect();
    assert!(not_503.is_empty(), "during the outage: {not_503:?}");
    // Recovered without a restart: everything after the outage (plus the pool's reconnect)
    // was acknowledged at the first try.
    let late_failures = deliveries
        .iter()
        .flat_map(|d| d.tries.iter())
        .filter(|t| t.start > up_at + Duration::from_secs(5) && t.status != 202 && t.status != 200)
        .count();
    assert_eq!(late_failures, 0, "failures after recovery");
    let repeats = reconcile(&db.url, &deliveries, &target, Duration::from_secs(90)).await;
    eprintln!(
        "postgres restart: {} requests inside the outage, all 503; {repeats} forwards repeated",
        during.len()
    );
    // Step results and outcomes that could not be written during the outage were retried while
    // the lease held, so no finished step ran again.
    assert_eq!(repeats, 0, "repeated forwards");
    drop(hookd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_at_start_is_waited_for() {
    let db = TestDb::new(Backend::Postgres).await;
    let outage = db.take_down().await;
    let vars = [("HOOKD_STORE_WAIT_SECS", "60".to_owned())];
    let (hookd, _) = tokio::join!(
        Hookd::spawn_with(&db, "", "serve", &vars, "wait.log"),
        async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            outage.end().await;
        }
    );
    let (_, body) = stripe_event("charge.succeeded");
    let r = post_stripe(&hookd.url, &body).await;
    assert_eq!(r.status(), 202);
    let log = std::fs::read_to_string(db.dir.path().join("wait.log")).unwrap();
    assert!(log.contains("store not reachable; waiting for it"), "{log}");
    assert!(log.contains("store reachable; starting"), "{log}");
}

async fn slow_target_does_not_stall_other_routes(b: Backend) {
    let db = TestDb::new(b).await;
    let slow = Target::start(Behaviour {
        delay: Duration::from_secs(30),
        ..Default::default()
    })
    .await;
    let fast = Target::start(Behaviour::default()).await;
    let routes = format!(
        r#"[[routes]]
name = "slow"
events = ["slow.*"]
steps = [{{ action = "forward", url = "{}", timeout_ms = 500 }}]
[[routes]]
name = "fast"
events = ["fast.*"]
steps = [{{ action = "forward", url = "{}" }}]
"#,
        slow.url, fast.url
    );
    let server = TestServer::start(&db, &routes, &[("HOOKD_WORKERS", "8")]).await;
    for _ in 0..20 {
        let (_, body) = stripe_event("slow.thing");
        assert_eq!(server.post_stripe(&body).await.status(), 202);
    }
    let started = Instant::now();
    let mut fast_ids = Vec::new();
    for _ in 0..20 {
        let (_, body) = stripe_event("fast.thing");
        fast_ids.push(id_of(server.post_stripe(&body).await).await);
    }
    for id in fast_ids {
        server
            .wait_status(
                id,
                hookd::event::EventStatus::Completed,
                Duration::from_secs(10),
            )
            .await;
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "fast route took {took:?}");
    assert!(slow.hits() > 0, "the slow route was being tried meanwhile");
    server.stop().await;
}

both_backends!(slow_target_does_not_stall_other_routes);

/// Resident set size of a process, from `/proc`.
fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_of_100000_events_keeps_memory_bounded() {
    let db = TestDb::new(Backend::Postgres).await;
    let store = hookd::store::connect(&db.url, 2, Duration::from_secs(5))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    drop(store);
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let loaded = Instant::now();
    sqlx::query(
        "INSERT INTO events (id, provider, idempotency_key, event_type, content_type, body)
         SELECT gen_random_uuid(), 'stripe', 'evt_backlog_' || g, 'charge.succeeded',
                'application/json',
                convert_to('{\"id\":\"evt_backlog_' || g || '\",\"type\":\"charge.succeeded\",\"pad\":\"'
                           || repeat('x', 400) || '\"}', 'UTF8')
         FROM generate_series(1, 100000) g",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO deliveries (event_id, provider, received_at)
         SELECT id, provider, received_at FROM events",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO event_transitions (event_id, from_status, to_status, detail)
         SELECT id, NULL, 'pending', 'received' FROM events",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE events, deliveries")
        .execute(&pool)
        .await
        .unwrap();
    eprintln!("100,000 pending events inserted in {:?}", loaded.elapsed());
    let target = Target::start(Behaviour::default()).await;
    let hookd = Hookd::spawn_with(
        &db,
        &forward_route(&target.url),
        "serve",
        &[("HOOKD_WORKERS", "16".to_owned())],
        "backlog.log",
    )
    .await;
    let pid = hookd.child.id();
    let http = reqwest::Client::new();
    let mut peak = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(12) {
        peak = peak.max(rss_of(pid));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Health (and its backlog query) still answers with the backlog in place.
    let asked = Instant::now();
    let health = http
        .get(format!("{}/health", hookd.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    eprintln!("/health with the backlog answered in {:?}", asked.elapsed());
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'pending'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let done: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'completed'")
            .fetch_one(&pool)
            .await
            .unwrap();
    eprintln!(
        "backlog: {done} processed in 12 s, {pending} pending, peak RSS {:.1} MiB",
        peak as f64 / 1048576.0
    );
    assert!(done >= 500, "working through the backlog: {done}");
    assert!(pending > 0);
    assert!(peak < 100 * 1024 * 1024, "peak RSS {peak} bytes");
    drop(hookd);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_master_killed_under_load_loses_nothing() {
    let db = TestDb::new(Backend::Postgres).await;
    let mut cluster = LocalCluster::start(3, 1).await;
    let target = Target::start(Behaviour {
        delay: Duration::from_millis(5),
        ..Default::default()
    })
    .await;
    let routes = forward_route(&target.url);
    // The partitions are spread over the three masters: every process talks to all of them.
    let mut vars = fleet_vars("", &unique_prefix());
    vars.retain(|(k, _)| *k != "REDIS_URL");
    vars.push(("REDIS_CLUSTER_NODES", cluster.urls().join(",")));
    let api = Hookd::spawn_with(&db, &routes, "api", &vars, "api.log").await;
    let workers: Vec<Hookd> = {
        let mut w = Vec::new();
        for i in 0..2 {
            let log = format!("worker{i}.log");
            w.push(Hookd::spawn_with(&db, &routes, "worker", &vars, &log).await);
        }
        w
    };
    let running = load(
        apis(vec![api.url.clone()]),
        600,
        16,
        Duration::from_millis(8),
    );
    target.wait_hits(100, Duration::from_secs(60)).await;
    // SIGKILL a master mid-run: its replica takes over after the node timeout, and what the
    // master had not yet replicated (messages, retries) is lost with it.
    cluster.kill_a_master().await;
    let deliveries = running.await.unwrap();
    let repeats = reconcile(&db.url, &deliveries, &target, Duration::from_secs(120)).await;
    eprintln!("master killed under load: {repeats} forwards repeated");
    drop((api, workers));
}

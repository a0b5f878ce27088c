//! Faults between hosts: the API, two workers, PostgreSQL and Redis each on a host of their own
//! (a network namespace on a bridge of the test's own, `support::netns`), and links cut or
//! degraded under load. Every test reconciles as the fault tests do (each event acknowledged
//! with a 2xx is stored once, completed and forwarded), checks that an event forwarded twice was
//! in flight on the side that was cut off when it was, that no process was restarted, and that
//! every process is ready again, and prints how long recovery took after the link came back
//! (`cargo nextest run --test it network:: --no-capture`; the numbers are in
//! docs/reliability.md). Runs as root; without `ip netns` the tests fail saying so.

use std::collections::HashMap;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::faults::{Delivery, apis, fleet_vars, load, reconcile};
use crate::support::*;

/// The fleet of one test: every part on its own host.
struct Fleet {
    pg_host: Host,
    redis_host: Host,
    api_host: Host,
    worker_hosts: Vec<Host>,
    db: TestDb,
    target: Target,
    api: Hookd,
    workers: Vec<Hookd>,
    /// After the processes that use them, the servers stop (PostgreSQL cleanly, leaving no
    /// shared memory behind), and the network goes last.
    _redis: Child,
    _pg: PrivatePostgres,
    net: Net,
}

impl Fleet {
    /// Start PostgreSQL, Redis, one API and two workers on hosts of their own, forwarding to a
    /// recording target at the network's gateway that takes `target_delay` to answer. `lease` is
    /// `HOOKD_LEASE_SECS`; with `relay` (its delay and loss), the hookd processes reach
    /// PostgreSQL through a [`Relay`].
    async fn start(
        lease: u64,
        relay: Option<(Duration, f64)>,
        target_delay: Duration,
    ) -> (Self, Option<Relay>) {
        let mut net = Net::new();
        let pg_host = net.host("pg");
        let redis_host = net.host("redis");
        let api_host = net.host("api");
        let worker_hosts = vec![net.host("w1"), net.host("w2")];
        let pg = PrivatePostgres::start_in(&pg_host.ns, &pg_host.ip);
        let redis = redis_host
            .command("redis-server")
            .args(["--bind", &redis_host.ip, "--port", "6379", "--save", ""])
            .args(["--appendonly", "no", "--protected-mode", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is required (apt-get install redis-server)");
        let redis_url = format!("redis://{}:6379", redis_host.ip);
        let _pong = eventually(
            format!("redis-server on host {} to answer", redis_host.ns),
            Duration::from_secs(10),
            || async {
                let client = redis::Client::open(redis_url.as_str()).unwrap();
                match client.get_multiplexed_async_connection().await {
                    Ok(mut c) => redis::cmd("PING").query_async::<String>(&mut c).await,
                    Err(e) => Err(e),
                }
            },
            Result::is_ok,
        )
        .await;
        let mut db = TestDb::at(pg.url("postgres"));
        let relay = match relay {
            Some((delay, loss)) => {
                let upstream = format!("{}:{}", pg_host.ip, pg.port);
                let r = Relay::start(&net.gateway, upstream, delay, loss).await;
                Some(r)
            }
            None => None,
        };
        let target = Target::start_on(
            &net.gateway,
            Behaviour {
                delay: target_delay,
                ..Default::default()
            },
        )
        .await;
        let routes = forward_route(&target.url);
        let mut vars = fleet_vars(&redis_url, &unique_prefix());
        vars.retain(|(k, _)| *k != "HOOKD_LEASE_SECS");
        vars.push(("HOOKD_LEASE_SECS", lease.to_string()));
        // The processes reach PostgreSQL through the relay, if there is one; the test reads it
        // directly.
        let direct = db.url.clone();
        if let Some(r) = &relay {
            db.url = format!("postgres://postgres@{}/postgres", r.addr);
        }
        let api = Hookd::spawn_on(&api_host, &db, &routes, "api", &vars, "api.log").await;
        let mut workers = Vec::new();
        for (i, host) in worker_hosts.iter().enumerate() {
            let mut vars = vars.clone();
            vars.push(("HOOKD_INTERNAL_ADDR", format!("{}:9090", host.ip)));
            let log = format!("worker{}.log", i + 1);
            workers.push(Hookd::spawn_on(host, &db, &routes, "worker", &vars, &log).await);
        }
        db.url = direct;
        let fleet = Self {
            pg_host,
            redis_host,
            api_host,
            worker_hosts,
            db,
            target,
            api,
            workers,
            _redis: redis,
            _pg: pg,
            net,
        };
        (fleet, relay)
    }

    /// Every process's `/health/ready` URL.
    fn ready_urls(&self) -> Vec<String> {
        std::iter::once(&self.api)
            .chain(&self.workers)
            .map(|h| format!("{}/health/ready", h.url))
            .collect()
    }

    /// Which processes answer `/health/ready` with 200 now.
    async fn ready(&self) -> Vec<bool> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let mut out = Vec::new();
        for url in self.ready_urls() {
            let ok = http.get(&url).send().await.map(|r| r.status().as_u16());
            out.push(matches!(ok, Ok(200)));
        }
        out
    }

    /// The lease owner name's part that is worker `i`'s (its pid: `<host>:<pid>:<nonce>`).
    fn owner_mark(&self, i: usize) -> String {
        format!(":{}:", self.workers[i].child.id())
    }

    /// Lines of process log `name` (e.g. `api.log`) that are warnings or errors.
    fn complaints(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.db.dir.path().join(name))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"WARN\"") || l.contains("\"ERROR\""))
            .map(str::to_owned)
            .collect()
    }

    /// Attempts that took over an event whose previous holder's lease had expired.
    async fn takeovers(&self) -> i64 {
        let pool = sqlx::PgPool::connect(&self.db.url).await.unwrap();
        let n = sqlx::query_scalar(
            "SELECT count(*) FROM event_transitions WHERE detail LIKE '%(previous lease expired)'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        pool.close().await;
        n
    }

    /// Wait until the worker whose lease owner mark is `mark` holds a lease.
    async fn wait_in_flight(&self, mark: &str) {
        let pool = sqlx::PgPool::connect(&self.db.url).await.unwrap();
        let _held = eventually(
            format!("the worker {mark} to hold a lease"),
            Duration::from_secs(30),
            || async {
                sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FROM deliveries
                     WHERE status = 'processing' AND lease_owner LIKE '%' || $1 || '%'",
                )
                .bind(mark)
                .fetch_one(&pool)
                .await
                .unwrap()
            },
            |n| *n > 0,
        )
        .await;
        pool.close().await;
    }

    /// The store's clock now, to compare with its timestamps.
    async fn clock(&self) -> String {
        let pool = sqlx::PgPool::connect(&self.db.url).await.unwrap();
        let now = sqlx::query_scalar("SELECT clock_timestamp()::text")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        now
    }

    /// Of the events received between `from` and `to` (store clock), how many, and how many of
    /// them were completed only after `to`.
    async fn waited(&self, from: &str, to: &str) -> (i64, i64) {
        let pool = sqlx::PgPool::connect(&self.db.url).await.unwrap();
        let counts = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE d.updated_at > $2::timestamptz)
             FROM events e JOIN deliveries d ON d.event_id = e.id
             WHERE e.received_at BETWEEN $1::timestamptz AND $2::timestamptz",
        )
        .bind(from)
        .bind(to)
        .fetch_one(&pool)
        .await
        .unwrap();
        pool.close().await;
        counts
    }

    /// Fails unless every process still runs: nothing was restarted or died.
    fn assert_nothing_restarted(&mut self) {
        for (name, h) in std::iter::once(("api", &mut self.api)).chain(
            self.workers
                .iter_mut()
                .map(|w| ("worker", w))
                .collect::<Vec<_>>(),
        ) {
            let status = h.child.try_wait().unwrap();
            assert!(status.is_none(), "the {name} process exited: {status:?}");
        }
    }
}

/// How long recovery took after the link came back.
struct Recovery {
    /// Until every process answered `/health/ready` with 200.
    ready: Duration,
    /// Until the load had ended and every stored event was completed.
    drained: Duration,
}

impl std::fmt::Display for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "every process ready {:.1} s and the backlog drained {:.1} s after the link came back",
            self.ready.as_secs_f64(),
            self.drained.as_secs_f64()
        )
    }
}

/// Wait for the processes to be ready and the backlog (with the rest of the load) to drain,
/// timing both from `healed`. Then reconcile; returns the recovery and the repeated forwards.
async fn recover(
    fleet: &Fleet,
    healed: Instant,
    running: tokio::task::JoinHandle<Vec<Delivery>>,
) -> (Recovery, Vec<Delivery>) {
    let _ready = eventually(
        "every process to be ready again after the link came back",
        Duration::from_secs(60),
        || fleet.ready(),
        |r| r.iter().all(|ok| *ok),
    )
    .await;
    let ready = healed.elapsed();
    let deliveries = running.await.unwrap();
    let pool = sqlx::PgPool::connect(&fleet.db.url).await.unwrap();
    let _left = eventually(
        "the backlog to drain after the link came back",
        Duration::from_secs(120),
        || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM deliveries WHERE status <> 'completed'",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        },
        |left| *left == 0,
    )
    .await;
    let drained = healed.elapsed();
    pool.close().await;
    (Recovery { ready, drained }, deliveries)
}

/// Events the target received more than once must have been in flight on the worker that was
/// cut off when it was: `cut` is that worker's lease owner mark and the store's clock at the
/// cut (`None`: no worker was cut off, so nothing may be received twice). In flight means the
/// event's last transition before the cut was an attempt by that worker (its forward may have
/// reached the target while the answer, or the outcome, was lost in the cut, and the event was
/// run again), or an attempt by it lost its lease to a later one. Returns how many events were
/// received twice or more.
async fn check_duplicates(fleet: &Fleet, cut: Option<(&str, &str)>) -> usize {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in fleet.target.succeeded() {
        let id = r.headers["x-hookd-event-id"].to_str().unwrap().to_owned();
        *seen.entry(id).or_default() += 1;
    }
    let twice: Vec<&String> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| k)
        .collect();
    let pool = sqlx::PgPool::connect(&fleet.db.url).await.unwrap();
    for id in &twice {
        let Some((mark, cut_at)) = cut else {
            panic!("event {id} forwarded twice with no worker cut off");
        };
        let transitions: Vec<(String, String, bool)> = sqlx::query_as(
            "SELECT to_status, COALESCE(detail, ''), at <= $2::timestamptz
             FROM event_transitions WHERE event_id = $1::uuid ORDER BY id",
        )
        .bind(id.as_str())
        .bind(cut_at)
        .fetch_all(&pool)
        .await
        .unwrap();
        let at_cut = transitions.iter().rfind(|t| t.2);
        let in_flight =
            at_cut.is_some_and(|(to, detail, _)| to == "processing" && detail.contains(mark));
        // Or its claim was: sent during the cut, it ran when TCP got it through, and the lease
        // expired before a renewal did (the process's connections resume one by one, each at its
        // next retransmission); a later attempt took the expired lease over.
        let by_cut = transitions
            .iter()
            .position(|(to, detail, _)| to == "processing" && detail.contains(mark));
        let lost_lease = by_cut.is_some_and(|i| {
            transitions[i + 1..]
                .iter()
                .any(|(_, detail, _)| detail.ends_with("(previous lease expired)"))
        });
        assert!(
            in_flight || lost_lease,
            "event {id} forwarded twice but was neither in flight on the cut-off worker ({mark}) \
             when it was cut off nor claimed by it and taken over after its lease expired: \
             {transitions:?}"
        );
    }
    pool.close().await;
    twice.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_and_postgres_partitioned_for_10s_under_load() {
    // A lease shorter than the partition: the other worker takes over the cut-off one's events.
    let (mut fleet, _) = Fleet::start(3, None, Duration::from_millis(10)).await;
    let running = load(
        apis(vec![fleet.api.url.clone()]),
        600,
        16,
        Duration::from_millis(20),
    );
    fleet.target.wait_hits(50, Duration::from_secs(60)).await;
    let mark = fleet.owner_mark(0);
    let cut_at = fleet.clock().await;
    fleet.net.partition(&fleet.worker_hosts[0], &fleet.pg_host);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let ready_during = fleet.ready().await;
    fleet.net.heal(&fleet.worker_hosts[0], &fleet.pg_host);
    let healed = Instant::now();
    let healed_at = fleet.clock().await;
    let (recovery, deliveries) = recover(&fleet, healed, running).await;
    let repeats = reconcile(
        &fleet.db.url,
        &deliveries,
        &fleet.target,
        Duration::from_secs(30),
    )
    .await;
    let twice = check_duplicates(&fleet, Some((&mark, &cut_at))).await;
    fleet.assert_nothing_restarted();
    let takeovers = fleet.takeovers().await;
    // The cut-off worker leaves the Redis queue's consumers once its store stops answering, so
    // the other worker reads its partitions: only what it had read before it left (and events
    // of the first seconds) wait for the link.
    let (received, waited) = fleet.waited(&cut_at, &healed_at).await;
    assert!(
        waited * 5 <= received,
        "{waited} of {received} events received during the cut waited for it: the cut-off \
         worker kept partitions it could not process"
    );
    eprintln!(
        "worker <-> PostgreSQL partitioned 10 s: ready (api, w1, w2) at the end of it \
         {ready_during:?}; of {received} events received during it {waited} were completed only \
         after it; {recovery}; {twice} events \
         forwarded twice ({repeats} repeats), all in flight on the cut-off worker; \
         {takeovers} attempts took over an expired lease"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_and_redis_partitioned_for_10s_under_load() {
    let (mut fleet, _) = Fleet::start(3, None, Duration::from_millis(10)).await;
    let running = load(
        apis(vec![fleet.api.url.clone()]),
        600,
        16,
        Duration::from_millis(20),
    );
    fleet.target.wait_hits(50, Duration::from_secs(60)).await;
    let cut_at = fleet.clock().await;
    fleet.net.partition(&fleet.api_host, &fleet.redis_host);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let ready_during = fleet.ready().await;
    fleet.net.heal(&fleet.api_host, &fleet.redis_host);
    let healed = Instant::now();
    let healed_at = fleet.clock().await;
    let (recovery, deliveries) = recover(&fleet, healed, running).await;
    let retried = deliveries.iter().filter(|d| d.tries.len() > 1).count();
    let repeats = reconcile(
        &fleet.db.url,
        &deliveries,
        &fleet.target,
        Duration::from_secs(30),
    )
    .await;
    // No worker was cut off: nothing may be forwarded twice.
    let twice = check_duplicates(&fleet, None).await;
    // The workers' sweeper enqueues what the API could not: events do not wait for the link.
    let (received, waited) = fleet.waited(&cut_at, &healed_at).await;
    let complaints = fleet.complaints("api.log");
    assert!(
        !complaints.is_empty(),
        "the API noticed that Redis was out of reach (its warnings)"
    );
    fleet.assert_nothing_restarted();
    let takeovers = fleet.takeovers().await;
    eprintln!(
        "api <-> Redis partitioned 10 s: ready (api, w1, w2) at the end of it {ready_during:?}; \
         {} warnings in the API's log, the first: {}; of {received} events received during it \
         {waited} were completed only after it; {retried} deliveries retried by the provider; {recovery}; \
         {twice} events forwarded twice ({repeats} repeats); {takeovers} \
         attempts took over an expired lease",
        complaints.len(),
        complaints[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_link_slow_and_lossy_under_load() {
    let (mut fleet, relay) = Fleet::start(
        4,
        Some((Duration::from_millis(200), 0.05)),
        Duration::from_millis(10),
    )
    .await;
    let relay = relay.unwrap();
    let running = load(
        apis(vec![fleet.api.url.clone()]),
        400,
        16,
        Duration::from_millis(25),
    );
    fleet.target.wait_hits(50, Duration::from_secs(60)).await;
    // `tc ... netem` on PostgreSQL's link where the kernel has it, else the relay every hookd
    // process reaches PostgreSQL through.
    let netem = fleet.pg_host.degrade(200, 5.0);
    relay.degrade(!netem);
    let before = fleet.target.succeeded().len();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let during = fleet.target.succeeded().len() - before;
    let ready_during = fleet.ready().await;
    if netem {
        fleet.pg_host.restore();
    }
    relay.degrade(false);
    let healed = Instant::now();
    let (recovery, deliveries) = recover(&fleet, healed, running).await;
    let retried = deliveries.iter().filter(|d| d.tries.len() > 1).count();
    let repeats = reconcile(
        &fleet.db.url,
        &deliveries,
        &fleet.target,
        Duration::from_secs(30),
    )
    .await;
    // Slow is not cut off: leases are renewed in time, nothing runs twice.
    let twice = check_duplicates(&fleet, None).await;
    fleet.assert_nothing_restarted();
    let takeovers = fleet.takeovers().await;
    eprintln!(
        "PostgreSQL link +200 ms round trip, 5% loss, 10 s ({}): {during} forwards during it; \
         ready (api, w1, w2) at the end of it \
         {ready_during:?}; {retried} deliveries retried by the provider; {recovery}; {twice} events forwarded twice ({repeats} repeats); {takeovers} \
         attempts took over an expired lease",
        if netem {
            "tc netem".to_owned()
        } else {
            format!(
                "no sch_netem in this kernel: a relay, {} segments late by a retransmission",
                relay.lost()
            )
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_host_cut_off_longer_than_its_lease() {
    let (mut fleet, _) = Fleet::start(3, None, Duration::from_millis(100)).await;
    let running = load(
        apis(vec![fleet.api.url.clone()]),
        600,
        16,
        Duration::from_millis(20),
    );
    fleet.target.wait_hits(50, Duration::from_secs(60)).await;
    let mark = fleet.owner_mark(0);
    fleet.wait_in_flight(&mark).await;
    let cut_at = fleet.clock().await;
    fleet.worker_hosts[0].cut();
    // Three leases: its events are taken over by the other worker meanwhile.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let ready_during = fleet.ready().await;
    fleet.worker_hosts[0].reconnect();
    let healed = Instant::now();
    let (recovery, deliveries) = recover(&fleet, healed, running).await;
    let repeats = reconcile(
        &fleet.db.url,
        &deliveries,
        &fleet.target,
        Duration::from_secs(30),
    )
    .await;
    let twice = check_duplicates(&fleet, Some((&mark, &cut_at))).await;
    fleet.assert_nothing_restarted();
    let takeovers = fleet.takeovers().await;
    // The worker had events in flight when it was cut off: another took them over once their
    // leases expired.
    assert!(takeovers > 0, "no attempt took over an expired lease");
    eprintln!(
        "worker host cut off 9 s (lease 3 s): ready (api, w1, w2) at the end of it \
         {ready_during:?}; {recovery}; {twice} events \
         forwarded twice ({repeats} repeats), all in flight on the cut-off worker; \
         {takeovers} attempts took over an expired lease"
    );
}

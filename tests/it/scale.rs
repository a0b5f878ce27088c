//! The reference architecture as separate OS processes: PostgreSQL + Redis, several `hookd api`
//! and `hookd worker` processes, under load and under faults.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use hookd::event::EventStatus;
use hookd::store::EventStore;
use tokio::sync::Semaphore;

/// Variables that put a process on Redis under this test's own prefix.
fn redis_vars(url: &str, prefix: &str) -> Vec<(&'static str, String)> {
    vec![
        ("REDIS_URL", url.to_owned()),
        ("HOOKD_REDIS_PREFIX", prefix.to_owned()),
        ("HOOKD_SWEEP_GRACE_SECS", "1".to_owned()),
        ("HOOKD_WORKERS", "16".to_owned()),
        // Two cores run five processes and PostgreSQL here: leave room for slow renewals, so
        // a lease expires only when its holder is really gone.
        ("HOOKD_LEASE_SECS", "5".to_owned()),
        ("HOOKD_DB_POOL_SIZE", "6".to_owned()),
    ]
}

/// POST every body (signed now) to the APIs round-robin, `concurrency` at a time.
/// Returns the status codes in the order of `bodies`.
async fn send_all(apis: &[String], bodies: Vec<String>, concurrency: usize) -> Vec<u16> {
    let http = reqwest::Client::new();
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut handles = Vec::new();
    for (i, body) in bodies.into_iter().enumerate() {
        let permit = permits.clone().acquire_owned().await.unwrap();
        let (http, url) = (http.clone(), apis[i % apis.len()].clone());
        handles.push(tokio::spawn(async move {
            let mut status = 0;
            // A provider retries on connection errors and 5xx; so does this client, a little.
            for _ in 0..5 {
                match stripe_request(&http, &url, &body).send().await {
                    Ok(r) if r.status().is_server_error() => status = r.status().as_u16(),
                    Ok(r) => {
                        status = r.status().as_u16();
                        break;
                    }
                    Err(_) => status = 0,
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            drop(permit);
            status
        }));
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

async fn open_store(db: &TestDb) -> Arc<dyn EventStore> {
    hookd::store::connect(&db.url, 2, Duration::from_secs(5))
        .await
        .unwrap()
}

async fn wait_completed(store: &Arc<dyn EventStore>, n: u64, within: Duration) {
    let counts = eventually(
        format!("{n} events to complete"),
        within,
        || async { store.counts().await.unwrap() },
        |counts| counts.get(&EventStatus::Completed).copied().unwrap_or(0) >= n,
    )
    .await;
    assert_eq!(
        counts.values().sum::<u64>(),
        n,
        "nothing else stored: {counts:?}"
    );
}

/// How many times the target received each event.
fn forwards_per_event(target: &Target) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for r in target.received() {
        let id = r.headers["x-hookd-event-id"].to_str().unwrap().to_owned();
        *seen.entry(id).or_insert(0) += 1;
    }
    seen
}

fn distinct_bodies(n: usize) -> Vec<String> {
    (0..n)
        .map(|_| stripe_event("payment_intent.succeeded").1)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_apis_three_workers_5000_events_each_forwarded_exactly_once() {
    let db = TestDb::new(Backend::Postgres).await;
    let target = Target::start(Behaviour::default()).await;
    let routes = forward_route(&target.url);
    let vars = redis_vars(&redis_url(), &unique_prefix());
    let mut procs = Vec::new();
    for i in 0..2 {
        procs.push(Hookd::spawn_with(&db, &routes, "api", &vars, &format!("api{i}.log")).await);
    }
    for i in 0..3 {
        procs.push(
            Hookd::spawn_with(&db, &routes, "worker", &vars, &format!("worker{i}.log")).await,
        );
    }
    let apis: Vec<String> = procs[..2].iter().map(|p| p.url.clone()).collect();

    let distinct = distinct_bodies(5000);
    let mut bodies = distinct.clone();
    bodies.extend(distinct.iter().step_by(10).cloned()); // 10% duplicates
    let statuses = send_all(&apis, bodies, 64).await;
    let accepted = statuses.iter().filter(|s| **s == 202).count();
    let duplicates = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(
        (accepted, duplicates),
        (5000, 500),
        "every distinct event accepted once"
    );

    let store = open_store(&db).await;
    wait_completed(&store, 5000, Duration::from_secs(180)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = forwards_per_event(&target);
    assert_eq!(seen.len(), 5000);
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        repeated.is_empty(),
        "forwarded more than once: {repeated:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_worker_mid_run_loses_nothing() {
    let db = TestDb::new(Backend::Postgres).await;
    let target = Target::start(Behaviour {
        delay: Duration::from_millis(20),
        ..Default::default()
    })
    .await;
    let routes = forward_route(&target.url);
    let vars = redis_vars(&redis_url(), &unique_prefix());
    let api = Hookd::spawn_with(&db, &routes, "api", &vars, "api.log").await;
    let mut doomed = Hookd::spawn_with(&db, &routes, "worker", &vars, "doomed.log").await;
    let _survivor = Hookd::spawn_with(&db, &routes, "worker", &vars, "survivor.log").await;
    let statuses = send_all(std::slice::from_ref(&api.url), distinct_bodies(1000), 32).await;
    assert!(statuses.iter().all(|s| *s == 202));
    let store = open_store(&db).await;
    // Kill one worker while it has events in flight.
    target.wait_hits(300, Duration::from_secs(60)).await;
    doomed.child.kill().unwrap();
    doomed.child.wait().unwrap();
    wait_completed(&store, 1000, Duration::from_secs(120)).await;
    let seen = forwards_per_event(&target);
    assert_eq!(seen.len(), 1000, "every event forwarded");
    // Only events in flight at the kill (at most HOOKD_WORKERS) may be forwarded twice.
    let extra: usize = seen.values().map(|n| n - 1).sum();
    assert!(extra <= 16, "{extra} repeated forwards");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_mid_run_loses_nothing() {
    let db = TestDb::new(Backend::Postgres).await;
    let mut redis = PrivateRedis::start().await;
    let target = Target::start(Behaviour {
        delay: Duration::from_millis(5),
        ..Default::default()
    })
    .await;
    let routes = forward_route(&target.url);
    let vars = redis_vars(&redis.url(), "hookd");
    let serve = Hookd::spawn_with(&db, &routes, "serve", &vars, "serve.log").await;
    let apis = vec![serve.url.clone()];
    // Under load: webhooks keep arriving while Redis dies with everything in it (streams,
    // group, delayed set) and comes back empty.
    let load = tokio::spawn(async move { send_all(&apis, distinct_bodies(1000), 4).await });
    target.wait_hits(150, Duration::from_secs(60)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.up().await;
    let statuses = load.await.unwrap();
    for s in &statuses {
        assert_eq!(*s, 202, "accepted whether or not Redis is up");
    }
    let store = open_store(&db).await;
    wait_completed(&store, 1000, Duration::from_secs(60)).await;
    let seen = forwards_per_event(&target);
    assert_eq!(seen.len(), 1000);
    assert!(seen.values().all(|n| *n == 1), "no event forwarded twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_before_webhooks_arrive_then_everything_is_processed() {
    let db = TestDb::new(Backend::Postgres).await;
    let mut redis = PrivateRedis::reserve();
    let target = Target::start(Behaviour::default()).await;
    let routes = forward_route(&target.url);
    let vars = redis_vars(&redis.url(), "hookd");
    // hookd starts with Redis unreachable.
    let serve = Hookd::spawn_with(&db, &routes, "serve", &vars, "serve.log").await;
    let health: serde_json::Value = reqwest::get(format!("{}/health", serve.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["queue"]["status"], "down");
    assert_eq!(health["status"], "ok", "accepting without Redis");
    let statuses = send_all(std::slice::from_ref(&serve.url), distinct_bodies(200), 16).await;
    assert!(statuses.iter().all(|s| *s == 202));
    // Events the serve process claimed in their commit run without Redis; the others (enqueue
    // failed) wait for the sweeper once Redis is back.
    redis.up().await;
    let store = open_store(&db).await;
    wait_completed(&store, 200, Duration::from_secs(60)).await;
    let seen = forwards_per_event(&target);
    assert_eq!(seen.len(), 200);
    assert!(seen.values().all(|n| *n == 1));
}

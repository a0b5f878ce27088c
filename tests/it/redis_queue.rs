//! Redis Streams queue semantics against a real Redis (own key prefix per test) and a real
//! PostgreSQL store (own database per test).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;
use chrono::Utc;
use hookd::event::{ClaimedEvent, EventId, EventStatus, Outcome};
use hookd::queue::{Queue, RedisKeys, RedisQueue};
use hookd::queue::{RedisConfig, RedisTarget};
use hookd::store::{EventStore, Inserted};
use redis::AsyncCommands;

const LEASE: Duration = Duration::from_secs(30);

struct Fixture {
    _db: TestDb,
    store: Arc<dyn EventStore>,
    queue: Arc<RedisQueue>,
    keys: RedisKeys,
    redis: redis::aio::MultiplexedConnection,
}

async fn fixture_with(target: RedisTarget, url: &str) -> Fixture {
    let db = TestDb::new(Backend::Postgres).await;
    let store = hookd::store::connect(&db.url, 4, Duration::from_secs(2))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let config = RedisConfig {
        target,
        prefix: unique_prefix(),
        keep_completed: 3,
        keep_failed: 2,
        sweep_grace: Duration::from_secs(1),
    };
    let queue = RedisQueue::start(&config, store.clone(), Duration::from_millis(100));
    Fixture {
        _db: db,
        store,
        keys: queue.keys().clone(),
        queue,
        redis: redis_conn(url).await,
    }
}

async fn fixture() -> Fixture {
    fixture_with(RedisTarget::Single(redis_url()), &redis_url()).await
}

impl Fixture {
    async fn insert(&self) -> EventId {
        let (_, body) = stripe_event("charge.succeeded");
        match self
            .store
            .insert(&verified_stripe(&body).await, None)
            .await
            .unwrap()
        {
            Inserted::New(id) => id,
            Inserted::Duplicate(_) => unreachable!(),
        }
    }

    /// Poll the queue as worker `owner` until something is claimed, or fail after `within`.
    async fn next(&self, owner: &str, lease: Duration, within: Duration) -> Vec<ClaimedEvent> {
        eventually(
            format!("worker {owner} to claim something"),
            within,
            || async {
                self.queue
                    .next(owner, lease, 10, Duration::from_millis(100))
                    .await
                    .unwrap()
            },
            |got| !got.is_empty(),
        )
        .await
    }

    async fn finish(&self, e: &ClaimedEvent, owner: &str, outcome: Outcome) {
        assert!(self.store.finish(e.id, owner, &outcome).await.unwrap());
        self.queue.settle(e, &outcome).await.unwrap();
    }

    async fn xlen(&mut self, key: &str) -> usize {
        self.redis.xlen(key).await.unwrap()
    }

    async fn pending(&mut self) -> usize {
        let v: redis::Value = redis::cmd("XPENDING")
            .arg(&self.keys.stream)
            .arg("hookd")
            .query_async(&mut self.redis)
            .await
            .unwrap();
        match v {
            redis::Value::Array(items) => match &items[0] {
                redis::Value::Int(n) => *n as usize,
                _ => 0,
            },
            _ => 0,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_claim_ack_and_completed_record() {
    let mut f = fixture().await;
    let id = f.insert().await;
    f.queue.enqueue(id).await.unwrap();
    let got = f.next("w1", LEASE, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, id);
    assert!(
        got[0].delivery.is_some(),
        "the stream entry id travels with the claim"
    );
    assert_eq!(
        f.pending().await,
        1,
        "unacknowledged until the outcome is stored"
    );
    f.finish(
        &got[0],
        "w1",
        Outcome::Completed {
            detail: "ok".into(),
        },
    )
    .await;
    assert_eq!(f.pending().await, 0);
    let stream = f.keys.stream.clone();
    assert_eq!(
        f.xlen(&stream).await,
        0,
        "acknowledged messages are deleted"
    );
    let completed = f.keys.completed.clone();
    assert_eq!(f.xlen(&completed).await, 1);
    assert_eq!(
        f.store.event(id).await.unwrap().unwrap().status,
        EventStatus::Completed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_retry_is_delivered_when_due_then_dead_letters() {
    let mut f = fixture().await;
    let id = f.insert().await;
    f.queue.enqueue(id).await.unwrap();
    let got = f.next("w1", LEASE, Duration::from_secs(5)).await;
    let at = Utc::now() + chrono::Duration::milliseconds(600);
    let scheduled = Instant::now();
    f.finish(
        &got[0],
        "w1",
        Outcome::RetryAt {
            at,
            error: "HTTP 500".into(),
        },
    )
    .await;
    let delayed: usize = f.redis.zcard(&f.keys.delayed).await.unwrap();
    assert_eq!(delayed, 1);
    let again = f.next("w1", LEASE, Duration::from_secs(5)).await;
    let waited = scheduled.elapsed();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 2);
    assert!(
        waited >= Duration::from_millis(550),
        "delivered after {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(3),
        "delivered after {waited:?}"
    );
    let delayed: usize = f.redis.zcard(&f.keys.delayed).await.unwrap();
    assert_eq!(delayed, 0);

    f.finish(
        &again[0],
        "w1",
        Outcome::DeadLetter {
            error: "gave up".into(),
        },
    )
    .await;
    let dead: redis::streams::StreamRangeReply = f.redis.xrange_all(&f.keys.dead).await.unwrap();
    assert_eq!(dead.ids.len(), 1);
    let entry = &dead.ids[0];
    assert_eq!(entry.get::<String>("id").unwrap(), id.to_string());
    assert_eq!(entry.get::<String>("error").unwrap(), "gave up");
    assert_eq!(
        f.store.event(id).await.unwrap().unwrap().status,
        EventStatus::DeadLetter
    );
    assert_eq!(f.pending().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_records_are_trimmed_to_the_configured_counts() {
    let mut f = fixture().await;
    for i in 0..9 {
        let id = f.insert().await;
        f.queue.enqueue(id).await.unwrap();
        let got = f.next("w1", LEASE, Duration::from_secs(5)).await;
        let outcome = if i % 2 == 0 {
            Outcome::Completed {
                detail: String::new(),
            }
        } else {
            Outcome::DeadLetter { error: "x".into() }
        };
        f.finish(&got[0], "w1", outcome).await;
    }
    let (completed, dead) = (f.keys.completed.clone(), f.keys.dead.clone());
    assert_eq!(f.xlen(&completed).await, 3, "keep_completed = 3");
    assert_eq!(f.xlen(&dead).await, 2, "keep_failed = 2");
    // The store keeps the full history.
    let counts = f.store.counts().await.unwrap();
    assert_eq!(counts[&EventStatus::Completed], 5);
    assert_eq!(counts[&EventStatus::DeadLetter], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_consumers_message_is_reclaimed_after_its_lease() {
    let mut f = fixture().await;
    let id = f.insert().await;
    f.queue.enqueue(id).await.unwrap();
    let lease = Duration::from_millis(500);
    let first = f.next("doomed", lease, Duration::from_secs(5)).await;
    assert_eq!(first.len(), 1);
    // "doomed" dies: it never finishes, renews or acknowledges.
    let other = f.next("survivor", lease, Duration::from_secs(10)).await;
    assert_eq!(other.len(), 1, "reclaimed by another consumer");
    assert_eq!(other[0].id, id);
    assert_eq!(other[0].attempt, 2);
    // The dead consumer's late outcome is refused: the lease is the survivor's now.
    assert!(
        !f.store
            .finish(
                id,
                "doomed",
                &Outcome::Completed {
                    detail: String::new()
                }
            )
            .await
            .unwrap()
    );
    f.finish(
        &other[0],
        "survivor",
        Outcome::Completed {
            detail: String::new(),
        },
    )
    .await;
    assert_eq!(f.pending().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_messages_run_once() {
    let mut f = fixture().await;
    let id = f.insert().await;
    for _ in 0..3 {
        f.queue.enqueue(id).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = f.next("w1", LEASE, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1, "the store's claim lets one message through");
    let more = f
        .queue
        .next("w2", LEASE, 10, Duration::from_millis(200))
        .await
        .unwrap();
    assert!(more.is_empty());
    f.finish(
        &got[0],
        "w1",
        Outcome::Completed {
            detail: String::new(),
        },
    )
    .await;
    let stream = f.keys.stream.clone();
    assert_eq!(
        f.xlen(&stream).await,
        0,
        "the extra copies were acknowledged and deleted"
    );
    assert_eq!(f.pending().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeper_enqueues_committed_events_nobody_enqueued_and_only_one_sweeps() {
    let f = fixture().await;
    // Committed, but the process "died" before XADD.
    let id = f.insert().await;
    assert!(
        f.queue
            .next("w1", LEASE, 10, Duration::from_millis(100))
            .await
            .unwrap()
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        f.queue
            .sweep_once("other", Duration::from_secs(10))
            .await
            .unwrap(),
        1
    );
    // Another process does not sweep while the lease is held.
    assert_eq!(
        f.queue
            .sweep_once("me", Duration::from_secs(10))
            .await
            .unwrap(),
        0
    );
    let got = f.next("w1", LEASE, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, id);
    // Re-swept at most once per grace period.
    assert_eq!(
        f.queue
            .sweep_once("other", Duration::from_secs(10))
            .await
            .unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_redis_data_recreates_the_group() {
    let mut f = fixture().await;
    let id = f.insert().await;
    f.queue.enqueue(id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _: () = f.redis.del(&f.keys.stream).await.unwrap();
    // The message is gone with the data; the queue keeps working and the sweeper finds the event.
    assert!(
        f.queue
            .next("w1", LEASE, 10, Duration::from_millis(100))
            .await
            .unwrap()
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    f.queue
        .sweep_once("me", Duration::from_secs(10))
        .await
        .unwrap();
    let got = f.next("w1", LEASE, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
}

/// Three cluster nodes on loopback, made with Debian's redis-server and redis-cli.
struct LocalCluster {
    nodes: Vec<PrivateClusterNode>,
}

struct PrivateClusterNode {
    port: u16,
    _dir: tempfile::TempDir,
    child: std::process::Child,
}

impl Drop for PrivateClusterNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LocalCluster {
    async fn start() -> Self {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let dir = tempfile::tempdir().unwrap();
            let child = std::process::Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
                .arg("--cluster-config-file")
                .arg(dir.path().join("nodes.conf"))
                .arg("--dir")
                .arg(dir.path())
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server is required");
            nodes.push(PrivateClusterNode {
                port,
                _dir: dir,
                child,
            });
        }
        for n in &nodes {
            let _listening = eventually(
                format!("cluster node {} to listen", n.port),
                Duration::from_secs(10),
                || async { std::net::TcpStream::connect(("127.0.0.1", n.port)).map(drop) },
                Result::is_ok,
            )
            .await;
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = std::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli is required");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Self { nodes };
        let node_ok = |n: &PrivateClusterNode| {
            let out = std::process::Command::new("redis-cli")
                .args(["-p", &n.port.to_string(), "cluster", "info"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok")
        };
        eventually(
            "every cluster node to say cluster_state:ok",
            Duration::from_secs(20),
            || async { cluster.nodes.iter().map(node_ok).collect::<Vec<_>>() },
            |ok| ok.iter().all(|&ok| ok),
        )
        .await;
        cluster
    }

    fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_on_a_redis_cluster() {
    let cluster = LocalCluster::start().await;
    let urls = cluster.urls();
    let f = fixture_with(RedisTarget::Cluster(urls.clone()), &urls[0]).await;
    let id = f.insert().await;
    f.queue.enqueue(id).await.unwrap();
    let got = f.next("w1", LEASE, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    let at = Utc::now() + chrono::Duration::milliseconds(200);
    f.finish(
        &got[0],
        "w1",
        Outcome::RetryAt {
            at,
            error: "x".into(),
        },
    )
    .await;
    let again = f.next("w1", LEASE, Duration::from_secs(5)).await;
    assert_eq!(
        again.len(),
        1,
        "delayed retry promoted by the Lua script on the cluster"
    );
    f.finish(
        &again[0],
        "w1",
        Outcome::Completed {
            detail: String::new(),
        },
    )
    .await;
    // Every key of the queue hashes to one slot, which is what lets the scripts run there.
    let keys = f.keys.clone();
    let slot = |k: &str| {
        let out = std::process::Command::new("redis-cli")
            .args([
                "-p",
                &cluster.nodes[0].port.to_string(),
                "cluster",
                "keyslot",
                k,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let s = slot(&keys.stream);
    for k in [&keys.delayed, &keys.completed, &keys.dead, &keys.sweeper] {
        assert_eq!(slot(k), s);
    }
    assert_eq!(
        f.queue
            .sweep_once("me", Duration::from_secs(5))
            .await
            .unwrap(),
        0
    );
}

//! Redis Streams queue semantics against a real Redis (own key prefix per test) and a real
//! PostgreSQL store (own database per test).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;
use chrono::Utc;
use hookd::event::{ClaimedEvent, EventId, EventStatus, Outcome};
use hookd::queue::{PartitionKeys, Queue, RedisKeys, RedisQueue, partition_of};
use hookd::queue::{RedisConfig, RedisTarget};
use hookd::store::{EventStore, Inserted};
use redis::AsyncCommands;
use tokio::sync::watch;

const LEASE: Duration = Duration::from_secs(30);

/// A worker process's membership of the queue, in this test process.
struct Member {
    queue: Arc<RedisQueue>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Member {
    /// Leave as SIGTERM would: hand the partitions over at once.
    async fn leave(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    /// Stop as kill -9 would: no goodbye, the membership expires.
    fn crash(self) {
        self.task.abort();
    }
}

struct Fixture {
    _db: TestDb,
    store: Arc<dyn EventStore>,
    config: RedisConfig,
    queue: Arc<RedisQueue>,
    keys: RedisKeys,
    redis: redis::aio::MultiplexedConnection,
    /// The default consumer, `w`, when the fixture joined it.
    _member: Option<Member>,
}

/// A queue on `target` with `partitions` partitions (not consuming yet).
async fn bare_fixture(target: RedisTarget, url: &str, partitions: u32) -> Fixture {
    let db = TestDb::new(Backend::Postgres).await;
    let store = hookd::store::connect(&db.url, 4, Duration::from_secs(2))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let config = RedisConfig {
        target,
        prefix: unique_prefix(),
        partitions,
        member_ttl: Duration::from_secs(1),
        keep_completed: 3,
        keep_failed: 2,
        sweep_grace: Duration::from_secs(1),
    };
    let queue = RedisQueue::start(&config, store.clone(), Duration::from_millis(100));
    Fixture {
        _db: db,
        store,
        keys: queue.keys().clone(),
        config,
        queue,
        redis: redis_conn(url).await,
        _member: None,
    }
}

/// A queue on `target` consumed by `w` (lease 30 s).
async fn fixture_with(target: RedisTarget, url: &str, partitions: u32) -> Fixture {
    let mut f = bare_fixture(target, url, partitions).await;
    let (shutdown, rx) = watch::channel(false);
    let task = f.queue.consume("w".into(), LEASE, 32, rx);
    f._member = Some(Member {
        queue: f.queue.clone(),
        shutdown,
        task,
    });
    f
}

async fn fixture() -> Fixture {
    fixture_with(
        RedisTarget::Single(redis_url()),
        &redis_url(),
        RedisConfig::DEFAULT_PARTITIONS,
    )
    .await
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

    /// `n` new events, enqueued.
    async fn enqueue_many(&self, n: usize) -> Vec<EventId> {
        let mut ids = Vec::new();
        for _ in 0..n {
            let id = self.insert().await;
            self.queue.enqueue(id).await.unwrap();
            ids.push(id);
        }
        ids
    }

    /// Another worker process on the same queue, reading as `name`, blocking up to `poll`.
    fn member(&self, name: &str, lease: Duration, poll: Duration) -> Member {
        let queue = RedisQueue::start(&self.config, self.store.clone(), poll);
        let (shutdown, rx) = watch::channel(false);
        let task = queue.consume(name.into(), lease, 32, rx);
        Member {
            queue,
            shutdown,
            task,
        }
    }

    /// The keys of the partition an event's messages go to.
    fn part(&self, id: EventId) -> PartitionKeys {
        self.keys
            .partition(partition_of(id.0.as_bytes(), self.config.partitions))
            .clone()
    }

    /// Poll the queue as worker `owner` until something is claimed, or fail after `within`.
    async fn next(&self, owner: &str, lease: Duration, within: Duration) -> Vec<ClaimedEvent> {
        next_from(&self.queue, owner, lease, within).await
    }

    async fn finish(&self, e: &ClaimedEvent, owner: &str, outcome: Outcome) {
        assert!(self.store.finish(e.id, owner, &outcome).await.unwrap());
        self.queue.settle(e, &outcome).await.unwrap();
    }

    async fn xlen(&mut self, key: &str) -> usize {
        self.redis.xlen(key).await.unwrap()
    }

    /// Messages read and not acknowledged, over every partition.
    async fn pending(&mut self) -> usize {
        let mut total = 0;
        for p in self.keys.partitions.clone() {
            let v: redis::RedisResult<redis::Value> = redis::cmd("XPENDING")
                .arg(&p.stream)
                .arg("hookd")
                .query_async(&mut self.redis)
                .await;
            if let Ok(redis::Value::Array(items)) = v
                && let Some(redis::Value::Int(n)) = items.first()
            {
                total += *n as usize;
            }
        }
        total
    }
}

/// Poll `queue` as worker `owner` until something is claimed, or fail after `within`.
async fn next_from(
    queue: &RedisQueue,
    owner: &str,
    lease: Duration,
    within: Duration,
) -> Vec<ClaimedEvent> {
    eventually(
        format!("worker {owner} to claim something"),
        within,
        || async {
            queue
                .next(owner, lease, 10, Duration::from_millis(100))
                .await
                .unwrap()
        },
        |got| !got.is_empty(),
    )
    .await
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
    let part = f.part(id);
    assert_eq!(
        f.xlen(&part.stream).await,
        0,
        "acknowledged messages are deleted"
    );
    assert_eq!(f.xlen(&part.completed).await, 1);
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
    let part = f.part(id);
    let delayed: usize = f.redis.zcard(&part.delayed).await.unwrap();
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
    let delayed: usize = f.redis.zcard(&part.delayed).await.unwrap();
    assert_eq!(delayed, 0);

    f.finish(
        &again[0],
        "w1",
        Outcome::DeadLetter {
            error: "gave up".into(),
        },
    )
    .await;
    let dead: redis::streams::StreamRangeReply = f.redis.xrange_all(&part.dead).await.unwrap();
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
    // Records are kept per partition; with one partition that is the whole queue.
    let mut f = fixture_with(RedisTarget::Single(redis_url()), &redis_url(), 1).await;
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
    let part = f.keys.partition(0).clone();
    let (completed, dead) = (part.completed, part.dead);
    assert_eq!(f.xlen(&completed).await, 3, "keep_completed = 3");
    assert_eq!(f.xlen(&dead).await, 2, "keep_failed = 2");
    // The store keeps the full history.
    let counts = f.store.counts().await.unwrap();
    assert_eq!(counts[&EventStatus::Completed], 5);
    assert_eq!(counts[&EventStatus::DeadLetter], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_consumers_message_is_reclaimed_after_its_lease() {
    let mut f = bare_fixture(RedisTarget::Single(redis_url()), &redis_url(), 4).await;
    let id = f.insert().await;
    let lease = Duration::from_millis(500);
    let poll = Duration::from_millis(100);
    let doomed = f.member("doomed", lease, poll);
    f.queue.enqueue(id).await.unwrap();
    let first = next_from(&doomed.queue, "doomed", lease, Duration::from_secs(5)).await;
    assert_eq!(first.len(), 1);
    // "doomed" dies: it never finishes, renews, acknowledges or says goodbye.
    doomed.crash();
    let survivor = f.member("survivor", lease, poll);
    let other = next_from(&survivor.queue, "survivor", lease, Duration::from_secs(15)).await;
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
    survivor.leave().await;
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
    let stream = f.part(id).stream;
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
    let member = f._member.as_ref().unwrap();
    wait_assigned(&[member], f.config.partitions).await;
    // Redis loses every stream and consumer group; the event's message is gone with them.
    let id = f.insert().await;
    for p in f.keys.partitions.clone() {
        let _: () = f.redis.del(&p.stream).await.unwrap();
    }
    // The queue keeps working and the sweeper finds the event.
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
    let got = f.next("w1", LEASE, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_on_a_redis_cluster_with_partitions_on_every_master() {
    let cluster = LocalCluster::start(3, 1).await;
    let urls = cluster.urls();
    let f = fixture_with(
        RedisTarget::Cluster(urls.clone()),
        &urls[0],
        RedisConfig::DEFAULT_PARTITIONS,
    )
    .await;
    let id = f.insert().await;
    f.queue.enqueue(id).await.unwrap();
    let got = f.next("w1", LEASE, Duration::from_secs(10)).await;
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
    let again = f.next("w1", LEASE, Duration::from_secs(10)).await;
    assert_eq!(
        again.len(),
        1,
        "delayed retry promoted by the Lua script on the cluster"
    );
    let done = Outcome::Completed {
        detail: String::new(),
    };
    f.finish(&again[0], "w1", done.clone()).await;
    // Some traffic over every partition.
    for _ in 0..40 {
        let id = f.insert().await;
        f.queue.enqueue(id).await.unwrap();
    }
    let mut completed = 0;
    while completed < 40 {
        for e in f.next("w1", LEASE, Duration::from_secs(20)).await {
            f.finish(&e, "w1", done.clone()).await;
            completed += 1;
        }
    }
    // Each partition's keys share one slot (what lets its scripts run there), and hookd
    // computes slots as the cluster does.
    for p in &f.keys.partitions {
        let s = cluster.keyslot(&p.stream);
        assert_eq!(hookd::queue::slot(p.stream.as_bytes()), s);
        for k in [&p.delayed, &p.completed, &p.dead] {
            assert_eq!(cluster.keyslot(k), s, "{k}");
        }
    }
    assert_eq!(
        cluster.keyslot(&f.keys.sweeper),
        cluster.keyslot(&f.keys.members)
    );
    // The partitions are spread over every master, not kept on one.
    let masters: Vec<&ClusterNode> = cluster.nodes.iter().filter(|n| n.is_master()).collect();
    assert_eq!(masters.len(), 3);
    let pattern = format!("{{{}:*}}:stream", f.config.prefix);
    for m in masters {
        let streams = m.cli(&["--scan", "--pattern", &pattern]);
        assert!(
            streams.lines().count() >= 3,
            "master {} holds {:?}",
            m.port,
            streams
        );
    }
    assert_eq!(
        f.queue
            .sweep_once("me", Duration::from_secs(5))
            .await
            .unwrap(),
        0
    );
}

/// A worker loop for a member: claim, complete, settle, until aborted.
fn work(
    member: &Member,
    store: Arc<dyn EventStore>,
    name: &str,
    lease: Duration,
) -> tokio::task::JoinHandle<()> {
    let (queue, name) = (member.queue.clone(), name.to_owned());
    tokio::spawn(async move {
        let done = Outcome::Completed {
            detail: String::new(),
        };
        loop {
            let Ok(events) = queue
                .next(&name, lease, 10, Duration::from_millis(100))
                .await
            else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            for e in events {
                if store.finish(e.id, &name, &done).await.unwrap_or(false) {
                    let _ = queue.settle(&e, &done).await;
                }
            }
        }
    })
}

/// Wait until `members` own every partition between them, each at least one, none twice.
async fn wait_assigned(members: &[&Member], partitions: u32) {
    let all: BTreeSet<u32> = (0..partitions).collect();
    eventually(
        format!("{} members to share {partitions} partitions", members.len()),
        Duration::from_secs(15),
        || async {
            members
                .iter()
                .map(|m| m.queue.owned_partitions())
                .collect::<Vec<_>>()
        },
        |owned| {
            let union: BTreeSet<u32> = owned.iter().flatten().copied().collect();
            owned.iter().all(|o| !o.is_empty())
                && union == all
                && owned.iter().map(BTreeSet::len).sum::<usize>() == all.len()
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_rebalance_as_consumers_come_and_go_and_every_event_completes() {
    let f = bare_fixture(RedisTarget::Single(redis_url()), &redis_url(), 16).await;
    let lease = Duration::from_secs(2);
    let poll = Duration::from_millis(200);
    let a = f.member("a", lease, poll);
    let b = f.member("b", lease, poll);
    wait_assigned(&[&a, &b], 16).await;
    let workers = [
        work(&a, f.store.clone(), "a", lease),
        work(&b, f.store.clone(), "b", lease),
    ];
    let mut ids = Vec::new();
    ids.extend(f.enqueue_many(100).await);
    // A third process joins: it gets partitions, the others give some up.
    let c = f.member("c", lease, poll);
    let c_works = work(&c, f.store.clone(), "c", lease);
    wait_assigned(&[&a, &b, &c], 16).await;
    ids.extend(f.enqueue_many(100).await);
    // One is killed: its partitions go to the others once its membership expires, and the
    // messages it had read are taken over after a lease.
    workers[1].abort();
    b.crash();
    wait_assigned(&[&a, &c], 16).await;
    ids.extend(f.enqueue_many(100).await);
    let store = f.store.clone();
    eventually(
        "every enqueued event to complete",
        Duration::from_secs(60),
        || async { store.counts().await.unwrap() },
        |counts| counts.get(&EventStatus::Completed).copied().unwrap_or(0) == ids.len() as u64,
    )
    .await;
    workers[0].abort();
    c_works.abort();
    a.leave().await;
    c.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_retry_is_read_on_time_without_polling_faster() {
    let f = bare_fixture(RedisTarget::Single(redis_url()), &redis_url(), 4).await;
    let poll = Duration::from_secs(5);
    let a = f.member("a", LEASE, poll);
    wait_assigned(&[&a], 4).await;
    let id = f.insert().await;
    a.queue.enqueue(id).await.unwrap();
    let got = next_from(&a.queue, "a", LEASE, Duration::from_secs(10)).await;
    // Scheduled by this process while its readers block for up to 5 s.
    let due = Utc::now() + chrono::Duration::milliseconds(1500);
    let retry = |at| Outcome::RetryAt {
        at,
        error: "HTTP 500".into(),
    };
    assert!(f.store.finish(id, "a", &retry(due)).await.unwrap());
    a.queue.settle(&got[0], &retry(due)).await.unwrap();
    let again = next_from(&a.queue, "a", LEASE, Duration::from_secs(10)).await;
    let late = Utc::now() - due;
    assert_eq!(again[0].id, id);
    assert!(
        late < chrono::Duration::seconds(1),
        "read {late} after it was due, with a 5 s poll"
    );
    // Scheduled before a restart: the new owner's reader blocks only until it is due.
    a.leave().await;
    let due = Utc::now() + chrono::Duration::milliseconds(2000);
    assert!(f.store.finish(id, "a", &retry(due)).await.unwrap());
    // This queue reads nothing, and its own wake-up only covers its 100 ms poll.
    f.queue.settle(&again[0], &retry(due)).await.unwrap();
    let b = f.member("b", LEASE, poll);
    let third = next_from(&b.queue, "b", LEASE, Duration::from_secs(10)).await;
    let late = Utc::now() - due;
    assert_eq!(third[0].id, id);
    assert_eq!(third[0].attempt, 3);
    assert!(
        late < chrono::Duration::seconds(1),
        "read {late} after it was due, with a 5 s poll"
    );
    b.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_of_processes_that_are_gone_are_forgotten() {
    let mut f = bare_fixture(RedisTarget::Single(redis_url()), &redis_url(), 1).await;
    let poll = Duration::from_millis(100);
    let a = f.member("a", LEASE, poll);
    wait_assigned(&[&a], 1).await;
    let stream = f.keys.partition(0).stream.clone();
    let consumers = |mut redis: redis::aio::MultiplexedConnection, stream: String| async move {
        let reply: redis::streams::StreamInfoConsumersReply =
            redis.xinfo_consumers(&stream, "hookd").await.unwrap();
        reply
            .consumers
            .into_iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
    };
    // a reads (and settles) a message: it is a consumer of the group now.
    let id = f.insert().await;
    f.queue.enqueue(id).await.unwrap();
    let got = next_from(&a.queue, "a", LEASE, Duration::from_secs(10)).await;
    let done = Outcome::Completed {
        detail: String::new(),
    };
    assert!(f.store.finish(id, "a", &done).await.unwrap());
    a.queue.settle(&got[0], &done).await.unwrap();
    assert_eq!(consumers(f.redis.clone(), stream.clone()).await, ["a"]);
    // kill -9: its consumer stays behind, idle, with nothing pending.
    a.crash();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let b = f.member("b", LEASE, poll);
    wait_assigned(&[&b], 1).await;
    eventually(
        "the new owner to forget a",
        Duration::from_secs(10),
        || consumers(f.redis.clone(), stream.clone()),
        |names| !names.iter().any(|n| n == "a"),
    )
    .await;
    b.leave().await;
    let _: () = f.redis.del(&stream).await.unwrap();
}

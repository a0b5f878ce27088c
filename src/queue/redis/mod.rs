//! Redis Streams queue for many API and worker processes over one PostgreSQL, split into
//! partitions so that a Redis Cluster spreads the work over all its masters.
//!
//! Keys (`keys.rs`): each partition's stream, delayed set and job records share a hash tag of
//! their own (`{<prefix>:<n>:<k>}`), so a partition's Lua scripts run in one slot and the
//! partitions land on different masters; the sweeper lease and the membership of worker
//! processes are fleet-wide under `{<prefix>}`. An event's partition is `partition_of` its id,
//! or, for an ordered event announced with its line, of the line (route and key), so one
//! process reads the events of a key.
//! Each worker process owns some partitions (`partitions.rs`) and reads each with a reader of
//! its own (`reader.rs`) into a bounded read-ahead (`inbox.rs`) that the worker's `next()`
//! claims from.
//!
//! A message only says "look at event X": the store's claim decides whether it runs, so a
//! duplicate or stale message is acknowledged and dropped. A message is acknowledged only after
//! the store has the attempt's outcome. Anything Redis loses (it keeps nothing on disk here) is
//! found again by the sweeper, which re-enqueues committed events nobody claimed in time. This
//! module must never decide an outcome, nor drop a message before the store has recorded what
//! became of its event.

mod conn;
mod inbox;
mod keys;
mod partitions;
mod rate;
mod reader;
mod scripts;

pub use self::keys::{Keys, PartitionKeys, partition_of, slot};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use redis::{RedisResult, Value};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use self::conn::{Conn, Live};
use self::inbox::{Delivery, Inbox};
use self::scripts::Scripts;
use super::{Queue, QueueError, RedisConfig};
use crate::event::{ClaimedEvent, EventId, Outcome};
use crate::store::{Claim, Leases};

const GROUP: &str = "hookd";
/// Enqueue hints waiting for the background writer; beyond this they are dropped and the sweeper
/// picks the events up.
const ENQUEUE_BUFFER: usize = 65_536;
const ENQUEUE_BATCH: usize = 512;

impl From<redis::RedisError> for QueueError {
    fn from(e: redis::RedisError) -> Self {
        Self::Redis(e.to_string())
    }
}

/// This process as a consumer of the queue: its name and how it reads.
pub(super) struct Consumer {
    /// Member and consumer-group name (the process's instance name).
    member: String,
    /// Messages idle this long belong to a consumer that died or gave the partition up.
    lease: Duration,
    read_ahead: usize,
    /// Messages one reader reads at once: its part of the read-ahead.
    share: AtomicUsize,
    /// The live members at the last heartbeat.
    members: std::sync::Mutex<Vec<String>>,
}

impl Consumer {
    fn share(&self) -> usize {
        self.share.load(Ordering::Relaxed).max(1)
    }

    fn members(&self) -> Vec<String> {
        self.members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_members(&self, members: &[String]) {
        *self.members.lock().unwrap_or_else(|e| e.into_inner()) = members.to_vec();
    }

    /// Split the read-ahead between `owned` readers, so none waits for credits another holds.
    fn set_share(&self, owned: usize) {
        let share = (self.read_ahead / owned.max(1)).max(1);
        self.share.store(share, Ordering::Relaxed);
    }
}

/// The Redis Streams queue.
pub struct RedisQueue {
    store: Arc<dyn Leases>,
    keys: Keys,
    config: RedisConfig,
    conn: Conn,
    scripts: Scripts,
    inbox: Inbox,
    /// The longest a reader blocks (the worker poll interval).
    max_block: Duration,
    /// Each hint with the partition it goes to.
    enqueue_tx: mpsc::Sender<(EventId, u32)>,
    /// Hints accepted by `enqueue` and not yet written.
    unwritten: AtomicUsize,
    /// Retries this process scheduled that fall due before a reader's block ends: partition
    /// and due time (ms), for the alarm that promotes them on time.
    alarm_tx: mpsc::UnboundedSender<(u32, i64)>,
    /// The partitions this process reads now.
    owned: std::sync::Mutex<BTreeSet<u32>>,
}

impl RedisQueue {
    /// Build the queue and start its background enqueue writer. Connects lazily: Redis may be
    /// down now and come up later. Nothing is read until [`RedisQueue::consume`].
    pub fn start(config: &RedisConfig, store: Arc<dyn Leases>, max_block: Duration) -> Arc<Self> {
        let (enqueue_tx, enqueue_rx) = mpsc::channel(ENQUEUE_BUFFER);
        let (alarm_tx, alarm_rx) = mpsc::unbounded_channel();
        let queue = Arc::new(Self {
            store,
            keys: Keys::new(&config.prefix, config.partitions),
            config: config.clone(),
            conn: Conn::new(config.target.clone(), Duration::from_secs(2)),
            scripts: Scripts::new(),
            inbox: Inbox::new(),
            max_block,
            enqueue_tx,
            unwritten: AtomicUsize::new(0),
            alarm_tx,
            owned: Default::default(),
        });
        tokio::spawn(queue.clone().enqueue_writer(enqueue_rx));
        tokio::spawn(queue.clone().alarm(alarm_rx));
        queue
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The partitions this process reads now (none before [`RedisQueue::consume`]).
    pub fn owned_partitions(&self) -> BTreeSet<u32> {
        self.owned.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_owned(&self, owned: BTreeSet<u32>) {
        *self.owned.lock().unwrap_or_else(|e| e.into_inner()) = owned;
    }

    /// Join the worker processes as `member`: own a share of the partitions, read them with up
    /// to `read_ahead` messages waiting for a worker, and take over messages left idle for
    /// `lease`. Runs until `shutdown`, then leaves. Only processes that run workers call this.
    pub fn consume(
        self: &Arc<Self>,
        member: String,
        lease: Duration,
        read_ahead: usize,
        shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let read_ahead = read_ahead.max(1);
        self.inbox.open(read_ahead);
        let consumer = Arc::new(Consumer {
            member,
            lease,
            read_ahead,
            share: AtomicUsize::new(read_ahead),
            members: Default::default(),
        });
        tokio::spawn(partitions::run(self.clone(), consumer, shutdown))
    }

    /// The partition an event's messages go to, unless it is announced with its order line.
    fn partition(&self, id: EventId) -> u32 {
        partition_of(id.0.as_bytes(), self.config.partitions)
    }

    /// The partition of an order line: the route's name, a NUL (no name has one, so two
    /// lines never share the bytes) and the key.
    fn line_partition(&self, route: &str, key: &str) -> u32 {
        let line = [route.as_bytes(), b"\0", key.as_bytes()].concat();
        partition_of(&line, self.config.partitions)
    }

    /// Hand a hint to the writer task.
    fn send_hint(&self, id: EventId, partition: u32) -> Result<(), QueueError> {
        // Counted before sending, so the writer never subtracts what was not added.
        self.unwritten.fetch_add(1, Ordering::SeqCst);
        self.enqueue_tx.try_send((id, partition)).map_err(|_| {
            self.unwritten.fetch_sub(1, Ordering::SeqCst);
            QueueError::Redis("enqueue buffer full".into())
        })
    }

    /// Writes enqueue hints to the streams in pipelined batches, off the request path.
    async fn enqueue_writer(self: Arc<Self>, mut rx: mpsc::Receiver<(EventId, u32)>) {
        let mut batch = Vec::with_capacity(ENQUEUE_BATCH);
        while rx.recv_many(&mut batch, ENQUEUE_BATCH).await > 0 {
            if let Err(e) = self.xadd_all(&batch).await {
                self.conn.reset();
                tracing::warn!(error = %e, events = batch.len(), "cannot enqueue; the sweeper will re-enqueue them");
            }
            self.unwritten.fetch_sub(batch.len(), Ordering::SeqCst);
            batch.clear();
        }
    }

    /// Wait (up to `timeout`) until every enqueue hint accepted so far has been written or has
    /// failed. Called at shutdown after the HTTP server has stopped.
    pub async fn flush(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.unwritten.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Add a message for each event to its partition's stream: one pipeline per partition (a
    /// cluster refuses a pipeline across slots), all partitions at once.
    async fn xadd_all(&self, hints: &[(EventId, u32)]) -> Result<(), QueueError> {
        let mut by_partition: BTreeMap<u32, redis::Pipeline> = BTreeMap::new();
        for (id, partition) in hints {
            let stream = &self.keys.partition(*partition).stream;
            by_partition
                .entry(*partition)
                .or_default()
                .cmd("XADD")
                .arg(stream)
                .arg("*")
                .arg("id")
                .arg(id.to_string())
                .ignore();
        }
        self.run_pipelines(by_partition.into_values()).await
    }

    /// Run pipelines concurrently; the first error, if any.
    async fn run_pipelines(
        &self,
        pipes: impl Iterator<Item = redis::Pipeline>,
    ) -> Result<(), QueueError> {
        let c = self.conn.get().await?;
        let mut set = JoinSet::new();
        for pipe in pipes {
            let mut c = c.clone();
            set.spawn(async move { pipe.query_async::<()>(&mut c).await });
        }
        let mut first = Ok(());
        while let Some(done) = set.join_next().await {
            let r = match done {
                Ok(r) => r.map_err(QueueError::from),
                Err(e) => Err(QueueError::Redis(e.to_string())),
            };
            first = first.and(r);
        }
        first
    }

    /// Create a partition's consumer group if it does not exist (also after Redis lost its
    /// data). It starts at the stream's beginning, so messages added before it are read.
    async fn ensure_group(&self, c: &mut Live, stream: &str) -> Result<(), QueueError> {
        let r: RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(c)
            .await;
        match r {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Move a partition's due retries (up to `max`) to its stream; the earliest due time left.
    async fn promote(
        &self,
        c: &mut Live,
        keys: &PartitionKeys,
        max: u32,
    ) -> Result<Option<i64>, QueueError> {
        let (_moved, next_due): (i64, i64) = self
            .scripts
            .promote
            .key(&keys.delayed)
            .key(&keys.stream)
            .arg(chrono::Utc::now().timestamp_millis())
            .arg(max)
            .invoke_async(c)
            .await?;
        Ok((next_due >= 0).then_some(next_due))
    }

    /// Promotes retries this process scheduled at their due time, when that comes before the
    /// partition's reader would look again: the message wakes the reader's blocking read at
    /// once. Only an accelerator; the delayed set keeps the retry if this process dies.
    async fn alarm(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<(u32, i64)>) {
        let mut due: BTreeSet<(i64, u32)> = BTreeSet::new();
        loop {
            let sleep = match due.first() {
                Some((at, _)) => {
                    let ms = (*at - chrono::Utc::now().timestamp_millis()).max(0);
                    Duration::from_millis(ms as u64)
                }
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                got = rx.recv() => match got {
                    Some((p, at)) => { due.insert((at, p)); }
                    None => return,
                },
                _ = tokio::time::sleep(sleep) => {
                    let now = chrono::Utc::now().timestamp_millis();
                    let ready: BTreeSet<u32> = due.iter().take_while(|(at, _)| *at <= now).map(|(_, p)| *p).collect();
                    due.retain(|(at, _)| *at > now);
                    for p in ready {
                        let keys = self.keys.partition(p).clone();
                        let promoted = async { self.promote(&mut self.conn.get().await?, &keys, 1000).await };
                        if let Err(e) = promoted.await {
                            tracing::debug!(partition = p, error = %e, "cannot promote a due retry; its reader will");
                        }
                    }
                }
            }
        }
    }

    /// Acknowledge and delete messages that need no processing, per partition.
    async fn drop_messages(&self, stale: &[Delivery]) -> Result<(), QueueError> {
        let mut by_partition: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
        for d in stale {
            by_partition
                .entry(d.partition)
                .or_default()
                .push(d.message.as_str());
        }
        let pipes = by_partition.into_iter().map(|(p, ids)| {
            let stream = &self.keys.partition(p).stream;
            let mut pipe = redis::pipe();
            pipe.atomic()
                .cmd("XACK")
                .arg(stream)
                .arg(GROUP)
                .arg(&ids)
                .ignore()
                .cmd("XDEL")
                .arg(stream)
                .arg(&ids)
                .ignore();
            pipe
        });
        self.run_pipelines(pipes).await
    }

    /// Delete the consumers of processes that are gone from a partition's group, so a fleet
    /// that restarts often does not pile up consumers. Best effort.
    async fn forget_consumers(&self, c: &mut Live, keys: &PartitionKeys, consumer: &Consumer) {
        let mut call = self.scripts.forget_consumers.key(&keys.stream);
        call.arg(GROUP)
            .arg(self.config.member_ttl.as_millis() as u64 * 2)
            .arg(consumer.members());
        match call.invoke_async::<i64>(c).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                partition = keys.index,
                consumers = n,
                "forgot the consumers of processes that are gone"
            ),
            Err(e) => {
                tracing::debug!(partition = keys.index, error = %e, "cannot forget old consumers")
            }
        }
    }

    /// Give messages read but never handed to a worker back to their partitions as new
    /// messages, so the next owner reads them at once instead of after a lease.
    async fn hand_back(&self, unread: Vec<Delivery>) -> Result<(), QueueError> {
        let mut by_partition: BTreeMap<u32, Vec<Delivery>> = BTreeMap::new();
        for d in unread {
            by_partition.entry(d.partition).or_default().push(d);
        }
        let mut c = self.conn.get().await?;
        for (p, messages) in by_partition {
            let mut call = self.scripts.hand_back.key(&self.keys.partition(p).stream);
            call.arg(GROUP);
            for d in &messages {
                call.arg(&d.message)
                    .arg(d.event.map(|e| e.to_string()).unwrap_or_default());
            }
            call.invoke_async::<i64>(&mut c).await?;
        }
        Ok(())
    }

    /// Run the outbox sweeper every `every` while this process holds the fleet-wide sweeper lease.
    pub async fn run_sweeper(self: Arc<Self>, owner: String, mut shutdown: watch::Receiver<bool>) {
        let every = (self.config.sweep_grace / 2).max(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = async { let _ = shutdown.wait_for(|s| *s).await; } => return,
            }
            match self.sweep_once(&owner, every * 3).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(events = n, "sweeper re-enqueued events nobody claimed"),
                Err(e) => {
                    self.conn.reset();
                    tracing::debug!(error = %e, "sweep skipped");
                }
            }
        }
    }

    /// One sweep, if this process is (or becomes) the sweeper. Returns how many events it
    /// re-enqueued.
    pub async fn sweep_once(&self, owner: &str, lease: Duration) -> Result<usize, QueueError> {
        let mut c = self.conn.get().await?;
        let leader: i64 = self
            .scripts
            .leader
            .key(&self.keys.sweeper)
            .arg(owner)
            .arg(lease.as_millis() as u64)
            .invoke_async(&mut c)
            .await?;
        if leader == 0 {
            return Ok(0);
        }
        let mut total = 0;
        loop {
            let ids = self
                .store
                .requeue_overdue(self.config.sweep_grace, 1000)
                .await?;
            if ids.is_empty() {
                return Ok(total);
            }
            total += ids.len();
            // By id: the sweeper does not read keys (the store's gate keeps the order anyway).
            let hints: Vec<(EventId, u32)> =
                ids.iter().map(|id| (*id, self.partition(*id))).collect();
            self.xadd_all(&hints).await?;
        }
    }
}

fn message_event(map: &HashMap<String, Value>) -> Option<EventId> {
    match map.get("id")? {
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

/// `ClaimedEvent::delivery` for a message: its partition and its stream entry id.
fn delivery_handle(d: &Delivery) -> String {
    format!("{}/{}", d.partition, d.message)
}

/// The partition and stream entry id in a delivery handle.
fn parse_delivery(handle: &str) -> Option<(u32, &str)> {
    let (p, message) = handle.split_once('/')?;
    Some((p.parse().ok()?, message))
}

#[async_trait]
impl Queue for RedisQueue {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn enqueue(&self, id: EventId) -> Result<(), QueueError> {
        self.send_hint(id, self.partition(id))
    }

    async fn enqueue_in_line(&self, id: EventId, route: &str, key: &str) -> Result<(), QueueError> {
        self.send_hint(id, self.line_partition(route, key))
    }

    async fn next(
        &self,
        owner: &str,
        lease: Duration,
        max: u32,
        wait: Duration,
    ) -> Result<Vec<ClaimedEvent>, QueueError> {
        let messages = self.inbox.take(max as usize, wait).await;
        let mut stale = Vec::new();
        // The first message of each event carries it; a second copy has nothing to add.
        let mut delivery: HashMap<EventId, Delivery> = HashMap::new();
        for d in messages {
            match d.event {
                Some(id) if !delivery.contains_key(&id) => {
                    delivery.insert(id, d);
                }
                _ => stale.push(d),
            }
        }
        // One claim for the whole read. On a store error the messages stay pending and are
        // taken over after a lease.
        let ids: Vec<EventId> = delivery.keys().copied().collect();
        let mut claimed = if ids.is_empty() {
            Vec::new()
        } else {
            self.store.claim(owner, lease, Claim::Events(ids)).await?
        };
        for e in &mut claimed {
            e.delivery = delivery.remove(&e.id).as_ref().map(delivery_handle);
        }
        // Finished, not yet due, or held by a live worker: nothing for us to do.
        stale.extend(delivery.into_values());
        self.drop_messages(&stale).await?;
        Ok(claimed)
    }

    async fn settle(&self, event: &ClaimedEvent, outcome: &Outcome) -> Result<(), QueueError> {
        // Anything not finished waits in its partition's delayed set until it is due again.
        let (kind, at_ms, detail) = match outcome {
            Outcome::Completed { .. } => ("completed", 0, String::new()),
            Outcome::DeadLetter { error } => ("dead", 0, error.clone()),
            other => (
                "delay",
                other.next_attempt_at().map_or(0, |t| t.timestamp_millis()),
                String::new(),
            ),
        };
        let handle = event.delivery.as_deref().and_then(parse_delivery);
        let partition = handle.map_or_else(|| self.partition(event.id), |(p, _)| p);
        let keys = self.keys.partition(partition);
        let mut c = self.conn.get().await?;
        let _: i64 = self
            .scripts
            .settle
            .key(&keys.stream)
            .key(&keys.delayed)
            .key(&keys.completed)
            .key(&keys.dead)
            .arg(GROUP)
            .arg(handle.map_or("", |(_, m)| m))
            .arg(event.id.to_string())
            .arg(kind)
            .arg(at_ms)
            .arg(self.config.keep_completed)
            .arg(self.config.keep_failed)
            .arg(detail)
            .arg(&event.provider)
            .invoke_async(&mut c)
            .await?;
        let wait = at_ms - chrono::Utc::now().timestamp_millis();
        if kind == "delay" && wait < self.max_block.as_millis() as i64 {
            let _ = self.alarm_tx.send((partition, at_ms));
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), QueueError> {
        let mut c = self.conn.get().await?;
        redis::cmd("PING").query_async::<()>(&mut c).await?;
        Ok(())
    }
}

//! Redis Streams queue for many API and worker processes over one PostgreSQL.
//!
//! Keys share one hash tag (`{prefix}:...`) so they live in one cluster slot and Lua scripts can
//! touch them together:
//! - `{p}:stream`: events ready to process; consumer group `hookd`, one consumer per process.
//! - `{p}:delayed`: sorted set of retries by due time; moved to the stream when due (Lua).
//! - `{p}:completed` / `{p}:dead`: the most recent job records (trimmed to
//!   `HOOKD_KEEP_COMPLETED` / `HOOKD_KEEP_FAILED`); the store keeps the full history.
//! - `{p}:sweeper`: lease naming the one process that runs the outbox sweeper.
//!
//! A message only says "look at event X": the store's claim decides whether it runs, so a
//! duplicate or stale message is acknowledged and dropped. A message is acknowledged only after
//! the store has the attempt's outcome. Anything Redis loses (it keeps nothing on disk here) is
//! found again by the sweeper, which re-enqueues committed events nobody claimed in time.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::streams::{StreamAutoClaimReply, StreamReadReply};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Script, Value};
use tokio::sync::{Mutex, OnceCell, mpsc, watch};

use super::{Queue, QueueError, RedisConfig, RedisTarget};
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

/// The key names, all under one hash tag.
#[derive(Debug, Clone)]
pub struct Keys {
    pub stream: String,
    pub delayed: String,
    pub completed: String,
    pub dead: String,
    pub sweeper: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        let k = |name: &str| format!("{{{prefix}}}:{name}");
        Self {
            stream: k("stream"),
            delayed: k("delayed"),
            completed: k("completed"),
            dead: k("dead"),
            sweeper: k("sweeper"),
        }
    }
}

/// One live connection, to a single server or a cluster.
#[derive(Clone)]
enum Live {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Live {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// A connection made on first use and remade by the client library after failures, so hookd
/// starts (and accepts webhooks) while Redis is down.
struct Conn {
    target: RedisTarget,
    response_timeout: Duration,
    live: OnceCell<Live>,
}

impl Conn {
    fn new(target: RedisTarget, response_timeout: Duration) -> Self {
        Self {
            target,
            response_timeout,
            live: OnceCell::new(),
        }
    }

    async fn get(&self) -> RedisResult<Live> {
        let live = self
            .live
            .get_or_try_init(|| async {
                match &self.target {
                    RedisTarget::Single(url) => {
                        let config = ConnectionManagerConfig::new()
                            .set_connection_timeout(Some(Duration::from_secs(2)))
                            .set_response_timeout(Some(self.response_timeout))
                            .set_number_of_retries(2)
                            .set_max_delay(Duration::from_secs(1));
                        let client = redis::Client::open(url.as_str())?;
                        Ok::<_, redis::RedisError>(Live::Single(
                            client.get_connection_manager_lazy(config)?,
                        ))
                    }
                    RedisTarget::Cluster(nodes) => {
                        let client = ClusterClient::builder(nodes.iter().map(String::as_str))
                            .connection_timeout(Duration::from_secs(2))
                            .response_timeout(self.response_timeout)
                            .retries(2)
                            .build()?;
                        Ok(Live::Cluster(client.get_async_connection().await?))
                    }
                }
            })
            .await?;
        Ok(live.clone())
    }
}

/// The Redis Streams queue.
pub struct RedisQueue {
    store: Arc<dyn Leases>,
    keys: Keys,
    config: RedisConfig,
    conn: Conn,
    /// Only for `XREADGROUP BLOCK`, which would hold up every other command on a shared
    /// connection; its response timeout is longer than the block.
    blocking: Conn,
    enqueue_tx: mpsc::Sender<EventId>,
    /// Hints accepted by `enqueue` and not yet written.
    unwritten: AtomicUsize,
    autoclaim_cursor: Mutex<String>,
    promote: Script,
    settle: Script,
    leader: Script,
}

impl RedisQueue {
    /// Build the queue and start its background enqueue writer. Connects lazily: Redis may be
    /// down now and come up later.
    pub fn start(config: &RedisConfig, store: Arc<dyn Leases>, max_block: Duration) -> Arc<Self> {
        let (enqueue_tx, enqueue_rx) = mpsc::channel(ENQUEUE_BUFFER);
        let queue = Arc::new(Self {
            store,
            keys: Keys::new(&config.prefix),
            config: config.clone(),
            conn: Conn::new(config.target.clone(), Duration::from_secs(2)),
            blocking: Conn::new(config.target.clone(), max_block + Duration::from_secs(2)),
            enqueue_tx,
            unwritten: AtomicUsize::new(0),
            autoclaim_cursor: Mutex::new("0-0".into()),
            promote: Script::new(PROMOTE),
            settle: Script::new(SETTLE),
            leader: Script::new(LEADER),
        });
        tokio::spawn(queue.clone().enqueue_writer(enqueue_rx));
        queue
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Writes enqueue hints to the stream in pipelined batches, off the request path.
    async fn enqueue_writer(self: Arc<Self>, mut rx: mpsc::Receiver<EventId>) {
        let mut batch = Vec::with_capacity(ENQUEUE_BATCH);
        while rx.recv_many(&mut batch, ENQUEUE_BATCH).await > 0 {
            if let Err(e) = self.xadd_all(&batch).await {
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

    async fn xadd_all(&self, ids: &[EventId]) -> Result<(), QueueError> {
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("XADD")
                .arg(&self.keys.stream)
                .arg("*")
                .arg("id")
                .arg(id.to_string())
                .ignore();
        }
        let mut c = self.conn.get().await?;
        pipe.query_async::<()>(&mut c).await?;
        Ok(())
    }

    /// Create the consumer group if it does not exist (also after Redis lost its data).
    async fn ensure_group(&self, c: &mut Live) -> Result<(), QueueError> {
        let r: RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.keys.stream)
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

    /// Messages for this consumer: first those another consumer left idle for longer than a
    /// lease (it died), then new ones, blocking up to `wait` when there is nothing.
    async fn read_messages(
        &self,
        owner: &str,
        lease: Duration,
        max: u32,
        wait: Duration,
    ) -> Result<Vec<(String, Option<EventId>)>, QueueError> {
        let mut c = self.conn.get().await?;
        let now_ms = chrono::Utc::now().timestamp_millis();
        let _: i64 = self
            .promote
            .key(&self.keys.delayed)
            .key(&self.keys.stream)
            .arg(now_ms)
            .arg(1000)
            .invoke_async(&mut c)
            .await?;
        let mut out = self.autoclaim(&mut c, owner, lease, max).await?;
        let room = max as usize - out.len().min(max as usize);
        if room == 0 {
            return Ok(out);
        }
        let block_ms = if out.is_empty() {
            wait.as_millis() as u64
        } else {
            1
        };
        out.extend(self.read_new(&mut c, owner, room, block_ms).await?);
        Ok(out)
    }

    /// Up to `max` messages another consumer left idle for longer than `lease`, taken over.
    async fn autoclaim(
        &self,
        c: &mut Live,
        owner: &str,
        lease: Duration,
        max: u32,
    ) -> Result<Vec<(String, Option<EventId>)>, QueueError> {
        let mut cursor = self.autoclaim_cursor.lock().await;
        let r: RedisResult<StreamAutoClaimReply> = redis::cmd("XAUTOCLAIM")
            .arg(&self.keys.stream)
            .arg(GROUP)
            .arg(owner)
            .arg(lease.as_millis() as u64)
            .arg(cursor.as_str())
            .arg("COUNT")
            .arg(max)
            .query_async(&mut *c)
            .await;
        match r {
            Ok(reply) => {
                *cursor = reply.next_stream_id;
                Ok(reply
                    .claimed
                    .into_iter()
                    .map(|m| (m.id.clone(), message_event(&m.map)))
                    .collect())
            }
            Err(e) if e.code() == Some("NOGROUP") => {
                self.ensure_group(c).await?;
                Ok(Vec::new())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Up to `room` new messages, blocking up to `block_ms` when there are none. Blocking reads
    /// use their own connection; `c` only recreates a missing group.
    async fn read_new(
        &self,
        c: &mut Live,
        owner: &str,
        room: usize,
        block_ms: u64,
    ) -> Result<Vec<(String, Option<EventId>)>, QueueError> {
        let mut b = self.blocking.get().await?;
        let r: RedisResult<Option<StreamReadReply>> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(owner)
            .arg("COUNT")
            .arg(room)
            .arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS")
            .arg(&self.keys.stream)
            .arg(">")
            .query_async(&mut b)
            .await;
        match r {
            Ok(reply) => Ok(reply
                .map(|r| r.keys)
                .unwrap_or_default()
                .into_iter()
                .flat_map(|key| key.ids)
                .map(|m| (m.id.clone(), message_event(&m.map)))
                .collect()),
            Err(e) if e.code() == Some("NOGROUP") => {
                self.ensure_group(c).await?;
                Ok(Vec::new())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Acknowledge and delete messages that need no processing.
    async fn drop_messages(&self, ids: &[String]) -> Result<(), QueueError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut c = self.conn.get().await?;
        redis::pipe()
            .atomic()
            .cmd("XACK")
            .arg(&self.keys.stream)
            .arg(GROUP)
            .arg(ids)
            .ignore()
            .cmd("XDEL")
            .arg(&self.keys.stream)
            .arg(ids)
            .ignore()
            .query_async::<()>(&mut c)
            .await?;
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
                Err(e) => tracing::debug!(error = %e, "sweep skipped"),
            }
        }
    }

    /// One sweep, if this process is (or becomes) the sweeper. Returns how many events it
    /// re-enqueued.
    pub async fn sweep_once(&self, owner: &str, lease: Duration) -> Result<usize, QueueError> {
        let mut c = self.conn.get().await?;
        let leader: i64 = self
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
            self.xadd_all(&ids).await?;
        }
    }
}

fn message_event(map: &std::collections::HashMap<String, Value>) -> Option<EventId> {
    match map.get("id")? {
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

#[async_trait]
impl Queue for RedisQueue {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn enqueue(&self, id: EventId) -> Result<(), QueueError> {
        // Counted before sending, so the writer never subtracts what was not added.
        self.unwritten.fetch_add(1, Ordering::SeqCst);
        self.enqueue_tx.try_send(id).map_err(|_| {
            self.unwritten.fetch_sub(1, Ordering::SeqCst);
            QueueError::Redis("enqueue buffer full".into())
        })
    }

    async fn next(
        &self,
        owner: &str,
        lease: Duration,
        max: u32,
        wait: Duration,
    ) -> Result<Vec<ClaimedEvent>, QueueError> {
        let messages = self.read_messages(owner, lease, max, wait).await?;
        let mut stale = Vec::new();
        // The first message of each event carries it; a second copy has nothing to add.
        let mut delivery: HashMap<EventId, _> = HashMap::new();
        for (msg, event) in messages {
            match event {
                Some(id) if !delivery.contains_key(&id) => {
                    delivery.insert(id, msg);
                }
                _ => stale.push(msg),
            }
        }
        // One claim for the whole read. On a store error the messages stay pending and are
        // reclaimed after a lease.
        let ids: Vec<EventId> = delivery.keys().copied().collect();
        let mut claimed = if ids.is_empty() {
            Vec::new()
        } else {
            self.store.claim(owner, lease, Claim::Events(ids)).await?
        };
        for e in &mut claimed {
            e.delivery = delivery.remove(&e.id);
        }
        // Finished, not yet due, or held by a live worker: nothing for us to do.
        stale.extend(delivery.into_values());
        self.drop_messages(&stale).await?;
        Ok(claimed)
    }

    async fn settle(&self, event: &ClaimedEvent, outcome: &Outcome) -> Result<(), QueueError> {
        // Anything not finished waits in the delayed set until it is due again.
        let (kind, at_ms, detail) = match outcome {
            Outcome::Completed { .. } => ("completed", 0, String::new()),
            Outcome::DeadLetter { error } => ("dead", 0, error.clone()),
            other => (
                "delay",
                other.next_attempt_at().map_or(0, |t| t.timestamp_millis()),
                String::new(),
            ),
        };
        let mut c = self.conn.get().await?;
        let _: i64 = self
            .settle
            .key(&self.keys.stream)
            .key(&self.keys.delayed)
            .key(&self.keys.completed)
            .key(&self.keys.dead)
            .arg(GROUP)
            .arg(event.delivery.as_deref().unwrap_or(""))
            .arg(event.id.to_string())
            .arg(kind)
            .arg(at_ms)
            .arg(self.config.keep_completed)
            .arg(self.config.keep_failed)
            .arg(detail)
            .arg(&event.provider)
            .invoke_async(&mut c)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), QueueError> {
        let mut c = self.conn.get().await?;
        redis::cmd("PING").query_async::<()>(&mut c).await?;
        Ok(())
    }
}

/// KEYS: delayed, stream. ARGV: now (ms), max to move. Moves due retries to the stream.
const PROMOTE: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'id', id)
  redis.call('ZREM', KEYS[1], id)
end
return #due
";

/// KEYS: stream, delayed, completed, dead. ARGV: group, message id ('' if none), event id,
/// kind (completed|delay|dead), due at (ms), keep completed, keep failed, error, provider.
/// Acknowledges the message and files the job record, in one step.
const SETTLE: &str = r"
if ARGV[2] ~= '' then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
  redis.call('XDEL', KEYS[1], ARGV[2])
end
if ARGV[4] == 'delay' then
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[3])
elseif ARGV[4] == 'completed' then
  if tonumber(ARGV[6]) > 0 then
    redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[6], '*', 'id', ARGV[3], 'provider', ARGV[9])
  else
    redis.call('DEL', KEYS[3])
  end
else
  if tonumber(ARGV[7]) > 0 then
    redis.call('XADD', KEYS[4], 'MAXLEN', ARGV[7], '*', 'id', ARGV[3], 'provider', ARGV[9], 'error', ARGV[8])
  else
    redis.call('DEL', KEYS[4])
  end
end
return 1
";

/// KEYS: sweeper lease. ARGV: owner, lease (ms). 1 if the caller holds the lease afterwards.
const LEADER: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
";

//! One partition's reader: promotes its due retries, takes over messages a dead consumer left
//! behind, and reads new messages into the inbox, on a blocking connection of its own.
//!
//! Owns the read loop of one partition while this process owns it. It must never read more
//! than the inbox's credits allow, never block past the partition's earliest due retry (so a
//! retry is read on time without polling faster), and never cancel a blocking read half-way
//! (the messages it returns would be left pending until a lease passes): it stops between reads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::RedisResult;
use redis::streams::{StreamAutoClaimReply, StreamReadReply};
use tokio::sync::watch;

use super::conn::{Conn, Live};
use super::inbox::Delivery;
use super::keys::PartitionKeys;
use super::{Consumer, GROUP, RedisQueue, message_event};
use crate::queue::QueueError;

/// Due retries moved to the stream per promotion; more wait for the next round.
const PROMOTE_BATCH: u32 = 1000;

/// Read partition `partition` until `stop` turns true.
pub(super) async fn run(
    queue: Arc<RedisQueue>,
    consumer: Arc<Consumer>,
    partition: u32,
    mut stop: watch::Receiver<bool>,
) {
    let mut reader = Reader {
        keys: queue.keys.partition(partition).clone(),
        blocking: Conn::new(
            queue.config.target.clone(),
            queue.max_block + Duration::from_secs(2),
        ),
        group_ready: false,
        cursor: "0-0".into(),
        last_takeover: None,
        next_due: None,
        last_promote: None,
        queue,
        consumer,
    };
    let mut backoff = Duration::from_millis(100);
    // A dropped sender also means stop.
    while !*stop.borrow() && stop.has_changed().is_ok() {
        match reader.round(&mut stop).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => {
                reader.queue.conn.reset();
                reader.blocking.reset();
                tracing::warn!(partition, error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot read the queue partition");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

struct Reader {
    queue: Arc<RedisQueue>,
    consumer: Arc<Consumer>,
    keys: PartitionKeys,
    /// Only for `XREADGROUP BLOCK`; its response timeout is longer than the block.
    blocking: Conn,
    group_ready: bool,
    /// Where the next `XAUTOCLAIM` scan continues.
    cursor: String,
    last_takeover: Option<Instant>,
    /// The earliest due retry the last promotion left (ms since the epoch).
    next_due: Option<i64>,
    last_promote: Option<Instant>,
}

impl Reader {
    /// One read: wait for room, promote due retries, take over abandoned messages now and then,
    /// then read new ones, blocking no longer than the poll interval or the next due retry.
    async fn round(&mut self, stop: &mut watch::Receiver<bool>) -> Result<(), QueueError> {
        let queue = self.queue.clone();
        let inbox = &queue.inbox;
        let share = self.consumer.share();
        let credits = tokio::select! {
            c = inbox.reserve(share) => c,
            _ = stop.changed() => return Ok(()),
        };
        let Some(credits) = credits else {
            return Ok(());
        };
        let mut c = self.queue.conn.get().await?;
        if !self.group_ready {
            self.queue.ensure_group(&mut c, &self.keys.stream).await?;
            self.group_ready = true;
            // A new owner: the group may hold consumers of processes long gone.
            self.queue
                .forget_consumers(&mut c, &self.keys, &self.consumer)
                .await;
        }
        if self.promote_due() {
            self.next_due = self
                .queue
                .promote(&mut c, &self.keys, PROMOTE_BATCH)
                .await?;
            self.last_promote = Some(Instant::now());
        }
        let next_due = self.next_due;
        let mut got = if self.takeover_due() {
            self.take_over(&mut c, share).await?
        } else {
            Vec::new()
        };
        if got.len() < share {
            let block = if got.is_empty() {
                Some(self.block_for(next_due))
            } else {
                None
            };
            got.extend(self.read_new(share - got.len(), block).await?);
        }
        inbox.push(credits, got);
        Ok(())
    }

    /// Promote when the earliest retry the last promotion saw is due, and at least once a poll
    /// interval for retries other processes added since (this process's own wake the reader
    /// through the queue's alarm). Under load this saves a script call per read.
    fn promote_due(&self) -> bool {
        let stale = self
            .last_promote
            .is_none_or(|t| t.elapsed() >= self.queue.max_block);
        let due = self
            .next_due
            .is_some_and(|d| d <= chrono::Utc::now().timestamp_millis());
        stale || due
    }

    /// Look for abandoned messages every quarter lease (at most every 2 s), and at once when
    /// the partition was just taken over.
    fn takeover_due(&self) -> bool {
        let every =
            (self.consumer.lease / 4).clamp(Duration::from_millis(100), Duration::from_secs(2));
        self.last_takeover.is_none_or(|t| t.elapsed() >= every)
    }

    /// The block of the next read: the poll interval, cut short at the earliest due retry.
    fn block_for(&self, next_due_ms: Option<i64>) -> Duration {
        let poll = self.queue.max_block;
        match next_due_ms {
            Some(due) => {
                let until = due - chrono::Utc::now().timestamp_millis();
                Duration::from_millis(until.max(1) as u64).min(poll)
            }
            None => poll,
        }
    }

    /// Up to `max` messages another consumer left idle for longer than a lease (it died, or
    /// lost this partition with messages it never settled), taken over.
    async fn take_over(&mut self, c: &mut Live, max: usize) -> Result<Vec<Delivery>, QueueError> {
        self.last_takeover = Some(Instant::now());
        let r: RedisResult<StreamAutoClaimReply> = redis::cmd("XAUTOCLAIM")
            .arg(&self.keys.stream)
            .arg(GROUP)
            .arg(&self.consumer.member)
            .arg(self.consumer.lease.as_millis() as u64)
            .arg(self.cursor.as_str())
            .arg("COUNT")
            .arg(max)
            .query_async(c)
            .await;
        match r {
            Ok(reply) => {
                self.cursor = reply.next_stream_id;
                Ok(reply
                    .claimed
                    .into_iter()
                    .map(|m| self.delivery(m.id.clone(), &m.map))
                    .collect())
            }
            Err(e) if e.code() == Some("NOGROUP") => {
                self.group_ready = false;
                Ok(Vec::new())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Up to `max` new messages, blocking up to `block` when there are none.
    async fn read_new(
        &mut self,
        max: usize,
        block: Option<Duration>,
    ) -> Result<Vec<Delivery>, QueueError> {
        let mut b = self.blocking.get().await?;
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(&self.consumer.member)
            .arg("COUNT")
            .arg(max);
        if let Some(block) = block {
            // Never 0: that would block for ever.
            cmd.arg("BLOCK").arg((block.as_millis() as u64).max(1));
        }
        let r: RedisResult<Option<StreamReadReply>> = cmd
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
                .map(|m| self.delivery(m.id.clone(), &m.map))
                .collect()),
            Err(e) if e.code() == Some("NOGROUP") => {
                self.group_ready = false;
                Ok(Vec::new())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn delivery(
        &self,
        message: String,
        map: &std::collections::HashMap<String, redis::Value>,
    ) -> Delivery {
        Delivery {
            partition: self.keys.index,
            message,
            event: message_event(map),
        }
    }
}

//! Membership and partition ownership: each worker process heartbeats into `{<prefix>}:members`,
//! reads the live members back, owns the partitions a deterministic assignment gives it, and
//! runs one reader per owned partition, starting and stopping readers as processes come and go.
//!
//! Owns who reads which partition. It must never be the judge of who processes an event (two
//! readers on one partition for a moment are harmless: the store's claim decides), and never
//! leave a partition without a reader for longer than a heartbeat after the fleet agrees.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Consumer, RedisQueue, reader};
use crate::queue::QueueError;
use crate::telemetry::metrics;

/// The partitions `me` owns among `members`: partition `p` goes to the `p % n`-th member in
/// name order, so every process computes the same assignment from the same member list, and
/// the partitions are spread as evenly as they divide.
pub(super) fn assign(members: &[String], me: &str, partitions: u32) -> BTreeSet<u32> {
    let mut sorted: Vec<&str> = members.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let Some(mine) = sorted.iter().position(|m| *m == me) else {
        return BTreeSet::new();
    };
    let n = sorted.len() as u32;
    (0..partitions).filter(|p| p % n == mine as u32).collect()
}

/// Consecutive store pings that must fail before this process gives its partitions up: one
/// slow answer under load is not an outage.
const STORE_FAILURES_TO_LEAVE: u32 = 2;

/// Whether this process should stay a consumer: a worker that cannot reach the store claims
/// nothing, so the partitions it owns would wait with it while other workers could take them.
/// It leaves after [`STORE_FAILURES_TO_LEAVE`] failed pings in a row and joins again at the
/// first that succeeds.
#[derive(Default)]
struct StoreWatch {
    failures: u32,
}

impl StoreWatch {
    async fn answers(&mut self, queue: &RedisQueue, within: Duration) -> bool {
        let ok = matches!(
            tokio::time::timeout(within, queue.store.ping()).await,
            Ok(Ok(()))
        );
        let was_in = self.failures < STORE_FAILURES_TO_LEAVE;
        self.failures = if ok {
            0
        } else {
            self.failures.saturating_add(1)
        };
        let stay = self.failures < STORE_FAILURES_TO_LEAVE;
        if was_in && !stay {
            tracing::warn!(
                "the store does not answer: leaving the queue's consumers, so other workers take this process's partitions, until it answers again"
            );
        } else if !was_in && stay {
            tracing::info!("the store answers again: rejoining the queue's consumers");
        }
        stay
    }
}

/// A running reader and the switch that stops it.
struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Heartbeat, rebalance and read until `shutdown`; then leave the membership at once (so the
/// others take the partitions over at their next heartbeat), let the readers finish their
/// current read, and hand back what was read but never given to a worker.
pub(super) async fn run(
    queue: Arc<RedisQueue>,
    consumer: Arc<Consumer>,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = (queue.config.member_ttl / 5).max(Duration::from_millis(50));
    let mut readers: BTreeMap<u32, Running> = BTreeMap::new();
    let mut owned: Option<BTreeSet<u32>> = None;
    tracing::info!(member = %consumer.member, partitions = queue.config.partitions, "joining the queue's consumers");
    metrics::queue_consumer_started();
    let mut store = StoreWatch::default();
    loop {
        let stay = store.answers(&queue, every).await;
        match queue.heartbeat(&consumer.member, stay).await {
            Ok(members) => {
                consumer.set_members(&members);
                let mine = assign(&members, &consumer.member, queue.config.partitions);
                if owned.as_ref() != Some(&mine) {
                    rebalance(
                        &queue,
                        &consumer,
                        &mut readers,
                        owned.as_ref(),
                        &mine,
                        &members,
                    );
                    owned = Some(mine);
                }
            }
            // Keep reading what we own: the others keep their view too, and a short overlap
            // is harmless while a gap is not.
            Err(e) => {
                queue.conn.reset();
                tracing::warn!(error = %e, "cannot renew queue membership");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    for r in readers.values() {
        let _ = r.stop.send(true);
    }
    if let Err(e) = queue.heartbeat(&consumer.member, false).await {
        tracing::warn!(error = %e, "cannot leave the queue's consumers; membership expires on its own");
    }
    let wait = queue.max_block + Duration::from_secs(3);
    for (_, r) in readers {
        let _ = tokio::time::timeout(wait, r.task).await;
    }
    metrics::queue_partitions_owned(0);
    queue.set_owned(BTreeSet::new());
    if let Err(e) = queue.hand_back(queue.inbox.drain()).await {
        tracing::warn!(error = %e, "cannot hand back unread messages; they are taken over after a lease");
    }
}

/// Start readers for the partitions gained, stop those of the partitions lost.
fn rebalance(
    queue: &Arc<RedisQueue>,
    consumer: &Arc<Consumer>,
    readers: &mut BTreeMap<u32, Running>,
    before: Option<&BTreeSet<u32>>,
    after: &BTreeSet<u32>,
    members: &[String],
) {
    let lost: Vec<u32> = readers
        .keys()
        .filter(|p| !after.contains(p))
        .copied()
        .collect();
    consumer.set_share(after.len());
    for p in &lost {
        if let Some(r) = readers.remove(p) {
            // It stops after its current read; its unsettled messages are settled by our
            // workers or taken over by the new owner after a lease.
            let _ = r.stop.send(true);
        }
    }
    let gained: Vec<u32> = after
        .iter()
        .filter(|p| !readers.contains_key(p))
        .copied()
        .collect();
    for p in &gained {
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(reader::run(queue.clone(), consumer.clone(), *p, stop_rx));
        readers.insert(*p, Running { stop, task });
    }
    metrics::queue_partitions_owned(after.len());
    queue.set_owned(after.clone());
    if before.is_some() {
        metrics::queue_rebalanced();
    }
    tracing::info!(
        member = %consumer.member,
        members = members.len(),
        owned = ?after,
        gained = ?gained,
        lost = ?lost,
        "queue partitions rebalanced"
    );
}

impl RedisQueue {
    /// Renew (or end) this process's membership; the live members, this one included when it
    /// stays.
    pub(super) async fn heartbeat(
        &self,
        member: &str,
        stay: bool,
    ) -> Result<Vec<String>, QueueError> {
        let mut c = self.conn.get().await?;
        let members: Vec<String> = self
            .scripts
            .heartbeat
            .key(&self.keys.members)
            .arg(member)
            .arg(self.config.member_ttl.as_millis() as u64)
            .arg(u8::from(stay))
            .invoke_async(&mut c)
            .await?;
        Ok(members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_partition_has_exactly_one_owner() {
        let members = names(&["c", "a", "b"]);
        let mut seen = BTreeSet::new();
        for m in &members {
            let mine = assign(&members, m, 16);
            assert!((5..=6).contains(&mine.len()), "{m}: {mine:?}");
            for p in mine {
                assert!(seen.insert(p), "partition {p} owned twice");
            }
        }
        assert_eq!(seen.len(), 16);
        // The order the members are listed in does not matter.
        assert_eq!(
            assign(&members, "b", 16),
            assign(&names(&["b", "c", "a"]), "b", 16)
        );
        assert!(assign(&members, "z", 16).is_empty());
        assert_eq!(assign(&names(&["a"]), "a", 4).len(), 4);
    }
}

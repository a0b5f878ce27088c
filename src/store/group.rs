//! Group commit: concurrent inserts share one transaction, so one commit (and one fsync)
//! makes a whole batch of webhooks durable instead of one.
//!
//! [`GroupCommit`] wraps either engine and passes every call through except `insert`. Each
//! insert is queued; a collector thread gathers what arrives within a short window (or until
//! the batch is full) and hands the batch to the engine's `insert_batch`, one transaction.
//! Each caller gets its own event's result only after that transaction has committed.
//!
//! It must never answer an insert before its row is committed, and never let one event's
//! failure be reported as another's success: a batch that fails because the store is
//! unavailable fails every insert in it; a batch that fails for any other reason is retried
//! one event at a time, so one bad event cannot fail its neighbours.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::admin::{
    ActivityBucket, AuditEntry, AuditFilter, EventFilter, EventPayload, EventSummary, Job,
    JobProgress, JobStatus, NewAudit, ProviderCount, ReplayKind, Session,
};
use super::{AdminStore, Backlog, Claim, EventStore, Finish, Inserted, NewEvent, StoreError};
use crate::event::{
    ClaimedEvent, EventDetail, EventId, EventStatus, Progress, ProviderPause, StepRecord,
};
use crate::verify::VerifiedWebhook;

/// How inserts are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommitSettings {
    /// How long a batch waits for company after its first insert arrives. Only the part of the
    /// window nobody else arrives in is waited: a full batch goes at once.
    pub window: Duration,
    /// Most inserts in one transaction. 1 turns group commit off.
    pub max_batch: usize,
    /// Most batches committing at once. While all are busy, inserts queue up and the next batch
    /// takes them all: under load batches grow on their own, whatever the window.
    pub concurrency: usize,
    /// Longest an insert may wait in the queue for a batch to take it. Past that it is
    /// answered "unavailable" without being tried, so it can never commit after its answer.
    /// Once in a batch, it waits for the engine, whose own timeouts bound the wait.
    pub max_queued: Duration,
    /// How long a byte-identical body of a scheme that signs only the body is a duplicate
    /// (`HOOKD_REPLAY_WINDOW_HOURS`).
    pub replay_window: Duration,
}

/// An insert waiting for its batch.
struct Pending {
    event: NewEvent,
    reply: oneshot::Sender<Result<Inserted, StoreError>>,
    queued: Instant,
}

/// The last batch that failed because the store was unavailable: when, and why.
struct Outage {
    at: Instant,
    error: String,
}

/// What the collector and the committing batches share.
struct Shared {
    store: Arc<dyn EventStore>,
    last_outage: Mutex<Option<Outage>>,
}

/// Batches allowed to commit at once, for a plain thread (the collector) to wait on.
struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

/// One batch's permission to commit; given back when dropped, even if its task is cancelled.
struct Slot(Arc<Slots>);

impl Slots {
    fn acquire(self: &Arc<Self>) -> Slot {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        while *free == 0 {
            free = self
                .freed
                .wait(free)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *free -= 1;
        Slot(self.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.0.freed.notify_one();
    }
}

/// An [`EventStore`] whose inserts are committed in groups.
pub struct GroupCommit {
    inner: Arc<dyn EventStore>,
    queue: Option<Sender<Pending>>,
    replay_window: Duration,
}

impl GroupCommit {
    /// Wrap `inner`. Must be called inside a tokio runtime: batches are committed on it.
    pub fn new(
        inner: Arc<dyn EventStore>,
        settings: GroupCommitSettings,
    ) -> Result<Self, StoreError> {
        let replay_window = settings.replay_window;
        if settings.max_batch <= 1 {
            return Ok(Self {
                inner,
                queue: None,
                replay_window,
            });
        }
        let (queue, rx) = std::sync::mpsc::channel();
        let runtime = tokio::runtime::Handle::current();
        let store = inner.clone();
        // A plain thread, not a task: tokio's timers tick in milliseconds, and the window is
        // shorter than that. The thread only sleeps in the channel and hands batches over.
        std::thread::Builder::new()
            .name("hookd-group-commit".into())
            .spawn(move || collect(rx, store, runtime, settings))
            .map_err(|e| StoreError::Other(format!("cannot start the group commit thread: {e}")))?;
        Ok(Self {
            inner,
            queue: Some(queue),
            replay_window,
        })
    }
}

/// The collector: waits for a free slot, takes the first queued insert, gathers more until the
/// window closes or the batch is full, and starts the batch's commit on the runtime. Ends when
/// the store is dropped (the channel closes).
fn collect(
    rx: Receiver<Pending>,
    store: Arc<dyn EventStore>,
    runtime: tokio::runtime::Handle,
    settings: GroupCommitSettings,
) {
    let slots = Arc::new(Slots {
        free: Mutex::new(settings.concurrency.max(1)),
        freed: Condvar::new(),
    });
    let shared = Arc::new(Shared {
        store,
        last_outage: Mutex::new(None),
    });
    loop {
        // A slot first: while every slot is busy, inserts queue in the channel and the next
        // batch takes all of them.
        let slot = slots.acquire();
        let Ok(first) = rx.recv() else { return };
        let mut batch = Vec::with_capacity(settings.max_batch.min(64));
        batch.push(first);
        drain(&rx, &mut batch, settings.max_batch);
        if batch.len() < settings.max_batch && !settings.window.is_zero() {
            // Sleep through the window rather than wait on the channel: a sender only wakes a
            // receiver that waits, so the inserts arriving now cost no wake-up each.
            std::thread::sleep(settings.window);
            drain(&rx, &mut batch, settings.max_batch);
        }
        let batch = refuse_stale(&shared, batch, settings.max_queued);
        if !batch.is_empty() {
            runtime.spawn(commit(shared.clone(), batch, slot));
        }
    }
}

/// Answer "unavailable" at once, without trying them, to inserts that waited longer than
/// `max_queued`, and to inserts already queued when a batch found the store unavailable: they
/// waited through the outage, and trying them one batch after another would make each wait
/// for every failure before it. Inserts queued since the outage get a fresh try.
fn refuse_stale(shared: &Shared, batch: Vec<Pending>, max_queued: Duration) -> Vec<Pending> {
    let last = shared
        .last_outage
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    batch
        .into_iter()
        .filter_map(|p| {
            let refused = match last.as_ref() {
                Some(o) if p.queued < o.at => Some(o.error.clone()),
                _ if p.queued.elapsed() > max_queued => Some(format!(
                    "no commit started within {} ms",
                    max_queued.as_millis()
                )),
                _ => None,
            };
            match refused {
                Some(error) => {
                    let _ = p.reply.send(Err(StoreError::Unavailable(error)));
                    None
                }
                None => Some(p),
            }
        })
        .collect()
}

/// Move what is queued into `batch`, up to `max`, without waiting.
fn drain(rx: &Receiver<Pending>, batch: &mut Vec<Pending>, max: usize) {
    while batch.len() < max {
        match rx.try_recv() {
            Ok(p) => batch.push(p),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
        }
    }
}

/// Commit one batch and answer each insert in it.
async fn commit(shared: Arc<Shared>, batch: Vec<Pending>, _slot: Slot) {
    // A caller that has gone (it timed out, or its client disconnected) gets no answer and
    // must not have its event committed behind its back: the provider will send it again.
    let (events, replies): (Vec<NewEvent>, Vec<_>) = batch
        .into_iter()
        .filter(|p| !p.reply.is_closed())
        .map(|p| (p.event, p.reply))
        .unzip();
    if events.is_empty() {
        return;
    }
    let results = insert_grouped(shared.store.as_ref(), events).await;
    if let Some(Err(StoreError::Unavailable(error))) = results
        .iter()
        .find(|r| matches!(r, Err(StoreError::Unavailable(_))))
    {
        *shared
            .last_outage
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Outage {
            at: Instant::now(),
            error: error.clone(),
        });
    }
    for (reply, result) in replies.into_iter().zip(results) {
        // A caller that left while the batch ran finds its event committed when it retries.
        let _ = reply.send(result);
    }
}

/// Insert `events` (keys may repeat) as one transaction and return each one's result, in order.
/// A key that repeats within the batch is inserted once; its other copies are duplicates of it,
/// exactly as if they had arrived one after the other.
pub(super) async fn insert_grouped(
    store: &dyn EventStore,
    events: Vec<NewEvent>,
) -> Vec<Result<Inserted, StoreError>> {
    // first[i]: index in `unique` of the event that carries event i's key.
    let mut seen: HashMap<(&str, &str), usize> = HashMap::with_capacity(events.len());
    let mut first = Vec::with_capacity(events.len());
    let mut copy_of_earlier = Vec::with_capacity(events.len());
    for e in &events {
        let next = seen.len();
        let u = *seen.entry(e.key()).or_insert(next);
        first.push(u);
        copy_of_earlier.push(u != next);
    }
    let unique: Vec<NewEvent> = events
        .into_iter()
        .zip(&copy_of_earlier)
        .filter(|(_, copy)| !**copy)
        .map(|(e, _)| e)
        .collect();
    let results: Vec<Result<Inserted, StoreError>> = match store.insert_batch(&unique).await {
        Ok(done) if done.len() == unique.len() => done.into_iter().map(Ok).collect(),
        Ok(done) => {
            let msg = format!(
                "insert_batch returned {} of {} results",
                done.len(),
                unique.len()
            );
            unique
                .iter()
                .map(|_| Err(StoreError::Other(msg.clone())))
                .collect()
        }
        Err(StoreError::Unavailable(msg)) => unique
            .iter()
            .map(|_| Err(StoreError::Unavailable(msg.clone())))
            .collect(),
        Err(e @ StoreError::Other(_)) if unique.len() == 1 => vec![Err(e)],
        Err(StoreError::Other(msg)) => {
            // Not an outage: most likely one event the database refuses. Find it by trying each
            // alone, so the others still commit.
            tracing::warn!(error = %msg, events = unique.len(), "batch insert failed; inserting one by one");
            let mut each = Vec::with_capacity(unique.len());
            for e in &unique {
                each.push(match store.insert_batch(std::slice::from_ref(e)).await {
                    Ok(mut one) if one.len() == 1 => Ok(one.remove(0)),
                    Ok(_) => Err(StoreError::Other("insert_batch returned no result".into())),
                    Err(e) => Err(e),
                });
            }
            each
        }
    };
    first
        .iter()
        .zip(copy_of_earlier)
        .map(|(&u, copy)| match (&results[u], copy) {
            (Ok(done), false) => Ok(*done),
            (Ok(done), true) => Ok(Inserted::Duplicate(done.id())),
            (Err(StoreError::Unavailable(m)), _) => Err(StoreError::Unavailable(m.clone())),
            (Err(StoreError::Other(m)), _) => Err(StoreError::Other(m.clone())),
        })
        .collect()
}

/// Operator reads and writes are not on the accept path: straight to the engine.
#[async_trait]
impl AdminStore for GroupCommit {
    async fn list_events(
        &self,
        filter: &EventFilter,
        before: Option<EventId>,
        limit: u32,
    ) -> Result<Vec<EventSummary>, StoreError> {
        self.inner.list_events(filter, before, limit).await
    }

    async fn count_events(&self, filter: &EventFilter) -> Result<u64, StoreError> {
        self.inner.count_events(filter).await
    }

    async fn event_payload(&self, id: EventId) -> Result<Option<EventPayload>, StoreError> {
        self.inner.event_payload(id).await
    }

    async fn replay(
        &self,
        ids: &[EventId],
        kind: ReplayKind,
        actor: &str,
    ) -> Result<Vec<EventId>, StoreError> {
        self.inner.replay(ids, kind, actor).await
    }

    async fn append_audit(&self, entry: &NewAudit) -> Result<(), StoreError> {
        self.inner.append_audit(entry).await
    }

    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.audit(filter).await
    }

    async fn create_job(
        &self,
        id: Uuid,
        kind: &str,
        filter: &EventFilter,
        total: u64,
        created_by: &str,
    ) -> Result<(), StoreError> {
        self.inner
            .create_job(id, kind, filter, total, created_by)
            .await
    }

    async fn job_progress(&self, id: Uuid, progress: JobProgress) -> Result<bool, StoreError> {
        self.inner.job_progress(id, progress).await
    }

    async fn finish_job(
        &self,
        id: Uuid,
        status: JobStatus,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        self.inner.finish_job(id, status, error).await
    }

    async fn cancel_job(&self, id: Uuid) -> Result<bool, StoreError> {
        self.inner.cancel_job(id).await
    }

    async fn job(&self, id: Uuid) -> Result<Option<Job>, StoreError> {
        self.inner.job(id).await
    }

    async fn jobs(&self, limit: u32) -> Result<Vec<Job>, StoreError> {
        self.inner.jobs(limit).await
    }

    async fn purge_payloads(
        &self,
        after: DateTime<Utc>,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<(u64, Option<DateTime<Utc>>), StoreError> {
        self.inner.purge_payloads(after, before, limit).await
    }

    async fn activity(
        &self,
        since: DateTime<Utc>,
        bucket_secs: u32,
    ) -> Result<Vec<ActivityBucket>, StoreError> {
        self.inner.activity(since, bucket_secs).await
    }

    async fn provider_counts(&self) -> Result<Vec<ProviderCount>, StoreError> {
        self.inner.provider_counts().await
    }

    async fn create_session(&self, digest: &[u8], session: &Session) -> Result<(), StoreError> {
        self.inner.create_session(digest, session).await
    }

    async fn session(&self, digest: &[u8]) -> Result<Option<Session>, StoreError> {
        self.inner.session(digest).await
    }

    async fn delete_session(&self, digest: &[u8]) -> Result<(), StoreError> {
        self.inner.delete_session(digest).await
    }
}

#[async_trait]
impl EventStore for GroupCommit {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        self.inner.migrate().await
    }

    async fn insert(
        &self,
        webhook: &VerifiedWebhook,
        traceparent: Option<&str>,
    ) -> Result<Inserted, StoreError> {
        let event = NewEvent::new(webhook, traceparent)?.with_replay_window(self.replay_window);
        let Some(queue) = &self.queue else {
            let mut done = self.inner.insert_batch(&[event]).await?;
            return done
                .pop()
                .ok_or_else(|| StoreError::Other("insert_batch returned nothing".into()));
        };
        let (reply, answer) = oneshot::channel();
        queue
            .send(Pending {
                event,
                reply,
                queued: Instant::now(),
            })
            .map_err(|_| StoreError::Unavailable("group commit has stopped".into()))?;
        answer.await.unwrap_or_else(|_| {
            // The batch was dropped unfinished: the runtime is shutting down.
            Err(StoreError::Unavailable(
                "shutting down before the commit".into(),
            ))
        })
    }

    async fn insert_batch(&self, events: &[NewEvent]) -> Result<Vec<Inserted>, StoreError> {
        self.inner.insert_batch(events).await
    }

    async fn claim(
        &self,
        owner: &str,
        lease: Duration,
        which: Claim,
    ) -> Result<Vec<ClaimedEvent>, StoreError> {
        self.inner.claim(owner, lease, which).await
    }

    async fn renew_lease(
        &self,
        id: EventId,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        self.inner.renew_lease(id, owner, lease).await
    }

    async fn succeeded_steps(&self, id: EventId) -> Result<Vec<String>, StoreError> {
        self.inner.succeeded_steps(id).await
    }

    async fn record_step(&self, record: &StepRecord) -> Result<(), StoreError> {
        self.inner.record_step(record).await
    }

    async fn finish_many(&self, items: &[Finish]) -> Result<Vec<bool>, StoreError> {
        self.inner.finish_many(items).await
    }

    async fn release_all(&self, owner: &str) -> Result<u64, StoreError> {
        self.inner.release_all(owner).await
    }

    async fn event(&self, id: EventId) -> Result<Option<EventDetail>, StoreError> {
        self.inner.event(id).await
    }

    async fn requeue_overdue(
        &self,
        grace: Duration,
        limit: u32,
    ) -> Result<Vec<EventId>, StoreError> {
        self.inner.requeue_overdue(grace, limit).await
    }

    async fn backlog(&self) -> Result<Backlog, StoreError> {
        self.inner.backlog().await
    }

    async fn progress(&self, id: EventId) -> Result<Progress, StoreError> {
        self.inner.progress(id).await
    }

    async fn pause_provider(
        &self,
        provider: &str,
        reason: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.inner.pause_provider(provider, reason).await
    }

    async fn resume_provider(&self, provider: &str) -> Result<bool, StoreError> {
        self.inner.resume_provider(provider).await
    }

    async fn provider_pauses(&self) -> Result<Vec<ProviderPause>, StoreError> {
        self.inner.provider_pauses().await
    }

    async fn counts(&self) -> Result<BTreeMap<EventStatus, u64>, StoreError> {
        self.inner.counts().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use bytes::Bytes;

    use super::*;

    /// An engine that records each `insert_batch` call, refuses the key "bad" (as a database
    /// refuses a value it cannot store) and can be switched to "unavailable".
    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<Vec<String>>>,
        down: bool,
    }

    fn event(key: &str) -> NewEvent {
        NewEvent {
            id: EventId::new(),
            provider: "stripe".into(),
            idempotency_key: key.into(),
            event_type: "t".into(),
            content_type: None,
            headers_json: "{}".into(),
            body: Bytes::from_static(b"{}"),
            traceparent: None,
            body_digest: None,
            replay_window: crate::store::DEFAULT_REPLAY_WINDOW,
        }
    }

    #[async_trait]
    impl AdminStore for Recorder {
        async fn list_events(
            &self,
            _filter: &EventFilter,
            _before: Option<EventId>,
            _limit: u32,
        ) -> Result<Vec<EventSummary>, StoreError> {
            unimplemented!()
        }

        async fn count_events(&self, _filter: &EventFilter) -> Result<u64, StoreError> {
            unimplemented!()
        }

        async fn event_payload(&self, _id: EventId) -> Result<Option<EventPayload>, StoreError> {
            unimplemented!()
        }

        async fn replay(
            &self,
            _ids: &[EventId],
            _kind: ReplayKind,
            _actor: &str,
        ) -> Result<Vec<EventId>, StoreError> {
            unimplemented!()
        }

        async fn append_audit(&self, _entry: &NewAudit) -> Result<(), StoreError> {
            unimplemented!()
        }

        async fn audit(&self, _filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
            unimplemented!()
        }

        async fn create_job(
            &self,
            _id: Uuid,
            _kind: &str,
            _filter: &EventFilter,
            _total: u64,
            _created_by: &str,
        ) -> Result<(), StoreError> {
            unimplemented!()
        }

        async fn job_progress(
            &self,
            _id: Uuid,
            _progress: JobProgress,
        ) -> Result<bool, StoreError> {
            unimplemented!()
        }

        async fn finish_job(
            &self,
            _id: Uuid,
            _status: JobStatus,
            _error: Option<&str>,
        ) -> Result<(), StoreError> {
            unimplemented!()
        }

        async fn cancel_job(&self, _id: Uuid) -> Result<bool, StoreError> {
            unimplemented!()
        }

        async fn job(&self, _id: Uuid) -> Result<Option<Job>, StoreError> {
            unimplemented!()
        }

        async fn jobs(&self, _limit: u32) -> Result<Vec<Job>, StoreError> {
            unimplemented!()
        }

        async fn purge_payloads(
            &self,
            _after: DateTime<Utc>,
            _before: DateTime<Utc>,
            _limit: u32,
        ) -> Result<(u64, Option<DateTime<Utc>>), StoreError> {
            unimplemented!()
        }

        async fn activity(
            &self,
            _since: DateTime<Utc>,
            _bucket_secs: u32,
        ) -> Result<Vec<ActivityBucket>, StoreError> {
            unimplemented!()
        }

        async fn provider_counts(&self) -> Result<Vec<ProviderCount>, StoreError> {
            unimplemented!()
        }

        async fn create_session(
            &self,
            _digest: &[u8],
            _session: &Session,
        ) -> Result<(), StoreError> {
            unimplemented!()
        }

        async fn session(&self, _digest: &[u8]) -> Result<Option<Session>, StoreError> {
            unimplemented!()
        }

        async fn delete_session(&self, _digest: &[u8]) -> Result<(), StoreError> {
            unimplemented!()
        }
    }

    #[async_trait]
    impl EventStore for Recorder {
        fn backend(&self) -> &'static str {
            "recorder"
        }
        async fn migrate(&self) -> Result<(), StoreError> {
            Ok(())
        }
        async fn insert_batch(&self, events: &[NewEvent]) -> Result<Vec<Inserted>, StoreError> {
            let keys: Vec<String> = events.iter().map(|e| e.idempotency_key.clone()).collect();
            self.calls.lock().unwrap().push(keys.clone());
            if self.down {
                return Err(StoreError::Unavailable("connection refused".into()));
            }
            if keys.iter().any(|k| k == "bad") {
                return Err(StoreError::Other("invalid byte sequence".into()));
            }
            Ok(events.iter().map(|e| Inserted::New(e.id)).collect())
        }
        async fn claim(
            &self,
            _: &str,
            _: Duration,
            _: Claim,
        ) -> Result<Vec<ClaimedEvent>, StoreError> {
            unimplemented!()
        }
        async fn renew_lease(&self, _: EventId, _: &str, _: Duration) -> Result<bool, StoreError> {
            unimplemented!()
        }
        async fn succeeded_steps(&self, _: EventId) -> Result<Vec<String>, StoreError> {
            unimplemented!()
        }
        async fn record_step(&self, _: &StepRecord) -> Result<(), StoreError> {
            unimplemented!()
        }
        async fn finish_many(&self, _: &[Finish]) -> Result<Vec<bool>, StoreError> {
            unimplemented!()
        }
        async fn release_all(&self, _: &str) -> Result<u64, StoreError> {
            unimplemented!()
        }
        async fn event(&self, _: EventId) -> Result<Option<EventDetail>, StoreError> {
            unimplemented!()
        }
        async fn requeue_overdue(&self, _: Duration, _: u32) -> Result<Vec<EventId>, StoreError> {
            unimplemented!()
        }
        async fn backlog(&self) -> Result<Backlog, StoreError> {
            unimplemented!()
        }
        async fn progress(&self, _: EventId) -> Result<Progress, StoreError> {
            unimplemented!()
        }
        async fn pause_provider(&self, _: &str, _: Option<&str>) -> Result<bool, StoreError> {
            unimplemented!()
        }
        async fn resume_provider(&self, _: &str) -> Result<bool, StoreError> {
            unimplemented!()
        }
        async fn provider_pauses(&self) -> Result<Vec<ProviderPause>, StoreError> {
            unimplemented!()
        }
        async fn counts(&self) -> Result<BTreeMap<EventStatus, u64>, StoreError> {
            unimplemented!()
        }
        async fn ping(&self) -> Result<(), StoreError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn repeated_keys_are_inserted_once_and_answered_as_duplicates() {
        let store = Recorder::default();
        let events: Vec<NewEvent> = ["a", "b", "a", "c", "b", "a"].map(event).into();
        let ids: Vec<EventId> = events.iter().map(|e| e.id).collect();
        let results: Vec<Inserted> = insert_grouped(&store, events)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(*store.calls.lock().unwrap(), [vec!["a", "b", "c"]]);
        assert_eq!(
            results,
            [
                Inserted::New(ids[0]),
                Inserted::New(ids[1]),
                Inserted::Duplicate(ids[0]),
                Inserted::New(ids[3]),
                Inserted::Duplicate(ids[1]),
                Inserted::Duplicate(ids[0]),
            ]
        );
    }

    #[tokio::test]
    async fn an_unavailable_store_fails_the_whole_batch_as_unavailable() {
        let store = Recorder {
            down: true,
            ..Default::default()
        };
        let results = insert_grouped(&store, ["a", "b", "a"].map(event).into()).await;
        assert_eq!(
            store.calls.lock().unwrap().len(),
            1,
            "no retries one by one"
        );
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Err(StoreError::Unavailable(_)))),
            "{results:?}"
        );
    }

    #[tokio::test]
    async fn a_refused_event_is_isolated_and_the_rest_commit() {
        let store = Recorder::default();
        let results = insert_grouped(&store, ["a", "bad", "c", "bad"].map(event).into()).await;
        assert_eq!(
            *store.calls.lock().unwrap(),
            [vec!["a", "bad", "c"], vec!["a"], vec!["bad"], vec!["c"]]
        );
        assert!(matches!(results[0], Ok(Inserted::New(_))));
        assert!(matches!(results[1], Err(StoreError::Other(_))));
        assert!(matches!(results[2], Ok(Inserted::New(_))));
        assert!(matches!(results[3], Err(StoreError::Other(_))));
    }

    #[tokio::test]
    async fn inserts_queued_through_an_outage_or_too_long_are_refused_untried() {
        let shared = Shared {
            store: Arc::new(Recorder::default()),
            last_outage: Mutex::new(None),
        };
        let pending = |queued: Instant| {
            let (reply, answer) = oneshot::channel();
            (
                Pending {
                    event: event("k"),
                    reply,
                    queued,
                },
                answer,
            )
        };
        let long = Duration::from_secs(3600);
        let (before, before_answer) = pending(Instant::now());
        *shared.last_outage.lock().unwrap() = Some(Outage {
            at: Instant::now() + Duration::from_millis(1),
            error: "connection refused".into(),
        });
        let (after, _after_answer) = pending(Instant::now() + Duration::from_millis(2));
        let kept = refuse_stale(&shared, vec![before, after], long);
        assert_eq!(kept.len(), 1);
        assert!(matches!(
            before_answer.await.unwrap(),
            Err(StoreError::Unavailable(e)) if e == "connection refused"
        ));

        *shared.last_outage.lock().unwrap() = None;
        let (old, old_answer) = pending(Instant::now() - Duration::from_secs(10));
        assert!(refuse_stale(&shared, vec![old], Duration::from_secs(5)).is_empty());
        assert!(matches!(
            old_answer.await.unwrap(),
            Err(StoreError::Unavailable(e)) if e.contains("5000 ms")
        ));
    }
}

//! Group commit, the accept path's way into the store: concurrent inserts share one
//! transaction, so one commit (and one fsync) makes a whole batch of webhooks durable instead
//! of one.
//!
//! The webhook handler inserts through [`GroupCommit`]. Each insert is queued; a collector
//! thread gathers what arrives within a short window (or until the batch is full) and hands
//! the batch to the engine's [`Intake::insert_batch`], one transaction. Each caller gets its
//! own event's result only after that transaction has committed.
//!
//! When this process also runs workers (`serve`), a batch first reserves free worker slots
//! through the [`Handover`] and its insert claims that many of its new events for them
//! ([`Intake::insert_and_claim`]); after the commit they go to the workers in memory, and their
//! callers learn they need no queue message.
//!
//! It must never answer an insert before its row is committed, and never let one event's
//! failure be reported as another's success: a batch that fails because the store is
//! unavailable fails every insert in it; a batch that fails for any other reason is retried
//! one event at a time, so one bad event cannot fail its neighbours.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::event::{ClaimedEvent, EventId, OrderKey};
use crate::store::{Cause, ClaimOnInsert, Inserted, Intake, NewEvent, StoreError};
use crate::verify::VerifiedWebhook;
use crate::worker::Handover;

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

/// A committed insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub inserted: Inserted,
    /// Claimed in its commit and handed to this process's workers: no queue message needed.
    pub handed_over: bool,
}

/// An insert waiting for its batch.
struct Pending {
    event: NewEvent,
    reply: oneshot::Sender<Result<Committed, StoreError>>,
    queued: Instant,
}

/// The last batch that failed because the store was unavailable: when, and why.
struct Outage {
    at: Instant,
    error: StoreError,
}

/// What the collector and the committing batches share.
struct Shared {
    store: Arc<dyn Intake>,
    /// This process's workers, when it runs any.
    handover: Option<Handover>,
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

/// Inserts into a store, committed in groups.
pub struct GroupCommit {
    shared: Arc<Shared>,
    queue: Option<Sender<Pending>>,
    replay_window: Duration,
}

impl GroupCommit {
    /// Insert into `inner`; with `handover`, claim what this process's workers can take now.
    /// Must be called inside a tokio runtime: batches are committed on it.
    pub fn new(
        inner: Arc<dyn Intake>,
        settings: GroupCommitSettings,
        handover: Option<Handover>,
    ) -> Result<Self, StoreError> {
        let replay_window = settings.replay_window;
        let shared = Arc::new(Shared {
            store: inner,
            handover,
            last_outage: Mutex::new(None),
        });
        if settings.max_batch <= 1 {
            return Ok(Self {
                shared,
                queue: None,
                replay_window,
            });
        }
        let (queue, rx) = std::sync::mpsc::channel();
        let runtime = tokio::runtime::Handle::current();
        let for_thread = shared.clone();
        // A plain thread, not a task: tokio's timers tick in milliseconds, and the window is
        // shorter than that. The thread only sleeps in the channel and hands batches over.
        std::thread::Builder::new()
            .name("hookd-group-commit".into())
            .spawn(move || collect(rx, for_thread, runtime, settings))
            .map_err(|e| {
                StoreError::Other(Cause::Io {
                    context: "cannot start the group commit thread".into(),
                    source: Arc::new(e),
                })
            })?;
        Ok(Self {
            shared,
            queue: Some(queue),
            replay_window,
        })
    }

    /// Store a verified webhook with its first transition. Returns only after the commit of
    /// the batch it went into. `traceparent` is the W3C trace context the worker continues;
    /// `order` its keys on the ordered routes (the lines it joins).
    pub async fn insert(
        &self,
        webhook: &VerifiedWebhook,
        traceparent: Option<&str>,
        order: Vec<OrderKey>,
    ) -> Result<Committed, StoreError> {
        let event = NewEvent::new(webhook, traceparent)?
            .with_replay_window(self.replay_window)
            .with_order(order);
        let Some(queue) = &self.queue else {
            let mut done = insert_handing_over(&self.shared, vec![event]).await;
            return done
                .pop()
                .unwrap_or_else(|| Err(StoreError::other("insert_batch returned nothing")));
        };
        let (reply, answer) = oneshot::channel();
        queue
            .send(Pending {
                event,
                reply,
                queued: Instant::now(),
            })
            .map_err(|_| StoreError::unavailable("group commit has stopped"))?;
        answer.await.unwrap_or_else(|_| {
            // The batch was dropped unfinished: the runtime is shutting down.
            Err(StoreError::unavailable("shutting down before the commit"))
        })
    }
}

/// The collector: waits for a free slot, takes the first queued insert, gathers more until the
/// window closes or the batch is full, and starts the batch's commit on the runtime. Ends when
/// the store is dropped (the channel closes).
fn collect(
    rx: Receiver<Pending>,
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    settings: GroupCommitSettings,
) {
    let slots = Arc::new(Slots {
        free: Mutex::new(settings.concurrency.max(1)),
        freed: Condvar::new(),
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
                _ if p.queued.elapsed() > max_queued => Some(StoreError::unavailable(format!(
                    "no commit started within {} ms",
                    max_queued.as_millis()
                ))),
                _ => None,
            };
            match refused {
                Some(error) => {
                    let _ = p.reply.send(Err(error));
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
    let results = insert_handing_over(&shared, events).await;
    if let Some(Err(error)) = results
        .iter()
        .find(|r| r.as_ref().is_err_and(StoreError::is_unavailable))
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

/// Insert `events` as one transaction, claiming for this process's workers as many of the new
/// ones as they have free slots, and hand those over once committed. Each event's result, in
/// order.
async fn insert_handing_over(
    shared: &Shared,
    events: Vec<NewEvent>,
) -> Vec<Result<Committed, StoreError>> {
    let reservation = shared.handover.as_ref().map(|h| h.reserve(events.len()));
    let claim = match (&shared.handover, &reservation) {
        (Some(h), Some(r)) if !r.is_empty() => h.claim(r),
        _ => ClaimOnInsert::none(),
    };
    let (results, claimed) = insert_grouped(shared.store.as_ref(), events, &claim).await;
    let handed: Vec<EventId> = claimed.iter().map(|c| c.id).collect();
    if let (Some(h), Some(r)) = (&shared.handover, reservation) {
        h.deliver(claimed, r);
    }
    results
        .into_iter()
        .map(|r| {
            r.map(|inserted| Committed {
                inserted,
                handed_over: matches!(inserted, Inserted::New(id) if handed.contains(&id)),
            })
        })
        .collect()
}

/// Insert `events` (keys may repeat) as one transaction and return each one's result, in order,
/// and the new events `claim` claimed. A key that repeats within the batch is inserted once;
/// its other copies are duplicates of it, exactly as if they had arrived one after the other.
async fn insert_grouped(
    store: &dyn Intake,
    events: Vec<NewEvent>,
    claim: &ClaimOnInsert,
) -> (Vec<Result<Inserted, StoreError>>, Vec<ClaimedEvent>) {
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
    let mut claimed = Vec::new();
    let results: Vec<Result<Inserted, StoreError>> = match store
        .insert_and_claim(&unique, claim)
        .await
    {
        Ok((done, c)) if done.len() == unique.len() => {
            claimed = c;
            done.into_iter().map(Ok).collect()
        }
        Ok((done, _)) => {
            let e = StoreError::other(format!(
                "insert_batch returned {} of {} results",
                done.len(),
                unique.len()
            ));
            unique.iter().map(|_| Err(e.clone())).collect()
        }
        Err(e) if e.is_unavailable() => unique.iter().map(|_| Err(e.clone())).collect(),
        Err(e) if unique.len() == 1 => vec![Err(e)],
        Err(e) => {
            // Not an outage: most likely one event the database refuses. Find it by trying each
            // alone, so the others still commit.
            tracing::warn!(error = %e, events = unique.len(), "batch insert failed; inserting one by one");
            let mut each = Vec::with_capacity(unique.len());
            for e in &unique {
                each.push(match store.insert_batch(std::slice::from_ref(e)).await {
                    Ok(mut one) if one.len() == 1 => Ok(one.remove(0)),
                    Ok(_) => Err(StoreError::other("insert_batch returned no result")),
                    Err(e) => Err(e),
                });
            }
            each
        }
    };
    let results = first
        .iter()
        .zip(copy_of_earlier)
        .map(|(&u, copy)| match (&results[u], copy) {
            (Ok(done), false) => Ok(*done),
            (Ok(done), true) => Ok(Inserted::Duplicate(done.id())),
            (Err(e), _) => Err(e.clone()),
        })
        .collect();
    (results, claimed)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::event::EventId;
    use crate::store::{EventStore, SqliteStore};

    /// A real SQLite store in a temporary directory, which refuses the key "bad" (as a database
    /// refuses a value it cannot store): a trigger aborts its insert.
    async fn sqlite() -> (tempfile::TempDir, Arc<SqliteStore>) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("hookd.db").display());
        let store = SqliteStore::connect(&url, 2, Duration::from_secs(5))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        sqlx::query(
            "CREATE TRIGGER refuse_bad BEFORE INSERT ON events WHEN NEW.idempotency_key = 'bad'
             BEGIN SELECT RAISE(ABORT, 'refused'); END",
        )
        .execute(store.writer())
        .await
        .unwrap();
        (dir, Arc::new(store))
    }

    /// A test seam over a real store: records the keys of each `insert_batch` call, then
    /// passes it on.
    struct Recording {
        store: Arc<SqliteStore>,
        calls: Mutex<Vec<Vec<String>>>,
    }

    impl Recording {
        fn new(store: Arc<SqliteStore>) -> Self {
            Self {
                store,
                calls: Mutex::new(Vec::new()),
            }
        }

        fn calls(&self) -> Vec<Vec<String>> {
            self.calls.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl Intake for Recording {
        async fn insert_and_claim(
            &self,
            events: &[NewEvent],
            claim: &ClaimOnInsert,
        ) -> Result<(Vec<Inserted>, Vec<ClaimedEvent>), StoreError> {
            let keys = events.iter().map(|e| e.key().1.to_owned()).collect();
            self.calls.lock().unwrap().push(keys);
            self.store.insert_and_claim(events, claim).await
        }
    }

    fn event(key: &str) -> NewEvent {
        NewEvent::for_test("stripe", key)
    }

    fn none() -> ClaimOnInsert {
        ClaimOnInsert::none()
    }

    #[tokio::test]
    async fn repeated_keys_are_inserted_once_and_answered_as_duplicates() {
        let (_dir, store) = sqlite().await;
        let store = Recording::new(store);
        let events: Vec<NewEvent> = ["a", "b", "a", "c", "b", "a"].map(event).into();
        let ids: Vec<EventId> = events.iter().map(NewEvent::id).collect();
        let results: Vec<Inserted> = insert_grouped(&store, events, &ClaimOnInsert::none())
            .await
            .0
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(store.calls(), [vec!["a", "b", "c"]]);
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
        let (_dir, store) = sqlite().await;
        // A closed pool: the store cannot be reached.
        store.writer().close().await;
        let store = Recording::new(store);
        let (results, _) = insert_grouped(&store, ["a", "b", "a"].map(event).into(), &none()).await;
        assert_eq!(store.calls().len(), 1, "no retries one by one");
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Err(StoreError::Unavailable(_)))),
            "{results:?}"
        );
    }

    #[tokio::test]
    async fn a_refused_event_is_isolated_and_the_rest_commit() {
        let (_dir, store) = sqlite().await;
        let recording = Recording::new(store.clone());
        let events = ["a", "bad", "c", "bad"].map(event).into();
        let (results, _) = insert_grouped(&recording, events, &none()).await;
        assert_eq!(
            recording.calls(),
            [vec!["a", "bad", "c"], vec!["a"], vec!["bad"], vec!["c"]]
        );
        assert!(matches!(results[0], Ok(Inserted::New(_))));
        assert!(matches!(results[1], Err(StoreError::Other(_))));
        assert!(matches!(results[2], Ok(Inserted::New(_))));
        assert!(matches!(results[3], Err(StoreError::Other(_))));
        let committed: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(store.writer())
            .await
            .unwrap();
        assert_eq!(committed, 2, "a and c are stored");
    }

    #[tokio::test]
    async fn inserts_queued_through_an_outage_or_too_long_are_refused_untried() {
        let (_dir, store) = sqlite().await;
        let shared = Shared {
            store,
            handover: None,
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
            error: StoreError::unavailable("connection refused"),
        });
        let (after, _after_answer) = pending(Instant::now() + Duration::from_millis(2));
        let kept = refuse_stale(&shared, vec![before, after], long);
        assert_eq!(kept.len(), 1);
        assert!(matches!(
            before_answer.await.unwrap(),
            Err(StoreError::Unavailable(e)) if e.to_string() == "connection refused"
        ));

        *shared.last_outage.lock().unwrap() = None;
        let (old, old_answer) = pending(Instant::now() - Duration::from_secs(10));
        assert!(refuse_stale(&shared, vec![old], Duration::from_secs(5)).is_empty());
        assert!(matches!(
            old_answer.await.unwrap(),
            Err(StoreError::Unavailable(e)) if e.to_string().contains("5000 ms")
        ));
    }
}

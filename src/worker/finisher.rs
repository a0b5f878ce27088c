//! Outcomes written together: every worker task of a process hands the end of its attempt to
//! one writer task, which writes whatever has queued up since its previous write in one
//! transaction ([`crate::store::Leases::finish_many`]). Under load one commit then ends many attempts
//! instead of one (the workers' counterpart of the accept path's group commit); with a single
//! event in flight a batch of one goes at once, so nothing waits for company.
//!
//! It must never answer a task before its batch has committed, and never report one item's
//! failure as another's success: a batch that fails, fails every item in it, and each task's
//! own retry loop (in `Worker::finish`) tries again.
//!
//! After a commit it tells the queue about the events the batch released (the next events of
//! the keys of ordered events that ended), as the store returned them: nothing is read again,
//! and a batch that released nothing announces nothing.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::queue::Queue;
use crate::store::{Finish, Released, StoreError, Work};

type Reply = oneshot::Sender<Result<bool, StoreError>>;

/// Most attempts ended in one transaction.
const MAX_BATCH: usize = 128;

/// The handle worker tasks write their outcomes through.
pub(super) struct Finisher {
    queue: mpsc::Sender<(Finish, Reply)>,
}

impl Finisher {
    /// Start the writer task; it stops when the last handle is dropped.
    pub(super) fn start(store: Arc<dyn Work>, announcer: Arc<dyn Queue>) -> Self {
        let (queue, mut rx) = mpsc::channel::<(Finish, Reply)>(MAX_BATCH * 2);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let (items, replies): (Vec<Finish>, Vec<Reply>) = batch.drain(..).unzip();
                match store.finish_many(&items).await {
                    Ok(done) => {
                        for (reply, written) in replies.into_iter().zip(done.written) {
                            let _ = reply.send(Ok(written));
                        }
                        if !done.released.is_empty() {
                            // Off the writer's path: the next batch need not wait for it.
                            tokio::spawn(announce(announcer.clone(), done.released));
                        }
                    }
                    Err(e) => {
                        for reply in replies {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
        Self { queue }
    }

    /// Write one attempt's end: true once committed, false when the lease had been lost.
    pub(super) async fn finish(&self, item: Finish) -> Result<bool, StoreError> {
        let stopped = || StoreError::unavailable("the outcome writer has stopped");
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((item, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Tell the queue about events that may start now. If this fails they are not lost: the store
/// queue's poll or the sweeper finds them (a released event is overdue from its old due time).
async fn announce(queue: Arc<dyn Queue>, released: Vec<Released>) {
    for r in released {
        if let Err(e) = queue.enqueue_in_line(r.id, &r.route, &r.key).await {
            tracing::warn!(error = %e, event_id = %r.id, "cannot enqueue the next event of a key; the sweeper will find it");
        }
    }
}

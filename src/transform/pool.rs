//! The threads the workers' transform calls run on: a fixed pool, each thread with its own
//! [`Engine`] (every script compiled once on it, at start-up), taking calls from one queue.
//!
//! Owns the hand-off between the async workers and the engines. It must never run a script on
//! an async runtime thread: a call takes up to the time cap, and a worker thread blocked that
//! long would stall every event it serves.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::{Engine, Script, TransformError, TransformInput, TransformSettings, Transformed};

struct Job {
    script: Arc<str>,
    input: TransformInput,
    reply: oneshot::Sender<Result<Transformed, TransformError>>,
}

/// Runs transforms off the async runtime. Cheap to clone; the threads stop when the last clone
/// is dropped.
#[derive(Clone)]
pub struct Transforms {
    jobs: mpsc::Sender<Job>,
}

impl Transforms {
    /// Start `settings.threads` threads and compile every script on each. The first script
    /// that does not load is the error, and no thread is left running.
    pub fn start(settings: &TransformSettings, scripts: &[Script]) -> Result<Self, TransformError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let (ready_tx, ready) = mpsc::channel();
        let threads = settings.threads.max(1);
        for i in 0..threads {
            let (queue, ready_tx) = (queue.clone(), ready_tx.clone());
            let (settings, scripts) = (settings.clone(), scripts.to_vec());
            std::thread::Builder::new()
                .name(format!("hookd-transform-{i}"))
                .spawn(move || {
                    let engine = Engine::new(&settings, &scripts);
                    let engine = match engine {
                        Ok(e) => {
                            let _ = ready_tx.send(Ok(()));
                            e
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    drop(ready_tx);
                    serve(&engine, &queue);
                })
                .map_err(|e| {
                    TransformError::Engine(format!("cannot start a transform thread: {e}"))
                })?;
        }
        drop(ready_tx);
        for _ in 0..threads {
            // On an error `jobs` is dropped on return, and the threads that did start stop.
            ready.recv().map_err(|_| {
                TransformError::Engine("a transform thread stopped while starting".into())
            })??;
        }
        Ok(Self { jobs })
    }

    /// Call `transform(event)` of `script` on a transform thread and wait for the answer.
    pub async fn run(
        &self,
        script: &Arc<str>,
        input: TransformInput,
    ) -> Result<Transformed, TransformError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            script: script.clone(),
            input,
            reply,
        };
        self.jobs
            .send(job)
            .map_err(|_| TransformError::Engine("the transform threads have stopped".into()))?;
        answer.await.map_err(|_| {
            TransformError::Engine("the transform thread stopped during the call".into())
        })?
    }
}

/// Take calls until every [`Transforms`] is dropped.
fn serve(engine: &Engine, queue: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        // One idle thread waits on the queue while the others wait for the lock.
        let job = match queue.lock() {
            Ok(q) => q.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let result = engine.run(&job.script, &job.input);
        // The caller may have given up (its worker is shutting down): nothing to tell.
        let _ = job.reply.send(result);
    }
}

//! Liveness of a long-running loop (the worker pool's claim loop): it beats on every turn, and
//! `/health/live` asks whether it still turns. Owns only the beat and the verdict; it must never
//! decide anything about the work the loop does.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A loop's last sign of life.
pub struct Heartbeat {
    started: Instant,
    /// Milliseconds after `started` of the last beat.
    last_ms: AtomicU64,
    ended: AtomicBool,
    /// A loop that has not turned for this long is stuck (a connection that hangs forever).
    stall: Duration,
}

/// What `/health/live` reports of a loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoopState {
    /// It turned `ago` ago, within the stall limit.
    Running { ago: Duration },
    /// It has not turned for `ago`, longer than the stall limit.
    Stalled { ago: Duration },
    /// It returned (shutdown) or panicked.
    Ended,
}

impl Heartbeat {
    /// A heartbeat that counts as alive now, and stalled after `stall` without a beat.
    pub fn new(stall: Duration) -> Self {
        Self {
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
            ended: AtomicBool::new(false),
            stall,
        }
    }

    /// The loop turned.
    pub fn beat(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Marks the loop ended when dropped: hold it for as long as the loop runs, so a panic
    /// ends it too.
    pub fn guard(&self) -> EndGuard<'_> {
        EndGuard(self)
    }

    pub fn state(&self) -> LoopState {
        if self.ended.load(Ordering::Relaxed) {
            return LoopState::Ended;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        let ago = self.started.elapsed().saturating_sub(last);
        if ago > self.stall {
            LoopState::Stalled { ago }
        } else {
            LoopState::Running { ago }
        }
    }
}

/// See [`Heartbeat::guard`].
pub struct EndGuard<'a>(&'a Heartbeat);

impl Drop for EndGuard<'_> {
    fn drop(&mut self) {
        self.0.ended.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_is_running_until_it_stalls_or_ends() {
        let h = Heartbeat::new(Duration::from_millis(30));
        h.beat();
        assert!(matches!(h.state(), LoopState::Running { .. }));
        std::thread::sleep(Duration::from_millis(50));
        assert!(matches!(h.state(), LoopState::Stalled { .. }));
        h.beat();
        {
            let _g = h.guard();
            assert!(matches!(h.state(), LoopState::Running { .. }));
        }
        assert_eq!(h.state(), LoopState::Ended);
    }
}

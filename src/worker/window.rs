//! The retry window: an event still unfinished `HOOKD_RETRY_WINDOW` after it was received (or
//! replayed) fails for good with `retry_window_expired`, and no wait of its (retry, breaker,
//! rate limit) ends after that deadline, so an event parked behind a breaker that never closes
//! expires on time.
//!
//! Owns when the window ends and how an outcome is cut to it. It must never bind compensations:
//! once an event compensates, its compensations run to their own end.

use chrono::{DateTime, Utc};

use super::Worker;
use crate::event::{ClaimedEvent, EventStatus, Outcome, Progress};

/// The start of the reason an event failed for good because its retry window ended.
const WINDOW_EXPIRED: &str = "retry_window_expired";

/// `outcome`, with a wait that would end after `deadline` (a retry or a postponement of the
/// normal phase) cut to end at it: the event is then claimed once more, and expires.
/// Compensations are not bound by the window.
pub(super) fn due_by(outcome: Outcome, deadline: DateTime<Utc>) -> Outcome {
    match outcome {
        Outcome::RetryAt { at, error } => Outcome::RetryAt {
            at: at.min(deadline),
            error,
        },
        Outcome::Postpone { at, to, reason } if to != EventStatus::Compensating => {
            Outcome::Postpone {
                at: at.min(deadline),
                to,
                reason,
            }
        }
        other => other,
    }
}

impl Worker {
    /// When `event`'s retry window ends: `window` after it was received, or after its last
    /// replay (a replay is a new delivery, with a window of its own).
    pub(super) async fn window_end(&self, event: &ClaimedEvent) -> DateTime<Utc> {
        let window =
            chrono::Duration::from_std(self.settings.retry.window).unwrap_or(chrono::Duration::MAX);
        let end = |from: DateTime<Utc>| {
            from.checked_add_signed(window)
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
        };
        let received = end(event.received_at);
        if event.generation == 0 || received > Utc::now() {
            return received;
        }
        match self.store.replayed_at(event.id).await {
            Ok(replayed) => end(replayed.unwrap_or(event.received_at)),
            Err(e) => {
                // Not knowing when the window started is no reason to end it: judge again at
                // the next attempt.
                tracing::warn!(error = %e, "cannot read when the event was replayed; retry window not applied");
                DateTime::<Utc>::MAX_UTC
            }
        }
    }

    /// Why the event fails for good before this attempt runs anything: its retry window is
    /// over. Compensations are not bound by it.
    pub(super) fn window_over(
        &self,
        event: &ClaimedEvent,
        progress: &Progress,
        deadline: DateTime<Utc>,
    ) -> Option<String> {
        if progress.compensating || Utc::now() < deadline {
            return None;
        }
        let from = if event.generation == 0 {
            "arrival"
        } else {
            "replay"
        };
        let error = format!(
            "{WINDOW_EXPIRED}: not finished within {} s (HOOKD_RETRY_WINDOW) of its {from}",
            self.settings.retry.window.as_secs(),
        );
        tracing::warn!(%error, "retry window over");
        Some(error)
    }
}

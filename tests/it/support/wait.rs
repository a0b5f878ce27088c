//! Waiting for what happens in the background (a worker finishing an event, a target receiving
//! a request, a server starting): one polling loop with a deadline, so every wait fails the same
//! way, naming what it waited for and the last value it saw. A wait never passes on a timeout.

use std::fmt::{Debug, Display};
use std::time::{Duration, Instant};

use hookd::event::{EventId, EventStatus};

/// The first pause between two polls; it doubles up to [`MAX_PAUSE`]. Short first, since most
/// waits end within milliseconds; longer later, so long waits do not load a shared machine.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
const MAX_PAUSE: Duration = Duration::from_millis(100);

/// Poll `probe` until `done` accepts what it returned, and return that value. Fails after
/// `within` with "waited … for `what`" and the last value seen. `done` may also assert on the
/// value (something that must hold at every poll).
pub async fn eventually<T, Fut>(
    what: impl Display,
    within: Duration,
    mut probe: impl FnMut() -> Fut,
    done: impl Fn(&T) -> bool,
) -> T
where
    T: Debug,
    Fut: Future<Output = T>,
{
    let deadline = Instant::now() + within;
    let mut pause = FIRST_PAUSE;
    loop {
        let seen = probe().await;
        if done(&seen) {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "waited {within:?} for {what}; last seen: {seen:#?}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// A running hookd whose events a test reads back: in this process through its store
/// ([`super::TestServer`]), or a child process through the admin API ([`super::Hookd`]).
pub trait ReadEvents {
    /// One event as it reads back.
    type Event: Debug;

    /// The event `id` as it is now; fails if there is none.
    async fn event(&self, id: EventId) -> Self::Event;

    /// The status of an event read back (`None`: none in it).
    fn status(event: &Self::Event) -> Option<EventStatus>;

    /// Wait until the event `id` reaches `status`, or fail after `within`.
    async fn wait_status(&self, id: EventId, status: EventStatus, within: Duration) -> Self::Event {
        eventually(
            format!("event {id} to reach {status}"),
            within,
            || self.event(id),
            |e| Self::status(e) == Some(status),
        )
        .await
    }
}

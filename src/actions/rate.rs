//! Destination rate limits: at most `count` steps per period to one destination (`50/s`,
//! `600/m`, `1000/h`), shared by every step of every route that sends there.
//!
//! Owns the notation, the schedule (a GCRA without burst: one slot every `period / count`, so
//! no window of one period ever holds more than `count` starts) and the per-process keeper of
//! that schedule, named by the destination's text (generic over the destination type, so any
//! kind of step that has a destination is limited the same way). The keeper shared by a fleet
//! lives with the Redis queue (which owns the connection and the key prefix) and implements
//! [`RateKeeper`]. This module must never sleep longer than [`HORIZON`] while a worker waits:
//! an event whose slot is further away is put back until then, without using up an attempt, so
//! a limited destination never holds workers that other destinations' events need.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;

/// The furthest ahead a step takes its destination's next slot and waits for it in place
/// (holding its worker and destination slot). Beyond it the event is put back until its slot is
/// near. A destination's concurrency cap bounds how many workers wait in place for it.
pub const HORIZON: Duration = Duration::from_secs(1);

/// How long an event waits when the shared schedule cannot be read (Redis away): it is not
/// sent unchecked, which would let every process send the full rate.
const UNCHECKED_DELAY: Duration = Duration::from_secs(1);

/// At most `count` steps per `period` to one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct RateLimit {
    count: u32,
    period: Period,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Period {
    Second,
    Minute,
    Hour,
}

impl Period {
    fn duration(self) -> Duration {
        Duration::from_secs(match self {
            Self::Second => 1,
            Self::Minute => 60,
            Self::Hour => 3600,
        })
    }

    fn unit(self) -> &'static str {
        match self {
            Self::Second => "s",
            Self::Minute => "m",
            Self::Hour => "h",
        }
    }
}

impl RateLimit {
    /// The time between two slots: `period / count`.
    pub fn interval(&self) -> Duration {
        self.period.duration() / self.count
    }
}

/// A rate limit that does not read as `<count>/s`, `<count>/m` or `<count>/h`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a rate limit: expected <count>/s, <count>/m or <count>/h with a count from 1 \
     to 1000000 (e.g. 50/s)"
)]
pub struct BadRateLimit(String);

impl FromStr for RateLimit {
    type Err = BadRateLimit;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadRateLimit(s.to_owned());
        let (count, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        if !(1..=1_000_000).contains(&count) {
            return Err(bad());
        }
        let period = match unit.trim() {
            "s" => Period::Second,
            "m" => Period::Minute,
            "h" => Period::Hour,
            _ => return Err(bad()),
        };
        Ok(Self { count, period })
    }
}

impl TryFrom<String> for RateLimit {
    type Error = BadRateLimit;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.period.unit())
    }
}

/// The answer of a [`RateKeeper`] about a destination's next free slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The slot is taken for the caller; it starts this long from now.
    Taken(Duration),
    /// The next free slot is this far away, beyond the horizon: nothing was taken.
    Later(Duration),
}

/// The shared schedule could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeeperError(pub String);

/// Where each destination's schedule is kept: in this process, or shared by a fleet.
#[async_trait]
pub trait RateKeeper: Send + Sync + 'static {
    /// Take the next free slot of the schedule `name` (a destination) if it starts within
    /// `horizon`, and move the schedule one `interval` on; otherwise say how far away it is and
    /// take nothing.
    async fn reserve(
        &self,
        name: &str,
        interval: Duration,
        horizon: Duration,
    ) -> Result<Slot, KeeperError>;
}

/// Schedules kept in this process's memory: the limit holds per process.
#[derive(Default)]
pub struct LocalKeeper {
    /// Each schedule's next free slot.
    next: Mutex<HashMap<String, Instant>>,
}

#[async_trait]
impl RateKeeper for LocalKeeper {
    async fn reserve(
        &self,
        name: &str,
        interval: Duration,
        horizon: Duration,
    ) -> Result<Slot, KeeperError> {
        let now = Instant::now();
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let slot = next.get(name).copied().unwrap_or(now).max(now);
        let wait = slot - now;
        if wait > horizon {
            return Ok(Slot::Later(wait));
        }
        next.insert(name.to_owned(), slot + interval);
        Ok(Slot::Taken(wait))
    }
}

/// Whether a step may start now.
pub enum Pace {
    Go,
    /// Not now: the event waits until then without using up an attempt.
    Wait {
        until: Instant,
        reason: String,
    },
}

/// The rate limits of every limited destination, and where their schedules are kept.
pub struct RateLimits<D> {
    limits: HashMap<D, RateLimit>,
    keeper: Arc<dyn RateKeeper>,
}

impl<D: Eq + Hash + fmt::Display> RateLimits<D> {
    pub fn new(
        limits: impl IntoIterator<Item = (D, RateLimit)>,
        keeper: Arc<dyn RateKeeper>,
    ) -> Self {
        Self {
            limits: limits.into_iter().collect(),
            keeper,
        }
    }

    /// No destination limited.
    pub fn none() -> Self {
        Self::new([], Arc::new(LocalKeeper::default()))
    }

    /// The limit of `dest`, if it has one.
    pub fn limit(&self, dest: &D) -> Option<RateLimit> {
        self.limits.get(dest).copied()
    }

    /// Take a slot of `dest`'s schedule and wait for it (at most [`HORIZON`]), or say until when
    /// the event should wait instead.
    pub async fn pace(&self, dest: &D) -> Pace {
        let Some(limit) = self.limit(dest) else {
            return Pace::Go;
        };
        let name = dest.to_string();
        match self.keeper.reserve(&name, limit.interval(), HORIZON).await {
            Ok(Slot::Taken(wait)) => {
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                Pace::Go
            }
            // Back when the slot is within the horizon, spread over half of it so the events
            // put back together do not all ask again at the same instant.
            Ok(Slot::Later(wait)) => Pace::Wait {
                until: Instant::now() + wait.saturating_sub(HORIZON) + spread(HORIZON / 2),
                reason: format!("rate limit {limit} of {dest}: next slot in {wait:?}"),
            },
            Err(e) => {
                tracing::warn!(destination = %dest, error = %e, "cannot read the shared rate limit schedule; the step waits");
                Pace::Wait {
                    until: Instant::now() + UNCHECKED_DELAY,
                    reason: format!("rate limit {limit} of {dest} cannot be checked: {e}"),
                }
            }
        }
    }
}

/// A random part of `span`, so events put back together come back apart.
fn spread(span: Duration) -> Duration {
    let ms = span.as_millis().max(1) as u64;
    Duration::from_millis((uuid::Uuid::new_v4().as_u128() as u64) % ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notation() {
        let l: RateLimit = "50/s".parse().unwrap();
        assert_eq!(l.interval(), Duration::from_millis(20));
        assert_eq!(l.to_string(), "50/s");
        assert_eq!(
            "120/m".parse::<RateLimit>().unwrap().interval(),
            Duration::from_millis(500)
        );
        assert_eq!(
            " 3600 / h ".parse::<RateLimit>().unwrap().interval(),
            Duration::from_secs(1)
        );
        for bad in ["", "50", "50/d", "0/s", "-1/s", "x/s", "2000000/s", "50/"] {
            let err = bad.parse::<RateLimit>().unwrap_err().to_string();
            assert!(err.contains("<count>/s"), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn local_slots_are_spaced_and_far_ones_not_taken() {
        let keeper = LocalKeeper::default();
        let (d, other) = ("http://a:1", "http://b:1");
        let interval = Duration::from_millis(400);
        let horizon = Duration::from_secs(1);
        let taken = |s: Slot| match s {
            Slot::Taken(w) => w,
            Slot::Later(w) => panic!("not taken: {w:?}"),
        };
        assert_eq!(
            taken(keeper.reserve(d, interval, horizon).await.unwrap()),
            Duration::ZERO
        );
        let second = taken(keeper.reserve(d, interval, horizon).await.unwrap());
        assert!(
            second > Duration::from_millis(300) && second <= interval,
            "{second:?}"
        );
        let third = taken(keeper.reserve(d, interval, horizon).await.unwrap());
        assert!(third > Duration::from_millis(700), "{third:?}");
        // The fourth slot is 1.2 s away: beyond the horizon, and not taken.
        for _ in 0..2 {
            match keeper.reserve(d, interval, horizon).await.unwrap() {
                Slot::Later(w) => assert!(w > horizon, "{w:?}"),
                Slot::Taken(w) => panic!("taken {w:?} away"),
            }
        }
        // Another destination has a schedule of its own.
        assert_eq!(
            taken(keeper.reserve(other, interval, horizon).await.unwrap()),
            Duration::ZERO
        );
    }

    #[tokio::test]
    async fn pace_waits_in_place_then_puts_back() {
        let d = "http://a:1".to_owned();
        let r = RateLimits::new(
            [(d.clone(), "2/s".parse().unwrap())],
            Arc::new(LocalKeeper::default()),
        );
        let started = Instant::now();
        // Four steps at once: slots at 0, 0.5 and 1 s are within the horizon and waited for in
        // place; the fourth, 1.5 s away, is put back.
        let paces = tokio::join!(r.pace(&d), r.pace(&d), r.pace(&d), r.pace(&d));
        assert!(
            started.elapsed() >= Duration::from_millis(990),
            "{:?}",
            started.elapsed()
        );
        let paces = [paces.0, paces.1, paces.2, paces.3];
        assert_eq!(paces.iter().filter(|p| matches!(p, Pace::Go)).count(), 3);
        let Some(Pace::Wait { until, reason }) =
            paces.into_iter().find(|p| matches!(p, Pace::Wait { .. }))
        else {
            panic!("a slot beyond the horizon is not waited for in place");
        };
        assert!(reason.contains("rate limit 2/s of http://a:1"), "{reason}");
        assert!(
            until <= Instant::now() + HORIZON,
            "back when its slot is near"
        );
        assert!(matches!(
            r.pace(&"http://free:1".to_owned()).await,
            Pace::Go
        ));
    }
}

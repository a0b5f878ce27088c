//! Destination health: a circuit breaker and a concurrency limit for every destination (a
//! forward URL's origin, or the SMTP server), kept in this process's memory, and the gate of
//! its rate limit (`rate`), asked last.
//!
//! Owns the breaker state machine (closed → open after `failure_threshold` consecutive failures
//! → half-open after the cool-down, one probe at a time → closed on success, open again on
//! failure), the per-destination permits, and the counters the admin API and metrics read.
//! It must never touch the store or run a step: the worker asks it before a step ("may I?") and
//! tells it after ("it answered" / "it failed"), and decides what a refusal means for the event.
//!
//! Breaker state is per process: each worker process learns a destination's health on its own
//! (an outage costs each process `failure_threshold` failures before its breaker opens).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::glob_match;
use super::rate::{Pace, RateLimits};

/// Where a step sends something: `https://api.example.com:443`-style origin of a forward URL,
/// or `smtp://host:port` of the mail server. Breakers and limits are kept per destination.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Destination(Arc<str>);

impl Destination {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into().into())
    }

    /// The origin of a URL: scheme, host and port, without path or credentials.
    pub fn of_url(url: &reqwest::Url) -> Self {
        let host = url.host_str().unwrap_or("");
        match url.port_or_known_default() {
            Some(port) => Self::new(format!("{}://{host}:{port}", url.scheme())),
            None => Self::new(format!("{}://{host}", url.scheme())),
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// When a breaker opens and for how long, as data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long it stays open before one probe is let through.
    pub cooldown: Duration,
}

/// How long a step waits for a free slot at a busy destination before its event is put back.
/// Short: a slot of a fast destination frees within it, and a worker waiting on a slow one is a
/// worker other destinations do not get.
const BUSY_WAIT: Duration = Duration::from_millis(50);
/// How long an event put back because its destination was busy waits before it is tried again.
const BUSY_DELAY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open {
        until: Instant,
    },
    /// The cool-down is over. `probe_until` is set while a probe is out: nobody else may go
    /// until it reports, or until that deadline passes (its worker died).
    HalfOpen {
        probe_until: Option<Instant>,
    },
}

/// Running totals per destination, for the admin API and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Steps whose destination answered (including event-specific refusals such as a 400).
    pub healthy: u64,
    /// Steps that failed because of the destination (connection, timeout, 5xx, 429, SMTP 4xx).
    pub failures: u64,
    /// Times the breaker opened.
    pub opened: u64,
    /// Half-open probes let through.
    pub probes: u64,
    /// Steps refused because the breaker was open, the destination was at its limit, or its
    /// rate limit had no slot near.
    pub deferred: u64,
}

struct Entry {
    state: State,
    consecutive_failures: u32,
    changed_at: DateTime<Utc>,
    permits: Arc<Semaphore>,
    counters: Counters,
}

impl Entry {
    fn new(limit: usize) -> Self {
        Self {
            state: State::Closed,
            consecutive_failures: 0,
            changed_at: Utc::now(),
            permits: Arc::new(Semaphore::new(limit)),
            counters: Counters::default(),
        }
    }

    fn is_open(&self, now: Instant) -> bool {
        matches!(self.state, State::Open { until } if until > now)
    }
}

/// The answer to "may this step use its destination now?".
pub enum Admission {
    Go(Pass),
    /// Not now: the event should wait until `until` without using up an attempt.
    Wait {
        until: Instant,
        reason: String,
    },
}

/// Permission to use a destination for one step. Report the result with
/// [`Destinations::record`]; dropping it unreported frees the slot (and the probe, if it was one).
pub struct Pass {
    registry: Arc<Destinations>,
    destination: Destination,
    probe: bool,
    reported: bool,
    _permit: OwnedSemaphorePermit,
}

impl Pass {
    pub fn is_probe(&self) -> bool {
        self.probe
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if self.probe && !self.reported {
            let mut entries = self.registry.lock();
            if let Some(e) = entries.get_mut(&self.destination)
                && matches!(e.state, State::HalfOpen { .. })
            {
                e.state = State::HalfOpen { probe_until: None };
            }
        }
    }
}

/// What the destination did with one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It answered: success, or a refusal that is about this event (e.g. HTTP 400).
    Answered,
    /// It failed as a destination: unreachable, timed out, 5xx, 429, SMTP 4xx.
    Failed,
}

/// The breaker after a result was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Closed,
    /// Open until then: a failure that left the breaker open is the outage's fault, not the
    /// event's, and the worker does not count it as an attempt.
    Open {
        until: Instant,
    },
}

/// One destination as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationState {
    pub destination: Destination,
    /// `closed`, `open` or `half_open`.
    pub state: &'static str,
    pub consecutive_failures: u32,
    pub open_until: Option<DateTime<Utc>>,
    /// When the state last changed.
    pub since: DateTime<Utc>,
    pub in_flight: usize,
    pub concurrency_limit: usize,
    pub counters: Counters,
}

/// Breakers and limits of every destination this process sends to.
pub struct Destinations {
    policy: BreakerPolicy,
    limit: usize,
    /// Route provider patterns and the destinations their steps (and compensations) use;
    /// replaced when the live configuration changes the routes.
    provider_routes: RwLock<Vec<(String, Vec<Destination>)>>,
    entries: Mutex<HashMap<Destination, Entry>>,
    rates: RateLimits<Destination>,
}

impl Destinations {
    pub fn new(
        policy: BreakerPolicy,
        limit: usize,
        provider_routes: Vec<(String, Vec<Destination>)>,
        rates: RateLimits<Destination>,
    ) -> Self {
        let limit = limit.max(1);
        let entries = provider_routes
            .iter()
            .flat_map(|(_, d)| d.iter().cloned())
            .map(|d| (d, Entry::new(limit)))
            .collect();
        Self {
            policy,
            limit,
            provider_routes: RwLock::new(provider_routes),
            entries: Mutex::new(entries),
            rates,
        }
    }

    /// The routes changed (live configuration): judge pausing a provider on these.
    pub fn set_provider_routes(&self, provider_routes: Vec<(String, Vec<Destination>)>) {
        *self
            .provider_routes
            .write()
            .unwrap_or_else(|p| p.into_inner()) = provider_routes;
    }

    fn routes(&self) -> std::sync::RwLockReadGuard<'_, Vec<(String, Vec<Destination>)>> {
        self.provider_routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Destination, Entry>> {
        // A panic while holding this lock cannot leave an entry half-updated in a way that
        // matters more than losing breaker state; keep going.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ask to use `dest` for one step that takes at most `step_timeout`.
    pub async fn admit(self: &Arc<Self>, dest: &Destination, step_timeout: Duration) -> Admission {
        if let Some(wait) = self.breaker_gate(dest, Instant::now(), None) {
            return wait;
        }
        let permits = self
            .lock()
            .entry(dest.clone())
            .or_insert_with(|| Entry::new(self.limit))
            .permits
            .clone();
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => match tokio::time::timeout(BUSY_WAIT, permits.acquire_owned()).await {
                Ok(Ok(p)) => p,
                _ => {
                    self.count_deferred(dest);
                    return Admission::Wait {
                        until: Instant::now() + BUSY_DELAY + jitter(BUSY_DELAY),
                        reason: format!(
                            "destination {dest} is busy ({} steps in flight)",
                            self.limit
                        ),
                    };
                }
            },
        };
        // Between the first look and the permit the state may have moved on; decide for real
        // now, and take the probe slot if this step is the probe.
        let now = Instant::now();
        let mut probe = false;
        if let Some(wait) = self.breaker_gate(dest, now, Some((&mut probe, now + step_timeout))) {
            return wait;
        }
        let pass = Pass {
            registry: self.clone(),
            destination: dest.clone(),
            probe,
            reported: false,
            _permit: permit,
        };
        // Last, holding the slot: waiting in place for the rate limit then occupies at most the
        // destination's concurrency cap of workers. Refused, the pass is dropped, which frees
        // the slot and the probe.
        match self.rates.pace(dest).await {
            Pace::Go => Admission::Go(pass),
            Pace::Wait { until, reason } => {
                self.count_deferred(dest);
                Admission::Wait { until, reason }
            }
        }
    }

    /// `None` if the breaker lets a step through. With `take_probe`, a half-open breaker hands
    /// out its probe slot (marking `*probe`) until the given deadline.
    fn breaker_gate(
        &self,
        dest: &Destination,
        now: Instant,
        take_probe: Option<(&mut bool, Instant)>,
    ) -> Option<Admission> {
        let mut entries = self.lock();
        let e = entries
            .entry(dest.clone())
            .or_insert_with(|| Entry::new(self.limit));
        if let State::Open { until } = e.state
            && until <= now
        {
            e.state = State::HalfOpen { probe_until: None };
            e.changed_at = Utc::now();
            tracing::info!(destination = %dest, "circuit breaker half-open: one probe may go");
        }
        let wait = match e.state {
            State::Closed => return None,
            State::Open { until } => Admission::Wait {
                until: until + jitter(self.policy.cooldown),
                reason: format!("circuit breaker for {dest} is open"),
            },
            State::HalfOpen { probe_until } => {
                if probe_until.is_none_or(|deadline| deadline <= now) {
                    if let Some((probe, deadline)) = take_probe {
                        *probe = true;
                        e.state = State::HalfOpen {
                            probe_until: Some(deadline),
                        };
                        e.counters.probes += 1;
                    }
                    return None;
                }
                // Someone else is probing; look again soon rather than a whole cool-down later.
                Admission::Wait {
                    until: now + (self.policy.cooldown / 4).max(Duration::from_millis(50)),
                    reason: format!("circuit breaker for {dest} is half-open; a probe is out"),
                }
            }
        };
        e.counters.deferred += 1;
        Some(wait)
    }

    fn count_deferred(&self, dest: &Destination) {
        if let Some(e) = self.lock().get_mut(dest) {
            e.counters.deferred += 1;
        }
    }

    /// Report what the destination did with the step `pass` was for.
    pub fn record(&self, mut pass: Pass, verdict: Verdict) -> Health {
        pass.reported = true;
        self.record_at(&pass.destination, pass.probe, verdict, Instant::now())
    }

    fn record_at(&self, dest: &Destination, probe: bool, verdict: Verdict, now: Instant) -> Health {
        let mut entries = self.lock();
        let paused_before = self.paused_patterns(&entries, now);
        let e = entries
            .entry(dest.clone())
            .or_insert_with(|| Entry::new(self.limit));
        let health = match verdict {
            Verdict::Answered => {
                e.counters.healthy += 1;
                e.consecutive_failures = 0;
                if e.state != State::Closed {
                    e.state = State::Closed;
                    e.changed_at = Utc::now();
                    tracing::info!(destination = %dest, probe, "circuit breaker closed: destination answered");
                }
                Health::Closed
            }
            Verdict::Failed => {
                e.counters.failures += 1;
                e.consecutive_failures = e.consecutive_failures.saturating_add(1);
                match e.state {
                    State::Open { until } => Health::Open { until },
                    State::Closed if e.consecutive_failures < self.policy.failure_threshold => {
                        Health::Closed
                    }
                    // The threshold reached, or any failure while half-open (the probe, or a
                    // step that started before the breaker opened): open for a cool-down.
                    _ => {
                        let until = now + self.policy.cooldown;
                        e.state = State::Open { until };
                        e.changed_at = Utc::now();
                        e.counters.opened += 1;
                        tracing::warn!(
                            destination = %dest,
                            consecutive_failures = e.consecutive_failures,
                            cooldown_ms = self.policy.cooldown.as_millis() as u64,
                            probe,
                            "circuit breaker open: events for this destination wait"
                        );
                        Health::Open { until }
                    }
                }
            }
        };
        let paused_after = self.paused_patterns(&entries, now);
        for p in paused_after.difference(&paused_before) {
            tracing::warn!(provider = %p, "provider paused automatically: every destination of its routes is open");
        }
        for p in paused_before.difference(&paused_after) {
            tracing::info!(provider = %p, "provider resumed automatically: a destination of its routes recovered");
        }
        health
    }

    /// Route provider patterns whose destinations are all open.
    fn paused_patterns(
        &self,
        entries: &HashMap<Destination, Entry>,
        now: Instant,
    ) -> BTreeSet<String> {
        self.routes()
            .iter()
            .filter(|(_, dests)| {
                !dests.is_empty()
                    && dests
                        .iter()
                        .all(|d| entries.get(d).is_some_and(|e| e.is_open(now)))
            })
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Destinations of every route that applies to `provider`.
    pub fn provider_destinations(&self, provider: &str) -> Vec<Destination> {
        let set: BTreeSet<Destination> = self
            .routes()
            .iter()
            .filter(|(pattern, _)| glob_match(pattern, provider))
            .flat_map(|(_, d)| d.iter().cloned())
            .collect();
        set.into_iter().collect()
    }

    /// If every destination of every route for `provider` is open, the provider is paused
    /// automatically: its events wait until the earliest cool-down ends (then one probes).
    pub fn provider_paused_until(&self, provider: &str) -> Option<Instant> {
        let dests = self.provider_destinations(provider);
        if dests.is_empty() {
            return None;
        }
        let now = Instant::now();
        let entries = self.lock();
        dests
            .iter()
            .map(|d| match entries.get(d).map(|e| e.state) {
                Some(State::Open { until }) if until > now => Some(until),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .and_then(|untils| untils.into_iter().min())
    }

    /// Every destination's state, sorted by name.
    pub fn snapshot(&self) -> Vec<DestinationState> {
        let now = Instant::now();
        let wall = Utc::now();
        let entries = self.lock();
        let mut out: Vec<_> = entries
            .iter()
            .map(|(d, e)| {
                let (state, open_until) = match e.state {
                    State::Open { until } if until > now => (
                        "open",
                        chrono::Duration::from_std(until - now)
                            .ok()
                            .map(|left| wall + left),
                    ),
                    State::Closed => ("closed", None),
                    _ => ("half_open", None),
                };
                DestinationState {
                    destination: d.clone(),
                    state,
                    consecutive_failures: e.consecutive_failures,
                    open_until,
                    since: e.changed_at,
                    in_flight: self.limit - e.permits.available_permits(),
                    concurrency_limit: self.limit,
                    counters: e.counters.clone(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.destination.cmp(&b.destination));
        out
    }
}

/// Up to a tenth of the cool-down (at most a second), so waiting events do not all return in
/// the same instant.
fn jitter(cooldown: Duration) -> Duration {
    let span = (cooldown / 10).min(Duration::from_secs(1)).as_millis() as u64;
    if span == 0 {
        return Duration::ZERO;
    }
    let r = (uuid::Uuid::new_v4().as_u128() as u64) % span;
    Duration::from_millis(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Arc<Destinations> {
        Arc::new(Destinations::new(
            BreakerPolicy {
                failure_threshold: 3,
                cooldown: Duration::from_millis(200),
            },
            2,
            vec![
                ("stripe".into(), vec![Destination::new("http://a:1")]),
                (
                    "github".into(),
                    vec![
                        Destination::new("http://a:1"),
                        Destination::new("http://b:1"),
                    ],
                ),
            ],
            RateLimits::none(),
        ))
    }

    async fn go(r: &Arc<Destinations>, d: &Destination) -> Pass {
        match r.admit(d, Duration::from_secs(1)).await {
            Admission::Go(p) => p,
            Admission::Wait { reason, .. } => panic!("refused: {reason}"),
        }
    }

    #[tokio::test]
    async fn opens_after_threshold_probes_once_and_closes() {
        let r = registry();
        let a = Destination::new("http://a:1");
        for i in 0..2 {
            let p = go(&r, &a).await;
            assert_eq!(r.record(p, Verdict::Failed), Health::Closed, "failure {i}");
        }
        let p = go(&r, &a).await;
        assert!(matches!(r.record(p, Verdict::Failed), Health::Open { .. }));
        assert!(matches!(
            r.admit(&a, Duration::from_secs(1)).await,
            Admission::Wait { .. }
        ));
        assert!(r.provider_paused_until("stripe").is_some());
        assert!(r.provider_paused_until("github").is_none(), "b is fine");
        assert_eq!(r.snapshot()[0].state, "open");

        tokio::time::sleep(Duration::from_millis(250)).await;
        let probe = go(&r, &a).await;
        assert!(probe.is_probe());
        assert!(
            matches!(
                r.admit(&a, Duration::from_secs(1)).await,
                Admission::Wait { .. }
            ),
            "one probe at a time"
        );
        // A failed probe opens it again.
        assert!(matches!(
            r.record(probe, Verdict::Failed),
            Health::Open { .. }
        ));
        tokio::time::sleep(Duration::from_millis(250)).await;
        let probe = go(&r, &a).await;
        assert!(probe.is_probe());
        assert_eq!(r.record(probe, Verdict::Answered), Health::Closed);
        let p = go(&r, &a).await;
        assert!(!p.is_probe());
        let s = &r.snapshot()[0];
        assert_eq!(s.state, "closed");
        assert_eq!(s.counters.opened, 2);
        assert_eq!(s.counters.probes, 2);
        assert_eq!(s.in_flight, 1);
    }

    #[tokio::test]
    async fn an_abandoned_probe_frees_the_slot() {
        let r = registry();
        let a = Destination::new("http://a:1");
        for _ in 0..3 {
            let p = go(&r, &a).await;
            r.record(p, Verdict::Failed);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        let probe = go(&r, &a).await;
        drop(probe);
        assert!(go(&r, &a).await.is_probe());
    }

    #[tokio::test]
    async fn answers_reset_the_count_and_busy_destinations_defer() {
        let r = registry();
        let a = Destination::new("http://a:1");
        for _ in 0..5 {
            let p = go(&r, &a).await;
            r.record(p, Verdict::Failed);
            let p = go(&r, &a).await;
            r.record(p, Verdict::Answered);
        }
        assert_eq!(r.snapshot()[0].state, "closed");
        let _one = go(&r, &a).await;
        let _two = go(&r, &a).await;
        match r.admit(&a, Duration::from_secs(1)).await {
            Admission::Wait { reason, .. } => assert!(reason.contains("busy"), "{reason}"),
            Admission::Go(_) => panic!("limit is 2"),
        }
    }

    #[tokio::test]
    async fn a_rate_limited_step_waits_and_frees_its_slot() {
        let a = Destination::new("http://a:1");
        let limits = [(a.clone(), "1/h".parse().unwrap())];
        let keeper = Arc::new(super::super::rate::LocalKeeper::default());
        let r = Arc::new(Destinations::new(
            BreakerPolicy {
                failure_threshold: 3,
                cooldown: Duration::from_millis(200),
            },
            2,
            Vec::new(),
            RateLimits::new(limits, keeper),
        ));
        let first = go(&r, &a).await;
        match r.admit(&a, Duration::from_secs(1)).await {
            Admission::Wait { reason, until } => {
                assert!(reason.contains("rate limit 1/h"), "{reason}");
                assert!(
                    until > Instant::now() + Duration::from_secs(3000),
                    "back near its slot"
                );
            }
            Admission::Go(_) => panic!("one an hour"),
        }
        let s = &r.snapshot()[0];
        assert_eq!(
            (s.in_flight, s.counters.deferred),
            (1, 1),
            "the refused step freed its slot"
        );
        drop(first);
        assert_eq!(r.snapshot()[0].in_flight, 0);
        // Other destinations are not limited.
        let _b = go(&r, &Destination::new("http://b:1")).await;
    }

    #[test]
    fn origins() {
        let u = reqwest::Url::parse("https://user:pw@api.example.com/hooks?x=1").unwrap();
        assert_eq!(
            Destination::of_url(&u).to_string(),
            "https://api.example.com:443"
        );
        let u = reqwest::Url::parse("http://127.0.0.1:9000/in").unwrap();
        assert_eq!(Destination::of_url(&u).to_string(), "http://127.0.0.1:9000");
    }
}

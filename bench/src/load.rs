//! Driving a target: closed loop (C connections, each sends its next request as soon as the
//! previous one is answered) or open loop (requests are due at a fixed rate, whatever the
//! target does), and the summary of what came back.
//!
//! Owns timing and tallies. In the open loop every latency is measured from the time the
//! request was *due*, not from when a connection got round to sending it, so a slow target
//! cannot hide its queueing delay (no coordinated omission). Must never assert anything about
//! the target: it reports.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::events::Prepared;
use crate::http::{Conn, Failure};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// `concurrency` connections, each with one request in flight at all times.
    Closed { concurrency: usize },
    /// `rate` requests per second spread over up to `connections` connections.
    Open { rate: f64, connections: usize },
}

impl Mode {
    fn connections(self) -> usize {
        match self {
            Self::Closed { concurrency } => concurrency,
            Self::Open { connections, .. } => connections,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// `host:port`.
    pub addr: String,
    pub mode: Mode,
    /// Stop sending after this long (requests not yet sent are left out).
    pub duration: Duration,
    /// A request without an answer after this long counts as a timeout.
    pub timeout: Duration,
}

/// When request `i` is due in an open-loop run at `rate` per second.
pub fn due_offset(i: usize, rate: f64) -> Duration {
    Duration::from_secs_f64(i as f64 / rate)
}

/// What one connection saw.
struct Tally {
    latency_us: Histogram<u64>,
    status: BTreeMap<u16, u64>,
    failures: BTreeMap<Failure, u64>,
    sent: u64,
    last_done: Option<Instant>,
}

impl Tally {
    fn new() -> Self {
        Self {
            // 1 µs to 10 min at 3 significant digits.
            latency_us: Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"),
            status: BTreeMap::new(),
            failures: BTreeMap::new(),
            sent: 0,
            last_done: None,
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latency_us.add(&other.latency_us).expect("same bounds");
        for (k, v) in other.status {
            *self.status.entry(k).or_default() += v;
        }
        for (k, v) in other.failures {
            *self.failures.entry(k).or_default() += v;
        }
        self.sent += other.sent;
        self.last_done = self.last_done.max(other.last_done);
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
    pub mean: f64,
}

/// The result of a run, as printed and as written to JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// `closed` or `open`.
    pub mode: String,
    pub connections: usize,
    /// Target rate of an open-loop run.
    pub rate: Option<f64>,
    pub sent: u64,
    /// Requests that got an HTTP status.
    pub responses: u64,
    pub elapsed_s: f64,
    /// Responses per second.
    pub throughput_rps: f64,
    /// 2xx responses per second.
    pub ok_rps: f64,
    pub latency_ms: Percentiles,
    /// Responses by status code.
    pub status: BTreeMap<String, u64>,
    /// Requests without a status, by reason.
    pub errors: BTreeMap<String, u64>,
    pub unique_events: usize,
    pub duplicate_share: f64,
    pub body_bytes: usize,
}

impl Summary {
    /// Human-readable lines.
    pub fn text(&self) -> String {
        let loop_desc = match self.rate {
            Some(r) => format!(
                "open loop at {r:.0} req/s over up to {} connections",
                self.connections
            ),
            None => format!("closed loop, {} connections", self.connections),
        };
        let l = &self.latency_ms;
        let join = |m: &BTreeMap<String, u64>| {
            if m.is_empty() {
                "none".to_owned()
            } else {
                m.iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        format!(
            "{loop_desc}, {:.2} s\n\
             requests {} ({} unique events, duplicate share {:.0}%, body {} bytes)\n\
             throughput {:.1} req/s (2xx {:.1}/s)\n\
             latency ms  p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  mean {:.2}\n\
             status {}\n\
             errors {}\n",
            self.elapsed_s,
            self.sent,
            self.unique_events,
            self.duplicate_share * 100.0,
            self.body_bytes,
            self.throughput_rps,
            self.ok_rps,
            l.p50,
            l.p90,
            l.p99,
            l.p99_9,
            l.max,
            l.mean,
            join(&self.status),
            join(&self.errors),
        )
    }
}

/// Send the prepared requests as `settings` say and summarise.
pub async fn run(prepared: Arc<Prepared>, duplicate_share: f64, settings: Settings) -> Summary {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + settings.duration;
    let tasks: Vec<_> = (0..settings.mode.connections())
        .map(|_| {
            let (prepared, next, settings) = (prepared.clone(), next.clone(), settings.clone());
            tokio::spawn(connection(prepared, next, settings, start, deadline))
        })
        .collect();
    let mut total = Tally::new();
    for t in tasks {
        total.merge(t.await.expect("connection task"));
    }
    summarise(total, start, &prepared, duplicate_share, &settings)
}

/// One connection's loop: take the next request number, wait until it is due (open loop),
/// send it, record the answer.
async fn connection(
    prepared: Arc<Prepared>,
    next: Arc<AtomicUsize>,
    settings: Settings,
    start: Instant,
    deadline: Instant,
) -> Tally {
    let mut tally = Tally::new();
    let mut conn = Conn::new(&settings.addr);
    let total = prepared.plan.len();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= total {
            break;
        }
        let began = match settings.mode {
            Mode::Closed { .. } => {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                now
            }
            Mode::Open { rate, .. } => {
                let due = start + due_offset(i, rate);
                if due >= deadline {
                    break;
                }
                tokio::time::sleep_until(due).await;
                due
            }
        };
        tally.sent += 1;
        let outcome =
            match tokio::time::timeout(settings.timeout, conn.send(prepared.request(i))).await {
                Ok(r) => r,
                Err(_) => {
                    conn.reset();
                    Err(Failure::Timeout)
                }
            };
        let done = Instant::now();
        tally.last_done = Some(done);
        match outcome {
            Ok(status) => {
                let us = done.saturating_duration_since(began).as_micros() as u64;
                tally.latency_us.saturating_record(us.max(1));
                *tally.status.entry(status).or_default() += 1;
            }
            Err(f) => {
                *tally.failures.entry(f).or_default() += 1;
                if f == Failure::Connect {
                    // Do not spin on a target that is not there.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
    tally
}

fn summarise(
    t: Tally,
    start: Instant,
    prepared: &Prepared,
    duplicate_share: f64,
    settings: &Settings,
) -> Summary {
    let elapsed = t
        .last_done
        .map_or(Duration::ZERO, |d| d.saturating_duration_since(start))
        .as_secs_f64();
    let responses: u64 = t.status.values().sum();
    let ok: u64 = t
        .status
        .iter()
        .filter(|(s, _)| (200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    let per_s = |n: u64| {
        if elapsed > 0.0 {
            n as f64 / elapsed
        } else {
            0.0
        }
    };
    let ms = |us: u64| us as f64 / 1000.0;
    let h = &t.latency_us;
    let empty = h.is_empty();
    let q = |p: f64| {
        if empty {
            0.0
        } else {
            ms(h.value_at_quantile(p))
        }
    };
    Summary {
        mode: match settings.mode {
            Mode::Closed { .. } => "closed".into(),
            Mode::Open { .. } => "open".into(),
        },
        connections: settings.mode.connections(),
        rate: match settings.mode {
            Mode::Open { rate, .. } => Some(rate),
            Mode::Closed { .. } => None,
        },
        sent: t.sent,
        responses,
        elapsed_s: elapsed,
        throughput_rps: per_s(responses),
        ok_rps: per_s(ok),
        latency_ms: Percentiles {
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p99_9: q(0.999),
            max: if empty { 0.0 } else { ms(h.max()) },
            mean: if empty { 0.0 } else { h.mean() / 1000.0 },
        },
        status: t.status.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        errors: t
            .failures
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), *v))
            .collect(),
        unique_events: prepared.unique(),
        duplicate_share,
        body_bytes: prepared.body_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_loop_schedule_is_evenly_spaced() {
        assert_eq!(due_offset(0, 1000.0), Duration::ZERO);
        assert_eq!(due_offset(1, 1000.0), Duration::from_millis(1));
        assert_eq!(due_offset(2500, 500.0), Duration::from_secs(5));
    }

    #[test]
    fn tallies_merge() {
        let mut a = Tally::new();
        a.latency_us.record(1000).unwrap();
        a.status.insert(202, 1);
        a.sent = 1;
        let mut b = Tally::new();
        b.latency_us.record(3000).unwrap();
        b.status.insert(202, 1);
        b.status.insert(200, 2);
        b.failures.insert(Failure::Timeout, 1);
        b.sent = 4;
        a.merge(b);
        assert_eq!(a.sent, 5);
        assert_eq!(a.status[&202], 2);
        assert_eq!(a.latency_us.len(), 2);
        assert_eq!(a.failures[&Failure::Timeout], 1);
    }

    #[test]
    fn summary_round_trips_through_json_and_prints() {
        let p = Prepared::new("h", "/w", "s", "r", 1, 10, 0.0, 100, 1);
        let mut t = Tally::new();
        for us in [500, 1000, 2000, 40_000] {
            t.latency_us.record(us).unwrap();
        }
        t.status.insert(202, 3);
        t.status.insert(503, 1);
        t.sent = 4;
        let start = Instant::now();
        t.last_done = Some(start + Duration::from_secs(2));
        let settings = Settings {
            addr: "h".into(),
            mode: Mode::Open {
                rate: 2.0,
                connections: 8,
            },
            duration: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
        };
        let s = summarise(t, start, &p, 0.0, &settings);
        assert_eq!(s.responses, 4);
        assert_eq!(s.throughput_rps, 2.0);
        assert_eq!(s.ok_rps, 1.5);
        assert_eq!(s.rate, Some(2.0));
        assert!((s.latency_ms.p50 - 1.0).abs() < 0.01, "{:?}", s.latency_ms);
        assert!((s.latency_ms.max - 40.0).abs() < 0.1);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Summary>(&json).unwrap(), s);
        let text = s.text();
        assert!(text.contains("open loop at 2 req/s"), "{text}");
        assert!(text.contains("202: 3, 503: 1"), "{text}");
    }
}

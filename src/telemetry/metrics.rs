//! Prometheus metrics, named by Prometheus conventions. Each process exposes its own at
//! `GET /metrics`; counters and histograms are per process, and the store gauges (backlog by
//! status, oldest pending event) are cheap indexed queries cached for a few seconds.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::store::Backlog;

pub const WEBHOOKS_RECEIVED: &str = "hookd_webhooks_received_total";
pub const ACCEPT_DURATION: &str = "hookd_accept_duration_seconds";
pub const EVENTS_PROCESSED: &str = "hookd_events_processed_total";
pub const ATTEMPTS: &str = "hookd_attempts_total";
pub const PROCESSING_DURATION: &str = "hookd_processing_duration_seconds";
pub const STEP_DURATION: &str = "hookd_step_duration_seconds";
pub const EVENTS: &str = "hookd_events";
pub const OLDEST_PENDING_AGE: &str = "hookd_oldest_pending_event_age_seconds";
pub const BUILD_INFO: &str = "hookd_build_info";
/// Order keys with events waiting behind an unfinished one (a route's `order_by`).
pub const ORDERED_KEYS_WAITING: &str = "hookd_ordered_keys_waiting";
/// Age of the oldest event waiting behind another of its order key.
pub const ORDERED_OLDEST_WAITING_AGE: &str = "hookd_ordered_oldest_waiting_age_seconds";
pub const BREAKER_STATE: &str = "hookd_destination_breaker_state";
pub const DESTINATION_IN_FLIGHT: &str = "hookd_destination_in_flight";
pub const DESTINATION_STEPS: &str = "hookd_destination_steps_total";
pub const BREAKER_OPENED: &str = "hookd_destination_breaker_opened_total";
pub const RETRY_TIMER: &str = "hookd_retry_timer_total";
pub const RETRY_TIMER_ENTRIES: &str = "hookd_retry_timer_entries";
pub const QUEUE_PARTITIONS_OWNED: &str = "hookd_queue_partitions_owned";
pub const QUEUE_REBALANCES: &str = "hookd_queue_rebalances_total";

/// Latency buckets in seconds: sub-millisecond accepts up to minutes-long retried processing.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 900.0, 3600.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder (installed on first use).
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .expect("bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (several servers in one test process):
        // metrics then go there, and this handle renders an empty page, never a panic.
        let _ = metrics::set_global_recorder(recorder);
        gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        handle
    })
}

/// The Prometheus text page, with process and backlog gauges brought up to date.
pub fn render(backlog: Option<&Backlog>) -> String {
    let handle = handle();
    process::record();
    if let Some(b) = backlog {
        for status in Backlog::STATUSES {
            let n = b.by_status.get(&status).copied().unwrap_or(0);
            gauge!(EVENTS, "status" => status.as_str()).set(n as f64);
        }
        let age = age_of(b.oldest_pending);
        gauge!(OLDEST_PENDING_AGE).set(age);
        gauge!(ORDERED_KEYS_WAITING).set(b.keys_waiting as f64);
        gauge!(ORDERED_OLDEST_WAITING_AGE).set(age_of(b.oldest_waiting));
    }
    handle.run_upkeep();
    handle.render()
}

/// Seconds since `t` (0 without one).
fn age_of(t: Option<chrono::DateTime<chrono::Utc>>) -> f64 {
    t.map(|t| (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
        .unwrap_or(0.0)
}

/// A webhook request's outcome: `accepted`, `duplicate` or a rejection reason code.
pub fn webhook_received(provider: &str, outcome: &'static str) {
    counter!(WEBHOOKS_RECEIVED, "provider" => provider.to_owned(), "outcome" => outcome)
        .increment(1);
}

pub fn accept_duration(provider: &str, elapsed: Duration) {
    histogram!(ACCEPT_DURATION, "provider" => provider.to_owned()).record(elapsed.as_secs_f64());
}

/// An attempt's outcome: `completed`, `retried` or `dead_lettered`.
pub fn event_processed(provider: &str, outcome: &'static str) {
    counter!(EVENTS_PROCESSED, "provider" => provider.to_owned(), "outcome" => outcome)
        .increment(1);
}

pub fn attempt(provider: &str) {
    counter!(ATTEMPTS, "provider" => provider.to_owned()).increment(1);
}

/// From receipt to completion, across every attempt.
pub fn processing_duration(provider: &str, seconds: f64) {
    histogram!(PROCESSING_DURATION, "provider" => provider.to_owned()).record(seconds.max(0.0));
}

pub fn step_duration(action: &'static str, outcome: &'static str, elapsed: Duration) {
    histogram!(STEP_DURATION, "action" => action, "outcome" => outcome)
        .record(elapsed.as_secs_f64());
}

/// One destination's breaker and limit as this process sees them, set at each scrape from the
/// breakers' own state (`state`: 0 closed, 1 half-open, 2 open). The counts are running totals
/// kept by the breakers, exported as counters.
pub fn destination(name: &str, state: &str, in_flight: usize, counts: DestinationCounts) {
    let code = match state {
        "closed" => 0.0,
        "half_open" => 1.0,
        _ => 2.0,
    };
    gauge!(BREAKER_STATE, "destination" => name.to_owned()).set(code);
    gauge!(DESTINATION_IN_FLIGHT, "destination" => name.to_owned()).set(in_flight as f64);
    for (result, n) in [
        ("answered", counts.answered),
        ("failed", counts.failed),
        ("deferred", counts.deferred),
    ] {
        counter!(DESTINATION_STEPS, "destination" => name.to_owned(), "result" => result)
            .absolute(n);
    }
    counter!(BREAKER_OPENED, "destination" => name.to_owned()).absolute(counts.opened);
}

/// A destination's running totals, for [`destination`].
#[derive(Debug, Clone, Copy)]
pub struct DestinationCounts {
    pub answered: u64,
    pub failed: u64,
    pub deferred: u64,
    pub opened: u64,
}

/// What the retry timer did with one event: `scheduled`, `started` (claimed at its due time),
/// `missed` (the store gave nothing: another worker had it, or it had finished), or `left` (to
/// the queue: beyond the timer's horizon or size, or no worker free at the due time).
pub fn retry_timer(outcome: &'static str, n: usize) {
    counter!(RETRY_TIMER, "outcome" => outcome).increment(n as u64);
}

/// Events the retry timer holds.
pub fn retry_timer_entries(n: usize) {
    gauge!(RETRY_TIMER_ENTRIES).set(n as f64);
}

/// This process joined the Redis queue's consumers: its partition metrics exist from now on,
/// at zero.
pub fn queue_consumer_started() {
    gauge!(QUEUE_PARTITIONS_OWNED).set(0.0);
    counter!(QUEUE_REBALANCES).absolute(0);
}

/// Redis queue partitions this worker process reads.
pub fn queue_partitions_owned(n: usize) {
    gauge!(QUEUE_PARTITIONS_OWNED).set(n as f64);
}

/// This process's share of the Redis queue's partitions changed after it had one.
pub fn queue_rebalanced() {
    counter!(QUEUE_REBALANCES).increment(1);
}

/// Process gauges under the names Prometheus' own client libraries use, read from `/proc`.
pub mod process {
    use metrics::gauge;

    /// Linux reports CPU time in clock ticks of 1/100 s on every mainstream architecture.
    const TICKS_PER_SECOND: f64 = 100.0;

    pub fn record() {
        if let Some(rss) = rss_bytes() {
            gauge!("process_resident_memory_bytes").set(rss as f64);
        }
        if let Some(cpu) = cpu_seconds() {
            gauge!("process_cpu_seconds_total").set(cpu);
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            gauge!("process_open_fds").set(fds.count() as f64);
        }
    }

    /// Resident set size of this process (None where there is no `/proc`).
    pub fn rss_bytes() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()?;
        Some(kb * 1024)
    }

    fn cpu_seconds() -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name (which may contain spaces) start after the last ')'.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        Some((utime + stime) / TICKS_PER_SECOND)
    }
}

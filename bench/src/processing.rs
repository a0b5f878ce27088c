//! The processing report: reads the `proc.<label>.<profile>.<phase>.<metric>` facts that
//! `bench/processing.sh` wrote (accept only, drain of the backlog, `hookd serve` to completion),
//! derives the rates, their ratios to the accept-only rate of the same run and what each event
//! costs the database, and renders them as markdown and JSON, with a baseline binary beside the
//! current one when the run measured both.
//!
//! Owns the processing targets and their presentation. Must never measure anything itself.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::report::{Check, at_least, at_most};

/// Throughput to completion, as a share of the accept-only rate.
pub const COMPLETION_VS_ACCEPT_MIN: f64 = 0.8;
/// Drain rate of a backlog, as a share of the accept-only rate.
pub const DRAIN_VS_ACCEPT_MIN: f64 = 1.0;
/// WAL bytes per completed event, current as a share of the baseline's.
pub const WAL_VS_BASELINE_MAX: f64 = 0.5;

/// Totals of one phase, as measured.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Phase {
    /// Events in the store at the end of the phase (accepted, or to be completed).
    pub events: f64,
    /// Events completed when the phase ended (drain, serve).
    pub completed: Option<f64>,
    pub seconds: f64,
    pub hookd_cpu_s: Option<f64>,
    pub pg_cpu_s: Option<f64>,
    pub xacts: Option<f64>,
    pub tup_inserted: Option<f64>,
    pub tup_updated: Option<f64>,
    pub tup_deleted: Option<f64>,
    /// WAL of the records that touch the bench database or belong to its transactions.
    pub wal_bytes: Option<f64>,
    pub wal_fpi_bytes: Option<f64>,
    /// The whole server's WAL over the phase (includes whatever else ran on the server).
    pub wal_server_bytes: Option<f64>,
    pub redis_commands: Option<f64>,
    pub redis_cpu_s: Option<f64>,
}

/// A phase's totals divided by its events.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PerEvent {
    pub wal_bytes: Option<f64>,
    pub wal_fpi_bytes: Option<f64>,
    pub wal_server_bytes: Option<f64>,
    pub xacts: Option<f64>,
    pub tup_inserted: Option<f64>,
    pub tup_updated: Option<f64>,
    pub tup_deleted: Option<f64>,
    pub pg_cpu_ms: Option<f64>,
    pub hookd_cpu_ms: Option<f64>,
    pub redis_commands: Option<f64>,
    pub redis_cpu_ms: Option<f64>,
}

impl PerEvent {
    /// WAL without full-page images: what the statements wrote, whenever checkpoints fell.
    pub fn wal_records_bytes(&self) -> Option<f64> {
        Some(self.wal_bytes? - self.wal_fpi_bytes?)
    }
}

impl Phase {
    pub fn per_event(&self) -> PerEvent {
        let n = self.events.max(1.0);
        let per = |v: Option<f64>| v.map(|v| v / n);
        let ms = |v: Option<f64>| v.map(|v| v * 1000.0 / n);
        PerEvent {
            wal_bytes: per(self.wal_bytes),
            wal_fpi_bytes: per(self.wal_fpi_bytes),
            wal_server_bytes: per(self.wal_server_bytes),
            xacts: per(self.xacts),
            tup_inserted: per(self.tup_inserted),
            tup_updated: per(self.tup_updated),
            tup_deleted: per(self.tup_deleted),
            pg_cpu_ms: ms(self.pg_cpu_s),
            hookd_cpu_ms: ms(self.hookd_cpu_s),
            redis_commands: per(self.redis_commands),
            redis_cpu_ms: ms(self.redis_cpu_s),
        }
    }

    /// Completed events per second; `None` when the phase ended before all were completed.
    fn rate(&self) -> (f64, bool) {
        let done = self.completed.unwrap_or(self.events);
        (done / self.seconds.max(1e-9), done >= self.events)
    }
}

/// One binary in one profile.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Run {
    /// `current` (this tree) or `baseline` (HOOKD_BENCH_BASELINE).
    pub label: String,
    pub profile: String,
    pub binary: String,
    pub load_average: String,
    /// `hookd api` alone, closed loop: events accepted per second.
    pub accept_rps: f64,
    /// Backlog drained by workers started afterwards: events completed per second.
    pub drain_rps: f64,
    pub drain_finished: bool,
    /// `hookd serve`: N events accepted under load / time until all N were completed.
    pub completion_rps: f64,
    pub completion_finished: bool,
    /// `hookd serve`'s accept rate while processing.
    pub serve_accept_rps: f64,
    pub completion_ratio: f64,
    pub drain_ratio: f64,
    pub rss_peak_mb: Option<f64>,
    pub accept: Phase,
    pub drain: Phase,
    pub serve: Phase,
    /// What accepting costs per event (the `hookd api` phase).
    pub accept_per_event: PerEvent,
    /// What processing alone costs per event (the drain phase).
    pub process_per_event: PerEvent,
    /// What an event costs from request to completed (the `hookd serve` phase).
    pub completed_per_event: PerEvent,
}

fn num(facts: &BTreeMap<String, String>, key: &str) -> Option<f64> {
    facts.get(key).and_then(|v| v.parse().ok())
}

fn phase(facts: &BTreeMap<String, String>, prefix: &str) -> Result<Phase, String> {
    let f = |m: &str| num(facts, &format!("{prefix}.{m}"));
    Ok(Phase {
        events: f("events").ok_or_else(|| format!("{prefix}.events missing"))?,
        completed: f("completed"),
        seconds: f("seconds").ok_or_else(|| format!("{prefix}.seconds missing"))?,
        hookd_cpu_s: f("hookd_cpu_s"),
        pg_cpu_s: f("pg_cpu_s"),
        xacts: f("xacts"),
        tup_inserted: f("tup_inserted"),
        tup_updated: f("tup_updated"),
        tup_deleted: f("tup_deleted"),
        wal_bytes: f("wal_bytes"),
        wal_fpi_bytes: f("wal_fpi_bytes"),
        wal_server_bytes: f("wal_server_bytes"),
        redis_commands: f("redis_commands"),
        redis_cpu_s: f("redis_cpu_s"),
    })
}

/// Every run in the facts, baseline before current, in profile order.
pub fn runs(facts: &BTreeMap<String, String>) -> Result<Vec<Run>, String> {
    let mut out = Vec::new();
    for (profile, _) in crate::report::PROFILES {
        for label in ["baseline", "current"] {
            let key = format!("proc.{label}.{profile}");
            let Some(accept_rps) = num(facts, &format!("{key}.accept_rps")) else {
                continue;
            };
            let accept = phase(facts, &format!("{key}.accept"))?;
            let drain = phase(facts, &format!("{key}.drain"))?;
            let serve = phase(facts, &format!("{key}.serve"))?;
            let (drain_rps, drain_finished) = drain.rate();
            let (completion_rps, completion_finished) = serve.rate();
            let text = |m: &str| {
                facts
                    .get(&format!("{key}.{m}"))
                    .cloned()
                    .unwrap_or_default()
            };
            out.push(Run {
                label: label.into(),
                profile: profile.into(),
                binary: text("binary"),
                load_average: text("load_average"),
                accept_rps,
                drain_rps,
                drain_finished,
                completion_rps,
                completion_finished,
                serve_accept_rps: num(facts, &format!("{key}.serve.accept_rps")).unwrap_or(0.0),
                completion_ratio: completion_rps / accept_rps.max(1e-9),
                drain_ratio: drain_rps / accept_rps.max(1e-9),
                rss_peak_mb: [
                    num(facts, &format!("{key}.rss_peak_bytes")),
                    num(facts, &format!("{key}.rss_peak_bytes_serve")),
                ]
                .into_iter()
                .flatten()
                .reduce(f64::max)
                .map(|b| b / (1024.0 * 1024.0)),
                accept_per_event: accept.per_event(),
                process_per_event: drain.per_event(),
                completed_per_event: serve.per_event(),
                accept,
                drain,
                serve,
            });
        }
    }
    Ok(out)
}

fn profile_name(key: &str) -> &'static str {
    crate::report::PROFILES
        .iter()
        .find(|(k, _)| *k == key)
        .map_or("?", |(_, n)| n)
}

/// The processing targets: completion and drain ratios of every run, and the current binary's
/// WAL per completed event against the baseline's when both were measured.
pub fn checks(runs: &[Run]) -> Vec<Check> {
    let mut out = Vec::new();
    for r in runs {
        let who = format!("{} ({})", profile_name(&r.profile), r.label);
        out.push(at_least(
            format!("{who}: throughput to completion ≥ {COMPLETION_VS_ACCEPT_MIN:.1}× accept-only"),
            r.completion_ratio,
            COMPLETION_VS_ACCEPT_MIN,
            format!("{:.2}×", r.completion_ratio),
        ));
        out.push(at_least(
            format!("{who}: drain ≥ {DRAIN_VS_ACCEPT_MIN:.1}× accept-only"),
            r.drain_ratio,
            DRAIN_VS_ACCEPT_MIN,
            format!("{:.2}×", r.drain_ratio),
        ));
    }
    for cur in runs.iter().filter(|r| r.label == "current") {
        let base = runs
            .iter()
            .find(|b| b.label == "baseline" && b.profile == cur.profile);
        // Full-page images depend on when checkpoints fall, not on hookd: the target compares
        // the records without them (both are in the tables).
        if let (Some(b), Some(c)) = (
            base.and_then(|b| b.completed_per_event.wal_records_bytes()),
            cur.completed_per_event.wal_records_bytes(),
        ) {
            let ratio = c / b.max(1e-9);
            out.push(at_most(
                format!(
                    "{}: WAL bytes per completed event, without full-page images, ≤ {WAL_VS_BASELINE_MAX:.1}× baseline ({b:.0})",
                    profile_name(&cur.profile)
                ),
                ratio,
                WAL_VS_BASELINE_MAX,
                format!("{c:.0} ({ratio:.2}×)"),
            ));
        }
    }
    out
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.decimals$}"))
}

fn cost_row(md: &mut String, who: &str, label: &str, what: &str, p: &PerEvent) {
    let wal = match (p.wal_bytes, p.wal_fpi_bytes) {
        (Some(w), Some(f)) => format!("{w:.0} ({f:.0})"),
        _ => "–".into(),
    };
    let tuples = match (p.tup_inserted, p.tup_updated, p.tup_deleted) {
        (Some(i), Some(u), Some(d)) => format!("{i:.2} / {u:.2} / {d:.2}"),
        _ => "–".into(),
    };
    let _ = writeln!(
        md,
        "| {who} | {label} | {what} | {wal} | {} | {} | {tuples} | {} | {} | {} |",
        opt(p.wal_server_bytes, 0),
        opt(p.xacts, 3),
        opt(p.pg_cpu_ms, 3),
        opt(p.hookd_cpu_ms, 3),
        opt(p.redis_commands, 2),
    );
}

fn finished(done: bool) -> &'static str {
    if done { "" } else { " (timed out)" }
}

/// The `## Processing` section: rates and ratios, cost per event, before/after and targets.
pub fn markdown(runs: &[Run], settings: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Processing\n\n\
         Per profile and hookd binary ({settings}): **accept only** is `hookd api` alone; \
         **drain** is `hookd worker` started afterwards on that whole backlog, N events / the time \
         until the last is completed; **to completion** is `hookd serve` under the same load, N \
         events accepted / the time from the first request until all N are completed. Ratios are \
         to the accept-only rate of the same binary in the same run.\n\n\
         | profile | hookd | load average | accept only, events/s | to completion, events/s | ÷ accept | drain, events/s | ÷ accept | serve's accept, req/s | peak RSS, MB |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in runs {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.0} | {:.0}{} | {:.2}× | {:.0}{} | {:.2}× | {:.0} | {} |",
            profile_name(&r.profile),
            r.label,
            r.load_average,
            r.accept_rps,
            r.completion_rps,
            finished(r.completion_finished),
            r.completion_ratio,
            r.drain_rps,
            finished(r.drain_finished),
            r.drain_ratio,
            r.serve_accept_rps,
            opt(r.rss_peak_mb, 1),
        );
    }
    let _ = writeln!(
        md,
        "\nWhat each event costs. *WAL* counts the records that touch the benchmark's database \
         or belong to its transactions (pg_walinspect), in brackets the full-page images among \
         them; *WAL, server* is the whole server's WAL over the same time, which includes anything \
         else running on it. Transactions and tuples are the database's `pg_stat_database` \
         deltas (the benchmark's own count queries subtracted); CPU is that of the database's \
         backends and of hookd; Redis commands are the whole Redis server's.\n\n\
         | profile | hookd | per | WAL bytes (FPI) | WAL, server | transactions | tuples ins / upd / del | PG CPU ms | hookd CPU ms | Redis commands |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in runs {
        let who = profile_name(&r.profile);
        cost_row(
            &mut md,
            who,
            &r.label,
            "completed event (serve)",
            &r.completed_per_event,
        );
        cost_row(
            &mut md,
            who,
            &r.label,
            "accepted event (api)",
            &r.accept_per_event,
        );
        cost_row(
            &mut md,
            who,
            &r.label,
            "processed event (worker)",
            &r.process_per_event,
        );
    }
    before_after(&mut md, runs);
    let _ = writeln!(md, "\n| target | measured | |\n|---|---:|---|");
    for c in checks(runs) {
        let verdict = match c.miss_pct {
            None => "met".to_owned(),
            Some(pct) => format!("**missed by {pct:.0}%**"),
        };
        let _ = writeln!(md, "| {} | {} | {} |", c.target, c.measured, verdict);
    }
    md
}

fn before_after(md: &mut String, runs: &[Run]) {
    let pairs: Vec<(&Run, &Run)> = runs
        .iter()
        .filter(|r| r.label == "current")
        .filter_map(|c| {
            runs.iter()
                .find(|b| b.label == "baseline" && b.profile == c.profile)
                .map(|b| (b, c))
        })
        .collect();
    if pairs.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\nBefore (baseline) and after (current), per completed event and as ratios:\n\n\
         | profile | | baseline | current | current ÷ baseline |\n|---|---|---:|---:|---:|"
    );
    for (b, c) in pairs {
        let who = profile_name(&c.profile);
        let (bp, cp) = (&b.completed_per_event, &c.completed_per_event);
        let rows: [(&str, Option<f64>, Option<f64>, usize); 9] = [
            (
                "WAL bytes per completed event",
                bp.wal_bytes,
                cp.wal_bytes,
                0,
            ),
            (
                "of them not full-page images",
                bp.wal_records_bytes(),
                cp.wal_records_bytes(),
                0,
            ),
            ("transactions per completed event", bp.xacts, cp.xacts, 3),
            (
                "tuples inserted per completed event",
                bp.tup_inserted,
                cp.tup_inserted,
                2,
            ),
            (
                "tuples updated per completed event",
                bp.tup_updated,
                cp.tup_updated,
                2,
            ),
            (
                "PG CPU ms per completed event",
                bp.pg_cpu_ms,
                cp.pg_cpu_ms,
                3,
            ),
            (
                "accept only, events/s",
                Some(b.accept_rps),
                Some(c.accept_rps),
                0,
            ),
            (
                "to completion ÷ accept",
                Some(b.completion_ratio),
                Some(c.completion_ratio),
                2,
            ),
            (
                "drain ÷ accept",
                Some(b.drain_ratio),
                Some(c.drain_ratio),
                2,
            ),
        ];
        for (what, bv, cv, d) in rows {
            let ratio = match (bv, cv) {
                (Some(b), Some(c)) if b > 0.0 => format!("{:.2}×", c / b),
                _ => "–".into(),
            };
            let _ = writeln!(
                md,
                "| {who} | {what} | {} | {} | {ratio} |",
                opt(bv, d),
                opt(cv, d)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::parse_facts;

    fn facts(label: &str, wal: f64, completion_s: f64) -> String {
        let k = format!("proc.{label}.postgres");
        format!(
            "{k}.binary=/x/hookd\n{k}.load_average=1.0 2.0 3.0\n{k}.accept_rps=8000\n\
             {k}.rss_peak_bytes=52428800\n\
             {k}.accept.events=80000\n{k}.accept.seconds=10\n{k}.accept.wal_bytes=160000000\n\
             {k}.accept.wal_fpi_bytes=0\n{k}.accept.xacts=1000\n{k}.accept.tup_inserted=80000\n\
             {k}.accept.tup_updated=0\n{k}.accept.tup_deleted=0\n\
             {k}.drain.events=80000\n{k}.drain.completed=80000\n{k}.drain.seconds=40\n\
             {k}.serve.events=40000\n{k}.serve.completed=40000\n{k}.serve.seconds={completion_s}\n\
             {k}.serve.wal_bytes={wal}\n{k}.serve.wal_fpi_bytes=1000\n{k}.serve.xacts=20000\n\
             {k}.serve.tup_inserted=120000\n{k}.serve.tup_updated=80000\n{k}.serve.tup_deleted=0\n\
             {k}.serve.pg_cpu_s=8\n{k}.serve.hookd_cpu_s=4\n"
        )
    }

    #[test]
    fn rates_ratios_and_costs_per_event() {
        let f = parse_facts(&(facts("baseline", 400e6, 20.0) + &facts("current", 160e6, 5.0)));
        let r = runs(&f).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].label, "baseline");
        assert_eq!(r[0].completion_rps, 2000.0);
        assert_eq!(r[0].completion_ratio, 0.25);
        assert_eq!(r[0].drain_ratio, 0.25);
        assert_eq!(r[1].completion_ratio, 1.0);
        assert_eq!(r[0].completed_per_event.wal_bytes, Some(10_000.0));
        assert_eq!(r[0].completed_per_event.tup_inserted, Some(3.0));
        assert_eq!(r[0].completed_per_event.pg_cpu_ms, Some(0.2));
        assert_eq!(r[0].accept_per_event.wal_bytes, Some(2000.0));
        assert_eq!(r[0].process_per_event.wal_bytes, None);
        assert_eq!(r[0].rss_peak_mb, Some(50.0));
        let c = checks(&r);
        let wal = c.iter().find(|c| c.target.contains("WAL")).unwrap();
        assert!(wal.pass, "{wal:?}");
        assert_eq!(wal.measured, "4000 (0.40×)");
        let base_completion = c
            .iter()
            .find(|c| c.target.contains("(baseline): throughput"))
            .unwrap();
        assert!(!base_completion.pass);
        let md = markdown(&r, "10 s");
        assert!(
            md.contains("| PostgreSQL | baseline | 1.0 2.0 3.0 | 8000 | 2000 | 0.25× |"),
            "{md}"
        );
        assert!(
            md.contains("| PostgreSQL | WAL bytes per completed event | 10000 | 4000 | 0.40× |"),
            "{md}"
        );
        assert!(md.contains("**missed by"), "{md}");
    }

    #[test]
    fn a_backlog_that_did_not_finish_is_marked() {
        let f = parse_facts(&facts("current", 1.0, 10.0).replace(
            "proc.current.postgres.drain.completed=80000",
            "proc.current.postgres.drain.completed=40000",
        ));
        let r = runs(&f).unwrap();
        assert!(!r[0].drain_finished);
        assert_eq!(r[0].drain_rps, 1000.0);
        assert!(markdown(&r, "").contains("1000 (timed out)"));
    }
}

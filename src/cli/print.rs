//! How the operator commands print the admin API's answers: aligned tables and key-value
//! listings of the operator layer's types, times as `2024-05-01 12:00:00` (UTC), `-` for
//! nothing. Tests hold this output to its exact form: change it only on purpose. It must
//! never fetch anything: it prints what it is given.

use std::io::Write;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::ops::{AuditPage, BlockedLines, EventPage, EventView, Job, ProviderList, ProviderView};

/// An optional value, or `-`.
pub fn opt(v: Option<impl ToString>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// A time as `2024-05-01 12:00:00` (UTC).
pub fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// An optional time, or `-`.
fn opt_time(t: Option<&DateTime<Utc>>) -> String {
    opt(t.map(time))
}

/// A JSON value as text: strings without quotes, `-` for null.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Print rows as aligned columns.
pub fn table(out: &mut dyn Write, head: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: Vec<String>| -> std::io::Result<()> {
        let last = cells.len() - 1;
        let mut text = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            if i == last {
                text.push_str(&c);
            } else {
                text.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(out, head.iter().map(|h| h.to_string()).collect())?;
    for row in rows {
        line(out, row.clone())?;
    }
    Ok(())
}

/// A page of events; dead letters with their last error.
pub fn events(out: &mut dyn Write, page: &EventPage, with_error: bool) -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> = page
        .events
        .iter()
        .map(|e| {
            let mut row = vec![
                e.id.to_string(),
                time(&e.received_at),
                e.provider.clone(),
                e.event_type.clone(),
                e.status.as_str().to_owned(),
                e.attempts.to_string(),
            ];
            if with_error {
                row.push(opt(e.last_error.as_ref()));
            }
            row
        })
        .collect();
    let mut head = vec![
        "ID",
        "RECEIVED (UTC)",
        "PROVIDER",
        "TYPE",
        "STATUS",
        "ATTEMPTS",
    ];
    if with_error {
        head.push("LAST ERROR");
    }
    table(out, &head, &rows)?;
    if let Some(c) = &page.next_cursor {
        writeln!(out, "\nmore: add --cursor {c}")?;
    }
    Ok(())
}

/// One job's progress on one line.
pub fn job(out: &mut dyn Write, job: &Job) -> anyhow::Result<()> {
    writeln!(
        out,
        "job {} ({}, by {}): {} — {} of {} looked at, {} {}ed, {} skipped",
        job.id,
        job.kind,
        job.created_by,
        job.status.as_str(),
        job.processed,
        job.total,
        job.replayed,
        job.kind.trim_end_matches('e'),
        job.skipped,
    )?;
    Ok(())
}

/// One event: facts, timeline, steps, headers and payload.
pub fn event(out: &mut dyn Write, view: &EventView) -> anyhow::Result<()> {
    let e = &view.detail;
    for (k, v) in [
        ("id", e.id.to_string()),
        ("provider", e.provider.clone()),
        ("type", e.event_type.clone()),
        ("idempotency key", e.idempotency_key.clone()),
        ("status", e.status.as_str().to_owned()),
        ("attempts", e.attempts.to_string()),
        ("replays", e.replays.to_string()),
        ("last error", opt(e.last_error.as_ref())),
    ] {
        writeln!(out, "{k:<16} {v}")?;
    }
    writeln!(out, "{:<16} {}", "received", time(&e.received_at))?;
    writeln!(out, "\ntimeline")?;
    let rows: Vec<Vec<String>> = e
        .transitions
        .iter()
        .map(|t| {
            vec![
                time(&t.at),
                format!("{} → {}", opt(t.from.map(|s| s.as_str())), t.to.as_str()),
                opt(t.detail.as_ref()),
            ]
        })
        .collect();
    table(out, &["AT (UTC)", "TRANSITION", "DETAIL"], &rows)?;
    steps(out, view)?;
    if let Some(h) = view.headers.as_object() {
        writeln!(out, "\nheaders")?;
        for (k, v) in h {
            writeln!(out, "  {k}: {}", text(v))?;
        }
    }
    payload(out, view)
}

fn steps(out: &mut dyn Write, view: &EventView) -> anyhow::Result<()> {
    let steps = &view.detail.steps;
    if steps.is_empty() {
        return Ok(());
    }
    writeln!(out, "\nsteps")?;
    let rows: Vec<Vec<String>> = steps
        .iter()
        .map(|st| {
            vec![
                time(&st.at),
                st.step.clone(),
                format!("{}/{}", st.generation, st.attempt),
                st.outcome.clone(),
                format!("{} ms", st.duration_ms),
                opt(st.error.as_ref()),
            ]
        })
        .collect();
    table(
        out,
        &["AT (UTC)", "STEP", "REPLAY/TRY", "OUTCOME", "TOOK", "ERROR"],
        &rows,
    )?;
    Ok(())
}

fn payload(out: &mut dyn Write, view: &EventView) -> anyhow::Result<()> {
    writeln!(out, "\npayload")?;
    match (&view.body, view.body_encoding.as_str()) {
        (None, _) => writeln!(
            out,
            "  (purged {})",
            opt_time(view.detail.body_purged_at.as_ref())
        )?,
        (Some(b), "base64") => writeln!(out, "  (binary, base64) {b}")?,
        (Some(b), _) => match serde_json::from_str::<Value>(b) {
            Ok(v) => writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?,
            Err(_) => writeln!(out, "{b}")?,
        },
    }
    Ok(())
}

fn provider_state(p: &ProviderView) -> String {
    if p.paused {
        format!("paused ({})", opt(p.reason.as_ref()))
    } else if p.auto_paused == Some(true) {
        "auto-paused (breakers open)".into()
    } else {
        "running".into()
    }
}

/// Every provider on a line: accepting, state, waiting events.
pub fn providers(out: &mut dyn Write, list: &ProviderList) -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> = list
        .providers
        .iter()
        .map(|p| {
            let counts: Vec<String> = p.counts.iter().map(|(k, n)| format!("{k}={n}")).collect();
            vec![
                p.name.clone(),
                if p.accepting { "yes" } else { "no" }.into(),
                provider_state(p),
                counts.join(" "),
            ]
        })
        .collect();
    table(out, &["PROVIDER", "ACCEPTING", "STATE", "EVENTS"], &rows)?;
    Ok(())
}

/// The order keys held up.
pub fn blocked_lines(out: &mut dyn Write, list: &BlockedLines) -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> = list
        .lines
        .iter()
        .map(|l| {
            vec![
                l.route.clone(),
                l.key.clone(),
                l.head.to_string(),
                l.status.to_string(),
                l.attempts.to_string(),
                l.waiting_behind.to_string(),
                opt(l.last_error.as_ref()),
            ]
        })
        .collect();
    let head = [
        "ROUTE",
        "KEY",
        "BLOCKED BY",
        "STATUS",
        "ATTEMPTS",
        "WAITING",
        "LAST ERROR",
    ];
    table(out, &head, &rows)?;
    Ok(())
}

/// A page of the audit log.
pub fn audit(out: &mut dyn Write, page: &AuditPage) -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> = page
        .entries
        .iter()
        .map(|e| {
            vec![
                time(&e.at),
                e.actor.clone(),
                e.action.clone(),
                opt(e.target.as_ref()),
                e.status.to_string(),
                opt(e.detail.as_ref()),
            ]
        })
        .collect();
    table(
        out,
        &["AT (UTC)", "ACTOR", "ACTION", "TARGET", "STATUS", "DETAIL"],
        &rows,
    )?;
    Ok(())
}

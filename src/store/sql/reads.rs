//! [`Reads`] for any engine: every read query and its row mapping, written once.
//!
//! Owns the event filter's translation to SQL. It must never write.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Dialect, Engine, Record, Sql, UNFINISHED, order};
use crate::event::{EventDetail, EventId, EventStatus, ProviderPause, StepResultRow, Transition};
use crate::store::admin::{
    ActivityBucket, AuditEntry, AuditFilter, BlockedLine, EventFilter, EventPayload, EventSummary,
    Job, ProviderCount, Reads, Session, StreamedEvent, fill_buckets, shown_status,
};
use crate::store::{Backlog, StoreError};

/// An event with its delivery state: the immutable event and its one delivery row.
const EVENTS: &str = "events e JOIN deliveries d ON d.event_id = e.id";

const SUMMARY: &str = "SELECT e.id, e.provider, e.event_type, e.idempotency_key, d.status,
    d.attempts, e.received_at, d.updated_at, d.last_error, length(e.body) AS body_bytes,
    d.replays, e.body_purged_at";

/// The columns of a job; `params` as text, whatever the engine stores it as.
const JOB: &str = "SELECT id, kind, CAST(params AS TEXT) AS params, status, total, processed,
    replayed, skipped, cancel_requested, created_by, created_at, updated_at, finished_at, error
    FROM admin_jobs";

/// Append the conditions of `f` to a statement that ends in a `WHERE`.
fn push_filter(q: &mut Sql, d: Dialect, f: &EventFilter) {
    if let Some(p) = &f.provider {
        q.push(" AND e.provider = ").bind(p);
    }
    if !f.statuses.is_empty() {
        q.push(" AND d.status IN (");
        for (i, s) in f.statuses.iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.bind(s.as_str());
        }
        q.push(")");
    }
    if let Some(glob) = &f.event_type {
        match d {
            Dialect::Postgres => {
                q.push(" AND e.event_type LIKE ")
                    .bind(like_pattern(glob))
                    .push(" ESCAPE '\\'");
            }
            // GLOB, not LIKE: SQLite's LIKE ignores ASCII case, PostgreSQL's does not.
            Dialect::Sqlite => {
                q.push(" AND e.event_type GLOB ").bind(sqlite_glob(glob));
            }
        }
    }
    if let Some(t) = f.received_after {
        q.push(" AND e.received_at >= ").bind(t);
    }
    if let Some(t) = f.received_before {
        q.push(" AND e.received_at < ").bind(t);
    }
    if let Some(k) = &f.idempotency_key {
        q.push(" AND e.idempotency_key = ").bind(k);
    }
    if let Some(text) = &f.text {
        // A byte search over the raw body: works for any payload, JSON or not.
        match d {
            Dialect::Postgres => q
                .push(" AND position(")
                .bind(text.as_bytes())
                .push(" IN e.body) > 0"),
            Dialect::Sqlite => q
                .push(" AND instr(e.body, ")
                .bind(text.as_bytes())
                .push(") > 0"),
        };
    }
}

/// An event-type glob (only `*` is special) as a `LIKE` pattern with `\` as the escape
/// character.
fn like_pattern(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len() + 4);
    for c in glob.chars() {
        match c {
            '*' => out.push('%'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// An event-type glob (only `*` is special) as a SQLite GLOB pattern: `?` and `[` are
/// bracketed so they match themselves.
fn sqlite_glob(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len());
    for c in glob.chars() {
        match c {
            '?' => out.push_str("[?]"),
            '[' => out.push_str("[[]"),
            c => out.push(c),
        }
    }
    out
}

fn summary(r: &impl Record) -> Result<EventSummary, StoreError> {
    Ok(EventSummary {
        id: EventId(r.get("id")?),
        provider: r.get("provider")?,
        event_type: r.get("event_type")?,
        idempotency_key: r.get("idempotency_key")?,
        status: r.status("status")?,
        attempts: r.small("attempts")?,
        received_at: r.time("received_at")?,
        updated_at: r.time("updated_at")?,
        last_error: r.get("last_error")?,
        body_bytes: r.small("body_bytes")? as usize,
        replays: r.small("replays")?,
        body_purged_at: r.maybe_time("body_purged_at")?,
    })
}

fn detail(
    e: &impl Record,
    transitions: Vec<Transition>,
    steps: Vec<StepResultRow>,
) -> Result<EventDetail, StoreError> {
    let status = e.status("status")?;
    // The due time means something only while the event waits for an attempt.
    let waiting = matches!(
        status,
        EventStatus::Pending | EventStatus::RetryScheduled | EventStatus::Compensating
    );
    Ok(EventDetail {
        id: EventId(e.get("id")?),
        provider: e.get("provider")?,
        event_type: e.get("event_type")?,
        idempotency_key: e.get("idempotency_key")?,
        status,
        attempts: e.small("attempts")?,
        received_at: e.time("received_at")?,
        next_attempt_at: waiting.then(|| e.time("next_attempt_at")).transpose()?,
        last_error: e.get("last_error")?,
        content_type: e.get("content_type")?,
        body_bytes: e.small("body_bytes")? as usize,
        replays: e.small("replays")?,
        body_purged_at: e.maybe_time("body_purged_at")?,
        transitions,
        steps,
    })
}

fn transition(r: &impl Record) -> Result<Transition, StoreError> {
    Ok(Transition {
        from: r
            .get::<Option<String>>("from_status")?
            .and_then(|s| EventStatus::parse(&s)),
        to: r.status("to_status")?,
        at: r.time("at")?,
        detail: r.get("detail")?,
    })
}

fn step_row(r: &impl Record) -> Result<StepResultRow, StoreError> {
    Ok(StepResultRow {
        step: r.get("step")?,
        attempt: r.small("attempt")?,
        outcome: r.get("outcome")?,
        error: r.get("error")?,
        duration_ms: r.count("duration_ms")?,
        at: r.time("at")?,
        generation: r.small("generation")?,
    })
}

fn job(r: &impl Record) -> Result<Job, StoreError> {
    let stored: String = r.get("status")?;
    let updated_at = r.time("updated_at")?;
    let params: String = r.get("params")?;
    Ok(Job {
        id: r.get("id")?,
        kind: r.get("kind")?,
        filter: serde_json::from_str(&params)?,
        status: shown_status(&stored, updated_at)
            .ok_or_else(|| StoreError::other(format!("unknown job status {stored:?}")))?,
        total: r.count("total")?,
        processed: r.count("processed")?,
        replayed: r.count("replayed")?,
        skipped: r.count("skipped")?,
        cancel_requested: r.get("cancel_requested")?,
        created_by: r.get("created_by")?,
        created_at: r.time("created_at")?,
        updated_at,
        finished_at: r.maybe_time("finished_at")?,
        error: r.get("error")?,
    })
}

/// `(status, count)` rows as a map.
fn count_map(rows: &[impl Record]) -> Result<BTreeMap<EventStatus, u64>, StoreError> {
    rows.iter()
        .map(|r| Ok((r.status("status")?, r.count("n")?)))
        .collect()
}

#[async_trait]
impl<E: Engine> Reads for E {
    async fn event(&self, id: EventId) -> Result<Option<EventDetail>, StoreError> {
        let head = Sql::new(&format!(
            "SELECT e.id, e.provider, e.event_type, e.idempotency_key, d.status, d.attempts,
                    e.received_at, d.next_attempt_at, d.last_error, e.content_type,
                    length(e.body) AS body_bytes, d.replays, e.body_purged_at
             FROM {EVENTS} WHERE e.id = $1"
        ))
        .arg(id);
        let Some(e) = self.read(head).await?.into_iter().next() else {
            return Ok(None);
        };
        let transitions = Sql::new(
            "SELECT from_status, to_status, at, detail FROM event_transitions
             WHERE event_id = $1 ORDER BY id",
        )
        .arg(id);
        let transitions = self.read(transitions).await?;
        let steps = Sql::new(
            "SELECT step, attempt, outcome, error, duration_ms, at, generation FROM step_results
             WHERE event_id = $1 ORDER BY id",
        )
        .arg(id);
        let steps = self.read(steps).await?;
        detail(
            &e,
            transitions
                .iter()
                .map(transition)
                .collect::<Result<_, _>>()?,
            steps.iter().map(step_row).collect::<Result<_, _>>()?,
        )
        .map(Some)
    }

    async fn backlog(&self) -> Result<Backlog, StoreError> {
        // Unfinished statuses are counted through the partial due index, dead letters through
        // (status, received_at); completed events are never scanned.
        let rows = self
            .read(Sql::new(&format!(
                "SELECT status, count(*) AS n FROM deliveries WHERE status IN {UNFINISHED}
                 GROUP BY status
                 UNION ALL
                 SELECT 'dead_letter', count(*) FROM deliveries WHERE status = 'dead_letter'"
            )))
            .await?;
        let oldest = self
            .read(Sql::new(
                "SELECT min(received_at) AS oldest FROM deliveries
                 WHERE status IN ('pending', 'retry_scheduled')",
            ))
            .await?;
        let waiting = self.read(Sql::new(order::WAITING)).await?;
        let waiting = waiting
            .first()
            .ok_or_else(|| StoreError::other("no row from the order lines"))?;
        Ok(Backlog {
            by_status: count_map(&rows)?,
            oldest_pending: match oldest.first() {
                Some(r) => r.maybe_time("oldest")?,
                None => None,
            },
            keys_waiting: waiting.count("n")?,
            oldest_waiting: waiting.maybe_time("oldest")?,
        })
    }

    async fn counts(&self) -> Result<BTreeMap<EventStatus, u64>, StoreError> {
        let q = Sql::new("SELECT status, count(*) AS n FROM deliveries GROUP BY status");
        count_map(&self.read(q).await?)
    }

    async fn blocked_lines(&self, limit: u32) -> Result<Vec<BlockedLine>, StoreError> {
        self.read(order::blocked_lines(limit))
            .await?
            .iter()
            .map(order::blocked_line)
            .collect()
    }

    async fn provider_pauses(&self) -> Result<Vec<ProviderPause>, StoreError> {
        let q =
            Sql::new("SELECT provider, paused_at, reason FROM provider_pauses ORDER BY provider");
        self.read(q)
            .await?
            .iter()
            .map(|r| {
                Ok(ProviderPause {
                    provider: r.get("provider")?,
                    paused_at: r.time("paused_at")?,
                    reason: r.get("reason")?,
                })
            })
            .collect()
    }

    async fn list_events(
        &self,
        filter: &EventFilter,
        before: Option<EventId>,
        limit: u32,
    ) -> Result<Vec<EventSummary>, StoreError> {
        let mut q = Sql::new(&format!("{SUMMARY} FROM {EVENTS} WHERE true"));
        push_filter(&mut q, E::DIALECT, filter);
        if let Some(b) = before {
            q.push(" AND e.id < ").bind(b);
        }
        q.push(" ORDER BY e.id DESC LIMIT ").bind(i64::from(limit));
        self.read(q).await?.iter().map(summary).collect()
    }

    async fn count_events(&self, filter: &EventFilter) -> Result<u64, StoreError> {
        let mut q = Sql::new(&format!("SELECT count(*) AS n FROM {EVENTS} WHERE true"));
        push_filter(&mut q, E::DIALECT, filter);
        match self.read(q).await?.first() {
            Some(r) => r.count("n"),
            None => Ok(0),
        }
    }

    async fn event_payload(&self, id: EventId) -> Result<Option<EventPayload>, StoreError> {
        let q = Sql::new(
            "SELECT CAST(headers AS TEXT) AS headers, body, content_type FROM events WHERE id = $1",
        )
        .arg(id);
        let Some(r) = self.read(q).await?.into_iter().next() else {
            return Ok(None);
        };
        let headers: String = r.get("headers")?;
        Ok(Some(EventPayload {
            headers: serde_json::from_str(&headers)?,
            body: r.get("body")?,
            content_type: r.get("content_type")?,
        }))
    }

    async fn stream_events(
        &self,
        filter: &EventFilter,
        after: EventId,
        upto: Option<EventId>,
        limit: u32,
    ) -> Result<Vec<StreamedEvent>, StoreError> {
        // `events` alone: the filter of a stream never names a status (a `deliveries` column).
        let mut q = Sql::new(
            "SELECT e.id, e.provider, e.event_type, e.idempotency_key, e.received_at,
                    CAST(e.headers AS TEXT) AS headers, e.body, e.content_type
             FROM events e WHERE e.id > ",
        );
        q.bind(after);
        if let Some(u) = upto {
            q.push(" AND e.id <= ").bind(u);
        }
        push_filter(&mut q, E::DIALECT, filter);
        q.push(" ORDER BY e.id LIMIT ").bind(i64::from(limit));
        self.read(q)
            .await?
            .iter()
            .map(|r| {
                let headers: String = r.get("headers")?;
                Ok(StreamedEvent {
                    id: EventId(r.get("id")?),
                    provider: r.get("provider")?,
                    event_type: r.get("event_type")?,
                    idempotency_key: r.get("idempotency_key")?,
                    received_at: r.time("received_at")?,
                    payload: EventPayload {
                        headers: serde_json::from_str(&headers)?,
                        body: r.get("body")?,
                        content_type: r.get("content_type")?,
                    },
                })
            })
            .collect()
    }

    async fn audit(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let mut q = Sql::new(
            "SELECT id, at, actor, action, target, status, detail FROM audit_log WHERE true",
        );
        if let Some(a) = &f.actor {
            q.push(" AND actor = ").bind(a);
        }
        if let Some(a) = &f.action {
            q.push(" AND action = ").bind(a);
        }
        if let Some(b) = f.before {
            q.push(" AND id < ").bind(b);
        }
        q.push(" ORDER BY id DESC LIMIT ").bind(i64::from(f.limit));
        self.read(q)
            .await?
            .iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.get("id")?,
                    at: r.time("at")?,
                    actor: r.get("actor")?,
                    action: r.get("action")?,
                    target: r.get("target")?,
                    status: r.small("status")? as u16,
                    detail: r.get("detail")?,
                })
            })
            .collect()
    }

    async fn job(&self, id: Uuid) -> Result<Option<Job>, StoreError> {
        let q = Sql::new(&format!("{JOB} WHERE id = $1")).arg(id);
        self.read(q).await?.first().map(job).transpose()
    }

    async fn jobs(&self, limit: u32) -> Result<Vec<Job>, StoreError> {
        let q =
            Sql::new(&format!("{JOB} ORDER BY created_at DESC, id LIMIT $1")).arg(i64::from(limit));
        self.read(q).await?.iter().map(job).collect()
    }

    async fn activity(
        &self,
        since: DateTime<Utc>,
        bucket_secs: u32,
    ) -> Result<Vec<ActivityBucket>, StoreError> {
        let bucket = match E::DIALECT {
            Dialect::Postgres => "floor(extract(epoch FROM at) / $2)::bigint",
            Dialect::Sqlite => "at / ($2 * 1000)",
        };
        let q = Sql::new(&format!(
            "SELECT {bucket} AS bucket,
                    CASE WHEN from_status IS NULL THEN 'received' ELSE to_status END AS what,
                    count(*) AS n
             FROM event_transitions
             WHERE at >= $1 AND (from_status IS NULL
                   OR to_status IN ('completed', 'retry_scheduled', 'dead_letter'))
             GROUP BY 1, 2"
        ))
        .arg(since)
        .arg(i64::from(bucket_secs.max(1)));
        let rows = self
            .read(q)
            .await?
            .iter()
            .map(|r| {
                Ok((
                    r.get::<i64>("bucket")?,
                    r.get::<String>("what")?,
                    r.get::<i64>("n")?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(fill_buckets(since, bucket_secs, rows))
    }

    async fn provider_counts(&self) -> Result<Vec<ProviderCount>, StoreError> {
        let q = Sql::new(
            "SELECT provider, status, count(*) AS n FROM deliveries
             WHERE status IN ('pending', 'processing', 'retry_scheduled', 'compensating', 'dead_letter')
             GROUP BY provider, status",
        );
        self.read(q)
            .await?
            .iter()
            .map(|r| {
                Ok(ProviderCount {
                    provider: r.get("provider")?,
                    status: r.status("status")?,
                    count: r.count("n")?,
                })
            })
            .collect()
    }

    async fn session(&self, digest: &[u8]) -> Result<Option<Session>, StoreError> {
        let q = Sql::new(
            "SELECT token_name, scope, csrf, expires_at FROM admin_sessions
             WHERE id_digest = $1 AND expires_at > {now}",
        )
        .arg(digest);
        let Some(r) = self.read(q).await?.into_iter().next() else {
            return Ok(None);
        };
        Ok(Some(Session {
            token_name: r.get("token_name")?,
            scope: r.get("scope")?,
            csrf: r.get("csrf")?,
            expires_at: r.time("expires_at")?,
        }))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn globs_become_escaped_like_patterns() {
        let f = super::like_pattern;
        assert_eq!(f("payment_intent.*"), "payment\\_intent.%");
        assert_eq!(f("100%"), "100\\%");
        assert_eq!(f("a\\b*"), "a\\\\b%");
    }

    #[test]
    fn globs_keep_only_the_star_special() {
        assert_eq!(super::sqlite_glob("a?b[c]*"), "a[?]b[[]c]*");
    }
}

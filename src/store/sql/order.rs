//! Ordered delivery per key, written once for both engines: an event joins the line of each of
//! its order keys at its commit, leaves it when it finishes (or an operator skips it), and the
//! next event of the line is released then. Every function runs inside the caller's
//! transaction, on its connection ([`Conn`]).
//!
//! An event's `deliveries.held` counts the lines in which someone is before it; only events
//! held by nobody are in the claims' index (`deliveries_due`). A line's row in `order_lines`
//! hands out positions and counts its events; it is updated (so locked, on PostgreSQL) by
//! every join and leave, so positions follow commit order and a leave sees every event that
//! joined before it. On PostgreSQL the caller must have locked the lines ([`LOCK_LINES`])
//! in a statement of its own before a leave: a statement that waits for a lock keeps its
//! snapshot, and would not see the event whose insert it waited for.
//!
//! It must never commit, and never release an event that still has someone before it.

use async_trait::async_trait;
use sqlx::postgres::{PgConnection, PgRow, Postgres};
use sqlx::sqlite::{Sqlite, SqliteConnection, SqliteRow};

use super::{Record, Sql};
use crate::event::{EventId, EventStatus, OrderKey};
use crate::store::admin::BlockedLine;
use crate::store::{Released, StoreError};

/// A connection inside a transaction, for the statements of this module.
#[async_trait]
pub trait Conn: Send {
    type Row: Record;
    async fn run(&mut self, q: Sql) -> Result<Vec<Self::Row>, StoreError>;
}

#[async_trait]
impl Conn for PgConnection {
    type Row = PgRow;
    async fn run(&mut self, q: Sql) -> Result<Vec<PgRow>, StoreError> {
        Ok(q.query::<Postgres>()?.fetch_all(&mut *self).await?)
    }
}

#[async_trait]
impl Conn for SqliteConnection {
    type Row = SqliteRow;
    async fn run(&mut self, q: Sql) -> Result<Vec<SqliteRow>, StoreError> {
        Ok(q.query::<Sqlite>()?.fetch_all(&mut *self).await?)
    }
}

/// PostgreSQL: lock the lines of the events `$1` (a `uuid[]`) is in, in one order (so two
/// transactions cannot deadlock on them), before anything leaves or joins them. Its own
/// statement: the ones after it see every event whose insert it waited for.
pub const LOCK_LINES: &str = "SELECT 1 FROM order_lines l
     WHERE (l.route, l.key) IN (SELECT o.route, o.key FROM event_order o WHERE o.event_id = ANY($1))
     ORDER BY l.route, l.key
     FOR UPDATE OF l";

/// Put each `(event, key)` at the back of its line; an event with someone before it is held
/// there. Lines are taken in one order (the same as [`LOCK_LINES`]); events of one line keep
/// the order they are given in (their order in the batch, which commits whole).
pub async fn join<C: Conn + ?Sized>(
    c: &mut C,
    joins: &[(EventId, &OrderKey)],
) -> Result<(), StoreError> {
    let mut joins = joins.to_vec();
    joins.sort_by(|a, b| (&a.1.route, &a.1.key).cmp(&(&b.1.route, &b.1.key)));
    for (event, k) in joins {
        let rows = c
            .run(
                Sql::new(
                    "INSERT INTO order_lines (route, key, next_pos, waiting) VALUES ($1, $2, 1, 1)
                     ON CONFLICT (route, key) DO UPDATE
                        SET next_pos = order_lines.next_pos + 1, waiting = order_lines.waiting + 1
                     RETURNING next_pos, waiting",
                )
                .arg(k.route.as_str())
                .arg(k.key.as_str()),
            )
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::other("order line upsert returned nothing"))?;
        let pos: i64 = row.get("next_pos")?;
        let waiting: i32 = row.get("waiting")?;
        c.run(
            Sql::new(
                "INSERT INTO event_order (event_id, route, key, block, pos)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (event_id, route) DO UPDATE SET pos = excluded.pos",
            )
            .arg(event)
            .arg(k.route.as_str())
            .arg(k.key.as_str())
            .arg(k.block)
            .arg(pos),
        )
        .await?;
        if waiting > 1 {
            c.run(Sql::new("UPDATE deliveries SET held = held + 1 WHERE event_id = $1").arg(event))
                .await?;
        }
    }
    Ok(())
}

/// Take `event` out of its lines: all of them with `blocking`, else those whose route releases
/// a dead letter (or any, when the event completed: pass `blocking` for every final status but
/// `dead_letter`). Returns the events this made first in every line they are in.
pub async fn leave<C: Conn + ?Sized>(
    c: &mut C,
    event: EventId,
    blocking: bool,
) -> Result<Vec<EventId>, StoreError> {
    const WHICH: &str = "event_id = $1 AND pos IS NOT NULL AND (block = $2 OR block = $3)";
    let which = |q: &str| Sql::new(q).arg(event).arg(false).arg(blocking);
    // The positions are read first: `RETURNING` gives the new values.
    let left = c
        .run(which(&format!(
            "SELECT route, key, pos FROM event_order WHERE {WHICH}"
        )))
        .await?;
    if left.is_empty() {
        return Ok(Vec::new());
    }
    c.run(which(&format!(
        "UPDATE event_order SET pos = NULL WHERE {WHICH}"
    )))
    .await?;
    let mut released = Vec::new();
    for row in left {
        let route: String = row.get("route")?;
        let key: String = row.get("key")?;
        let pos: i64 = row.get("pos")?;
        let waiting = c
            .run(
                Sql::new(
                    "UPDATE order_lines SET waiting = waiting - 1 WHERE route = $1 AND key = $2
                     RETURNING waiting",
                )
                .arg(route.as_str())
                .arg(key.as_str()),
            )
            .await?;
        let waiting: i32 = match waiting.first() {
            Some(r) => r.get("waiting")?,
            None => 0,
        };
        if waiting <= 0 {
            // An empty line goes: the table holds only lines with events in them.
            c.run(
                Sql::new("DELETE FROM order_lines WHERE route = $1 AND key = $2 AND waiting <= 0")
                    .arg(route.as_str())
                    .arg(key.as_str()),
            )
            .await?;
            continue;
        }
        released.extend(release_next(c, &route, &key, pos).await?);
    }
    Ok(released)
}

/// The first event of a line, if the one that left from `left_pos` was before it (it was the
/// head): one fewer line holds it back. Returns it when nothing holds it any more.
async fn release_next<C: Conn + ?Sized>(
    c: &mut C,
    route: &str,
    key: &str,
    left_pos: i64,
) -> Result<Option<EventId>, StoreError> {
    let head = c
        .run(
            Sql::new(
                "SELECT event_id, pos FROM event_order
                 WHERE route = $1 AND key = $2 AND pos IS NOT NULL
                 ORDER BY pos LIMIT 1",
            )
            .arg(route)
            .arg(key),
        )
        .await?;
    let Some(head) = head.first() else {
        return Ok(None);
    };
    let pos: i64 = head.get("pos")?;
    if pos < left_pos {
        // Someone was before the event that left: the head did not change.
        return Ok(None);
    }
    let id = EventId(head.get("event_id")?);
    let held = c
        .run(
            Sql::new(
                "UPDATE deliveries SET held = held - 1 WHERE event_id = $1 AND held > 0
                 RETURNING held",
            )
            .arg(id),
        )
        .await?;
    Ok(match held.first() {
        Some(r) if r.get::<i32>("held")? == 0 => Some(id),
        _ => None,
    })
}

/// The lines an event was put in at its commit, for a replay to join again.
pub async fn keys_of<C: Conn + ?Sized>(
    c: &mut C,
    event: EventId,
) -> Result<Vec<OrderKey>, StoreError> {
    c.run(Sql::new("SELECT route, key, block FROM event_order WHERE event_id = $1").arg(event))
        .await?
        .iter()
        .map(|r| {
            Ok(OrderKey {
                route: r.get("route")?,
                key: r.get("key")?,
                block: r.get("block")?,
            })
        })
        .collect()
}

/// A replayed (or redriven) event goes to the back of its lines: out of any it still is in
/// (a blocking dead letter), then in again. Returns the events its leaving released.
pub async fn rejoin<C: Conn + ?Sized>(
    c: &mut C,
    event: EventId,
) -> Result<Vec<EventId>, StoreError> {
    let keys = keys_of(c, event).await?;
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let released = leave(c, event, true).await?;
    // It may have been held in a line it has just left; it is counted again as it joins.
    c.run(Sql::new("UPDATE deliveries SET held = 0 WHERE event_id = $1").arg(event))
        .await?;
    let joins: Vec<(EventId, &OrderKey)> = keys.iter().map(|k| (event, k)).collect();
    join(c, &joins).await?;
    Ok(released.into_iter().filter(|id| *id != event).collect())
}

/// The event whose outcome was just written, with its new status: a completed event leaves
/// its lines, a dead letter those whose route releases it. Other statuses stay in line.
/// Returns the events its leaving let start, each with its first line.
pub async fn settle<C: Conn + ?Sized>(
    c: &mut C,
    id: EventId,
    status: EventStatus,
) -> Result<Vec<Released>, StoreError> {
    let ids = match status {
        EventStatus::Completed => leave(c, id, true).await?,
        EventStatus::DeadLetter => leave(c, id, false).await?,
        _ => return Ok(Vec::new()),
    };
    let mut released = Vec::with_capacity(ids.len());
    for id in ids {
        let first = c
            .run(
                Sql::new(
                    "SELECT route, key FROM event_order WHERE event_id = $1
                     ORDER BY route, key LIMIT 1",
                )
                .arg(id),
            )
            .await?;
        if let Some(r) = first.first() {
            released.push(Released {
                id,
                route: r.get("route")?,
                key: r.get("key")?,
            });
        }
    }
    Ok(released)
}

/// Take `event` out of its lines if it is a dead letter in one (see
/// [`crate::store::Operator::skip_in_line`]), with a transition naming `actor`.
pub async fn skip<C: Conn + ?Sized>(
    c: &mut C,
    event: EventId,
    actor: &str,
) -> Result<Option<Vec<EventId>>, StoreError> {
    let blocking = c
        .run(
            Sql::new(
                "SELECT 1 AS one FROM deliveries d
                 WHERE d.event_id = $1 AND d.status = 'dead_letter' AND EXISTS (
                    SELECT 1 FROM event_order o WHERE o.event_id = $1 AND o.pos IS NOT NULL)",
            )
            .arg(event),
        )
        .await?;
    if blocking.is_empty() {
        return Ok(None);
    }
    let released = leave(c, event, true).await?;
    c.run(
        Sql::new(
            "INSERT INTO event_transitions (event_id, from_status, to_status, at, detail)
             VALUES ($1, 'dead_letter', 'dead_letter', {now}, $2)",
        )
        .arg(event)
        .arg(format!("skipped in its order lines by {actor}")),
    )
    .await?;
    Ok(Some(released))
}

/// The lines held up, oldest first event first (see [`crate::store::admin::BlockedLine`]):
/// each line's first event is one probe of `event_order_line`.
pub fn blocked_lines(limit: u32) -> Sql {
    Sql::new(
        "SELECT l.route, l.key, l.waiting, d.event_id, d.status, d.attempts, d.last_error,
                d.received_at
         FROM order_lines l
         JOIN event_order o ON o.route = l.route AND o.key = l.key AND o.pos = (
            SELECT min(h.pos) FROM event_order h
            WHERE h.route = l.route AND h.key = l.key AND h.pos IS NOT NULL)
         JOIN deliveries d ON d.event_id = o.event_id
         WHERE l.waiting > 1 OR d.status IN ('retry_scheduled', 'dead_letter', 'compensating')
         ORDER BY d.received_at
         LIMIT $1",
    )
    .arg(i64::from(limit))
}

/// A row of [`blocked_lines`].
pub fn blocked_line(r: &impl Record) -> Result<BlockedLine, StoreError> {
    Ok(BlockedLine {
        route: r.get("route")?,
        key: r.get("key")?,
        head: EventId(r.get("event_id")?),
        status: r.status("status")?,
        attempts: r.small("attempts")?,
        last_error: r.get("last_error")?,
        received_at: r.time("received_at")?,
        waiting_behind: (r.get::<i32>("waiting")? - 1).max(0) as u64,
    })
}

/// How many keys have events waiting behind an unfinished one (`n`), and when the oldest
/// event held back was received (`oldest`).
pub const WAITING: &str = "SELECT
        (SELECT count(*) FROM order_lines WHERE waiting > 1) AS n,
        (SELECT min(d.received_at) FROM event_order o JOIN deliveries d ON d.event_id = o.event_id
         WHERE o.pos IS NOT NULL AND d.held > 0) AS oldest";

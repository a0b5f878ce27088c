//! The event stream: every event as it is accepted, with its stored request, for `hookd listen`
//! and any other server-sent-events client of `/admin/events/stream`. It reads the store, not
//! this process's intake, so it sees what every api process of a fleet accepts.
//!
//! Event ids are UUIDv7s minted when a request arrives, and inserts from several processes (or
//! group-commit batches) commit in any order: an event with a smaller id can become visible
//! after a larger one was sent. So a stream keeps two positions. `head` (the highest id sent, or
//! just behind the last look when there was nothing more) is where each poll looks for new
//! events: they go out as soon as they are visible. `floor`
//! trails it by the settle delay (`HOOKD_STREAM_SETTLE_MS`, at least the store timeout, so every
//! insert has committed or failed by then): the range between them is read once more as the
//! floor moves, and what was not sent yet (a late commit) goes out then. The cursor a client
//! resumes from (`Last-Event-ID`) is the floor, so a reconnect sends again what it received
//! within the settle delay before it dropped: at least once, never skipped; clients tell the
//! repeats by event id (`hookd listen` does).
//!
//! Owns the stream's positions and wire type. It must never hold a store connection between
//! polls, nor write.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{Ops, OpsError, params};
use crate::event::EventId;
use crate::store::EventStore;
use crate::store::admin::{EventFilter, StreamedEvent};

/// How often an idle stream asks the store for new events.
pub const POLL: Duration = Duration::from_millis(250);
/// Most new events sent per poll; a stream behind its cursor catches up a batch at a time, as
/// fast as its client reads.
const BATCH: u32 = 100;
/// How far behind the time of its last look a caught-up stream's `head` stays: an insert
/// usually commits well within this of minting its id, so it is sent at once rather than when
/// its range settles.
const FRESH_MARGIN: chrono::Duration = chrono::Duration::seconds(1);
/// Most events of the settling range read per poll.
const SETTLE_BATCH: u32 = 500;

/// The event stream's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSettings {
    /// `HOOKD_STREAM_MAX`: streams open at once in one process; more are refused (503).
    pub max_streams: usize,
    /// `HOOKD_STREAM_SETTLE_MS`: how long after its id was minted an event is sure to have
    /// committed (or failed); never shorter than the store timeout.
    pub settle: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            max_streams: 16,
            settle: Duration::from_secs(10),
        }
    }
}

/// What a stream sends; both optional.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Only this provider, e.g. `stripe`.
    #[param(max_length = 1024)]
    pub provider: Option<String>,
    /// Glob on the event type: `*` matches any run of characters, e.g. `invoice.*`.
    #[param(max_length = 1024)]
    pub events: Option<String>,
}

/// One accepted event, as the `data:` of a stream's message (its `id:` is the cursor).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StreamEvent {
    pub id: EventId,
    pub provider: String,
    pub event_type: String,
    pub idempotency_key: String,
    pub received_at: DateTime<Utc>,
    pub content_type: Option<String>,
    /// The request headers kept for audit; signature headers are stored as `[redacted]`.
    #[schema(value_type = Object)]
    pub headers: serde_json::Value,
    /// The raw body: text when it is UTF-8, else base64 (see `body_encoding`).
    pub body: String,
    /// `utf8` or `base64`.
    pub body_encoding: String,
}

impl From<StreamedEvent> for StreamEvent {
    fn from(e: StreamedEvent) -> Self {
        let (body, body_encoding) = match String::from_utf8(e.payload.body) {
            Ok(text) => (text, "utf8"),
            Err(b) => (
                base64::engine::general_purpose::STANDARD.encode(b.as_bytes()),
                "base64",
            ),
        };
        Self {
            id: e.id,
            provider: e.provider,
            event_type: e.event_type,
            idempotency_key: e.idempotency_key,
            received_at: e.received_at,
            content_type: e.payload.content_type,
            headers: e.payload.headers,
            body,
            body_encoding: body_encoding.into(),
        }
    }
}

/// The streams of one process: the cap and the settle delay.
pub(super) struct Streams {
    open: Arc<Semaphore>,
    settings: StreamSettings,
}

impl Streams {
    pub(super) fn new(settings: StreamSettings) -> Self {
        Self {
            open: Arc::new(Semaphore::new(settings.max_streams)),
            settings,
        }
    }
}

/// The highest id a UUIDv7 minted at `t` can have: every event minted at or before `t` sorts
/// at or below it.
fn id_bound(t: DateTime<Utc>) -> EventId {
    let ms = u128::try_from(t.timestamp_millis()).unwrap_or(0);
    EventId(Uuid::from_u128((ms << 80) | ((1u128 << 80) - 1)))
}

/// One open stream: its positions, its filter, and its place under the cap.
pub struct EventStream {
    store: Arc<dyn EventStore>,
    filter: EventFilter,
    settle: Duration,
    /// Every matching event with an id up to here has been sent (or predates the stream).
    floor: EventId,
    /// Where the next look for new events starts: the highest id sent or, when caught up, just
    /// behind the time of the last look (never below `floor`).
    head: EventId,
    /// Ids above `floor` already sent.
    sent: BTreeSet<EventId>,
    shutdown: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
}

/// Events to send, and the cursor to resume from after any of them.
#[derive(Debug)]
pub struct StreamBatch {
    pub cursor: EventId,
    pub events: Vec<StreamEvent>,
}

impl Ops {
    /// Open an event stream: from the cursor `last_event_id` (a `Last-Event-ID` this endpoint
    /// sent), or from now. Refused when this process already serves its cap of streams.
    pub fn open_stream(
        &self,
        query: &StreamQuery,
        last_event_id: Option<&str>,
    ) -> Result<EventStream, OpsError> {
        let filter = EventFilter {
            provider: params::text("provider", &query.provider)?,
            event_type: params::text("events", &query.events)?,
            ..EventFilter::default()
        };
        let now = id_bound(Utc::now());
        let start = match last_event_id.map(str::trim).filter(|s| !s.is_empty()) {
            // A cursor from the future (none this endpoint sent) would hide everything until
            // then: it starts now.
            Some(s) => s.parse::<EventId>().map(|c| c.min(now)).map_err(|_| {
                OpsError::Invalid("Last-Event-ID must be a cursor this stream sent (a UUID)".into())
            })?,
            None => now,
        };
        let permit = self.streams.open.clone().try_acquire_owned().map_err(|_| {
            OpsError::Busy(format!(
                "this process already serves {} event streams (HOOKD_STREAM_MAX); retry later",
                self.streams.settings.max_streams
            ))
        })?;
        Ok(EventStream {
            // The primary: a replica's lag would be one more delay for the settle to cover.
            store: self.store.clone(),
            filter,
            settle: self.streams.settings.settle,
            floor: start,
            head: start,
            sent: BTreeSet::new(),
            shutdown: self.shutdown.clone(),
            _permit: permit,
        })
    }
}

impl EventStream {
    /// The next events, waiting for some as long as it takes; `None` once the server stops.
    pub async fn next(&mut self) -> Option<Result<StreamBatch, OpsError>> {
        loop {
            if *self.shutdown.borrow() {
                return None;
            }
            let cursor = self.floor;
            match self.poll().await {
                Err(e) => return Some(Err(e)),
                Ok(events) if !events.is_empty() => {
                    return Some(Ok(StreamBatch { cursor, events }));
                }
                Ok(_) => {}
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                // Gone with the process that owned it: stopping too.
                changed = self.shutdown.changed() => if changed.is_err() {
                    return None;
                },
            }
        }
    }

    /// One look at the store: new events above `head`, then the range that settled since the
    /// last look, for events that committed after larger ids were sent.
    async fn poll(&mut self) -> Result<Vec<StreamEvent>, OpsError> {
        let mut out = Vec::new();
        let asked = Utc::now();
        let fresh = self
            .store
            .stream_events(&self.filter, self.head, None, BATCH)
            .await?;
        let caught_up = fresh.len() < BATCH as usize;
        for e in fresh {
            self.head = self.head.max(e.id);
            if self.sent.insert(e.id) {
                out.push(e.into());
            }
        }
        if caught_up {
            // Everything visible above `head` was read, matching or not: the next look can
            // start nearly here, rather than scan again what the filter left out. What commits
            // later below it is the settling read's.
            self.head = self.head.max(id_bound(asked - FRESH_MARGIN));
        }
        let settled = id_bound(Utc::now() - self.settle);
        // Behind, the settled range ends at what was read; caught up, at the settled time.
        let bound = if caught_up {
            settled
        } else {
            settled.min(self.head)
        };
        if bound > self.floor {
            let late = self
                .store
                .stream_events(&self.filter, self.floor, Some(bound), SETTLE_BATCH)
                .await?;
            let full = late.len() == SETTLE_BATCH as usize;
            let mut last = bound;
            for e in late {
                last = e.id;
                if self.sent.insert(e.id) {
                    out.push(e.into());
                }
            }
            self.floor = if full { last } else { bound };
            let floor = self.floor;
            self.sent.retain(|id| *id > floor);
            self.head = self.head.max(floor);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_bound_is_above_every_id_minted_at_its_time_and_below_later_ones() {
        let t = Utc::now();
        let minted = EventId(Uuid::now_v7());
        assert!(minted <= id_bound(Utc::now()));
        assert!(id_bound(t - chrono::Duration::milliseconds(1)) < id_bound(t));
        assert!(minted > id_bound(t - chrono::Duration::seconds(1)));
    }
}

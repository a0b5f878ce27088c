//! Events as an operator sees them: searching (the event list and the dead letters, a page at a
//! time), one event with its history and stored request, its raw payload, and the activity
//! over a time window for charts.
//!
//! Owns the request and answer types of these reads, shared by the admin API, the console and
//! the CLI. Reads go to the read store (a replica when one is configured). It must never write.

use std::collections::BTreeMap;

use base64::Engine;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{Ops, OpsError, params};
use crate::event::{EventDetail, EventId, EventStatus};
use crate::store::admin::{ActivityBucket, EventFilter, EventPayload, EventSummary};

/// Filters for listing events; all optional, all that are given must hold.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Provider name, e.g. `stripe`.
    #[param(max_length = 1024)]
    pub provider: Option<String>,
    /// Comma-separated statuses, e.g. `dead_letter,retry_scheduled`.
    #[param(
        pattern = "^(pending|processing|retry_scheduled|compensating|completed|dead_letter)(,(pending|processing|retry_scheduled|compensating|completed|dead_letter))*$"
    )]
    pub status: Option<String>,
    /// Glob on the event type: `*` matches any run of characters, e.g. `payment_intent.*`.
    #[param(max_length = 1024)]
    pub event_type: Option<String>,
    /// Received at or after this time (RFC 3339).
    #[param(format = DateTime)]
    pub received_after: Option<String>,
    /// Received before this time (RFC 3339).
    #[param(format = DateTime)]
    pub received_before: Option<String>,
    /// The provider's idempotency key (e.g. Stripe's `evt_...`), exactly.
    #[param(max_length = 1024)]
    pub idempotency_key: Option<String>,
    /// Text that must occur in the raw payload (case-sensitive).
    #[param(max_length = 1024)]
    pub q: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(format = Uuid)]
    pub cursor: Option<String>,
    /// Events per page, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

impl EventQuery {
    /// The filter these parameters describe.
    pub fn filter(&self) -> Result<EventFilter, OpsError> {
        Ok(EventFilter {
            provider: params::text("provider", &self.provider)?,
            statuses: params::statuses(&self.status)?,
            event_type: params::text("event_type", &self.event_type)?,
            received_after: params::time("received_after", &self.received_after)?,
            received_before: params::time("received_before", &self.received_before)?,
            idempotency_key: params::text("idempotency_key", &self.idempotency_key)?,
            text: params::text("q", &self.q)?,
        })
    }
}

/// Filters for the dead-letter list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DlqQuery {
    /// Provider name.
    #[param(max_length = 1024)]
    pub provider: Option<String>,
    /// Glob on the event type.
    #[param(max_length = 1024)]
    pub event_type: Option<String>,
    /// Text that must occur in the raw payload (case-sensitive).
    #[param(max_length = 1024)]
    pub q: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(format = Uuid)]
    pub cursor: Option<String>,
    /// Events per page, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// One page of events, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    pub events: Vec<EventSummary>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// One event with its whole history and the request as stored.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    #[serde(flatten)]
    pub detail: EventDetail,
    /// The request headers kept for audit; signature headers are stored as `[redacted]`.
    #[schema(value_type = Object)]
    pub headers: serde_json::Value,
    /// The raw body: text when it is UTF-8, else base64 (see `body_encoding`); `null` once
    /// retention purged it.
    pub body: Option<String>,
    /// `utf8` or `base64`.
    pub body_encoding: String,
}

/// The time a chart covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
pub enum Window {
    /// Fifteen-second buckets.
    #[serde(rename = "15m")]
    Quarter,
    /// One-minute buckets.
    #[default]
    #[serde(rename = "1h")]
    Hour,
    /// Five-minute buckets.
    #[serde(rename = "6h")]
    SixHours,
    /// Half-hour buckets.
    #[serde(rename = "24h")]
    Day,
    /// Four-hour buckets.
    #[serde(rename = "7d")]
    Week,
}

impl Window {
    pub const ALL: [Self; 5] = [
        Self::Quarter,
        Self::Hour,
        Self::SixHours,
        Self::Day,
        Self::Week,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Quarter => "15m",
            Self::Hour => "1h",
            Self::SixHours => "6h",
            Self::Day => "24h",
            Self::Week => "7d",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|w| w.name() == s)
    }

    /// The span and the bucket size, in seconds.
    fn spans(self) -> (i64, u32) {
        match self {
            Self::Quarter => (900, 15),
            Self::Hour => (3600, 60),
            Self::SixHours => (6 * 3600, 300),
            Self::Day => (24 * 3600, 1800),
            Self::Week => (7 * 24 * 3600, 4 * 3600),
        }
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// `15m`, `1h` (default, one-minute buckets), `6h`, `24h` or `7d`.
    pub window: Option<Window>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    pub window: String,
    pub bucket_secs: u32,
    /// Events received, completed, retried and dead-lettered per bucket, oldest first.
    pub buckets: Vec<ActivityBucket>,
    /// Events waiting or dead-lettered, by status.
    #[schema(value_type = Object)]
    pub backlog: BTreeMap<String, u64>,
}

impl Ops {
    /// One page of the events `query` asks for.
    pub async fn events(&self, query: &EventQuery) -> Result<EventPage, OpsError> {
        let filter = query.filter()?;
        let cursor = params::event_cursor(&query.cursor)?;
        self.page(&filter, cursor, params::limit(query.limit)?)
            .await
    }

    /// One page of the dead letters `query` asks for.
    pub async fn dead_letters(&self, query: &DlqQuery) -> Result<EventPage, OpsError> {
        let filter = EventFilter {
            provider: params::text("provider", &query.provider)?,
            statuses: vec![EventStatus::DeadLetter],
            event_type: params::text("event_type", &query.event_type)?,
            text: params::text("q", &query.q)?,
            ..Default::default()
        };
        let cursor = params::event_cursor(&query.cursor)?;
        self.page(&filter, cursor, params::limit(query.limit)?)
            .await
    }

    /// The events `filter` matches older than `cursor`, newest first, at most `limit`.
    pub async fn page(
        &self,
        filter: &EventFilter,
        cursor: Option<EventId>,
        limit: u32,
    ) -> Result<EventPage, OpsError> {
        let impossible = params::impossible(&[
            &filter.provider,
            &filter.event_type,
            &filter.idempotency_key,
        ]);
        let mut events = if impossible {
            Vec::new()
        } else {
            self.reads.list_events(filter, cursor, limit + 1).await?
        };
        let more = events.len() > limit as usize;
        events.truncate(limit as usize);
        let next_cursor = more
            .then(|| events.last().map(|e| e.id.to_string()))
            .flatten();
        Ok(EventPage {
            events,
            next_cursor,
        })
    }

    /// One event's history and its stored request, as stored.
    pub async fn event_detail(&self, id: EventId) -> Result<(EventDetail, EventPayload), OpsError> {
        let detail = self.reads.event(id).await?.ok_or(OpsError::NotFound)?;
        let payload = self.payload(id).await?;
        Ok((detail, payload))
    }

    /// One event with its body as text or base64.
    pub async fn event(&self, id: EventId) -> Result<EventView, OpsError> {
        let (detail, payload) = self.event_detail(id).await?;
        let (body, body_encoding) = match (&detail.body_purged_at, String::from_utf8(payload.body))
        {
            (Some(_), _) => (None, "utf8"),
            (None, Ok(text)) => (Some(text), "utf8"),
            (None, Err(e)) => (
                Some(base64::engine::general_purpose::STANDARD.encode(e.as_bytes())),
                "base64",
            ),
        };
        Ok(EventView {
            detail,
            headers: payload.headers,
            body,
            body_encoding: body_encoding.into(),
        })
    }

    /// The stored headers and raw body of one event.
    pub async fn payload(&self, id: EventId) -> Result<EventPayload, OpsError> {
        self.reads
            .event_payload(id)
            .await?
            .ok_or(OpsError::NotFound)
    }

    /// The activity over `window`, and the backlog now.
    pub async fn activity(&self, window: Window) -> Result<Stats, OpsError> {
        let (span, bucket_secs) = window.spans();
        let since = Utc::now() - chrono::Duration::seconds(span - i64::from(bucket_secs));
        let buckets = self.reads.activity(since, bucket_secs).await?;
        let backlog = self.reads.backlog().await?;
        Ok(Stats {
            window: window.name().to_owned(),
            bucket_secs,
            buckets,
            backlog: backlog
                .by_status
                .iter()
                .map(|(s, n)| (s.as_str().to_owned(), *n))
                .collect(),
        })
    }
}

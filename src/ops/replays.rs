//! Replays and redrives: of one event at once, and the requests of bulk ones (which run as
//! jobs, see `jobs`).
//!
//! Owns the rule that a replay starts a new attempt cycle that runs every step again (a new
//! replay generation, recorded as a transition) and is enqueued so that whichever queue runs
//! the workers sees it. It must never replay an event that is still being processed or whose
//! payload was purged.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Ops, OpsError, Principal, params};
use crate::event::{EventDetail, EventId, EventStatus};
use crate::store::admin::{EventFilter, ReplayKind};

/// The statuses a replay may start from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Finished {
    Completed,
    DeadLetter,
}

/// Which events a bulk replay works through: at least one field (to replay every finished
/// event, give `received_after: "1970-01-01T00:00:00Z"`).
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct ReplayRequest {
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 1024,
        pattern = "^[^\\x00]*$"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Replay events in these statuses (both when left out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(min_items = 1)]
    pub statuses: Vec<Finished>,
    /// Glob on the event type.
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 1024,
        pattern = "^[^\\x00]*$"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    #[schema(nullable = false, format = DateTime)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received_after: Option<String>,
    #[schema(nullable = false, format = DateTime)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received_before: Option<String>,
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 1024,
        pattern = "^[^\\x00]*$"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Text that must occur in the raw payload.
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 1024,
        pattern = "^[^\\x00]*$"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// Which dead letters a bulk redrive works through (all of them when left out).
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedriveRequest {
    #[schema(nullable = false, max_length = 1024, pattern = "^[^\\x00]*$")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Glob on the event type.
    #[schema(nullable = false, max_length = 1024, pattern = "^[^\\x00]*$")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    #[schema(nullable = false, format = DateTime)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received_after: Option<String>,
    #[schema(nullable = false, format = DateTime)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received_before: Option<String>,
    #[schema(nullable = false, max_length = 1024, pattern = "^[^\\x00]*$")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Text that must occur in the raw payload.
    #[schema(nullable = false, max_length = 1024, pattern = "^[^\\x00]*$")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl ReplayRequest {
    /// The filter of the job: at least one field set; both finished statuses when none is.
    pub fn filter(&self) -> Result<EventFilter, OpsError> {
        let mut f = EventFilter {
            provider: params::body_text("provider", &self.provider)?,
            statuses: self
                .statuses
                .iter()
                .map(|s| match s {
                    Finished::Completed => EventStatus::Completed,
                    Finished::DeadLetter => EventStatus::DeadLetter,
                })
                .collect(),
            event_type: params::body_text("event_type", &self.event_type)?,
            received_after: params::time("received_after", &self.received_after)?,
            received_before: params::time("received_before", &self.received_before)?,
            idempotency_key: params::body_text("idempotency_key", &self.idempotency_key)?,
            text: params::body_text("text", &self.text)?,
        };
        if f == EventFilter::default() {
            return Err(OpsError::Invalid(
                "give at least one filter; to replay every event, set received_after to \
                 1970-01-01T00:00:00Z"
                    .into(),
            ));
        }
        if f.statuses.is_empty() {
            f.statuses = vec![EventStatus::Completed, EventStatus::DeadLetter];
        }
        Ok(f)
    }
}

impl RedriveRequest {
    /// The filter of the job: dead letters only.
    pub fn filter(&self) -> Result<EventFilter, OpsError> {
        Ok(EventFilter {
            provider: params::body_text("provider", &self.provider)?,
            statuses: vec![EventStatus::DeadLetter],
            event_type: params::body_text("event_type", &self.event_type)?,
            received_after: params::time("received_after", &self.received_after)?,
            received_before: params::time("received_before", &self.received_before)?,
            idempotency_key: params::body_text("idempotency_key", &self.idempotency_key)?,
            text: params::body_text("text", &self.text)?,
        })
    }
}

impl Ops {
    /// Replay (or redrive) one event: a new attempt cycle that runs every step again. Returns
    /// the event as it is now.
    pub async fn replay(
        &self,
        id: EventId,
        kind: ReplayKind,
        who: &Principal,
    ) -> Result<EventDetail, OpsError> {
        let done = self.store.replay(&[id], kind, &who.actor()).await?;
        let event = self.store.event(id).await?.ok_or(OpsError::NotFound)?;
        if done.is_empty() {
            return Err(why_not(&event, kind));
        }
        self.enqueue(id).await;
        Ok(event)
    }

    /// Tell the queue about a replayed event, so workers (in any process, on Redis too) see it.
    /// Failure loses nothing: the event is due in the store, and the sweeper or a poll finds it.
    pub(super) async fn enqueue(&self, id: EventId) {
        if let Err(e) = self.queue.enqueue(id).await {
            tracing::warn!(event_id = %id, error = %e, "cannot enqueue the replayed event; it waits for the sweeper");
        }
    }
}

/// Why `event` could not be replayed as `kind`.
fn why_not(event: &EventDetail, kind: ReplayKind) -> OpsError {
    if event.body_purged_at.is_some() {
        return OpsError::Conflict {
            code: "payload_purged",
            message: "the payload was purged by retention; there is nothing to replay".into(),
        };
    }
    let allowed = match kind {
        ReplayKind::Replay => "completed or dead_letter",
        ReplayKind::Redrive => "dead_letter",
    };
    let code = match event.status {
        EventStatus::Completed | EventStatus::DeadLetter => "not_dead_lettered",
        _ => "in_progress",
    };
    OpsError::Conflict {
        code,
        message: format!(
            "the event is {}; only {allowed} events can be {}ed",
            event.status,
            match kind {
                ReplayKind::Replay => "replay",
                ReplayKind::Redrive => "redriv",
            }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bulk_replay_needs_a_filter_and_defaults_to_both_finished_statuses() {
        let empty = ReplayRequest::default().filter();
        assert!(matches!(empty, Err(OpsError::Invalid(m)) if m.contains("at least one filter")));
        let f = ReplayRequest {
            provider: Some("stripe".into()),
            ..Default::default()
        }
        .filter()
        .unwrap();
        assert_eq!(
            f.statuses,
            vec![EventStatus::Completed, EventStatus::DeadLetter]
        );
        let f = RedriveRequest::default().filter().unwrap();
        assert_eq!(f.statuses, vec![EventStatus::DeadLetter]);
    }

    #[test]
    fn requests_serialise_only_what_is_set() {
        let body = serde_json::to_string(&ReplayRequest {
            provider: Some("stripe".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(body, r#"{"provider":"stripe"}"#);
        assert_eq!(
            serde_json::to_string(&RedriveRequest::default()).unwrap(),
            "{}"
        );
    }
}

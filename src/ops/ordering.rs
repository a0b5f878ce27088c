//! Ordered delivery per key, as an operator sees it: which keys are held up, by which event
//! and why, how many events wait behind it; and skipping a dead letter that blocks its key.
//!
//! Owns the rule that only a dead letter still in its lines can be skipped (a retrying event is
//! redriven by time, not by hand) and that the events it lets start are announced to the
//! queue. It must never change an event's status: a skip only takes it out of its lines.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{Ops, OpsError, Principal, params};
use crate::event::{EventDetail, EventId};
use crate::store::admin::BlockedLine;

/// How many held-up keys to list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BlockedQuery {
    /// Keys to list, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// The keys held up, the oldest first event first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BlockedLines {
    pub lines: Vec<BlockedLine>,
}

impl Ops {
    /// The order keys held up by an unfinished first event.
    pub async fn blocked_lines(&self, query: &BlockedQuery) -> Result<BlockedLines, OpsError> {
        let limit = params::limit(query.limit)?;
        Ok(BlockedLines {
            lines: self.reads.blocked_lines(limit).await?,
        })
    }

    /// Take a dead letter that blocks its keys out of their lines (it stays a dead letter; a
    /// redrive would run it again, at the back of the line). The events behind it start.
    pub async fn skip_in_line(
        &self,
        id: EventId,
        who: &Principal,
    ) -> Result<EventDetail, OpsError> {
        let released = self.store.skip_in_line(id, &who.actor()).await?;
        let event = self.store.event(id).await?.ok_or(OpsError::NotFound)?;
        let Some(released) = released else {
            return Err(OpsError::Conflict {
                code: "not_blocking",
                message: format!(
                    "the event is {} and blocks no order key; only a dead letter on a route \
                     with on_dead_letter = \"block\" can be skipped",
                    event.status
                ),
            });
        };
        for next in released {
            self.enqueue(next).await;
        }
        Ok(event)
    }
}

//! The audit log: recording every operator action (allowed or refused, from the API or the
//! console) and reading it back a page at a time.
//!
//! Owns what an entry says (actor, action, target, status, detail). A failure to write an entry
//! is logged and never undoes or fails the action, which has already happened.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::Scope;
use super::{Ops, OpsError, Principal, params};
use crate::store::admin::{AuditEntry, AuditFilter, NewAudit};

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this actor (token name; console actions end in ` (console)`).
    #[param(max_length = 1024)]
    pub actor: Option<String>,
    /// Only this action, e.g. `event.replay`.
    #[param(max_length = 1024)]
    pub action: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<i64>,
    /// Entries per page, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    pub name: String,
    pub scope: Scope,
}

impl From<&Principal> for WhoAmI {
    fn from(who: &Principal) -> Self {
        Self {
            name: who.name.clone(),
            scope: who.scope,
        }
    }
}

impl Ops {
    /// Record an operator action. A failure is logged: the action itself has happened.
    pub async fn audit(
        &self,
        who: &Principal,
        action: &str,
        target: Option<String>,
        status: u16,
        detail: Option<String>,
    ) {
        let entry = NewAudit {
            actor: who.actor(),
            action: action.to_owned(),
            target,
            status,
            detail,
        };
        tracing::info!(
            actor = %entry.actor,
            action = %entry.action,
            target = entry.target.as_deref().unwrap_or(""),
            status,
            "operator action"
        );
        if let Err(e) = self.store.append_audit(&entry).await {
            tracing::error!(error = %e, action, "cannot write the audit log entry");
        }
    }

    /// One page of the audit log, newest first.
    pub async fn audit_log(&self, query: &AuditQuery) -> Result<AuditPage, OpsError> {
        let limit = params::limit(query.limit)?;
        let filter = AuditFilter {
            actor: params::text("actor", &query.actor)?,
            action: params::text("action", &query.action)?,
            before: query.cursor,
            limit: limit + 1,
        };
        let mut entries = if params::impossible(&[&filter.actor, &filter.action]) {
            Vec::new()
        } else {
            self.reads.audit(&filter).await?
        };
        let more = entries.len() > limit as usize;
        entries.truncate(limit as usize);
        let next_cursor = more
            .then(|| entries.last().map(|e| e.id.to_string()))
            .flatten();
        Ok(AuditPage {
            entries,
            next_cursor,
        })
    }

    /// The `limit` most recent audit entries.
    pub async fn recent_audit(&self, limit: u32) -> Result<Vec<AuditEntry>, OpsError> {
        let filter = AuditFilter {
            limit,
            ..Default::default()
        };
        Ok(self.reads.audit(&filter).await?)
    }
}

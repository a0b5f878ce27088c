//! Operator actions, shared by the admin API, the console and the CLI's server side: who is
//! asking (tokens and scopes), replays and redrives (one, or many in a background job), the
//! audit log, and payload retention.
//!
//! Owns the rules of an operator action: a replay starts a new attempt cycle that runs every
//! step again (a new replay generation, recorded as a transition), and is enqueued so that
//! whichever queue runs the workers sees it; every operate action is written to the audit log.
//! It must never replay an event that is still being processed or whose payload was purged.

pub mod jobs;
pub mod retention;
mod settings;

pub use settings::{AdminToken, OperatorConfig, Scope, TokenClash, token_clash};

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};
use tokio::sync::watch;

use crate::event::{EventDetail, EventId, EventStatus};
use crate::queue::Queue;
use crate::store::admin::{NewAudit, ReplayKind};
use crate::store::{EventStore, StoreError};

/// Who is asking: the name of the token (or of the console session's token) and its scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub scope: Scope,
    /// Through the web console rather than the API.
    pub console: bool,
}

impl Principal {
    /// The actor as the audit log names it.
    pub fn actor(&self) -> String {
        if self.console {
            format!("{} (console)", self.name)
        } else {
            self.name.clone()
        }
    }

    pub fn may_operate(&self) -> bool {
        self.scope >= Scope::Operate
    }
}

/// Why an operator action did not happen.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("no such event")]
    NotFound,
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct TokenDigest {
    name: String,
    scope: Scope,
    digest: [u8; 32],
}

/// The admin tokens, hashed once so that every comparison is constant-time and independent of
/// the token's length.
pub struct Tokens(Vec<TokenDigest>);

impl Tokens {
    pub fn new(tokens: &[AdminToken]) -> Self {
        Self(
            tokens
                .iter()
                .map(|t| TokenDigest {
                    name: t.name.clone(),
                    scope: t.scope,
                    digest: Sha256::digest(t.token.expose().as_bytes()).into(),
                })
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The token `presented` names, compared in constant time against every configured token
    /// (no early exit, so the time taken says nothing about which one matched, if any).
    pub fn authenticate(&self, presented: &str) -> Option<Principal> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found: Option<&TokenDigest> = None;
        for t in &self.0 {
            let hit: Choice = t.digest.ct_eq(&digest);
            if bool::from(hit) {
                found = Some(t);
            }
        }
        found.map(|t| Principal {
            name: t.name.clone(),
            scope: t.scope,
            console: false,
        })
    }

    /// The console principal of a configured token by name (sessions store the name): `None`
    /// once the token is removed from the configuration.
    pub fn console_principal(&self, name: &str, scope: &str) -> Option<Principal> {
        let t = self.0.iter().find(|t| t.name == name)?;
        // A session keeps the scope it was made with, never more than the token has now.
        let scope = Scope::parse(scope)?.min(t.scope);
        Some(Principal {
            name: t.name.clone(),
            scope,
            console: true,
        })
    }
}

/// What the operator surface shares: the stores, the queue and the tokens.
pub struct Ops {
    /// The primary store: every write, and reads that must see them.
    pub store: Arc<dyn EventStore>,
    /// Where admin reads go: a read replica when `DATABASE_READ_URL` is set, else the primary.
    pub reads: Arc<dyn EventStore>,
    pub queue: Arc<dyn Queue>,
    pub tokens: Tokens,
    pub session_ttl: std::time::Duration,
    /// Console cookies are `Secure` (hookd is reached over https: `HOOKD_PUBLIC_URL`).
    pub secure_cookies: bool,
    pub shutdown: watch::Receiver<bool>,
}

impl Ops {
    pub fn new(
        store: Arc<dyn EventStore>,
        reads: Arc<dyn EventStore>,
        queue: Arc<dyn Queue>,
        tokens: &[AdminToken],
        session_ttl: std::time::Duration,
        secure_cookies: bool,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let tokens = Tokens::new(tokens);
        Self {
            store,
            reads,
            queue,
            tokens,
            session_ttl,
            secure_cookies,
            shutdown,
        }
    }

    /// Whether any admin token is configured (without one the admin API and console are 404).
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

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
    pub async fn enqueue(&self, id: EventId) {
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
    use crate::verify::Secret;

    #[test]
    fn scopes_order_and_names() {
        let p = |scope| Principal {
            name: "x".into(),
            scope,
            console: true,
        };
        assert!(p(Scope::Operate).may_operate());
        assert!(!p(Scope::Read).may_operate());
        assert_eq!(p(Scope::Read).actor(), "x (console)");
    }

    #[test]
    fn tokens_are_matched_by_value_and_scopes_kept() {
        let tokens = Tokens::new(&[
            AdminToken {
                name: "admin".into(),
                token: Secret::new("op"),
                scope: Scope::Operate,
            },
            AdminToken {
                name: "ro".into(),
                token: Secret::new("ro-token"),
                scope: Scope::Read,
            },
        ]);
        let who = |t: &str| tokens.authenticate(t).map(|p| (p.name, p.scope));
        assert_eq!(who("op"), Some(("admin".into(), Scope::Operate)));
        assert_eq!(who("ro-token"), Some(("ro".into(), Scope::Read)));
        assert_eq!(who("ro"), None);
        assert_eq!(who(""), None);
        // A session never has more than its token has now.
        let p = tokens.console_principal("ro", "operate").unwrap();
        assert_eq!((p.scope, p.console), (Scope::Read, true));
        assert!(tokens.console_principal("gone", "read").is_none());
    }
}

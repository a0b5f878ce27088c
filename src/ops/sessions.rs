//! Console sessions: opened by logging in with an admin token, stored (only a digest of their
//! id) so that any process can serve them, ended by logging out or by their time running out.
//!
//! Owns the session id and its CSRF token (random, from the operating system). It must never
//! store a session id itself, and never give a session more scope than its token has now.

use base64::Engine;
use chrono::Utc;
use sha2::{Digest, Sha256};

use super::{Ops, OpsError, Principal};
use crate::store::admin::Session;

/// The logged-in operator of a console request, and the CSRF token of their forms.
#[derive(Debug, Clone)]
pub struct ConsoleSession {
    pub who: Principal,
    pub csrf: String,
}

/// A session just opened: the id for the cookie, and how long it lasts.
pub struct OpenedSession {
    pub id: String,
    pub ttl: chrono::Duration,
}

/// 32 random bytes from the operating system, base64url.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random generator works");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn digest(id: &str) -> Vec<u8> {
    Sha256::digest(id.as_bytes()).to_vec()
}

impl Ops {
    /// Open a console session for `who` (authenticated by token) and audit the login.
    pub async fn open_session(&self, who: Principal) -> Result<OpenedSession, OpsError> {
        let id = random_token();
        let ttl =
            chrono::Duration::from_std(self.session_ttl).unwrap_or(chrono::Duration::hours(12));
        let s = Session {
            token_name: who.name.clone(),
            scope: who.scope.as_str().to_owned(),
            csrf: random_token(),
            expires_at: Utc::now() + ttl,
        };
        self.store.create_session(&digest(&id), &s).await?;
        let console = Principal {
            console: true,
            ..who
        };
        self.audit(&console, "console.login", None, 200, None).await;
        Ok(OpenedSession { id, ttl })
    }

    /// The session of cookie value `id`: `None` when it is unknown, expired, or its token was
    /// removed from the configuration.
    pub async fn console_session(&self, id: &str) -> Result<Option<ConsoleSession>, OpsError> {
        let Some(s) = self.store.session(&digest(id)).await? else {
            return Ok(None);
        };
        Ok(self
            .tokens
            .console_principal(&s.token_name, &s.scope)
            .map(|who| ConsoleSession { who, csrf: s.csrf }))
    }

    /// End the session of cookie value `id`.
    pub async fn close_session(&self, id: &str) -> Result<(), OpsError> {
        Ok(self.store.delete_session(&digest(id)).await?)
    }
}

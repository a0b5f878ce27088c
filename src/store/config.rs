//! What the live configuration needs from the store: the versions of the configuration
//! written through the admin API, each the whole document (see migration `0008_config`).
//!
//! Owns the contract of a version: written once, numbered one after the other, and a write for
//! a version someone else wrote first does nothing. Implemented once for either engine in
//! `store::sql`. This module must never hold SQL, nor know what the document says.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// One stored version of the configuration.
#[derive(Debug, Clone)]
pub struct ConfigVersion {
    pub version: i64,
    /// The configuration, as JSON (its secrets encrypted).
    pub document: String,
    pub actor: String,
    pub at: DateTime<Utc>,
    /// What changed, one line.
    pub summary: String,
}

/// The stored configuration's versions.
#[async_trait]
pub trait ConfigVersions: Send + Sync {
    /// The newest version number (0 when none was ever written): the cheap check every
    /// process polls.
    async fn config_head(&self) -> Result<i64, StoreError>;

    /// The newest version, if any.
    async fn config_latest(&self) -> Result<Option<ConfigVersion>, StoreError>;

    /// Write `v` as version `v.version`. False (nothing written) when that version exists:
    /// another change won the race, and the caller starts again from the newest.
    async fn config_write(&self, v: &ConfigVersion) -> Result<bool, StoreError>;

    /// Up to `limit` versions, newest first, before `before` when given.
    async fn config_history(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ConfigVersion>, StoreError>;
}

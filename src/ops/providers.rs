//! Providers as an operator sees them (accepting, paused by an operator or automatically by
//! open breakers, their destinations and waiting events), the operator's pause and resume, and
//! this process's destination breakers.
//!
//! Owns the answer types of these, shared by the admin API, the console and the CLI. A pause is
//! stored, so it holds for every process; breakers are per process. It must never pause or
//! resume a provider hookd does not know.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Ops, OpsError};
use crate::actions::breaker::DestinationState;
use crate::event::ProviderPause;
use crate::store::admin::ProviderCount;
use crate::verify::Lookup;

/// Longest pause reason, in bytes.
const MAX_REASON: usize = 1000;

/// One provider as `GET /admin/providers` shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProviderView {
    pub name: String,
    /// It has a secret configured and accepts webhooks.
    pub accepting: bool,
    /// Paused by an operator (stored: holds for every process and across restarts).
    pub paused: bool,
    pub paused_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    /// Paused automatically because every destination of its routes has an open breaker, in
    /// this process. `null` in a process without workers.
    pub auto_paused: Option<bool>,
    /// Destinations of the routes that apply to it (scheme, host and port; `smtp://...`).
    #[schema(value_type = Vec<String>)]
    pub destinations: Vec<String>,
    /// Its events waiting or dead-lettered, by status (statuses with none are left out).
    #[schema(value_type = Object)]
    pub counts: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProviderList {
    pub providers: Vec<ProviderView>,
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    /// Why, for the other operators.
    #[schema(nullable = false, max_length = 1000, pattern = "^[^\\x00]*$")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// This process's destination breakers and limits. The fields are in name order, the order in
/// which the API has always written them.
#[derive(Debug, Serialize)]
pub struct DestinationList {
    pub destinations: Vec<DestinationState>,
    /// Always `process`: breakers are kept per process (see README, Circuit breakers).
    pub scope: &'static str,
    /// Whether this process runs workers (without them it has no breakers).
    pub workers: bool,
}

impl Ops {
    fn view(
        &self,
        name: &str,
        pause: Option<&ProviderPause>,
        counts: &[ProviderCount],
    ) -> ProviderView {
        let dests = self.destinations.as_ref();
        ProviderView {
            name: name.to_owned(),
            accepting: matches!(self.providers.load().lookup(name), Lookup::Ready(_)),
            paused: pause.is_some(),
            paused_at: pause.map(|p| p.paused_at),
            reason: pause.and_then(|p| p.reason.clone()),
            auto_paused: dests.map(|d| d.provider_paused_until(name).is_some()),
            destinations: dests
                .map(|d| d.provider_destinations(name))
                .unwrap_or_default()
                .iter()
                .map(ToString::to_string)
                .collect(),
            counts: counts
                .iter()
                .filter(|c| c.provider == name)
                .map(|c| (c.status.as_str().to_owned(), c.count))
                .collect(),
        }
    }

    /// Every provider: configured (accepting), paused, breakers and event counts.
    pub async fn providers(&self) -> Result<ProviderList, OpsError> {
        let pauses = self.store.provider_pauses().await?;
        let counts = self.reads.provider_counts().await?;
        let mut names: Vec<String> = self.providers.load().names().map(str::to_owned).collect();
        names.extend(pauses.iter().map(|p| p.provider.clone()));
        names.extend(counts.iter().map(|c| c.provider.clone()));
        names.sort();
        names.dedup();
        let providers = names
            .iter()
            .map(|n| self.view(n, pauses.iter().find(|p| &p.provider == n), &counts))
            .collect();
        Ok(ProviderList { providers })
    }

    /// Names of the providers that accept webhooks.
    pub fn provider_names(&self) -> Vec<String> {
        self.providers.load().names().map(str::to_owned).collect()
    }

    /// Pause a provider's processing in every process until resumed; its webhooks are still
    /// accepted and stored. A blank reason is none.
    pub async fn pause(&self, name: &str, req: &PauseRequest) -> Result<ProviderView, OpsError> {
        self.known_provider(name)?;
        let reason = req.reason.as_deref().filter(|r| !r.trim().is_empty());
        if reason.is_some_and(|r| r.contains('\0') || r.len() > MAX_REASON) {
            return Err(OpsError::Invalid(
                "reason must be at most 1000 bytes, without NUL characters".into(),
            ));
        }
        if self.store.pause_provider(name, reason).await? {
            tracing::warn!(provider = %name, reason, "provider paused by an operator: its events wait");
        }
        self.provider_now(name).await
    }

    /// End an operator's pause; waiting events are processed at once.
    pub async fn resume(&self, name: &str) -> Result<ProviderView, OpsError> {
        self.known_provider(name)?;
        if self.store.resume_provider(name).await? {
            tracing::info!(provider = %name, "provider resumed by an operator");
        }
        self.provider_now(name).await
    }

    /// This process's destination breakers and limits.
    pub fn destinations(&self) -> DestinationList {
        DestinationList {
            destinations: self
                .destinations
                .as_ref()
                .map(|d| d.snapshot())
                .unwrap_or_default(),
            scope: "process",
            workers: self.destinations.is_some(),
        }
    }

    /// `UnknownProvider` unless hookd knows `name` (configured or not).
    pub fn known_provider(&self, name: &str) -> Result<(), OpsError> {
        match self.providers.load().lookup(name) {
            Lookup::Unknown => Err(OpsError::UnknownProvider(name.to_owned())),
            _ => Ok(()),
        }
    }

    /// One provider as it is now, read from the primary (which has the write just made).
    async fn provider_now(&self, name: &str) -> Result<ProviderView, OpsError> {
        let pauses = self.store.provider_pauses().await?;
        let counts = self.store.provider_counts().await?;
        Ok(self.view(name, pauses.iter().find(|p| p.provider == name), &counts))
    }
}

//! The live configuration: providers, routes and named destinations written through the admin
//! API, stored as versions of one document (`store::config`), and applied in every process
//! within about a second without a restart: the verifiers, the router and the
//! stored providers' JSON Schemas are swapped whole
//! ([`Swap`]), so a request verifies with the providers it started with and an attempt runs
//! the routes current when it started.
//!
//! Owns the stored document ([`document`]), the encryption of its secrets ([`keys`]), building
//! it over what the file and the environment define ([`build`]), and following the store's
//! versions ([`watch`]: PostgreSQL's LISTEN/NOTIFY, and a version check that catches a missed
//! notification). It must never let the stored configuration override what the file defines,
//! and never hold a plaintext secret outside the verifiers.

pub mod build;
pub mod document;
pub mod keys;
pub mod schemas;
pub mod watch;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use build::{Base, ConfigProblem};
pub use document::{
    Document, StoredDestination, StoredProvider, StoredRoute, StoredSchema, StoredSecret,
};
pub use keys::{KeyError, OpenError, SECRET_KEY_VAR, SecretKeys};
pub use schemas::LiveSchema;

use crate::actions::Router;
use crate::actions::breaker::Destinations;
use crate::store::{ConfigVersion, EventStore, StoreError};
use crate::swap::Swap;
use crate::verify::{ProviderConfig, ProviderError, Providers};

/// Settings of the live configuration.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    /// `HOOKD_SECRET_KEY`: what provider secrets are encrypted under. `None`: storing a secret
    /// is refused.
    pub keys: Option<Arc<SecretKeys>>,
    /// `HOOKD_CONFIG_CHECK_SECS`: how often each process checks the stored version, in case it
    /// missed a notification (and with SQLite, where there is none).
    pub check_interval: Duration,
}

impl Default for LiveSettings {
    fn default() -> Self {
        Self {
            keys: None,
            check_interval: Duration::from_secs(5),
        }
    }
}

/// `hookd secrets rotate-key`: re-encrypt every stored secret under the first key of `keys`
/// (each is decrypted with the key it names, which must still be configured), as one new
/// version. Returns that version and how many secrets it re-encrypted (0 and nothing written
/// when every secret is already under that key).
pub async fn rotate_key(
    store: &dyn EventStore,
    keys: &SecretKeys,
    actor: &str,
) -> Result<(i64, usize), LiveError> {
    loop {
        let Some(latest) = store.config_latest().await? else {
            return Ok((0, 0));
        };
        let version = latest.version;
        let mut doc = decode(&latest)?;
        let mut moved = 0;
        for (name, p) in &mut doc.providers {
            for s in &mut p.secrets {
                if s.kid == keys.current() {
                    continue;
                }
                let sealed = keys::Sealed {
                    kid: s.kid.clone(),
                    data: s.ciphertext.clone(),
                };
                let plain = keys
                    .open(&sealed, &s.place(name))
                    .map_err(|e| LiveError::Problem {
                        version,
                        source: ConfigProblem::Secret(e),
                    })?;
                let resealed = keys.seal(&plain, &s.place(name));
                s.kid = resealed.kid;
                s.ciphertext = resealed.data;
                moved += 1;
            }
        }
        if moved == 0 {
            return Ok((version, 0));
        }
        let v = ConfigVersion {
            version: version + 1,
            document: serde_json::to_string(&doc)
                .map_err(|source| LiveError::Decode { version, source })?,
            actor: actor.to_owned(),
            at: Utc::now(),
            summary: format!(
                "{moved} secret(s) re-encrypted under key {}",
                keys.current()
            ),
        };
        // Another change took the version: start again from it.
        if store.config_write(&v).await? {
            return Ok((version + 1, moved));
        }
    }
}

/// Why the stored configuration cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("the stored configuration (version {version}) cannot be applied: {source}")]
    Problem {
        version: i64,
        #[source]
        source: ConfigProblem,
    },
    #[error("the stored configuration (version {version}) does not decode: {source}")]
    Decode {
        version: i64,
        #[source]
        source: serde_json::Error,
    },
    /// A provider of the start-up file or the environment cannot be set up.
    #[error(transparent)]
    File(ProviderError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The version this process runs.
struct Applied {
    version: i64,
    document: Arc<Document>,
    next_expiry: Option<DateTime<Utc>>,
}

/// The configuration this process runs, and the way to change it.
pub struct Live {
    store: Arc<dyn EventStore>,
    base: Base,
    settings: LiveSettings,
    providers: Arc<Swap<Providers>>,
    router: Arc<Swap<Router>>,
    /// The stored providers' JSON Schemas.
    schemas: Arc<Swap<Vec<LiveSchema>>>,
    /// This process's breakers, told which destinations each provider's routes use.
    breakers: OnceLock<Arc<Destinations>>,
    applied: Mutex<Applied>,
}

fn decode(v: &ConfigVersion) -> Result<Document, LiveError> {
    serde_json::from_str(&v.document).map_err(|source| LiveError::Decode {
        version: v.version,
        source,
    })
}

impl Live {
    /// The newest stored version over `base`. Fails when it cannot be applied (a secret under a
    /// key not configured, or that does not decrypt): start-up stops rather than run without.
    pub async fn start(
        store: Arc<dyn EventStore>,
        base: Base,
        settings: LiveSettings,
    ) -> Result<Arc<Self>, LiveError> {
        let (version, document) = match store.config_latest().await? {
            Some(v) => (v.version, decode(&v)?),
            None => (0, Document::default()),
        };
        let built = build::build(&base, &document, settings.keys.as_deref(), Utc::now()).map_err(
            |source| match source {
                ConfigProblem::File(e) => LiveError::File(e),
                source => LiveError::Problem { version, source },
            },
        )?;
        if version > 0 {
            tracing::info!(version, "stored configuration applied");
        }
        Ok(Arc::new(Self {
            store,
            base,
            settings,
            providers: Arc::new(Swap::new(built.providers)),
            router: Arc::new(Swap::new(built.router)),
            schemas: Arc::new(Swap::new(built.schemas)),
            breakers: OnceLock::new(),
            applied: Mutex::new(Applied {
                version,
                document: Arc::new(document),
                next_expiry: built.next_expiry,
            }),
        }))
    }

    /// The providers webhooks are verified with, swapped on each change.
    pub fn providers(&self) -> Arc<Swap<Providers>> {
        self.providers.clone()
    }

    /// The routes events are processed with, swapped on each change.
    pub fn router(&self) -> Arc<Swap<Router>> {
        self.router.clone()
    }

    /// The stored providers' JSON Schemas, swapped on each change.
    pub fn schemas(&self) -> Arc<Swap<Vec<LiveSchema>>> {
        self.schemas.clone()
    }

    /// This process's breakers: each change tells them the destinations of each provider.
    pub fn set_breakers(&self, breakers: Arc<Destinations>) {
        breakers.set_provider_routes(self.router.load().provider_destinations());
        let _ = self.breakers.set(breakers);
    }

    /// What the file and the environment define.
    pub fn base(&self) -> &Base {
        &self.base
    }

    /// The secret keys, if configured.
    pub fn keys(&self) -> Option<&SecretKeys> {
        self.settings.keys.as_deref()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Applied> {
        self.applied.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The version this process runs, and its document.
    pub fn applied(&self) -> (i64, Arc<Document>) {
        let a = self.lock();
        (a.version, a.document.clone())
    }

    /// The newest stored version and its document, from the primary.
    pub async fn latest(&self) -> Result<(i64, Document), LiveError> {
        match self.store.config_latest().await? {
            Some(v) => Ok((v.version, decode(&v)?)),
            None => Ok((0, Document::default())),
        }
    }

    /// Provider `name` as this process verifies it now, its live secrets in plaintext (to sign
    /// a test webhook as the provider would); `None` when no such provider is configured.
    pub fn provider_now(&self, name: &str) -> Result<Option<ProviderConfig>, ConfigProblem> {
        let (_, doc) = self.applied();
        build::provider_now(&self.base, &doc, self.keys(), name, Utc::now())
    }

    /// Whether `doc` can be applied over what the file defines (same checks as at start).
    pub fn check(&self, doc: &Document) -> Result<(), ConfigProblem> {
        build::build(&self.base, doc, self.keys(), Utc::now()).map(|_| ())
    }

    /// Store `doc` as `version` (one more than the version it was made from) and apply it in
    /// this process at once; the others follow by notification or version check. False (and
    /// nothing changed) when another change took that version first.
    pub async fn write(
        &self,
        version: i64,
        doc: &Document,
        actor: &str,
        summary: &str,
    ) -> Result<bool, LiveError> {
        let v = ConfigVersion {
            version,
            document: serde_json::to_string(doc)
                .map_err(|source| LiveError::Decode { version, source })?,
            actor: actor.to_owned(),
            at: Utc::now(),
            summary: summary.to_owned(),
        };
        if !self.store.config_write(&v).await? {
            return Ok(false);
        }
        tracing::info!(version, actor, summary, "configuration changed");
        self.refresh().await?;
        Ok(true)
    }

    /// Apply the newest stored version if this process runs an older one, or build the one it
    /// runs again when one of its secrets has expired since.
    pub async fn refresh(&self) -> Result<(), LiveError> {
        let head = self.store.config_head().await?;
        let (version, expired) = {
            let a = self.lock();
            (a.version, a.next_expiry.is_some_and(|t| t <= Utc::now()))
        };
        if head > version {
            let (version, doc) = self.latest().await?;
            return self.apply(version, Arc::new(doc));
        }
        if expired {
            let (version, doc) = self.applied();
            return self.apply(version, doc);
        }
        Ok(())
    }

    /// Build `doc` and make it current, unless a newer version already is.
    fn apply(&self, version: i64, doc: Arc<Document>) -> Result<(), LiveError> {
        let built = build::build(&self.base, &doc, self.keys(), Utc::now())
            .map_err(|source| LiveError::Problem { version, source })?;
        let mut a = self.lock();
        if version < a.version {
            return Ok(());
        }
        if let Some(b) = self.breakers.get() {
            b.set_provider_routes(built.router.provider_destinations());
        }
        self.providers.store(built.providers);
        self.router.store(built.router);
        self.schemas.store(built.schemas);
        if version > a.version {
            tracing::info!(version, from = a.version, "configuration applied");
        }
        *a = Applied {
            version,
            document: doc,
            next_expiry: built.next_expiry,
        };
        Ok(())
    }

    /// How long until the next check: the check interval, or less when a secret expires sooner
    /// (never under a fifth of a second, so a rebuild that keeps failing cannot spin).
    fn next_wait(&self) -> Duration {
        let interval = self.settings.check_interval;
        let Some(expiry) = self.lock().next_expiry else {
            return interval;
        };
        let until = (expiry - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        until.clamp(
            Duration::from_millis(200),
            interval.max(Duration::from_millis(200)),
        )
    }
}

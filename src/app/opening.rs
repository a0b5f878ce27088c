//! Opening the store at start: connect, then apply the missing migrations or wait until another
//! process has (`HOOKD_AUTO_MIGRATE`), retrying while the store cannot be reached for up to
//! `HOOKD_STORE_WAIT_SECS`.
//!
//! It must never wait on a mistake that waiting cannot fix (a wrong URL, a schema newer than
//! this release knows how to check): those stop start-up at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::StartError;
use crate::config::Config;
use crate::store::{self, EventStore, StoreError, redact_url};

/// What opening the store does about its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// Apply the missing migrations: `hookd migrate`, and every process unless
    /// `HOOKD_AUTO_MIGRATE` is off.
    Migrate,
    /// Apply nothing: wait until another process (`hookd migrate`) has applied them all, so that
    /// only that one process changes the schema.
    AwaitMigrations,
}

impl Schema {
    /// What `serve`, `api` and `worker` do: migrate unless `HOOKD_AUTO_MIGRATE` is off.
    pub fn at_start(settings: &store::StoreSettings) -> Self {
        if settings.auto_migrate {
            Self::Migrate
        } else {
            Self::AwaitMigrations
        }
    }
}

/// Why start-up is waiting.
enum Waiting {
    Store(StoreError),
    Schema(StartError),
}

/// Apply the missing migrations, or check that there are none (`schema`).
async fn prepare_schema(store: &dyn EventStore, schema: Schema) -> Result<(), StartError> {
    match schema {
        Schema::Migrate => store.migrate().await.map_err(StartError::Migrate),
        Schema::AwaitMigrations => {
            let missing = store
                .missing_migrations()
                .await
                .map_err(StartError::Migrate)?;
            if missing.is_empty() {
                Ok(())
            } else {
                Err(StartError::SchemaBehind { missing })
            }
        }
    }
}

/// Open the store named by the config and bring its schema up to date, or wait until it is
/// (`schema`). While the store cannot be reached (it is starting, restarting, or the network is
/// not up yet), or its migrations are not all applied yet and this process does not apply
/// them, this retries with backoff for up to `HOOKD_STORE_WAIT_SECS`, saying so in the log,
/// rather than exit at once.
pub async fn open_store(
    config: &Config,
    schema: Schema,
) -> Result<Arc<dyn EventStore>, StartError> {
    let settings = &config.store;
    let url = redact_url(&settings.database_url);
    let started = Instant::now();
    let mut delay = Duration::from_millis(250);
    let mut attempt = 1u32;
    let store = loop {
        let opened = async {
            let store =
                store::connect(&settings.database_url, settings.pool_size, settings.timeout)
                    .await
                    .map_err(|source| StartError::Store {
                        url: url.clone(),
                        source,
                    })?;
            prepare_schema(store.as_ref(), schema).await?;
            Ok::<_, StartError>(store)
        }
        .await;
        let reason = match opened {
            Ok(store) => {
                if attempt > 1 {
                    tracing::info!(store = %url, attempts = attempt, "store reachable; starting");
                }
                break store;
            }
            // Only "cannot reach it now" and "not migrated yet" are worth waiting for; a wrong
            // schema or URL is not.
            Err(StartError::Store {
                source: source @ StoreError::Unavailable(_),
                ..
            })
            | Err(StartError::Migrate(source @ StoreError::Unavailable(_))) => {
                Waiting::Store(source)
            }
            Err(behind @ StartError::SchemaBehind { .. }) => Waiting::Schema(behind),
            Err(other) => return Err(other),
        };
        let waited = started.elapsed();
        if waited + delay > settings.wait {
            return Err(match reason {
                Waiting::Store(source) => StartError::StoreWait {
                    url,
                    waited_secs: waited.as_secs(),
                    source,
                },
                Waiting::Schema(behind) => behind,
            });
        }
        let (what, error) = match &reason {
            Waiting::Store(source) => ("store not reachable; waiting for it", source.to_string()),
            Waiting::Schema(behind) => (
                "schema not migrated yet; waiting for it",
                behind.to_string(),
            ),
        };
        tracing::warn!(
            store = %url,
            attempt,
            retry_in_ms = delay.as_millis() as u64,
            waited_secs = waited.as_secs(),
            max_wait_secs = settings.wait.as_secs(),
            error,
            "{what}"
        );
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
        attempt += 1;
    };
    Ok(store)
}

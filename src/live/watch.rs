//! Following the stored configuration: each process applies a new version as soon as it is
//! written. On PostgreSQL a trigger notifies `hookd_config` on every version; each process
//! LISTENs on its own connection, and also checks the stored version every
//! `HOOKD_CONFIG_CHECK_SECS` and right after (re)connecting its listener, so a notification
//! missed while the connection was down is caught. On SQLite (one process) the check alone.
//!
//! It must never stop because the database is away for a while: it logs and tries again.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgNotification, PgPoolOptions};
use tokio::sync::watch;

use super::Live;

/// The channel the `config_versions` trigger notifies.
pub const CHANNEL: &str = "hookd_config";

/// The listener connection's `application_name` (what an operator sees in `pg_stat_activity`).
pub const APPLICATION_NAME: &str = "hookd config listener";

/// Follow the stored versions until `shutdown`; `postgres_url` when the store is PostgreSQL.
pub async fn run(
    live: Arc<Live>,
    postgres_url: Option<String>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut listener: Option<PgListener> = None;
    loop {
        if let (Some(url), None) = (&postgres_url, &listener) {
            match listen(url).await {
                Ok(l) => listener = Some(l),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for configuration changes; checking the version instead")
                }
            }
        }
        if let Err(e) = live.refresh().await {
            tracing::error!(error = %e, "cannot apply the stored configuration; keeping the one applied");
        }
        let got = tokio::select! {
            _ = shutdown.changed() => return,
            got = next(&mut listener) => got,
            _ = tokio::time::sleep(live.next_wait()) => continue,
        };
        match got {
            Ok(Some(_)) => {}
            Ok(None) => {
                tracing::warn!("configuration listener lost its connection; reconnecting");
                listener = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "configuration listener failed; reconnecting");
                listener = None;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// A connection of its own, listening on [`CHANNEL`].
async fn listen(url: &str) -> Result<PgListener, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options.application_name(APPLICATION_NAME));
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// The next notification, or never without a listener.
async fn next(listener: &mut Option<PgListener>) -> Result<Option<PgNotification>, sqlx::Error> {
    match listener {
        Some(l) => l.try_recv().await,
        None => std::future::pending().await,
    }
}

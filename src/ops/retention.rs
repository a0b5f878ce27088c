//! Payload retention (`HOOKD_RETENTION_DAYS`): the raw bodies of finished events (completed or
//! dead-lettered) received more than that long ago are purged; every other column, the headers
//! and the whole history stay. Purges run in small batches, each its own short statement, with
//! a pause between them, so no lock is held for long and webhooks keep flowing.
//!
//! Each pass only looks at events received since the previous pass's cut-off (a keyset over
//! `received_at`), so an hourly pass never rescans years of purged rows; once a day a full pass
//! also catches events that finished long after they arrived.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::store::{EventStore, StoreError};

/// Events purged per statement.
const BATCH: u32 = 500;
/// Pause between batches.
const PACE: Duration = Duration::from_millis(50);
/// How often a pass runs.
const EVERY: Duration = Duration::from_secs(60);
/// How often a pass starts from the beginning of time.
const FULL_PASS_EVERY: Duration = Duration::from_secs(24 * 3600);

/// Purge every eligible payload received in `[from, before)`. Returns how many.
pub async fn purge(
    store: &dyn EventStore,
    mut from: DateTime<Utc>,
    before: DateTime<Utc>,
    shutdown: &watch::Receiver<bool>,
) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let (n, last) = store.purge_payloads(from, before, BATCH).await?;
        total += n;
        metrics::counter!("hookd_payloads_purged_total").increment(n);
        match last {
            Some(last) if n == u64::from(BATCH) && !*shutdown.borrow() => from = last,
            _ => return Ok(total),
        }
        tokio::time::sleep(PACE).await;
    }
}

/// Run retention until shutdown: a pass at start, then every minute.
pub async fn run(store: Arc<dyn EventStore>, keep: Duration, mut shutdown: watch::Receiver<bool>) {
    let keep = chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    let mut watermark = epoch;
    let mut last_full: Option<Instant> = None;
    tracing::info!(days = keep.num_days(), "payload retention on");
    while !*shutdown.borrow() {
        let cutoff = Utc::now() - keep;
        let full = last_full.is_none_or(|t| t.elapsed() >= FULL_PASS_EVERY);
        let from = if full { epoch } else { watermark };
        match purge(store.as_ref(), from, cutoff, &shutdown).await {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(purged = n, before = %cutoff, "payloads of finished events purged");
                }
                watermark = cutoff;
                if full {
                    last_full = Some(Instant::now());
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "payload retention pass failed; trying again later")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.changed() => {}
        }
    }
}

//! The destination rate limits' schedules shared by every process of a fleet: one GCRA slot
//! counter per destination in Redis, advanced by a Lua script on the Redis server's clock (so
//! hosts whose clocks disagree still space their steps on one timeline).
//!
//! Owns the shared [`RateKeeper`]. It must never decide what a refusal means for an event: the
//! actions' `rate` module does.

use std::time::Duration;

use async_trait::async_trait;

use super::RedisQueue;
use super::keys::rate_key;
use crate::actions::rate::{KeeperError, RateKeeper, Slot};

#[async_trait]
impl RateKeeper for RedisQueue {
    async fn reserve(
        &self,
        name: &str,
        interval: Duration,
        horizon: Duration,
    ) -> Result<Slot, KeeperError> {
        let shared = async {
            let mut c = self.conn.get().await?;
            self.scripts
                .reserve
                .key(rate_key(&self.config.prefix, name))
                .arg(interval.as_micros() as u64)
                .arg(horizon.as_micros() as u64)
                .invoke_async::<(i64, i64)>(&mut c)
                .await
        };
        let (taken, wait_us) = shared.await.map_err(|e| {
            self.conn.reset();
            KeeperError(format!("redis: {e}"))
        })?;
        let wait = Duration::from_micros(wait_us.max(0) as u64);
        Ok(if taken == 1 {
            Slot::Taken(wait)
        } else {
            Slot::Later(wait)
        })
    }
}

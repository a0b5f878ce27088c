//! A started hookd: where it listens, and the handle that drains, stops and waits for it.
//!
//! Owns the order of a shutdown (drain, then stop, then the Redis flush); it must never start
//! anything: `app::start` does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::queue::{Queue, RedisQueue};
use crate::store::EventStore;

/// A started hookd: its address, and the handle to stop it.
pub struct Running {
    /// Where the HTTP server listens (None without the api role).
    pub addr: Option<SocketAddr>,
    /// Where `/health` and `/metrics` are served apart from the public listener: with the api
    /// role when `HOOKD_INTERNAL_ADDR` is set, always in a worker-only process.
    pub internal_addr: Option<SocketAddr>,
    pub store: Arc<dyn EventStore>,
    pub queue: Arc<dyn Queue>,
    pub(super) redis: Option<Arc<RedisQueue>>,
    pub(super) draining: watch::Sender<bool>,
    /// How long to drain before shutting down (zero without the API).
    pub(super) ready_delay: Duration,
    pub(super) shutdown: watch::Sender<bool>,
    pub(super) tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Start draining, the first step of a shutdown: `/health/ready` answers 503 and every
    /// answer carries `Connection: close`, while everything is still served (listener open,
    /// workers working), so load balancers move their traffic away before the listener closes.
    pub fn drain(&self) {
        let _ = self.draining.send(true);
    }

    /// How long to drain before [`Running::shutdown`]: `HOOKD_SHUTDOWN_READY_DELAY_MS` with the
    /// API; zero without it (no load balancer sends a worker-only process anything).
    pub fn ready_delay(&self) -> Duration {
        self.ready_delay
    }

    /// Ask every part to stop: the server stops accepting and finishes in-flight requests,
    /// workers finish in-flight steps and hand back their leases. Drains too, if it was not.
    pub fn shutdown(&self) {
        let _ = self.draining.send(true);
        let _ = self.shutdown.send(true);
    }

    /// Wait until every part has stopped.
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
        // Accepted events whose enqueue is still buffered: write them now rather than leave
        // them to the sweeper.
        if let Some(redis) = self.redis {
            redis.flush(Duration::from_secs(5)).await;
        }
    }
}

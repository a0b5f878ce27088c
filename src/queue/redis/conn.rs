//! Connections to Redis, to one server or a cluster, made on first use and remade by the client
//! library after failures, so hookd starts (and accepts webhooks) while Redis is down.
//!
//! Owns how a connection is opened. It must never issue queue commands itself, and a blocking
//! command must never share a connection with anything else (it would hold up every command
//! queued behind it): blocking readers get a `Conn` of their own.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};
use tokio::sync::Mutex;

use crate::queue::RedisTarget;

/// One live connection, to a single server or a cluster.
#[derive(Clone)]
pub(super) enum Live {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Live {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// A connection opened on first use, and again after [`Conn::reset`].
pub(super) struct Conn {
    target: RedisTarget,
    response_timeout: Duration,
    live: Mutex<Option<Live>>,
}

impl Conn {
    pub(super) fn new(target: RedisTarget, response_timeout: Duration) -> Self {
        Self {
            target,
            response_timeout,
            live: Mutex::new(None),
        }
    }

    pub(super) async fn get(&self) -> RedisResult<Live> {
        let mut live = self.live.lock().await;
        if let Some(l) = &*live {
            return Ok(l.clone());
        }
        let l = self.open().await?;
        *live = Some(l.clone());
        Ok(l)
    }

    /// Open a new connection at the next use. Called after a command failed: the cluster
    /// client can keep routing to a master that died after its replica took over, while a new
    /// client asks a live node for the slots and gets the current ones.
    pub(super) fn reset(&self) {
        if let Ok(mut live) = self.live.try_lock() {
            *live = None;
        }
    }

    async fn open(&self) -> RedisResult<Live> {
        match &self.target {
            RedisTarget::Single(url) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(self.response_timeout))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_secs(1));
                let client = redis::Client::open(url.as_str())?;
                Ok(Live::Single(client.get_connection_manager_lazy(config)?))
            }
            RedisTarget::Cluster(nodes) => {
                let client = ClusterClient::builder(nodes.iter().map(String::as_str))
                    .connection_timeout(Duration::from_secs(2))
                    .response_timeout(self.response_timeout)
                    .retries(2)
                    .build()?;
                Ok(Live::Cluster(client.get_async_connection().await?))
            }
        }
    }
}

//! The `redis_stream` step: `XADD` the message to a stream on a Redis of the user's choice
//! (not hookd's own queue Redis, unless the URL says so).
//!
//! Owns the connection, the entry's fields (`body`, `content-type` and hookd's headers) and the
//! optional `MAXLEN ~ N` trim. It must never write anything but that one entry: Redis Streams
//! have no deduplication, so a redelivery is a second entry (at-least-once, documented).

use redis::aio::MultiplexedConnection;

use super::{BrokerError, BrokerUrl, Message};
use crate::actions::error_chain;

/// A `redis_stream` step, its stream key rendered for one event.
pub struct RedisStreamStep<'a> {
    pub url: &'a BrokerUrl,
    pub stream: String,
    /// Trim to about this many entries (`MAXLEN ~ N`).
    pub maxlen: Option<u64>,
}

pub(super) async fn connect(url: &url::Url) -> Result<MultiplexedConnection, BrokerError> {
    let client = redis::Client::open(url.as_str()).map_err(|e| classify(&e))?;
    client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| classify(&e))
}

/// `XADD <stream> [MAXLEN ~ N] * body <bytes> content-type <ct> <header> <value> ...`.
pub(super) async fn publish(
    mut conn: MultiplexedConnection,
    step: &RedisStreamStep<'_>,
    m: &Message<'_>,
) -> Result<(), BrokerError> {
    if step.stream.is_empty() {
        return Err(BrokerError::Refused("the stream key is empty".into()));
    }
    let mut cmd = redis::cmd("XADD");
    cmd.arg(&step.stream);
    if let Some(n) = step.maxlen {
        cmd.arg("MAXLEN").arg("~").arg(n);
    }
    cmd.arg("*")
        .arg("body")
        .arg(m.body)
        .arg("content-type")
        .arg(m.content_type);
    for (name, value) in &m.headers {
        cmd.arg(name).arg(value);
    }
    let _id: String = cmd.query_async(&mut conn).await.map_err(|e| classify(&e))?;
    Ok(())
}

/// Connection trouble is the server's; a refused login the credentials'; an error reply (e.g.
/// WRONGTYPE: the key holds something else) is about this entry.
fn classify(e: &redis::RedisError) -> BrokerError {
    if e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS"))
    {
        BrokerError::Credentials(e.to_string())
    } else if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.code().is_none()
    {
        BrokerError::Publish(error_chain(e))
    } else {
        BrokerError::Refused(e.to_string())
    }
}

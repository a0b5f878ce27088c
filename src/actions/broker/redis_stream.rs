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

pub(super) async fn publish(
    mut conn: MultiplexedConnection,
    step: &RedisStreamStep<'_>,
    m: &Message<'_>,
) -> Result<(), BrokerError> {
    let _id: String = xadd(step, m)?
        .query_async(&mut conn)
        .await
        .map_err(|e| classify(&e))?;
    Ok(())
}

/// `XADD <stream> [MAXLEN ~ N] * body <bytes> content-type <ct> <header> <value> ...`, or why
/// the entry cannot be written: a transform's header named like one of the entry's own fields
/// would make two fields of one name, and a consumer reading the entry as a map would take the
/// header for the body.
fn xadd(step: &RedisStreamStep<'_>, m: &Message<'_>) -> Result<redis::Cmd, BrokerError> {
    if step.stream.is_empty() {
        return Err(BrokerError::Refused("the stream key is empty".into()));
    }
    if let Some((name, _)) = m
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("body") || n.eq_ignore_ascii_case("content-type"))
    {
        return Err(BrokerError::Refused(format!(
            "header {name:?} would clash with the stream entry's own field of that name; \
             rename it in the transform"
        )));
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
    Ok(cmd)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn step<'a>(url: &'a BrokerUrl, stream: &str) -> RedisStreamStep<'a> {
        RedisStreamStep {
            url,
            stream: stream.to_owned(),
            maxlen: Some(10),
        }
    }

    fn message(headers: &[(&str, &str)]) -> Message<'static> {
        Message {
            body: b"{}",
            content_type: "application/json",
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            message_id: "id",
        }
    }

    #[test]
    fn the_entry_holds_body_content_type_and_headers_once_each() {
        let url = BrokerUrl("redis://127.0.0.1:6379".to_owned());
        let cmd = xadd(&step(&url, "s"), &message(&[("x-team", "billing")])).unwrap();
        let args: Vec<String> = cmd
            .args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                _ => "<not a simple argument>".into(),
            })
            .collect();
        assert_eq!(
            args,
            [
                "XADD",
                "s",
                "MAXLEN",
                "~",
                "10",
                "*",
                "body",
                "{}",
                "content-type",
                "application/json",
                "x-team",
                "billing"
            ]
        );
        for clash in ["body", "Content-Type"] {
            let e = xadd(&step(&url, "s"), &message(&[(clash, "x")])).unwrap_err();
            assert!(
                matches!(&e, BrokerError::Refused(m) if m.starts_with(&format!("header {clash:?} would clash"))),
                "{e}"
            );
        }
        let e = xadd(&step(&url, ""), &message(&[])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the broker refused the message: the stream key is empty"
        );
    }
}

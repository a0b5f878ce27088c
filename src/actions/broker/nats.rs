//! The `nats` step: publish to a NATS JetStream stream and wait for the stream's ack.
//!
//! Owns the client (credentials from the URL, servers the cluster advertises ignored: only the
//! checked address is dialled), the message (headers, `Nats-Msg-Id`) and the classification of
//! the answer. `Nats-Msg-Id` is stable for an event's step, so a redelivery within the stream's
//! duplicate window is acknowledged as a duplicate and stored once. It must never publish
//! without waiting for the stream's ack: a plain NATS publish is fire-and-forget.

use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::{ConnectOptions, HeaderMap};
use bytes::Bytes;
use percent_encoding::percent_decode_str;

use super::{BrokerError, BrokerUrl, Message};
use crate::actions::error_chain;

/// A `nats` step, its subject rendered for one event.
pub struct NatsStep<'a> {
    pub url: &'a BrokerUrl,
    pub subject: String,
}

pub(super) type Link = async_nats::jetstream::Context;

/// Reconnects the client tries on its own before it gives up; a publish then fails, and the
/// step's next attempt connects anew (checking the address again).
const MAX_RECONNECTS: usize = 3;

pub(super) async fn connect(url: &url::Url, timeout: Duration) -> Result<Link, BrokerError> {
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    let mut options = ConnectOptions::new()
        .name("hookd")
        .ignore_discovered_servers()
        .connection_timeout(timeout)
        .max_reconnects(MAX_RECONNECTS);
    let (user, password) = (decode(url.username()), url.password().map(decode));
    options = match password {
        Some(p) => options.user_and_password(user, p),
        None if !user.is_empty() => options.token(user),
        None => options,
    };
    let mut address = url.clone();
    // The credentials went into the options: the address carries none.
    let _ = address.set_username("");
    let _ = address.set_password(None);
    let client = options.connect(address.as_str()).await.map_err(|e| {
        use async_nats::ConnectErrorKind as K;
        match e.kind() {
            K::Authentication | K::AuthorizationViolation => {
                BrokerError::Credentials(e.to_string())
            }
            _ => BrokerError::Connect(error_chain(&e)),
        }
    })?;
    Ok(async_nats::jetstream::new(client))
}

/// A subject the server would refuse or misroute: empty, with whitespace, or an empty token.
fn valid_subject(s: &str) -> bool {
    !s.is_empty() && !s.contains(char::is_whitespace) && s.split('.').all(|t| !t.is_empty())
}

/// Publish and wait for the stream's ack (a duplicate's ack included).
pub(super) async fn publish(
    js: &Link,
    step: &NatsStep<'_>,
    m: &Message<'_>,
    timeout: Duration,
) -> Result<(), BrokerError> {
    if !valid_subject(&step.subject) {
        return Err(BrokerError::Refused(format!(
            "subject {:?} is not a valid NATS subject",
            step.subject
        )));
    }
    let mut headers = HeaderMap::new();
    headers.insert("content-type", m.content_type);
    for (name, value) in &m.headers {
        headers.insert(name.as_str(), value.as_str());
    }
    let message = PublishMessage::build()
        .payload(Bytes::copy_from_slice(m.body))
        .headers(headers)
        .message_id(m.message_id);
    let classify = |e: async_nats::jetstream::context::PublishError| match e.kind() {
        PublishErrorKind::StreamNotFound => BrokerError::Refused(format!(
            "no JetStream stream takes subject {:?}",
            step.subject
        )),
        PublishErrorKind::MaxPayloadExceeded
        | PublishErrorKind::WrongLastMessageId
        | PublishErrorKind::WrongLastSequence => BrokerError::Refused(e.to_string()),
        PublishErrorKind::TimedOut => BrokerError::Timeout(timeout.as_millis() as u64),
        _ => BrokerError::Publish(error_chain(&e)),
    };
    let ack = js
        .send_publish(step.subject.clone(), message)
        .await
        .map_err(classify)?
        .await
        .map_err(classify)?;
    if ack.duplicate {
        tracing::debug!(stream = %ack.stream, seq = ack.sequence, "the stream already had this message");
    }
    Ok(())
}

/// Flush what is buffered and close the connection.
pub(super) async fn close(js: Link) {
    let _ = js.client().drain().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects() {
        assert!(valid_subject("hookd.stripe.charge.succeeded"));
        assert!(!valid_subject(""));
        assert!(!valid_subject("a..b"));
        assert!(!valid_subject("a.b."));
        assert!(!valid_subject("a b"));
    }
}

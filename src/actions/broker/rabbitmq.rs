//! The `rabbitmq` step: publish to an exchange over AMQP 0-9-1, persistent, `mandatory`, on a
//! channel in confirm mode.
//!
//! Owns the connection and its one confirm-mode channel, the message's properties (delivery
//! mode 2, headers, message id) and the classification of the broker's answer: a step succeeds
//! only when the broker acks the message; a message it returns (unroutable) or nacks is a
//! failure. It must never publish without `mandatory` or without confirms: either would let a
//! message be dropped while the step reports success.

use std::sync::Arc;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ErrorKind};

use super::{BrokerError, BrokerUrl, Message};
use crate::actions::error_chain;

/// A `rabbitmq` step, its routing key rendered for one event.
pub struct RabbitStep<'a> {
    pub url: &'a BrokerUrl,
    pub exchange: &'a str,
    pub routing_key: String,
}

/// A connection and its confirm-mode channel.
pub(super) struct Connected {
    connection: Connection,
    channel: Channel,
}

pub(super) type Link = Arc<Connected>;

/// Still usable: a channel error (e.g. a missing exchange) closes the channel, not the pool.
pub(super) fn usable(link: &Link) -> bool {
    link.connection.status().connected() && link.channel.status().connected()
}

/// Persistent: the broker writes the message to disk in a durable queue before it confirms.
const PERSISTENT: u8 = 2;
/// `connection.close` reply code of a normal shutdown.
const REPLY_SUCCESS: u16 = 200;
/// ACCESS_REFUSED: the login (or the vhost) was refused.
const ACCESS_REFUSED: u16 = 403;

pub(super) async fn connect(url: &url::Url) -> Result<Link, BrokerError> {
    let uri: AMQPUri = url.as_str().parse().map_err(BrokerError::Connect)?;
    let connection = Connection::connect_uri(uri, ConnectionProperties::default())
        .await
        .map_err(|e| classify(&e, BrokerError::Connect))?;
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| classify(&e, BrokerError::Connect))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| classify(&e, BrokerError::Connect))?;
    Ok(Arc::new(Connected {
        connection,
        channel,
    }))
}

/// Publish and wait for the broker's confirm.
pub(super) async fn publish(
    link: &Link,
    step: &RabbitStep<'_>,
    m: &Message<'_>,
) -> Result<(), BrokerError> {
    let short = |what: &str, s: &str| {
        ShortString::try_new(s)
            .map_err(|_| BrokerError::Refused(format!("{what} is longer than 255 bytes")))
    };
    let exchange = short("exchange", step.exchange)?;
    let routing_key = short("routing key", &step.routing_key)?;
    let mut headers = FieldTable::default();
    for (name, value) in &m.headers {
        headers.insert(
            name.as_str().into(),
            AMQPValue::LongString(LongString::from(value.as_bytes().to_vec())),
        );
    }
    let mut properties = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_headers(headers);
    // Both are short in practice; one that is not stays in the headers only.
    if let Ok(ct) = ShortString::try_new(m.content_type) {
        properties = properties.with_content_type(ct);
    }
    if let Ok(id) = ShortString::try_new(m.message_id) {
        properties = properties.with_message_id(id);
    }
    let options = BasicPublishOptions {
        mandatory: true,
        immediate: false,
    };
    let confirm = link
        .channel
        .basic_publish(exchange, routing_key, options, m.body, properties)
        .await
        .map_err(|e| classify(&e, BrokerError::Publish))?;
    match confirm
        .await
        .map_err(|e| classify(&e, BrokerError::Publish))?
    {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
            Err(BrokerError::Unroutable(format!(
                "{} {}; bind a queue to exchange {:?} for routing key {:?}",
                returned.reply_code, returned.reply_text, step.exchange, step.routing_key
            )))
        }
        Confirmation::Nack(None) => Err(BrokerError::Publish(
            "the broker nacked the message (it could not store it)".into(),
        )),
        Confirmation::NotRequested => Err(BrokerError::Publish(
            "the channel is not in confirm mode".into(),
        )),
    }
}

/// A refused login is the credentials'; a channel-level refusal (no such exchange, access to
/// it refused) is this message's; anything else (I/O, connection closed) is the broker's.
fn classify(e: &lapin::Error, otherwise: fn(String) -> BrokerError) -> BrokerError {
    match e.kind() {
        ErrorKind::ProtocolError(amqp) if amqp.get_id() == ACCESS_REFUSED => {
            BrokerError::Credentials(e.to_string())
        }
        ErrorKind::ProtocolError(amqp)
            if matches!(amqp.kind(), lapin::protocol::AMQPErrorKind::Soft(_)) =>
        {
            BrokerError::Refused(e.to_string())
        }
        _ => otherwise(error_chain(e)),
    }
}

/// Close the connection cleanly (the broker logs a normal close, not a lost client).
pub(super) async fn close(link: Link) {
    if link.connection.status().connected() {
        let _ = link
            .connection
            .close(REPLY_SUCCESS, "hookd shutting down".into())
            .await;
    }
}

//! What a broker step publishes: the message built from the step's payload (`payload.rs`: the
//! event's body, or what its transform made of it) with hookd's headers and the stable message
//! id, published where the step's templates say; and that message id, which forwards send as
//! `webhook-id`.
//!
//! It must never decide about retries or touch the store: like every action, it reports one
//! step's result.

use std::collections::BTreeMap;

use serde_json::Value;

use super::broker::{BrokerStep, Message, NatsStep, RabbitStep, RedisStreamStep};
use super::{ActionError, Actions, Ran, Step, StepConfig};
use crate::event::ClaimedEvent;

impl Actions {
    /// A broker step: what the step sends (the event's body, or what its transform made of
    /// it) with hookd's headers, published where the step's templates say.
    pub(super) async fn publish(
        &self,
        step: &Step,
        event: &ClaimedEvent,
        payload: &Value,
        headers: &BTreeMap<String, String>,
    ) -> Result<Ran, ActionError> {
        let target = match &step.config {
            StepConfig::Rabbitmq {
                url,
                exchange,
                routing_key,
                ..
            } => BrokerStep::Rabbitmq(RabbitStep {
                url,
                exchange,
                routing_key: routing_key.render(event, payload),
            }),
            StepConfig::Nats { url, subject, .. } => BrokerStep::Nats(NatsStep {
                url,
                subject: subject.render(event, payload),
            }),
            StepConfig::RedisStream {
                url,
                stream,
                maxlen,
                ..
            } => BrokerStep::RedisStream(RedisStreamStep {
                url,
                stream: stream.render(event, payload),
                maxlen: *maxlen,
            }),
            _ => return Ok(Ran::Done),
        };
        let Some(sent) =
            super::payload::of_step(self.transforms.as_ref(), step, event, payload, headers)
                .await?
        else {
            return Ok(Ran::Skipped);
        };
        let message_id = message_id(step, event);
        // The transform's headers (never one of hookd's own: it cannot set `x-hookd-*`), then
        // hookd's.
        let mut headers: Vec<(String, String)> = sent.headers.into_iter().collect();
        headers.extend([
            ("x-hookd-event-id".to_owned(), event.id.to_string()),
            ("x-hookd-provider".to_owned(), event.provider.clone()),
            ("x-hookd-event-type".to_owned(), event.event_type.clone()),
            ("x-hookd-attempt".to_owned(), event.attempt.to_string()),
        ]);
        if event.generation > 0 {
            headers.push(("x-hookd-replay".to_owned(), event.generation.to_string()));
        }
        let message = Message {
            body: &sent.body,
            content_type: sent
                .content_type
                .as_deref()
                .or(event.content_type.as_deref())
                .unwrap_or("application/octet-stream"),
            headers,
            message_id: &message_id,
        };
        self.brokers
            .publish(target, message, self.timeout(step))
            .await
            .map_err(|(destination, error)| ActionError::Broker {
                action: step.action(),
                destination,
                error,
            })
            .map(|()| Ran::Done)
    }
}

/// This event's message to this step: the same on every attempt, different for each step (and
/// compensation) of the event, and for each operator replay (a replay is meant to be delivered
/// again). Forwards send it as `webhook-id`; brokers as `Nats-Msg-Id` and AMQP `message-id`.
pub(super) fn message_id(step: &Step, event: &ClaimedEvent) -> String {
    match event.generation {
        0 => format!("{}:{}", event.id, step.key),
        n => format!("{}:{}:replay{n}", event.id, step.key),
    }
}

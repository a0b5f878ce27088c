//! Broker destinations: the `rabbitmq`, `nats` (JetStream) and `redis_stream` steps.
//!
//! Owns the message a step publishes (the body and hookd's headers), one connection per process
//! per broker URL, reconnection (a publish that fails drops its connection; the step's next
//! attempt opens a new one), the egress check of every address a broker's name resolves to,
//! and closing every connection on shutdown. Each broker's own module owns its protocol and
//! the classification of its answers. It must never log, return or label anything with a
//! broker URL's credentials: errors and metrics name the destination (`scheme://host:port`),
//! and never decide about retries: it reports one publish's result.

mod nats;
mod rabbitmq;
mod redis_stream;

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tracing::Instrument;

use super::breaker::Destination;
use super::egress::EgressPolicy;
use crate::telemetry::trace;

pub use nats::NatsStep;
pub use rabbitmq::RabbitStep;
pub use redis_stream::RedisStreamStep;

/// A broker's address as configured (`amqp://user:pass@host:5672/vhost`, `nats://host:4222`,
/// `redis://host:6379/0`). It may carry credentials, so its `Debug` shows only the destination.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct BrokerUrl(String);

impl BrokerUrl {
    /// The URL with its credentials: for connecting only.
    fn secret(&self) -> &str {
        &self.0
    }

    /// Parse it, or say what is wrong without quoting it (it may hold a password).
    pub fn parse(&self, kind: BrokerKind) -> Result<url::Url, BrokerUrlError> {
        let url = url::Url::parse(&self.0).map_err(BrokerUrlError::Parse)?;
        if url.scheme() != kind.scheme() {
            return Err(BrokerUrlError::Scheme {
                kind,
                scheme: url.scheme().to_owned(),
            });
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(BrokerUrlError::NoHost);
        }
        Ok(url)
    }

    /// `scheme://host:port`, the default port filled in: the breaker's and the metrics' name
    /// for this broker, and what errors quote. `None` when the URL does not parse.
    pub fn destination(&self, kind: BrokerKind) -> Option<Destination> {
        let url = self.parse(kind).ok()?;
        Some(destination_of(&url, kind))
    }
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BrokerUrl(<redacted>)")
    }
}

/// The destination `url` names where a setting is keyed by destination (rate limits): a
/// broker's `scheme://host:port` with its default port filled in, as its steps name it (so
/// `amqp://rabbit.internal` is `amqp://rabbit.internal:5672`), else the URL's origin.
pub fn destination_of_key(url: &url::Url) -> Destination {
    [
        BrokerKind::Rabbitmq,
        BrokerKind::Nats,
        BrokerKind::RedisStream,
    ]
    .into_iter()
    .find(|k| k.scheme() == url.scheme())
    .map_or_else(|| Destination::of_url(url), |k| destination_of(url, k))
}

fn destination_of(url: &url::Url, kind: BrokerKind) -> Destination {
    let host = url.host_str().unwrap_or("");
    let port = url.port().unwrap_or(kind.default_port());
    Destination::new(format!("{}://{host}:{port}", url.scheme()))
}

/// Which broker a step publishes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    Rabbitmq,
    Nats,
    RedisStream,
}

impl BrokerKind {
    /// The only URL scheme accepted. TLS variants (`amqps`, `tls`, `rediss`) are refused at
    /// start: this part connects to the address it checked against the egress policy, by IP.
    pub fn scheme(self) -> &'static str {
        match self {
            Self::Rabbitmq => "amqp",
            Self::Nats => "nats",
            Self::RedisStream => "redis",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Self::Rabbitmq => 5672,
            Self::Nats => 4222,
            Self::RedisStream => 6379,
        }
    }

    /// `messaging.system` of the publish span (OpenTelemetry's names).
    fn system(self) -> &'static str {
        match self {
            Self::Rabbitmq => "rabbitmq",
            Self::Nats => "nats",
            Self::RedisStream => "redis",
        }
    }

    /// The step's action name, as in the config file.
    pub fn action(self) -> &'static str {
        match self {
            Self::Rabbitmq => "rabbitmq",
            Self::Nats => "nats",
            Self::RedisStream => "redis_stream",
        }
    }
}

/// A broker URL that cannot be used; never quotes the URL (it may hold a password).
#[derive(Debug, thiserror::Error)]
pub enum BrokerUrlError {
    #[error("url is not a valid URL: {0}")]
    Parse(#[source] url::ParseError),
    #[error(
        "url must start with {}:// for a {} step (got {scheme}://{})",
        kind.scheme(),
        kind.action(),
        tls_note(*kind, scheme)
    )]
    Scheme { kind: BrokerKind, scheme: String },
    #[error("url has no host")]
    NoHost,
}

fn tls_note(kind: BrokerKind, scheme: &str) -> &'static str {
    let tls = matches!(
        (kind, scheme),
        (BrokerKind::Rabbitmq, "amqps")
            | (BrokerKind::Nats, "tls")
            | (BrokerKind::RedisStream, "rediss")
    );
    if tls {
        "; TLS to brokers is not supported yet"
    } else {
        ""
    }
}

/// What a broker step publishes: the body and hookd's headers. Built from the event by the
/// caller, so a transformation can hand over another body and more headers.
pub struct Message<'a> {
    pub body: &'a [u8],
    pub content_type: &'a str,
    /// `x-hookd-event-id`, `x-hookd-provider`, `x-hookd-event-type`, ...; `traceparent` is
    /// added at publish time, as the child of the publish span.
    pub headers: Vec<(String, String)>,
    /// Stable for this event's step across attempts (`Nats-Msg-Id`, AMQP `message-id`).
    pub message_id: &'a str,
}

/// Why a publish failed. The text is stored with the step result: never a credential.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("the broker refused the credentials: {0}")]
    Credentials(String),
    #[error("no address of {host} is allowed by the egress policy (HOOKD_FORWARD_ALLOW)")]
    Egress { host: String },
    #[error("timed out after {0} ms")]
    Timeout(u64),
    #[error("publish failed: {0}")]
    Publish(String),
    #[error("unroutable: the broker returned the message ({0})")]
    Unroutable(String),
    #[error("the broker refused the message: {0}")]
    Refused(String),
}

impl BrokerError {
    /// The broker is down, unreachable, overloaded or refusing everyone (as opposed to
    /// refusing this message): counts towards the breaker, and drops the connection.
    pub fn destination_down(&self) -> bool {
        matches!(
            self,
            Self::Connect(_) | Self::Credentials(_) | Self::Timeout(_) | Self::Publish(_)
        )
    }
}

/// One connection per broker URL, shared by every step of this process. A slot is empty until
/// the first publish and after a failed one; connecting holds the slot, so concurrent steps
/// wait for one connection instead of opening several.
struct Pool<C> {
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<C>>>>>,
}

impl<C: Clone> Pool<C> {
    fn new() -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, url: &str) -> Arc<tokio::sync::Mutex<Option<C>>> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(url.to_owned()).or_default().clone()
    }

    /// The connection to `url`, opened with `connect` if there is none or `usable` says the
    /// one there is broken.
    async fn get<F>(&self, url: &str, usable: fn(&C) -> bool, connect: F) -> Result<C, BrokerError>
    where
        F: Future<Output = Result<C, BrokerError>>,
    {
        let slot = self.slot(url);
        let mut held = slot.lock().await;
        if let Some(c) = held.as_ref().filter(|c| usable(c)) {
            return Ok(c.clone());
        }
        let c = connect.await?;
        *held = Some(c.clone());
        Ok(c)
    }

    async fn discard(&self, url: &str) {
        self.slot(url).lock().await.take();
    }

    async fn take_all(&self) -> Vec<C> {
        let slots: Vec<_> = {
            let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.values().cloned().collect()
        };
        let mut all = Vec::new();
        for s in slots {
            all.extend(s.lock().await.take());
        }
        all
    }
}

/// Every broker connection of this process.
pub struct Brokers {
    egress: Arc<EgressPolicy>,
    rabbitmq: Pool<rabbitmq::Link>,
    nats: Pool<nats::Link>,
    redis: Pool<redis::aio::MultiplexedConnection>,
}

/// A broker step, compiled: which broker and what to publish where.
pub enum BrokerStep<'a> {
    Rabbitmq(RabbitStep<'a>),
    Nats(NatsStep<'a>),
    RedisStream(RedisStreamStep<'a>),
}

impl BrokerStep<'_> {
    fn kind(&self) -> BrokerKind {
        match self {
            Self::Rabbitmq(_) => BrokerKind::Rabbitmq,
            Self::Nats(_) => BrokerKind::Nats,
            Self::RedisStream(_) => BrokerKind::RedisStream,
        }
    }

    fn url(&self) -> &BrokerUrl {
        match self {
            Self::Rabbitmq(s) => s.url,
            Self::Nats(s) => s.url,
            Self::RedisStream(s) => s.url,
        }
    }

    /// Where it goes, for the span: exchange/routing key, subject, stream key.
    fn target(&self) -> String {
        match self {
            Self::Rabbitmq(s) => format!("{}/{}", s.exchange, s.routing_key),
            Self::Nats(s) => s.subject.clone(),
            Self::RedisStream(s) => s.stream.clone(),
        }
    }
}

impl Brokers {
    pub fn new(egress: Arc<EgressPolicy>) -> Self {
        Self {
            egress,
            rabbitmq: Pool::new(),
            nats: Pool::new(),
            redis: Pool::new(),
        }
    }

    /// Publish `message` and wait for the broker's acknowledgement, within `timeout`
    /// (connecting included). On failure, `Err` names the destination, never the URL.
    pub async fn publish(
        &self,
        step: BrokerStep<'_>,
        mut message: Message<'_>,
        timeout: Duration,
    ) -> Result<(), (Destination, BrokerError)> {
        let kind = step.kind();
        let url = step.url().parse(kind).map_err(|e| {
            // Start-up checked every URL: this is only reached by a step built by hand.
            (
                Destination::new(kind.action()),
                BrokerError::Connect(e.to_string()),
            )
        })?;
        let destination = destination_of(&url, kind);
        let span = tracing::info_span!(
            "publish",
            otel.name = %format!("publish {}", step.target()),
            otel.kind = "producer",
            messaging.system = kind.system(),
            messaging.destination.name = %step.target(),
            server.address = %destination,
        );
        // The consumer joins the event's trace as a child of this producer span.
        if let Some(tp) = trace::traceparent(&span) {
            message.headers.push(("traceparent".to_owned(), tp));
        }
        let secret = step.url().secret();
        let run = async {
            match &step {
                BrokerStep::Rabbitmq(s) => {
                    let connect =
                        async { rabbitmq::connect(&self.checked(&url, kind).await?).await };
                    let link = self.rabbitmq.get(secret, rabbitmq::usable, connect).await?;
                    rabbitmq::publish(&link, s, &message).await
                }
                BrokerStep::Nats(s) => {
                    let connect =
                        async { nats::connect(&self.checked(&url, kind).await?, timeout).await };
                    let link = self.nats.get(secret, |_| true, connect).await?;
                    nats::publish(&link, s, &message, timeout).await
                }
                BrokerStep::RedisStream(s) => {
                    let connect =
                        async { redis_stream::connect(&self.checked(&url, kind).await?).await };
                    let conn = self.redis.get(secret, |_| true, connect).await?;
                    redis_stream::publish(conn, s, &message).await
                }
            }
        };
        let result = match tokio::time::timeout(timeout, run.instrument(span)).await {
            Ok(r) => r,
            Err(_) => Err(BrokerError::Timeout(timeout.as_millis() as u64)),
        };
        if let Err(e) = &result
            && e.destination_down()
        {
            // The next attempt connects anew: the broker may have restarted, or moved.
            match kind {
                BrokerKind::Rabbitmq => self.rabbitmq.discard(secret).await,
                BrokerKind::Nats => self.nats.discard(secret).await,
                BrokerKind::RedisStream => self.redis.discard(secret).await,
            }
        }
        result.map_err(|e| (destination, e))
    }

    /// `url` with its host replaced by an address the egress policy allows, so the client
    /// connects where the check looked (a name cannot be re-pointed between check and connect).
    async fn checked(&self, url: &url::Url, kind: BrokerKind) -> Result<url::Url, BrokerError> {
        let host = url.host_str().unwrap_or("").to_owned();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let port = url.port().unwrap_or(kind.default_port());
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| BrokerError::Connect(format!("cannot resolve {host}: {e}")))?
            .collect();
        let named = bare.parse::<IpAddr>().is_err().then_some(bare);
        let allowed = addrs
            .iter()
            .find(|a| self.egress.allows(named, a.ip()))
            .ok_or(BrokerError::Egress { host: host.clone() })?;
        let mut at = url.clone();
        at.set_ip_host(allowed.ip())
            .and_then(|()| at.set_port(Some(port)))
            .map_err(|()| BrokerError::Connect(format!("cannot address {host} by IP")))?;
        Ok(at)
    }

    /// Close every connection: on shutdown, after the workers finished their steps.
    pub async fn close(&self) {
        for link in self.rabbitmq.take_all().await {
            rabbitmq::close(link).await;
        }
        for link in self.nats.take_all().await {
            nats::close(link).await;
        }
        // A Redis connection closes when its last handle is dropped.
        drop(self.redis.take_all().await);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> BrokerUrl {
        BrokerUrl(s.to_owned())
    }

    #[test]
    fn urls_are_checked_and_their_credentials_never_shown() {
        let u = url("amqp://user:hunter2@mq.internal/vhost");
        assert_eq!(format!("{u:?}"), "BrokerUrl(<redacted>)");
        let dest = |u: &str, k| url(u).destination(k).unwrap().to_string();
        assert_eq!(
            dest("amqp://user:hunter2@mq.internal/v", BrokerKind::Rabbitmq),
            "amqp://mq.internal:5672"
        );
        assert_eq!(dest("nats://n:4333", BrokerKind::Nats), "nats://n:4333");
        assert_eq!(
            dest("redis://:pw@r/2", BrokerKind::RedisStream),
            "redis://r:6379"
        );
        let tls = url("amqps://u:hunter2@h/v")
            .parse(BrokerKind::Rabbitmq)
            .unwrap_err()
            .to_string();
        assert_eq!(
            tls,
            "url must start with amqp:// for a rabbitmq step (got amqps://; TLS to brokers is \
             not supported yet)"
        );
        let wrong = url("redis://u:hunter2@h")
            .parse(BrokerKind::Nats)
            .unwrap_err()
            .to_string();
        assert_eq!(
            wrong,
            "url must start with nats:// for a nats step (got redis://)"
        );
        let bad = url("nats://u:hunter2@[::1")
            .parse(BrokerKind::Nats)
            .unwrap_err()
            .to_string();
        assert!(bad.starts_with("url is not a valid URL") && !bad.contains("hunter2"));
        assert!(matches!(
            url("nats:///x").parse(BrokerKind::Nats),
            Err(BrokerUrlError::NoHost)
        ));
    }

    #[test]
    fn outages_are_told_apart_from_refusals() {
        for down in [
            BrokerError::Connect("refused".into()),
            BrokerError::Credentials("403".into()),
            BrokerError::Timeout(5),
            BrokerError::Publish("reset".into()),
        ] {
            assert!(down.destination_down(), "{down}");
        }
        for refused in [
            BrokerError::Unroutable("312 NO_ROUTE".into()),
            BrokerError::Refused("WRONGTYPE".into()),
            BrokerError::Egress { host: "h".into() },
        ] {
            assert!(!refused.destination_down(), "{refused}");
        }
    }

    #[tokio::test]
    async fn an_address_the_egress_policy_refuses_is_never_dialled() {
        // Start-up refuses `localhost` by name; a step built by hand still meets the check
        // where the connection is made, on the addresses the name resolves to.
        let brokers = Brokers::new(Arc::new(EgressPolicy::default()));
        let u = url("nats://localhost:4222");
        let step = BrokerStep::Nats(NatsStep {
            url: &u,
            subject: "s".into(),
        });
        let message = Message {
            body: b"{}",
            content_type: "application/json",
            headers: Vec::new(),
            message_id: "m",
        };
        let (dest, err) = brokers
            .publish(step, message, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(dest.to_string(), "nats://localhost:4222");
        assert!(matches!(err, BrokerError::Egress { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "no address of localhost is allowed by the egress policy (HOOKD_FORWARD_ALLOW)"
        );
    }
}

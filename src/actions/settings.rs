//! Settings of the processing side's actions: the routes and their steps (`[[routes]]`), the
//! forward client, the mail server, destination breakers and limits, and the egress policy.
//!
//! Owns their defaults and the checks that span several of them (an email step needs
//! `SMTP_URL`, every forward and broker URL must pass the egress policy), so a mistake stops
//! start-up with the route and the setting to change. It must never read the environment or a
//! file: the configuration reader fills these types and hands them over.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::breaker::{BreakerPolicy, Destination};
use super::broker::{BrokerKind, BrokerUrl, BrokerUrlError};
use super::egress::{EgressError, EgressPolicy};
use super::email::{Recipient, SmtpSettings};
use super::filter::Filter;
use super::forward::SigningKeys;
use super::rate::RateLimit;
use super::template::Template;
use crate::transform::TransformSettings;

/// Everything the actions need, as configured.
#[derive(Debug, Clone)]
pub struct ActionSettings {
    /// `[[routes]]`, in file order.
    pub routes: Vec<RouteConfig>,
    /// The forward client and the default timeout of a forward step.
    pub forward: ForwardSettings,
    /// The mail server for `email` steps (`SMTP_URL`); `None` when email is not configured.
    pub smtp: Option<SmtpSettings>,
    /// When a destination's circuit breaker opens, and for how long.
    pub breaker: BreakerPolicy,
    /// Steps in flight to one destination at once, per process.
    pub destination_concurrency: usize,
    /// Where forwards may go.
    pub egress: EgressPolicy,
    /// Steps per period to a destination, by destination; per process, or shared through
    /// Redis when the queue is Redis (`[destinations.rate_limits]`).
    pub rate_limits: BTreeMap<Destination, RateLimit>,
    /// The caps on JavaScript transforms and the threads they run on.
    pub transform: TransformSettings,
}

impl Default for ActionSettings {
    fn default() -> Self {
        Self {
            routes: Vec::new(),
            forward: ForwardSettings::default(),
            smtp: None,
            breaker: BreakerPolicy {
                failure_threshold: 5,
                cooldown: Duration::from_secs(30),
            },
            destination_concurrency: 4,
            egress: EgressPolicy::default(),
            rate_limits: BTreeMap::new(),
            transform: TransformSettings::default(),
        }
    }
}

/// The forward client's settings.
#[derive(Debug, Clone)]
pub struct ForwardSettings {
    /// A forward step's timeout when the step sets none (`HOOKD_FORWARD_TIMEOUT_MS`).
    pub timeout: Duration,
    /// The `User-Agent` of every forward.
    pub user_agent: String,
}

impl Default for ForwardSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            user_agent: concat!("hookd/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

impl ActionSettings {
    /// Every route, checked against the mail server and the egress policy; the error names the
    /// route (its name, or `route<N>`).
    pub fn validate(&self) -> Result<(), InvalidRoute> {
        for (i, route) in self.routes.iter().enumerate() {
            let invalid = |source| InvalidRoute {
                route: route.display_name(i),
                source,
            };
            route.validate(self.smtp.as_ref()).map_err(invalid)?;
            for (kind, url) in route.broker_urls() {
                // Validated above: it parses, with the step's scheme.
                if let Ok(parsed) = url.parse(kind) {
                    self.egress
                        .check_url(kind.action(), &parsed)
                        .map_err(|e| invalid(RouteError::Egress(e)))?;
                }
            }
            for url in route.forward_urls() {
                let parsed = reqwest::Url::parse(url).map_err(|source| {
                    invalid(RouteError::ForwardUrl {
                        url: url.to_owned(),
                        source,
                    })
                })?;
                self.egress
                    .check_url("forward", &parsed)
                    .map_err(|e| invalid(RouteError::Egress(e)))?;
            }
        }
        Ok(())
    }
}

impl ActionSettings {
    /// Every rate limit names a destination some step (or compensation) sends to: a limit on a
    /// misspelt origin would leave the real one unprotected without a word.
    pub fn check_rate_limits(&self) -> Result<(), UnusedRateLimit> {
        let router = super::Router::new(&self.routes, self.smtp.as_ref().map(|s| s.destination()));
        let used: std::collections::BTreeSet<Destination> = router
            .provider_destinations()
            .into_iter()
            .flat_map(|(_, d)| d)
            .collect();
        match self.rate_limits.keys().find(|d| !used.contains(d)) {
            None => Ok(()),
            Some(d) => Err(UnusedRateLimit {
                destination: d.clone(),
                used: used
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }
}

/// A rate limit on a destination no step sends to.
#[derive(Debug, thiserror::Error)]
#[error(
    "rate limit for {destination}: no step sends there (destinations of the routes: {used}); \
     a key of [destinations.rate_limits] / HOOKD_RATE_LIMITS is a URL whose scheme, host and \
     port match a step's"
)]
pub struct UnusedRateLimit {
    pub destination: Destination,
    pub used: String,
}

/// A route that cannot run, by name.
#[derive(Debug, thiserror::Error)]
#[error("route {route}: {source}")]
pub struct InvalidRoute {
    pub route: String,
    pub source: RouteError,
}

/// What is wrong with a route.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("has no steps")]
    NoSteps,
    #[error("a compensation cannot have its own `compensate`")]
    NestedCompensation,
    #[error("forward url {url:?} is invalid: {source}")]
    ForwardUrl {
        url: String,
        source: url::ParseError,
    },
    #[error("forward url {0:?} must be http or https")]
    ForwardScheme(String),
    #[error("forward header name {0:?} is invalid")]
    HeaderName(String),
    #[error("forward header {0:?} has an invalid value")]
    HeaderValue(String),
    #[error("has an email step but SMTP_URL is not set")]
    NoSmtp,
    #[error("email step has no recipients (`to`)")]
    NoRecipients,
    #[error("email step has no sender: set SMTP_FROM or the step's `from`")]
    NoSender,
    #[error(transparent)]
    Egress(EgressError),
    #[error("{action} step: {source}")]
    BrokerUrl {
        action: &'static str,
        source: BrokerUrlError,
    },
    #[error("rabbitmq step: `exchange` is empty; name the exchange to publish to")]
    EmptyExchange,
    #[error("rabbitmq step: `exchange` is longer than 255 bytes")]
    LongExchange,
    #[error("{action} step: `{field}` is empty")]
    EmptyTemplate {
        action: &'static str,
        field: &'static str,
    },
    #[error("redis_stream step: `maxlen` must be at least 1")]
    ZeroMaxlen,
    #[error("order_by {0:?} must be a JSON pointer (\"/data/object/id\") or \"header:<name>\"")]
    OrderBy(String),
    #[error("on_dead_letter = \"block\" needs order_by")]
    BlockWithoutOrder,
}

/// What a dead-lettered event does to its key's line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDeadLetter {
    /// The dead letter leaves the line: the next event of the key starts.
    #[default]
    Release,
    /// The dead letter keeps its key blocked until an operator redrives or skips it.
    Block,
}

/// Where a route's order key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderBy {
    /// A JSON pointer into the payload (`/data/object/id`).
    Pointer(String),
    /// A request header, by lower-case name (`header:X-Shop-Id`).
    Header(String),
}

impl OrderBy {
    /// `"/pointer"` or `"header:<name>"`.
    pub fn parse(spec: &str) -> Result<Self, RouteError> {
        let bad = || RouteError::OrderBy(spec.to_owned());
        if let Some(name) = spec.strip_prefix("header:") {
            let name = name.trim();
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
            return Ok(Self::Header(name.to_ascii_lowercase()));
        }
        if spec.starts_with('/') {
            return Ok(Self::Pointer(spec.to_owned()));
        }
        Err(bad())
    }
}

/// One `[[routes]]` entry of the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Name used in step results; defaults to `route<N>` (its position in the file).
    pub name: Option<String>,
    #[serde(default = "star")]
    pub provider: String,
    /// Globs on the event type (`*` matches any run of characters).
    #[serde(default = "stars")]
    pub events: Vec<String>,
    /// Conditions on the payload; all must hold.
    #[serde(default)]
    pub filters: Vec<Filter>,
    /// Standard Webhooks secret(s) (`whsec_...`) that sign this route's forwards.
    pub signing_secret: Option<SigningKeys>,
    pub steps: Vec<StepConfig>,
    /// A JavaScript file whose `transform(event)` reshapes what this route's forward and broker
    /// steps send, or skips them; a step's own `transform` replaces it.
    pub transform: Option<String>,
    /// Deliver the events that share this key one at a time, in commit order: a JSON pointer
    /// into the payload (`/data/object/id`) or `header:<name>`. An event without the key runs
    /// unordered on this route.
    pub order_by: Option<String>,
    /// What a dead letter does to its key's line (with `order_by`).
    #[serde(default)]
    pub on_dead_letter: OnDeadLetter,
}

fn star() -> String {
    "*".to_owned()
}
fn stars() -> Vec<String> {
    vec![star()]
}

/// One step of a route. Any step may name a `compensate` step, run if the event is
/// dead-lettered after this step succeeded.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum StepConfig {
    /// Write one structured log line about the event.
    Log { compensate: Option<Box<StepConfig>> },
    /// POST the raw body to `url`; any non-2xx answer or a timeout is a failure.
    Forward {
        url: String,
        timeout_ms: Option<u64>,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        compensate: Option<Box<StepConfig>>,
        /// A JavaScript file that reshapes what this step sends (instead of the route's).
        transform: Option<String>,
    },
    /// Send a plain-text email through `SMTP_URL`.
    Email {
        to: Vec<Recipient>,
        subject: Template,
        body: Template,
        /// Overrides `SMTP_FROM` for this step.
        from: Option<Recipient>,
        timeout_ms: Option<u64>,
        compensate: Option<Box<StepConfig>>,
    },
    /// Publish to a RabbitMQ exchange (`amqp://user:pass@host:5672/vhost`): persistent,
    /// `mandatory`, with publisher confirms; succeeds only on the broker's ack.
    Rabbitmq {
        url: BrokerUrl,
        exchange: String,
        /// A template, e.g. `{{provider}}.{{type}}`.
        routing_key: Template,
        timeout_ms: Option<u64>,
        compensate: Option<Box<StepConfig>>,
        /// A JavaScript file that reshapes what this step publishes (replaces the route's).
        transform: Option<String>,
    },
    /// Publish to a NATS JetStream stream (`nats://host:4222`); succeeds only on the stream's
    /// ack. `Nats-Msg-Id` is stable per event and step: the stream drops a redelivery.
    Nats {
        url: BrokerUrl,
        /// A template, e.g. `hookd.{{provider}}.{{type}}`.
        subject: Template,
        timeout_ms: Option<u64>,
        compensate: Option<Box<StepConfig>>,
        /// A JavaScript file that reshapes what this step publishes (replaces the route's).
        transform: Option<String>,
    },
    /// `XADD` to a Redis stream (`redis://host:6379/0`), trimmed to about `maxlen` entries.
    RedisStream {
        url: BrokerUrl,
        /// A template, e.g. `hookd:{{provider}}`.
        stream: Template,
        maxlen: Option<u64>,
        timeout_ms: Option<u64>,
        compensate: Option<Box<StepConfig>>,
        /// A JavaScript file that reshapes what this step publishes (replaces the route's).
        transform: Option<String>,
    },
}

impl StepConfig {
    /// The action's name, as in the config file.
    pub fn action(&self) -> &'static str {
        match self {
            Self::Log { .. } => "log",
            Self::Forward { .. } => "forward",
            Self::Email { .. } => "email",
            Self::Rabbitmq { .. } => "rabbitmq",
            Self::Nats { .. } => "nats",
            Self::RedisStream { .. } => "redis_stream",
        }
    }

    /// Whether the step sends the event somewhere, so that a transform can reshape it (forward
    /// and broker steps; `log` and `email` do not take one).
    pub(super) fn sends_payload(&self) -> bool {
        !matches!(self, Self::Log { .. } | Self::Email { .. })
    }

    /// The step's own `transform`, if it names one.
    pub(super) fn transform(&self) -> Option<&str> {
        match self {
            Self::Forward { transform, .. }
            | Self::Rabbitmq { transform, .. }
            | Self::Nats { transform, .. }
            | Self::RedisStream { transform, .. } => transform.as_deref(),
            Self::Log { .. } | Self::Email { .. } => None,
        }
    }

    pub(super) fn compensate(&self) -> Option<&StepConfig> {
        match self {
            Self::Log { compensate }
            | Self::Forward { compensate, .. }
            | Self::Email { compensate, .. }
            | Self::Rabbitmq { compensate, .. }
            | Self::Nats { compensate, .. }
            | Self::RedisStream { compensate, .. } => compensate.as_deref(),
        }
    }

    fn validate(&self, smtp: Option<&SmtpSettings>) -> Result<(), RouteError> {
        match self {
            Self::Log { .. } => {}
            Self::Forward { url, headers, .. } => {
                let parsed = reqwest::Url::parse(url).map_err(|source| RouteError::ForwardUrl {
                    url: url.clone(),
                    source,
                })?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(RouteError::ForwardScheme(url.clone()));
                }
                for (k, v) in headers {
                    reqwest::header::HeaderName::from_bytes(k.as_bytes())
                        .map_err(|_| RouteError::HeaderName(k.clone()))?;
                    reqwest::header::HeaderValue::from_str(v)
                        .map_err(|_| RouteError::HeaderValue(k.clone()))?;
                }
            }
            Self::Email { to, from, .. } => {
                let smtp = smtp.ok_or(RouteError::NoSmtp)?;
                if to.is_empty() {
                    return Err(RouteError::NoRecipients);
                }
                if from.is_none() && smtp.from.is_none() {
                    return Err(RouteError::NoSender);
                }
            }
            Self::Rabbitmq { .. } | Self::Nats { .. } | Self::RedisStream { .. } => {
                self.validate_broker()?;
            }
        }
        Ok(())
    }

    /// The broker and where the step publishes, if it is a broker step.
    pub(super) fn broker(&self) -> Option<(BrokerKind, &BrokerUrl)> {
        match self {
            Self::Rabbitmq { url, .. } => Some((BrokerKind::Rabbitmq, url)),
            Self::Nats { url, .. } => Some((BrokerKind::Nats, url)),
            Self::RedisStream { url, .. } => Some((BrokerKind::RedisStream, url)),
            _ => None,
        }
    }

    fn validate_broker(&self) -> Result<(), RouteError> {
        let Some((kind, url)) = self.broker() else {
            return Ok(());
        };
        url.parse(kind).map_err(|source| RouteError::BrokerUrl {
            action: kind.action(),
            source,
        })?;
        let empty = |field| RouteError::EmptyTemplate {
            action: kind.action(),
            field,
        };
        match self {
            Self::Rabbitmq { exchange, .. } if exchange.is_empty() => {
                Err(RouteError::EmptyExchange)
            }
            Self::Rabbitmq { exchange, .. } if exchange.len() > 255 => {
                Err(RouteError::LongExchange)
            }
            Self::Nats { subject, .. } if subject.is_empty() => Err(empty("subject")),
            Self::RedisStream { stream, .. } if stream.is_empty() => Err(empty("stream")),
            Self::RedisStream {
                maxlen: Some(0), ..
            } => Err(RouteError::ZeroMaxlen),
            _ => Ok(()),
        }
    }
}

impl RouteConfig {
    /// Every transform script the route and its steps (and their compensations) name.
    pub fn transforms(&self) -> Vec<&str> {
        let mut paths: Vec<&str> = self.transform.iter().map(String::as_str).collect();
        for step in &self.steps {
            for s in std::iter::once(step).chain(step.compensate()) {
                paths.extend(s.transform());
            }
        }
        paths
    }

    /// Every URL the route's forwards (and their compensations) post to.
    pub fn forward_urls(&self) -> Vec<&str> {
        let mut urls = Vec::new();
        for step in &self.steps {
            for s in std::iter::once(step).chain(step.compensate()) {
                if let StepConfig::Forward { url, .. } = s {
                    urls.push(url.as_str());
                }
            }
        }
        urls
    }

    /// Every broker URL the route's broker steps (and their compensations) publish to.
    pub fn broker_urls(&self) -> Vec<(BrokerKind, &BrokerUrl)> {
        self.steps
            .iter()
            .flat_map(|s| std::iter::once(s).chain(s.compensate()))
            .filter_map(StepConfig::broker)
            .collect()
    }

    /// Its name, or `route<index>` (its position in the file).
    pub fn display_name(&self, index: usize) -> String {
        self.name.clone().unwrap_or_else(|| format!("route{index}"))
    }

    /// Checks that need more than one field, or settings outside the route (`SMTP_URL`).
    pub(crate) fn validate(&self, smtp: Option<&SmtpSettings>) -> Result<(), RouteError> {
        if self.steps.is_empty() {
            return Err(RouteError::NoSteps);
        }
        match &self.order_by {
            Some(spec) => {
                OrderBy::parse(spec)?;
            }
            None if self.on_dead_letter == OnDeadLetter::Block => {
                return Err(RouteError::BlockWithoutOrder);
            }
            None => {}
        }
        for step in &self.steps {
            step.validate(smtp)?;
            if let Some(c) = step.compensate() {
                if c.compensate().is_some() {
                    return Err(RouteError::NestedCompensation);
                }
                c.validate(smtp)?;
            }
        }
        Ok(())
    }
}

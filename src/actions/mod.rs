//! Routes and actions: which steps an event gets, and running one step.
//!
//! Owns route matching (provider, event-type globs and payload filters), the steps' compiled form
//! (stable keys, destinations, compensations) and the side effects of each action (a log line, an
//! HTTP forward, an email), with what a step sends: the event's body, or what the step's
//! JavaScript transform made of it (`transform`, run on its own threads). It must never touch
//! the store or decide about retries: it reports one step's result, classified, and the worker
//! decides what happens next. Its settings, with their defaults and the checks across routes,
//! mail server and egress policy, are in `settings`.

pub mod breaker;
pub mod broker;
pub mod egress;
pub mod email;
pub mod filter;
pub mod forward;
pub mod ordering;
mod payload;
pub mod rate;
mod send;
mod settings;
pub mod template;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::event::ClaimedEvent;
use crate::transform::{TransformError, Transforms};
use breaker::Destination;
use broker::Brokers;
use egress::EgressPolicy;
use email::{EmailSpec, Mailer};
use forward::{ForwardRequest, SigningKeys};
use send::message_id;

pub use crate::transform::Payload;
pub use settings::{
    ActionSettings, ForwardSettings, InvalidRoute, OnDeadLetter, OrderBy, RouteConfig, RouteError,
    StepConfig, UnusedRateLimit,
};

/// A step ready to run, with the stable key its results are recorded under.
#[derive(Debug, Clone)]
pub struct Step {
    /// `<route name>/<index>:<action>` (a compensation: `<route name>/<index>:compensate:<action>`):
    /// stays the same across retries, so a step that already succeeded is recognised and skipped.
    pub key: String,
    pub config: StepConfig,
    /// Where the step sends something; `None` for `log`.
    pub destination: Option<Destination>,
    /// Run in reverse order when the event is dead-lettered after this step succeeded.
    pub compensation: Option<Box<Step>>,
    signing: Option<SigningKeys>,
    /// The script that reshapes what the step sends: its own `transform`, else its route's
    /// (forward steps only).
    pub transform: Option<Arc<str>>,
}

impl Step {
    fn compile(
        key: String,
        config: &StepConfig,
        signing: &Option<SigningKeys>,
        smtp: Option<&Destination>,
        route_transform: Option<&Arc<str>>,
    ) -> Self {
        let destination = match config {
            StepConfig::Log { .. } => None,
            StepConfig::Forward { url, .. } => reqwest::Url::parse(url)
                .ok()
                .map(|u| Destination::of_url(&u)),
            StepConfig::Email { .. } => smtp.cloned(),
            StepConfig::Rabbitmq { .. }
            | StepConfig::Nats { .. }
            | StepConfig::RedisStream { .. } => config
                .broker()
                .and_then(|(kind, url)| url.destination(kind)),
        };
        let compensation = config.compensate().map(|c| {
            let (route_step, _) = key.rsplit_once(':').unwrap_or((&key, ""));
            Box::new(Self::compile(
                format!("{route_step}:compensate:{}", c.action()),
                c,
                signing,
                smtp,
                route_transform,
            ))
        });
        let transform = match config.transform() {
            Some(own) => Some(Arc::from(own)),
            None if config.sends_payload() => route_transform.cloned(),
            None => None,
        };
        Self {
            key,
            config: config.clone(),
            destination,
            compensation,
            signing: signing.clone(),
            transform,
        }
    }
}

struct Route {
    config: RouteConfig,
    steps: Vec<Step>,
}

impl Step {
    pub fn action(&self) -> &'static str {
        self.config.action()
    }
}

/// All routes, matched in file order. Every matching route's steps run, in order.
pub struct Router {
    routes: Vec<Route>,
    /// The keys of the `order_by` routes, read at intake.
    ordering: ordering::Ordering,
}

impl Router {
    /// The order keys of the routes, for the accept path.
    pub fn ordering(&self) -> &ordering::Ordering {
        &self.ordering
    }

    /// `smtp` is the mail server's destination, if email is configured.
    pub fn new(configs: &[RouteConfig], smtp: Option<Destination>) -> Self {
        let routes = configs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let name = r.display_name(i);
                let transform = r.transform.as_deref().map(Arc::from);
                let steps = r
                    .steps
                    .iter()
                    .enumerate()
                    .map(|(j, s)| {
                        Step::compile(
                            format!("{name}/{j}:{}", s.action()),
                            s,
                            &r.signing_secret,
                            smtp.as_ref(),
                            transform.as_ref(),
                        )
                    })
                    .collect();
                Route {
                    config: r.clone(),
                    steps,
                }
            })
            .collect();
        Self {
            routes,
            ordering: ordering::Ordering::new(configs),
        }
    }

    /// The steps for an event, in order. Empty when no route matches. `payload` is the parsed
    /// body (`Null` when it is not JSON).
    pub fn steps_for(&self, provider: &str, event_type: &str, payload: &Value) -> Vec<&Step> {
        self.routes
            .iter()
            .filter(|r| {
                glob_match(&r.config.provider, provider)
                    && r.config.events.iter().any(|g| glob_match(g, event_type))
                    && r.config.filters.iter().all(|f| f.matches(payload))
            })
            .flat_map(|r| r.steps.iter())
            .collect()
    }

    /// For each route, its provider pattern and the destinations its steps and compensations
    /// use: what pausing a provider automatically is judged on.
    pub fn provider_destinations(&self) -> Vec<(String, Vec<Destination>)> {
        self.routes
            .iter()
            .map(|r| {
                let dests: BTreeSet<Destination> = r
                    .steps
                    .iter()
                    .flat_map(|s| {
                        [
                            s.destination.clone(),
                            s.compensation.as_ref().and_then(|c| c.destination.clone()),
                        ]
                    })
                    .flatten()
                    .collect();
                (r.config.provider.clone(), dests.into_iter().collect())
            })
            .collect()
    }
}

/// `*` matches any run of characters (including none); everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for p in middle {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Why a step failed; the text is stored with the step result.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("forward to {url} timed out after {timeout_ms} ms")]
    Timeout { url: String, timeout_ms: u64 },
    #[error("forward to {url} answered HTTP {status}{}", retry_after_note(*.retry_after))]
    Status {
        url: String,
        status: u16,
        /// From a 429 or 503 answer's `Retry-After`.
        retry_after: Option<Duration>,
    },
    #[error("forward to {url} failed: {error}")]
    Transport { url: String, error: String },
    #[error("email through {server} timed out after {timeout_ms} ms")]
    SmtpTimeout { server: String, timeout_ms: u64 },
    #[error("email through {server} failed: {error}")]
    Smtp {
        server: String,
        error: String,
        /// The server could not take mail at all (connection, TLS, 4xx, authentication), as
        /// opposed to refusing this message.
        server_trouble: bool,
    },
    #[error("cannot build the email: {0}")]
    Email(String),
    #[error("{action} to {destination}: {error}")]
    Broker {
        action: &'static str,
        /// `scheme://host:port`: never the URL's credentials.
        destination: Destination,
        error: broker::BrokerError,
    },
    /// The step's transform failed: the script threw, ran out of time or memory, or returned
    /// something that cannot be sent. The event's fault, never the destination's.
    #[error(transparent)]
    Transform(TransformError),
}

fn retry_after_note(d: Option<Duration>) -> String {
    d.map(|d| format!(" (Retry-After {} s)", d.as_secs()))
        .unwrap_or_default()
}

impl ActionError {
    /// Whether the failure is the destination's (it is down, overloaded or unreachable) rather
    /// than this event's. Only these count towards the destination's circuit breaker.
    pub fn is_destination_failure(&self) -> bool {
        match self {
            Self::Timeout { .. } | Self::Transport { .. } | Self::SmtpTimeout { .. } => true,
            Self::Status { status, .. } => *status >= 500 || matches!(*status, 408 | 429),
            Self::Smtp { server_trouble, .. } => *server_trouble,
            Self::Email(_) | Self::Transform(_) => false,
            Self::Broker { error, .. } => error.destination_down(),
        }
    }

    /// The earliest time the destination asked to be tried again (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Why the actions could not be set up. Start-up stops on any of these: running without the
/// forward client's egress policy or redirect refusal would be a hole, not a fallback.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot build the forward HTTP client: {source}")]
    ForwardClient { source: reqwest::Error },
    #[error("SMTP client for {server}: TLS setup: {source}")]
    Smtp {
        server: String,
        source: lettre::transport::smtp::Error,
    },
    /// A transform script that cannot be read or compiled, or the engine that would not start.
    #[error(transparent)]
    Transform(TransformError),
}

/// How a step that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ran {
    /// Its action ran (and its destination took what it sent).
    Done,
    /// Its transform returned `null`: nothing was sent.
    Skipped,
}

/// Runs steps. Holds the shared HTTP client and the SMTP client.
#[derive(Clone)]
pub struct Actions {
    http: reqwest::Client,
    egress: Arc<EgressPolicy>,
    default_timeout: Duration,
    mailer: Option<Mailer>,
    brokers: Arc<Brokers>,
    /// The threads transforms run on; `None` when no route names a script.
    transforms: Option<Transforms>,
}

impl Actions {
    pub fn new(settings: &ActionSettings) -> Result<Self, SetupError> {
        let egress = Arc::new(settings.egress.clone());
        let http = forward::client(&settings.forward, egress.clone())
            .map_err(|source| SetupError::ForwardClient { source })?;
        let mailer = settings
            .smtp
            .as_ref()
            .map(|s| {
                Mailer::new(s).map_err(|source| SetupError::Smtp {
                    server: s.destination().to_string(),
                    source,
                })
            })
            .transpose()?;
        Ok(Self {
            http,
            brokers: Arc::new(Brokers::new(egress.clone())),
            egress,
            default_timeout: settings.forward.timeout,
            mailer,
            transforms: payload::start_transforms(settings).map_err(SetupError::Transform)?,
        })
    }

    /// The broker connections, to close on shutdown once the workers are done.
    pub fn brokers(&self) -> Arc<Brokers> {
        self.brokers.clone()
    }

    /// Longest `step` may take: its `timeout_ms`, else the default of its action.
    pub fn timeout(&self, step: &Step) -> Duration {
        match &step.config {
            StepConfig::Log { .. } => Duration::ZERO,
            StepConfig::Forward { timeout_ms, .. }
            | StepConfig::Rabbitmq { timeout_ms, .. }
            | StepConfig::Nats { timeout_ms, .. }
            | StepConfig::RedisStream { timeout_ms, .. } => timeout_ms
                .map(Duration::from_millis)
                .unwrap_or(self.default_timeout),
            StepConfig::Email { timeout_ms, .. } => timeout_ms
                .map(Duration::from_millis)
                .or(self.mailer.as_ref().map(|m| m.timeout()))
                .unwrap_or(self.default_timeout),
        }
    }

    /// Run one step for an event. `payload` is the parsed body (`Null` when it is not JSON);
    /// `headers` are the webhook request's stored headers, which only transforms read.
    pub async fn run(
        &self,
        step: &Step,
        event: &ClaimedEvent,
        payload: &Value,
        headers: &BTreeMap<String, String>,
    ) -> Result<Ran, ActionError> {
        match &step.config {
            StepConfig::Log { .. } => {
                log_event(step, event);
                Ok(Ran::Done)
            }
            StepConfig::Forward {
                url,
                headers: extra,
                ..
            } => {
                let Some(body) =
                    payload::of_step(self.transforms.as_ref(), step, event, payload, headers)
                        .await?
                else {
                    return Ok(Ran::Skipped);
                };
                // Literal addresses skip the resolver: check them here (start-up did too).
                if let Ok(u) = reqwest::Url::parse(url) {
                    self.egress
                        .check_url("forward", &u)
                        .map_err(|e| ActionError::Transport {
                            url: url.clone(),
                            error: e.to_string(),
                        })?;
                }
                // `webhook-id`: see `message_id`.
                let message_id = message_id(step, event);
                forward::forward(
                    &self.http,
                    ForwardRequest {
                        url,
                        timeout: self.timeout(step),
                        headers: extra,
                        signing: step.signing.as_ref(),
                        message_id: &message_id,
                        payload: body,
                    },
                    event,
                )
                .await
                .map(|()| Ran::Done)
            }
            StepConfig::Email {
                to,
                subject,
                body,
                from,
                timeout_ms,
                ..
            } => {
                let mailer = self.mailer.as_ref().ok_or_else(|| {
                    // Config validation refuses email steps without SMTP_URL.
                    ActionError::Email("SMTP_URL is not set".into())
                })?;
                let spec = EmailSpec {
                    to,
                    subject,
                    body,
                    from: from.as_ref(),
                    timeout_ms: *timeout_ms,
                };
                mailer
                    .send(spec, &step.key, event, payload)
                    .await
                    .map(|()| Ran::Done)
            }
            StepConfig::Rabbitmq { .. }
            | StepConfig::Nats { .. }
            | StepConfig::RedisStream { .. } => self.publish(step, event, payload, headers).await,
        }
    }
}

/// The `log` action: one structured line about the event.
fn log_event(step: &Step, event: &ClaimedEvent) {
    tracing::info!(
        event_id = %event.id,
        provider = %event.provider,
        event_type = %event.event_type,
        idempotency_key = %event.idempotency_key,
        attempt = event.attempt,
        body_bytes = event.body.len(),
        step = %step.key,
        "webhook event"
    );
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn a_forward_client_that_cannot_be_built_stops_start_up() {
        // A header value with a line break is refused by the real client builder.
        let settings = ActionSettings {
            forward: ForwardSettings {
                user_agent: "hookd\n1".into(),
                ..ForwardSettings::default()
            },
            ..ActionSettings::default()
        };
        let Err(err) = Actions::new(&settings) else {
            panic!("a client without its settings must not be built");
        };
        assert!(matches!(err, SetupError::ForwardClient { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("cannot build the forward HTTP client"),
            "{err}"
        );
        assert!(std::error::Error::source(&err).is_some());
        Actions::new(&ActionSettings::default()).expect("the default settings build");
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("payment_intent.*", "payment_intent.succeeded"));
        assert!(!glob_match("payment_intent.*", "charge.succeeded"));
        assert!(glob_match("push", "push"));
        assert!(!glob_match("push", "pushed"));
        assert!(glob_match("*.succeeded", "charge.succeeded"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(!glob_match("ab*ba", "aba"));
    }

    #[test]
    fn every_matching_route_contributes_its_steps_in_order() {
        let routes: Vec<RouteConfig> = toml::from_str::<BTreeMap<String, Vec<RouteConfig>>>(
            r#"
            routes = [
              { name = "pay", provider = "stripe", events = ["payment_intent.*"], steps = [{ action = "log" }, { action = "forward", url = "http://127.0.0.1:1/x" }] },
              { provider = "*", steps = [{ action = "log" }] },
              { provider = "github", steps = [{ action = "log" }] },
            ]"#,
        )
        .unwrap()
        .remove("routes")
        .unwrap();
        let router = Router::new(&routes, None);
        let keys: Vec<_> = router
            .steps_for("stripe", "payment_intent.succeeded", &Value::Null)
            .iter()
            .map(|s| s.key.clone())
            .collect();
        assert_eq!(keys, ["pay/0:log", "pay/1:forward", "route1/0:log"]);
        assert_eq!(
            router
                .steps_for("stripe", "charge.refunded", &Value::Null)
                .len(),
            1
        );
        assert_eq!(router.steps_for("github", "push", &Value::Null).len(), 2);
    }

    fn routes(toml_text: &str) -> Vec<RouteConfig> {
        toml::from_str::<BTreeMap<String, Vec<RouteConfig>>>(toml_text)
            .unwrap()
            .remove("routes")
            .unwrap()
    }

    #[test]
    fn filters_compensations_and_destinations() {
        let routes = routes(
            r#"
            [[routes]]
            name = "usd"
            provider = "stripe"
            filters = [{ pointer = "/data/object/currency", equals = "usd" }]
            steps = [
              { action = "forward", url = "https://ledger.example.com/in", compensate = { action = "forward", url = "https://ledger.example.com/undo" } },
              { action = "log", compensate = { action = "forward", url = "http://127.0.0.1:9000/x" } },
            ]
            [[routes]]
            provider = "*"
            steps = [{ action = "forward", url = "http://other:8080/in" }]
            "#,
        );
        for r in &routes {
            r.validate(None).unwrap();
        }
        let router = Router::new(&routes, None);
        let usd = serde_json::json!({"data": {"object": {"currency": "usd"}}});
        let steps = router.steps_for("stripe", "charge.succeeded", &usd);
        let keys: Vec<_> = steps.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys, ["usd/0:forward", "usd/1:log", "route1/0:forward"]);
        let comp = steps[0].compensation.as_ref().unwrap();
        assert_eq!(comp.key, "usd/0:compensate:forward");
        assert_eq!(
            comp.destination.as_ref().unwrap().to_string(),
            "https://ledger.example.com:443"
        );
        assert_eq!(
            steps[1].compensation.as_ref().unwrap().key,
            "usd/1:compensate:forward"
        );
        assert!(steps[1].destination.is_none());
        let eur = serde_json::json!({"data": {"object": {"currency": "eur"}}});
        assert_eq!(
            router.steps_for("stripe", "charge.succeeded", &eur).len(),
            1
        );
        assert_eq!(router.steps_for("stripe", "x", &Value::Null).len(), 1);
        let dests: Vec<(String, Vec<String>)> = router
            .provider_destinations()
            .into_iter()
            .map(|(p, d)| (p, d.iter().map(|d| d.to_string()).collect()))
            .collect();
        assert_eq!(
            dests,
            [
                (
                    "stripe".to_owned(),
                    vec![
                        "http://127.0.0.1:9000".to_owned(),
                        "https://ledger.example.com:443".to_owned()
                    ]
                ),
                ("*".to_owned(), vec!["http://other:8080".to_owned()]),
            ]
        );
    }

    #[test]
    fn destination_failures_are_told_apart_from_refusals() {
        let status = |status| ActionError::Status {
            url: "u".into(),
            status,
            retry_after: None,
        };
        assert!(status(503).is_destination_failure());
        assert!(status(429).is_destination_failure());
        assert!(!status(400).is_destination_failure());
        assert!(!status(422).is_destination_failure());
        assert!(
            ActionError::Transport {
                url: "u".into(),
                error: "refused".into()
            }
            .is_destination_failure()
        );
        let refused = ActionError::Smtp {
            server: "s".into(),
            error: "550".into(),
            server_trouble: false,
        };
        assert!(!refused.is_destination_failure());
        let e = ActionError::Status {
            url: "http://x/in".into(),
            status: 429,
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(
            e.to_string(),
            "forward to http://x/in answered HTTP 429 (Retry-After 7 s)"
        );
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    }
}

//! Settings of the processing side's actions: the routes and their steps (`[[routes]]`), the
//! forward client, the mail server, destination breakers and limits, and the egress policy.
//!
//! Owns their defaults and the checks that span several of them (an email step needs
//! `SMTP_URL`, every forward URL must pass the egress policy), so a mistake stops start-up with
//! the route and the setting to change. It must never read the environment or a file: the
//! configuration reader fills these types and hands them over.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::breaker::BreakerPolicy;
use super::egress::{EgressError, EgressPolicy};
use super::email::{Recipient, SmtpSettings};
use super::filter::Filter;
use super::forward::SigningKeys;
use super::template::Template;

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
            for url in route.forward_urls() {
                let parsed = reqwest::Url::parse(url).map_err(|source| {
                    invalid(RouteError::ForwardUrl {
                        url: url.to_owned(),
                        source,
                    })
                })?;
                self.egress
                    .check_url(&parsed)
                    .map_err(|e| invalid(RouteError::Egress(e)))?;
            }
        }
        Ok(())
    }
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
}

impl StepConfig {
    /// The action's name, as in the config file.
    pub fn action(&self) -> &'static str {
        match self {
            Self::Log { .. } => "log",
            Self::Forward { .. } => "forward",
            Self::Email { .. } => "email",
        }
    }

    pub(super) fn compensate(&self) -> Option<&StepConfig> {
        match self {
            Self::Log { compensate }
            | Self::Forward { compensate, .. }
            | Self::Email { compensate, .. } => compensate.as_deref(),
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
        }
        Ok(())
    }
}

impl RouteConfig {
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

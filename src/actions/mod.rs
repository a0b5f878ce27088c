//! Routes and actions: which steps an event gets, and running one step.
//!
//! Owns route matching (provider and event-type globs) and the side effects of each action
//! (a log line, an HTTP forward). It must never touch the store or decide about retries:
//! it reports one step's result and the worker decides what happens next.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use tracing::Instrument;

use crate::event::ClaimedEvent;
use crate::telemetry::trace;

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
    pub steps: Vec<StepConfig>,
}

fn star() -> String {
    "*".to_owned()
}
fn stars() -> Vec<String> {
    vec![star()]
}

/// One step of a route.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum StepConfig {
    /// Write one structured log line about the event.
    Log,
    /// POST the raw body to `url`; any non-2xx answer or a timeout is a failure.
    Forward {
        url: String,
        timeout_ms: Option<u64>,
        #[serde(default)]
        headers: BTreeMap<String, String>,
    },
}

impl StepConfig {
    /// The action's name, as in the config file.
    pub fn action(&self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::Forward { .. } => "forward",
        }
    }
}

impl RouteConfig {
    pub fn display_name(&self, index: usize) -> String {
        self.name.clone().unwrap_or_else(|| format!("route{index}"))
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.steps.is_empty() {
            return Err("has no steps".into());
        }
        for step in &self.steps {
            if let StepConfig::Forward { url, headers, .. } = step {
                let parsed = reqwest::Url::parse(url)
                    .map_err(|e| format!("forward url {url:?} is invalid: {e}"))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(format!("forward url {url:?} must be http or https"));
                }
                for (k, v) in headers {
                    reqwest::header::HeaderName::from_bytes(k.as_bytes())
                        .map_err(|_| format!("forward header name {k:?} is invalid"))?;
                    reqwest::header::HeaderValue::from_str(v)
                        .map_err(|_| format!("forward header {k:?} has an invalid value"))?;
                }
            }
        }
        Ok(())
    }
}

/// A step ready to run, with the stable key its results are recorded under.
#[derive(Debug, Clone)]
pub struct Step {
    /// `<route name>/<index>:<action>`: stays the same across retries, so a step that already
    /// succeeded is recognised and skipped.
    pub key: String,
    pub config: StepConfig,
}

impl Step {
    pub fn action(&self) -> &'static str {
        self.config.action()
    }
}

/// All routes, matched in file order. Every matching route's steps run, in order.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<(RouteConfig, Vec<Step>)>,
}

impl Router {
    pub fn new(routes: &[RouteConfig]) -> Self {
        let routes = routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let name = r.display_name(i);
                let steps = r
                    .steps
                    .iter()
                    .enumerate()
                    .map(|(j, s)| Step {
                        key: format!("{name}/{j}:{}", s.action()),
                        config: s.clone(),
                    })
                    .collect();
                (r.clone(), steps)
            })
            .collect();
        Self { routes }
    }

    /// The steps for an event, in order. Empty when no route matches.
    pub fn steps_for(&self, provider: &str, event_type: &str) -> Vec<&Step> {
        self.routes
            .iter()
            .filter(|(r, _)| {
                glob_match(&r.provider, provider)
                    && r.events.iter().any(|g| glob_match(g, event_type))
            })
            .flat_map(|(_, steps)| steps.iter())
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
    #[error("forward to {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("forward to {url} failed: {error}")]
    Transport { url: String, error: String },
}

/// Runs steps. Holds the shared HTTP client.
#[derive(Clone)]
pub struct Actions {
    http: reqwest::Client,
    default_timeout: Duration,
}

impl Actions {
    pub fn new(default_timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            // A redirect could send the event somewhere the route never named.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("hookd/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self {
            http,
            default_timeout,
        }
    }

    /// Run one step for an event.
    pub async fn run(&self, step: &Step, event: &ClaimedEvent) -> Result<(), ActionError> {
        match &step.config {
            StepConfig::Log => {
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
                Ok(())
            }
            StepConfig::Forward {
                url,
                timeout_ms,
                headers,
            } => {
                let timeout = timeout_ms
                    .map(Duration::from_millis)
                    .unwrap_or(self.default_timeout);
                self.forward(url, timeout, headers, event).await
            }
        }
    }

    async fn forward(
        &self,
        url: &str,
        timeout: Duration,
        headers: &BTreeMap<String, String>,
        event: &ClaimedEvent,
    ) -> Result<(), ActionError> {
        let span = tracing::info_span!(
            "forward",
            otel.name = "POST",
            otel.kind = "client",
            http.request.method = "POST",
            url.full = %url,
            http.response.status_code = tracing::field::Empty,
        );
        let mut req = self
            .http
            .post(url)
            .timeout(timeout)
            .header(
                "content-type",
                event
                    .content_type
                    .as_deref()
                    .unwrap_or("application/octet-stream"),
            )
            .header("x-hookd-event-id", event.id.to_string())
            .header("x-hookd-provider", &event.provider)
            .header("x-hookd-event-type", &event.event_type)
            .header("x-hookd-attempt", event.attempt.to_string());
        for (k, v) in headers {
            req = req.header(k, v);
        }
        // The receiving service joins the event's trace as a child of this client span.
        if let Some(tp) = trace::traceparent(&span) {
            req = req.header("traceparent", tp);
        }
        let resp = req
            .body(event.body.clone())
            .send()
            .instrument(span.clone())
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    ActionError::Timeout {
                        url: url.to_owned(),
                        timeout_ms: timeout.as_millis() as u64,
                    }
                } else {
                    ActionError::Transport {
                        url: url.to_owned(),
                        error: error_chain(&e),
                    }
                }
            })?;
        let status = resp.status();
        span.record("http.response.status_code", status.as_u16());
        if status.is_success() {
            Ok(())
        } else {
            Err(ActionError::Status {
                url: url.to_owned(),
                status: status.as_u16(),
            })
        }
    }
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
    use super::*;

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
        let router = Router::new(&routes);
        let keys: Vec<_> = router
            .steps_for("stripe", "payment_intent.succeeded")
            .iter()
            .map(|s| s.key.clone())
            .collect();
        assert_eq!(keys, ["pay/0:log", "pay/1:forward", "route1/0:log"]);
        assert_eq!(router.steps_for("stripe", "charge.refunded").len(), 1);
        assert_eq!(router.steps_for("github", "push").len(), 2);
    }
}

//! The stored configuration document: providers (scheme, settings, encrypted secrets), routes
//! (each its validated JSON, kept as given so fields added to routes later flow through) and
//! named destinations. One document per version (see `store::config`).
//!
//! Owns the document's shape and how a route's reference to a named destination is resolved.
//! It must never hold a plaintext secret.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The whole stored configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    #[serde(default)]
    pub providers: BTreeMap<String, StoredProvider>,
    /// In match order, after the routes of the file.
    #[serde(default)]
    pub routes: Vec<StoredRoute>,
    #[serde(default)]
    pub destinations: BTreeMap<String, StoredDestination>,
}

/// A provider: its scheme, the fields of its `[providers.<name>]` section but the secret, and
/// its secrets, encrypted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredProvider {
    pub scheme: String,
    #[serde(default)]
    pub settings: BTreeMap<String, Value>,
    #[serde(default)]
    pub secrets: Vec<StoredSecret>,
    /// JSON Schemas its payloads must match, as the file's `[[schemas]]` entries for it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schemas: Vec<StoredSchema>,
}

/// A JSON Schema a provider's payloads of some event types must match: a `[[schemas]]` entry
/// with the schema itself instead of the path of its file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StoredSchema {
    /// Globs on the event type (default `["*"]`).
    #[serde(default = "every_event")]
    pub events: Vec<String>,
    /// The JSON Schema (remote `$ref`s are never fetched).
    #[schema(value_type = Object)]
    pub schema: Value,
}

fn every_event() -> Vec<String> {
    vec!["*".to_owned()]
}

/// One encrypted secret of a provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredSecret {
    /// Names the secret in answers and in its encryption's additional data.
    pub id: String,
    /// The key it is encrypted under (`HOOKD_SECRET_KEY`'s id).
    pub kid: String,
    pub ciphertext: String,
    pub added_at: DateTime<Utc>,
    /// It stops verifying at this time (a rotation's overlap ends).
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// The section field it fills when it is not the scheme's main secret (Twilio's
    /// `shared_key_secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl StoredSecret {
    /// What its encryption is bound to.
    pub fn place(&self, provider: &str) -> String {
        format!("{provider}/{}", self.id)
    }

    /// Whether it still verifies at `now`.
    pub fn live_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }
}

/// A route: its name and its document (`provider`, `events`, `filters`, `steps`, ... as in a
/// `[[routes]]` entry, without `name`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredRoute {
    pub name: String,
    pub route: Value,
}

/// A named destination: where forward steps that name it post, with the headers and timeout
/// they share. A step names it with `destination = "<name>"` instead of a `url`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StoredDestination {
    pub url: String,
    /// Headers of every forward to it; a step's own headers win.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// A step's own `timeout_ms` wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// A route's document with every step's `destination` replaced by what it names; the error
/// names the step's field.
pub fn resolve_destinations(
    route: &Value,
    destinations: &BTreeMap<String, StoredDestination>,
) -> Result<Value, (String, String)> {
    let mut route = route.clone();
    let Some(steps) = route.get_mut("steps").and_then(Value::as_array_mut) else {
        return Ok(route);
    };
    for (i, step) in steps.iter_mut().enumerate() {
        resolve_step(step, destinations, &format!("steps[{i}]"))?;
        if let Some(c) = step.get_mut("compensate") {
            resolve_step(c, destinations, &format!("steps[{i}].compensate"))?;
        }
    }
    Ok(route)
}

fn resolve_step(
    step: &mut Value,
    destinations: &BTreeMap<String, StoredDestination>,
    at: &str,
) -> Result<(), (String, String)> {
    let Some(obj) = step.as_object_mut() else {
        return Ok(());
    };
    let Some(named) = obj.remove("destination") else {
        return Ok(());
    };
    let field = format!("{at}.destination");
    let Some(name) = named.as_str() else {
        return Err((field, "expected the name of a destination".into()));
    };
    let Some(dest) = destinations.get(name) else {
        return Err((field, format!("there is no destination named {name:?}")));
    };
    if obj.get("action").and_then(Value::as_str) != Some("forward") {
        return Err((field, "only a forward step names a destination".into()));
    }
    if obj.contains_key("url") {
        return Err((
            field,
            "a step names a destination or a url, not both".into(),
        ));
    }
    obj.insert("url".into(), dest.url.clone().into());
    if let Some(t) = dest.timeout_ms {
        obj.entry("timeout_ms").or_insert(t.into());
    }
    if !dest.headers.is_empty() {
        let mut headers = dest.headers.clone();
        if let Some(own) = obj.get("headers").and_then(Value::as_object) {
            for (k, v) in own {
                headers.insert(k.clone(), v.as_str().unwrap_or_default().to_owned());
            }
        }
        obj.insert(
            "headers".into(),
            serde_json::to_value(headers).unwrap_or_default(),
        );
    }
    Ok(())
}

/// Whether a route's document names `destination`.
pub fn names_destination(route: &Value, destination: &str) -> bool {
    let named = |s: &Value| s.get("destination").and_then(Value::as_str) == Some(destination);
    route
        .get("steps")
        .and_then(Value::as_array)
        .is_some_and(|steps| {
            steps
                .iter()
                .any(|s| named(s) || s.get("compensate").is_some_and(named))
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn dests() -> BTreeMap<String, StoredDestination> {
        let d = StoredDestination {
            url: "https://billing.example/hook".into(),
            headers: [("x-team".to_owned(), "billing".to_owned())].into(),
            timeout_ms: Some(2000),
        };
        [("billing".to_owned(), d)].into()
    }

    #[test]
    fn a_named_destination_becomes_the_steps_url_headers_and_timeout() {
        let route = json!({"steps": [{"action": "forward", "destination": "billing",
            "headers": {"x-own": "1"}, "timeout_ms": 500}]});
        let out = resolve_destinations(&route, &dests()).unwrap();
        assert_eq!(
            out["steps"][0],
            json!({"action": "forward", "url": "https://billing.example/hook",
                "headers": {"x-own": "1", "x-team": "billing"}, "timeout_ms": 500})
        );
        assert!(names_destination(&route, "billing"));
        assert!(!names_destination(&route, "other"));
    }

    #[test]
    fn a_wrong_reference_names_the_field() {
        let unknown = json!({"steps": [{"action": "log"},
            {"action": "forward", "destination": "nope"}]});
        let (field, message) = resolve_destinations(&unknown, &dests()).unwrap_err();
        assert_eq!(field, "steps[1].destination");
        assert!(message.contains("\"nope\""), "{message}");
        let both = json!({"steps": [{"action": "forward", "destination": "billing",
            "url": "https://x.example"}]});
        assert!(
            resolve_destinations(&both, &dests())
                .unwrap_err()
                .1
                .contains("not both")
        );
        let email = json!({"steps": [{"action": "email", "destination": "billing"}]});
        assert!(resolve_destinations(&email, &dests()).is_err());
    }
}

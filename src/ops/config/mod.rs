//! Configuration as data: reading and changing the providers, routes and named destinations
//! stored in the database (the live configuration, `live`), for the admin API, the console and
//! the CLI.
//!
//! Owns the rules of a change: what the start-up file and the environment define is read-only
//! here (409, "managed by file"); every change is checked exactly as the file would be (same
//! messages), written as one new version, and described for the audit log with its before and
//! after, secrets left out. A secret is in an answer once, when hookd generated it, and never
//! again. It must never write a plaintext secret anywhere but into its encryption.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

mod file;
mod providers;
mod test_event;

pub use file::{ApplyQuery, ApplyResult, ConfigFile, FileProvider};

use super::{Ops, OpsError, Principal};
use crate::live::{
    ConfigProblem, Document, LiveError, StoredDestination, StoredProvider, StoredRoute,
    StoredSchema, StoredSecret,
};

/// Changes retried when another change takes the version first.
const ATTEMPTS: usize = 5;

/// Who defines an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ManagedBy {
    /// The start-up file or the environment: read-only through the API.
    File,
    /// The admin API (stored in the database).
    Api,
}

/// A provider's secret, as answers show it: never its value.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SecretInfo {
    pub id: String,
    /// The `HOOKD_SECRET_KEY` key id it is encrypted under.
    pub kid: String,
    pub added_at: DateTime<Utc>,
    /// It stops verifying at this time.
    pub expires_at: Option<DateTime<Utc>>,
    /// The section field it fills when it is not the scheme's main secret (Twilio's
    /// `shared_key_secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// One provider of the configuration.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProviderEntry {
    pub name: String,
    pub managed_by: ManagedBy,
    pub scheme: String,
    /// The fields of its `[providers.<name>]` section but its secret (API-managed only).
    #[schema(value_type = Object)]
    pub settings: Map<String, Value>,
    /// Its secrets, without their values (API-managed only).
    pub secrets: Vec<SecretInfo>,
    /// JSON Schemas its payloads must match (API-managed only; the file's `[[schemas]]` are not
    /// shown).
    #[serde(default)]
    pub schemas: Vec<StoredSchema>,
}

/// One route of the configuration, in match order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RouteEntry {
    pub name: String,
    pub managed_by: ManagedBy,
    /// Its document as written (API-managed only).
    #[schema(value_type = Option<Object>)]
    pub route: Option<Value>,
}

/// One named destination.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DestinationEntry {
    pub name: String,
    pub destination: StoredDestination,
}

/// The whole configuration: what the file defines and what the API stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConfigView {
    /// The stored version this process runs (0: nothing stored yet).
    pub version: i64,
    pub providers: Vec<ProviderEntry>,
    pub routes: Vec<RouteEntry>,
    pub destinations: Vec<DestinationEntry>,
}

/// Create or replace a provider.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderRequest {
    /// One of the schemes of the README's provider table (`stripe`, `hmac`, ...).
    pub scheme: String,
    /// The fields of a `[providers.<name>]` section but the secret (`tolerance_secs`, the
    /// `hmac` scheme's description, ...), with the same meaning and checks.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub settings: Map<String, Value>,
    /// Its first secret, when creating it (PayPal: its webhook id). Without one, hookd makes a
    /// random one and answers it, once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// JSON Schemas its payloads must match, per event type (as the file's `[[schemas]]`),
    /// replacing the stored ones (`[]` removes them); without it, the stored ones stay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schemas: Option<Vec<StoredSchema>>,
}

/// Add a secret to a provider, for a rotation with overlap.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRequest {
    /// The new secret; without one, hookd makes a random one and answers it, once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The secrets it already has stop verifying at this time (now or in the past: at once).
    /// Without it they keep verifying until removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_expire_at: Option<DateTime<Utc>>,
    /// Another secret field of the provider's scheme this secret fills (Twilio:
    /// `shared_key_secret`, a Webhook Setting's shared key); without it, its main secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// A provider written, and the secret hookd generated, if it did: shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProviderWritten {
    pub version: i64,
    pub provider: ProviderEntry,
    /// The id of the secret added, if one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_id: Option<String>,
    /// The secret hookd generated: shown only in this answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// A route or destination written or deleted.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Written {
    pub version: i64,
}

/// A change as the audit log records it: the version, and the entry before and after (no
/// secret values).
pub struct Change<T> {
    pub answer: T,
    pub audit: String,
}

impl From<LiveError> for OpsError {
    fn from(e: LiveError) -> Self {
        match e {
            LiveError::Store(s) => Self::Store(s),
            other => Self::Store(crate::store::StoreError::other(other.to_string())),
        }
    }
}

impl From<ConfigProblem> for OpsError {
    fn from(e: ConfigProblem) -> Self {
        match e {
            ConfigProblem::Field { field, message } => Self::InvalidConfig { field, message },
            // This process cannot read what is stored (its HOOKD_SECRET_KEY differs): the
            // change would not apply here either.
            other => Self::Conflict {
                code: "secret_key_mismatch",
                message: other.to_string(),
            },
        }
    }
}

fn managed(what: &str, name: &str) -> OpsError {
    OpsError::Conflict {
        code: "managed_by_file",
        message: format!(
            "{what} {name:?} is managed by file (the start-up configuration file or the \
             environment): change it there, or choose another name"
        ),
    }
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> OpsError {
    OpsError::InvalidConfig {
        field: field.into(),
        message: message.into(),
    }
}

/// A route or destination name: 1 to 64 letters, digits, '-', '_' or '.'.
fn check_name(kind: &str, name: &str) -> Result<(), OpsError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "name",
            format!("a {kind} name is 1 to 64 letters, digits, '-', '_' or '.'"),
        ))
    }
}

/// A destination's URL and headers, with the messages a forward step's get.
fn check_destination(name: &str, dest: &StoredDestination) -> Result<(), OpsError> {
    let url = &dest.url;
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        invalid(
            "url",
            format!("destination {name}: url {url:?} is invalid: {e}"),
        )
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(
            "url",
            format!("destination {name}: url {url:?} must be http or https"),
        ));
    }
    for (k, v) in &dest.headers {
        let valid = reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_ok()
            && reqwest::header::HeaderValue::from_str(v).is_ok();
        if !valid {
            return Err(invalid(
                format!("headers.{k}"),
                format!("destination {name}: header {k:?} has an invalid name or value"),
            ));
        }
    }
    Ok(())
}

fn secret_info(s: &StoredSecret) -> SecretInfo {
    SecretInfo {
        id: s.id.clone(),
        kid: s.kid.clone(),
        added_at: s.added_at,
        expires_at: s.expires_at,
        field: s.field.clone(),
    }
}

fn stored_entry(name: &str, p: &StoredProvider) -> ProviderEntry {
    ProviderEntry {
        name: name.to_owned(),
        managed_by: ManagedBy::Api,
        scheme: p.scheme.clone(),
        settings: p.settings.clone().into_iter().collect(),
        secrets: p.secrets.iter().map(secret_info).collect(),
        schemas: p.schemas.clone(),
    }
}

/// The audit detail of a change: version, before and after.
fn audit(version: i64, before: Option<Value>, after: Option<Value>) -> String {
    json!({ "version": version, "before": before, "after": after }).to_string()
}

impl Ops {
    /// The whole configuration: the file's entries (read-only) and the stored ones.
    pub fn config(&self) -> ConfigView {
        let base = self.live.base();
        let (version, doc) = self.live.applied();
        let mut providers: Vec<ProviderEntry> = base
            .providers
            .iter()
            .filter_map(|p| {
                p.verifier.as_ref().map(|v| ProviderEntry {
                    name: p.name.clone(),
                    managed_by: ManagedBy::File,
                    scheme: v.scheme().to_owned(),
                    settings: Map::new(),
                    secrets: Vec::new(),
                    schemas: Vec::new(),
                })
            })
            .collect();
        providers.extend(
            doc.providers
                .iter()
                .filter(|(n, _)| !base.manages_provider(n))
                .map(|(n, p)| stored_entry(n, p)),
        );
        providers.sort_by(|a, b| a.name.cmp(&b.name));
        let mut routes: Vec<RouteEntry> = base
            .actions
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| RouteEntry {
                name: r.display_name(i),
                managed_by: ManagedBy::File,
                route: None,
            })
            .collect();
        routes.extend(doc.routes.iter().map(|r| RouteEntry {
            name: r.name.clone(),
            managed_by: ManagedBy::Api,
            route: Some(r.route.clone()),
        }));
        ConfigView {
            version,
            providers,
            routes,
            destinations: doc
                .destinations
                .iter()
                .map(|(n, d)| DestinationEntry {
                    name: n.clone(),
                    destination: d.clone(),
                })
                .collect(),
        }
    }

    /// One provider of the configuration.
    pub fn config_provider(&self, name: &str) -> Result<ProviderEntry, OpsError> {
        self.config()
            .providers
            .into_iter()
            .find(|p| p.name == name)
            .ok_or(OpsError::NotFound)
    }

    /// Write one change: `f` edits the newest stored document (again if another change took
    /// its version first); the result is checked as the file would be, stored as the next
    /// version and applied here at once.
    async fn change<R>(
        &self,
        who: &Principal,
        summary: &str,
        mut f: impl FnMut(&mut Document) -> Result<R, OpsError>,
    ) -> Result<(R, i64), OpsError> {
        for _ in 0..ATTEMPTS {
            let (version, mut doc) = self.live.latest().await?;
            let r = f(&mut doc)?;
            let now = Utc::now();
            for p in doc.providers.values_mut() {
                p.secrets.retain(|s| s.live_at(now));
            }
            self.live.check(&doc)?;
            if self
                .live
                .write(version + 1, &doc, &who.actor(), summary)
                .await?
            {
                return Ok((r, version + 1));
            }
        }
        Err(OpsError::Conflict {
            code: "config_busy",
            message: "the configuration kept changing while this change was made; retry".into(),
        })
    }

    /// Create route `name` (matched after every existing one) or replace it in its place.
    pub async fn put_route(
        &self,
        who: &Principal,
        name: &str,
        route: &Value,
    ) -> Result<Change<Written>, OpsError> {
        check_name("route", name)?;
        if self.live.base().manages_route(name) {
            return Err(managed("route", name));
        }
        let mut route = route.clone();
        match route.as_object_mut() {
            Some(obj) => {
                if obj.remove("name").is_some_and(|n| n != name) {
                    return Err(invalid("name", "the route's name is the one in the path"));
                }
            }
            None => return Err(invalid("route", "expected a JSON object")),
        }
        let (before, version) = self
            .change(who, &format!("route {name} written"), |doc| {
                let stored = StoredRoute {
                    name: name.to_owned(),
                    route: route.clone(),
                };
                match doc.routes.iter_mut().find(|r| r.name == name) {
                    Some(r) => Ok(Some(std::mem::replace(r, stored).route)),
                    None => {
                        doc.routes.push(stored);
                        Ok(None)
                    }
                }
            })
            .await?;
        Ok(Change {
            audit: audit(version, before, Some(route)),
            answer: Written { version },
        })
    }

    /// Delete route `name`.
    pub async fn delete_route(
        &self,
        who: &Principal,
        name: &str,
    ) -> Result<Change<Written>, OpsError> {
        if self.live.base().manages_route(name) {
            return Err(managed("route", name));
        }
        let (before, version) = self
            .change(who, &format!("route {name} deleted"), |doc| {
                let i = doc
                    .routes
                    .iter()
                    .position(|r| r.name == name)
                    .ok_or(OpsError::NotFound)?;
                Ok(doc.routes.remove(i).route)
            })
            .await?;
        Ok(Change {
            audit: audit(version, Some(before), None),
            answer: Written { version },
        })
    }

    /// Create or replace destination `name`; every route naming it follows.
    pub async fn put_destination(
        &self,
        who: &Principal,
        name: &str,
        dest: &StoredDestination,
    ) -> Result<Change<Written>, OpsError> {
        check_name("destination", name)?;
        check_destination(name, dest)?;
        let (before, version) = self
            .change(who, &format!("destination {name} written"), |doc| {
                Ok(doc.destinations.insert(name.to_owned(), dest.clone()))
            })
            .await?;
        Ok(Change {
            audit: audit(version, before.as_ref().map(to_json), Some(to_json(dest))),
            answer: Written { version },
        })
    }

    /// Delete destination `name`; refused while a route names it.
    pub async fn delete_destination(
        &self,
        who: &Principal,
        name: &str,
    ) -> Result<Change<Written>, OpsError> {
        let (before, version) = self
            .change(who, &format!("destination {name} deleted"), |doc| {
                if let Some(r) = doc
                    .routes
                    .iter()
                    .find(|r| crate::live::document::names_destination(&r.route, name))
                {
                    return Err(OpsError::Conflict {
                        code: "destination_in_use",
                        message: format!("route {:?} sends to destination {name:?}", r.name),
                    });
                }
                doc.destinations.remove(name).ok_or(OpsError::NotFound)
            })
            .await?;
        Ok(Change {
            audit: audit(version, Some(to_json(&before)), None),
            answer: Written { version },
        })
    }
}

fn to_json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

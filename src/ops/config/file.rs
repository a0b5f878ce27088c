//! Configuration as code: the stored configuration exported as a file's worth of entries
//! (secrets referenced by the variable that holds them, never written out), and such a file
//! applied: the difference shown, then written as one version (all of it or nothing), or only
//! shown with a dry run.
//!
//! It must never put a secret into an export, and never apply part of a file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::{invalid, managed};
use crate::live::keys::Sealed;
use crate::live::{
    Document, StoredDestination, StoredProvider, StoredRoute, StoredSchema, StoredSecret,
};
use crate::ops::{Ops, OpsError, Principal};
use crate::verify::{env_prefix, registry};

/// The stored configuration as a file holds it (`hookd config export` writes it as TOML,
/// `hookd config apply` reads it back).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub providers: BTreeMap<String, FileProvider>,
    /// Each a `[[routes]]` entry with its `name`, in match order.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub routes: Vec<Map<String, Value>>,
    #[serde(default)]
    pub destinations: BTreeMap<String, StoredDestination>,
}

/// A provider as a file holds it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FileProvider {
    pub scheme: String,
    /// The fields of its section but the secret.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub settings: Map<String, Value>,
    /// The variable that holds its secret when the file is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// Its secret, when applying (read from `secret_env` by the CLI); never in an export.
    /// Without it, the stored secrets are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// JSON Schemas its payloads must match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schemas: Vec<StoredSchema>,
}

/// What applying a file changes (or would change).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApplyResult {
    /// The version now current (the new one when applied).
    pub version: i64,
    /// Whether it was written (false for a dry run, or when nothing changes).
    pub applied: bool,
    /// One line per entry: `+ provider acme`, `~ route bill`, `- destination old`.
    pub changes: Vec<String>,
}

/// Whether to apply or only show.
#[derive(Debug, Clone, Copy, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ApplyQuery {
    /// Show the difference, change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// The lines of a difference between two maps of entries.
fn diff_map<T: PartialEq>(
    kind: &str,
    old: &BTreeMap<String, T>,
    new: &BTreeMap<String, T>,
    out: &mut Vec<String>,
) {
    for (name, v) in new {
        match old.get(name) {
            None => out.push(format!("+ {kind} {name}")),
            Some(o) if o != v => out.push(format!("~ {kind} {name}")),
            Some(_) => {}
        }
    }
    out.extend(
        old.keys()
            .filter(|n| !new.contains_key(*n))
            .map(|n| format!("- {kind} {n}")),
    );
}

/// What applying `new` over `old` changes.
pub fn diff(old: &Document, new: &Document) -> Vec<String> {
    let mut out = Vec::new();
    diff_map("provider", &old.providers, &new.providers, &mut out);
    let routes = |d: &Document| -> BTreeMap<String, Value> {
        d.routes
            .iter()
            .map(|r| (r.name.clone(), r.route.clone()))
            .collect()
    };
    diff_map("route", &routes(old), &routes(new), &mut out);
    let names = |d: &Document| d.routes.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
    let (old_names, new_names): (Vec<_>, Vec<_>) = (names(old), names(new));
    let kept_old: Vec<_> = old_names.iter().filter(|n| new_names.contains(n)).collect();
    let kept_new: Vec<_> = new_names.iter().filter(|n| old_names.contains(n)).collect();
    if kept_old != kept_new {
        out.push("~ route order".to_owned());
    }
    diff_map(
        "destination",
        &old.destinations,
        &new.destinations,
        &mut out,
    );
    out
}

impl Ops {
    /// The stored configuration as a file (`hookd config export`): no secret, each provider's
    /// `secret_env` naming the variable `apply` reads it from.
    pub fn export(&self) -> ConfigFile {
        let (_, doc) = self.live.applied();
        ConfigFile {
            providers: doc
                .providers
                .iter()
                .map(|(name, p)| {
                    let var = registry::scheme(&p.scheme).map_or("WEBHOOK_SECRET", |s| s.secret.0);
                    let provider = FileProvider {
                        scheme: p.scheme.clone(),
                        settings: p.settings.clone().into_iter().collect(),
                        secret_env: Some(format!("{}_{var}", env_prefix(name))),
                        secret: None,
                        schemas: p.schemas.clone(),
                    };
                    (name.clone(), provider)
                })
                .collect(),
            routes: doc
                .routes
                .iter()
                .map(|r| {
                    let mut route = Map::new();
                    route.insert("name".into(), r.name.clone().into());
                    if let Some(obj) = r.route.as_object() {
                        route.extend(obj.clone());
                    }
                    route
                })
                .collect(),
            destinations: doc.destinations.clone(),
        }
    }

    /// Apply `file` (`hookd config apply`): it becomes the whole stored configuration, in one
    /// version, after the same checks as every change; with `dry_run`, only the difference.
    pub async fn apply(
        &self,
        who: &Principal,
        file: &ConfigFile,
        dry_run: bool,
    ) -> Result<ApplyResult, OpsError> {
        let (version, old) = self.live.latest().await?;
        let new = self.desired(&old, file)?;
        let changes = diff(&old, &new);
        self.live.check(&new)?;
        if dry_run || changes.is_empty() {
            return Ok(ApplyResult {
                version,
                applied: false,
                changes,
            });
        }
        let summary = format!("configuration applied: {}", changes.join(", "));
        if !self
            .live
            .write(version + 1, &new, &who.actor(), &summary)
            .await?
        {
            return Err(OpsError::Conflict {
                code: "config_busy",
                message: "the configuration changed while the file was applied; apply it again"
                    .into(),
            });
        }
        Ok(ApplyResult {
            version: version + 1,
            applied: true,
            changes,
        })
    }

    /// The document `file` describes: secrets it gives replace the stored ones (unless equal to
    /// one of them), secrets it does not give are kept.
    fn desired(&self, old: &Document, file: &ConfigFile) -> Result<Document, OpsError> {
        let base = self.live.base();
        let mut doc = Document::default();
        for (name, p) in &file.providers {
            if base.manages_provider(name) {
                return Err(managed("provider", name));
            }
            super::providers::no_secret_in_settings(name, &p.scheme, &p.settings)?;
            let kept = old.providers.get(name).map(|o| o.secrets.clone());
            let secrets = match (&p.secret, kept) {
                (Some(s), kept) => {
                    // The file gives the main secret; the others (Twilio's shared key) stay.
                    let (more, main): (Vec<_>, Vec<_>) = kept
                        .unwrap_or_default()
                        .into_iter()
                        .partition(|s| s.field.is_some());
                    let mut secrets = self.same_or_new(name, s, main)?;
                    secrets.extend(more);
                    secrets
                }
                (None, Some(kept)) => kept,
                (None, None) => {
                    let var = p.secret_env.as_deref().unwrap_or("its secret_env variable");
                    return Err(invalid(
                        format!("providers.{name}.secret_env"),
                        format!("provider {name} is new: set {var} to its secret"),
                    ));
                }
            };
            let provider = StoredProvider {
                scheme: p.scheme.clone(),
                settings: p.settings.clone().into_iter().collect(),
                secrets,
                schemas: p.schemas.clone(),
            };
            doc.providers.insert(name.clone(), provider);
        }
        for (i, r) in file.routes.iter().enumerate() {
            let mut route = r.clone();
            let Some(Value::String(name)) = route.remove("name") else {
                return Err(invalid(
                    format!("routes[{i}].name"),
                    "every route needs a name",
                ));
            };
            super::check_name("route", &name)?;
            if base.manages_route(&name) || doc.routes.iter().any(|r| r.name == name) {
                return Err(managed("route", &name));
            }
            doc.routes.push(StoredRoute {
                name,
                route: Value::Object(route),
            });
        }
        doc.destinations = file.destinations.clone();
        Ok(doc)
    }

    /// `kept` when `secret` is one of them (applying an export changes nothing), else `secret`
    /// alone, encrypted.
    fn same_or_new(
        &self,
        provider: &str,
        secret: &str,
        kept: Vec<StoredSecret>,
    ) -> Result<Vec<StoredSecret>, OpsError> {
        if let Some(keys) = self.live.keys() {
            let same = kept.iter().any(|s| {
                let sealed = Sealed {
                    kid: s.kid.clone(),
                    data: s.ciphertext.clone(),
                };
                keys.open(&sealed, &s.place(provider))
                    .is_ok_and(|p| p == secret)
            });
            if same {
                return Ok(kept);
            }
        }
        let id = super::providers::new_id();
        Ok(vec![self.seal(provider, &id, secret)?])
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_difference_names_each_entry_and_the_order() {
        let route = |n: &str| StoredRoute {
            name: n.into(),
            route: json!({"steps": [{"action": "log"}]}),
        };
        let old = Document {
            routes: vec![route("a"), route("b")],
            ..Default::default()
        };
        let mut new = Document {
            routes: vec![route("b"), route("a"), route("c")],
            ..Default::default()
        };
        new.destinations.insert(
            "d".into(),
            StoredDestination {
                url: "https://x.example".into(),
                headers: BTreeMap::new(),
                timeout_ms: None,
            },
        );
        assert_eq!(
            diff(&old, &new),
            ["+ route c", "~ route order", "+ destination d"]
        );
        assert!(diff(&old, &old).is_empty());
        assert_eq!(
            diff(&new, &old),
            ["- route c", "~ route order", "- destination d"]
        );
    }
}

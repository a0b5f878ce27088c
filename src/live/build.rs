//! What a version of the configuration describes, built: the providers' verifiers, their JSON
//! Schemas and the router, from the file's providers and routes (which come first and cannot be
//! overridden) and the stored document. Every stored provider and route goes through the same reading and
//! checks as its TOML form, so a mistake gets the same message.
//!
//! It must never keep a plaintext secret beyond the verifiers it builds.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::document::{Document, StoredProvider, StoredRoute, resolve_destinations};
use super::keys::{OpenError, SECRET_KEY_VAR, SecretKeys};
use crate::actions::{ActionSettings, RouteConfig, Router};
use crate::verify::{
    FileSection, FileValue, ProviderConfig, ProviderError, Providers, SettingError, registry,
};

/// What the start-up file and the environment define: read-only through the API.
#[derive(Debug, Clone, Default)]
pub struct Base {
    /// Every provider of the file and the environment (built-ins without a secret included).
    pub providers: Vec<ProviderConfig>,
    /// The file's routes, and what checking a route needs (the mail server, the egress policy).
    pub actions: ActionSettings,
    /// Where providers reach hookd, for the schemes that sign the URL.
    pub public_url: Option<String>,
}

impl Base {
    /// Whether the file or the environment configures provider `name` (gives it a secret).
    pub fn manages_provider(&self, name: &str) -> bool {
        self.providers
            .iter()
            .any(|p| p.name == name && p.verifier.is_some())
    }

    /// Whether the file has a route of this name (`route<N>` for an unnamed one).
    pub fn manages_route(&self, name: &str) -> bool {
        self.actions
            .routes
            .iter()
            .enumerate()
            .any(|(i, r)| r.display_name(i) == name)
    }
}

/// A configuration that cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum ConfigProblem {
    /// A setting is wrong: `field` names it, `message` is the TOML path's message.
    #[error("{message}")]
    Field { field: String, message: String },
    #[error(transparent)]
    Secret(#[from] OpenError),
    /// A provider of the start-up file or the environment cannot be set up.
    #[error(transparent)]
    File(ProviderError),
    #[error(
        "the stored configuration holds provider secrets but {SECRET_KEY_VAR} is not set: \
         set it to the key they were written with"
    )]
    NoKey,
}

impl ConfigProblem {
    fn provider(e: ProviderError) -> Self {
        Self::Field {
            field: format!("providers.{}", e.provider),
            message: e.to_string(),
        }
    }
}

/// The configuration built.
pub struct Built {
    pub providers: Providers,
    pub router: Router,
    /// The stored providers' JSON Schemas.
    pub schemas: Vec<super::LiveSchema>,
    /// When the next secret stops verifying (the configuration must be built again then).
    pub next_expiry: Option<DateTime<Utc>>,
}

/// Build `doc` over `base` as of `now`: every secret must decrypt, live or not (a wrong key
/// shows at once, not at the next rotation), and only the live ones verify.
pub fn build(
    base: &Base,
    doc: &Document,
    keys: Option<&SecretKeys>,
    now: DateTime<Utc>,
) -> Result<Built, ConfigProblem> {
    // The file's providers as at every start; a failure there is the file's, not the store's.
    let mut providers = Providers::from_config(&base.providers).map_err(ConfigProblem::File)?;
    let mut schemas = Vec::new();
    for (name, p) in &doc.providers {
        if base.manages_provider(name) {
            continue;
        }
        let compiled = super::schemas::compile(name, p).map_err(|e| ConfigProblem::Field {
            field: e.field.clone(),
            message: e.to_string(),
        })?;
        schemas.extend(compiled);
        let config = provider_config(base, name, p, open_secrets(name, p, keys, now)?)?;
        match &config.verifier {
            Some(v) => {
                let verifier = v.build().map_err(|source| {
                    ConfigProblem::provider(ProviderError {
                        provider: name.clone(),
                        source: Box::new(SettingError::Setup(source)),
                    })
                })?;
                providers.insert(name, verifier);
            }
            None => providers.insert_off(name, &config.setting),
        }
    }
    let mut routes = base.actions.routes.clone();
    for r in &doc.routes {
        routes.push(route_config(base, doc, r)?);
    }
    let smtp = base.actions.smtp.as_ref().map(|s| s.destination());
    let next_expiry = doc
        .providers
        .values()
        .flat_map(|p| &p.secrets)
        .filter_map(|s| s.expires_at)
        .filter(|t| *t > now)
        .min();
    Ok(Built {
        providers,
        router: Router::new(&routes, smtp),
        schemas,
        next_expiry,
    })
}

/// The secrets of stored provider `name` that verify at `now`, decrypted, each with the field
/// it fills (`None`: the scheme's main secret); every one must decrypt, live or not.
fn open_secrets(
    name: &str,
    p: &StoredProvider,
    keys: Option<&SecretKeys>,
    now: DateTime<Utc>,
) -> Result<Vec<(Option<String>, String)>, ConfigProblem> {
    let mut secrets = Vec::new();
    for s in &p.secrets {
        let keys = keys.ok_or(ConfigProblem::NoKey)?;
        let sealed = super::keys::Sealed {
            kid: s.kid.clone(),
            data: s.ciphertext.clone(),
        };
        let plain = keys.open(&sealed, &s.place(name))?;
        if s.live_at(now) {
            secrets.push((s.field.clone(), plain));
        }
    }
    Ok(secrets)
}

/// Provider `name` as it verifies at `now` (the file's, or the stored one with its live
/// secrets), or `None` when neither defines it.
pub fn provider_now(
    base: &Base,
    doc: &Document,
    keys: Option<&SecretKeys>,
    name: &str,
    now: DateTime<Utc>,
) -> Result<Option<ProviderConfig>, ConfigProblem> {
    if let Some(p) = base.providers.iter().find(|p| p.name == name)
        && (p.verifier.is_some() || !doc.providers.contains_key(name))
    {
        return Ok(Some(p.clone()));
    }
    let Some(p) = doc.providers.get(name) else {
        return Ok(None);
    };
    provider_config(base, name, p, open_secrets(name, p, keys, now)?).map(Some)
}

/// A stored provider as the TOML path reads its section, with these (plaintext) secrets, each
/// with the field it fills (`None`: the scheme's main secret). Without a main secret, it is
/// known but accepts nothing.
pub fn provider_config(
    base: &Base,
    name: &str,
    p: &StoredProvider,
    secrets: Vec<(Option<String>, String)>,
) -> Result<ProviderConfig, ConfigProblem> {
    let mut file: FileSection = p
        .settings
        .iter()
        .map(|(k, v)| (k.clone(), file_value(v)))
        .collect();
    file.insert("scheme".into(), FileValue::Text(p.scheme.clone()));
    if let Some(entry) = registry::scheme(&p.scheme) {
        for (field, secret) in secrets {
            let field = field.unwrap_or_else(|| entry.secret.1.to_owned());
            // A setting of that name is refused when the change is made, so this is a list.
            if let FileValue::List(list) = file.entry(field).or_insert(FileValue::List(Vec::new()))
            {
                list.push(secret);
            }
        }
    }
    let mut config = registry::read_stored(name, &file, base.public_url.as_deref())
        .map_err(ConfigProblem::provider)?;
    config.setting = format!("a secret (POST /admin/config/providers/{name}/secrets)");
    Ok(config)
}

/// A JSON value as the file would have given it.
fn file_value(v: &Value) -> FileValue {
    match v {
        Value::String(s) => FileValue::Text(s.clone()),
        Value::Number(n) => n
            .as_i64()
            .map_or(FileValue::Other("float"), FileValue::Integer),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .map_or(FileValue::Other("array"), FileValue::List),
        Value::Bool(_) => FileValue::Other("boolean"),
        Value::Null => FileValue::Other("null"),
        Value::Object(_) => FileValue::Other("table"),
    }
}

/// A stored route, its destinations resolved, read and checked as a `[[routes]]` entry.
pub fn route_config(
    base: &Base,
    doc: &Document,
    stored: &StoredRoute,
) -> Result<RouteConfig, ConfigProblem> {
    let name = &stored.name;
    let problem = |field: String, message: String| ConfigProblem::Field { field, message };
    let mut route = resolve_destinations(&stored.route, &doc.destinations).map_err(|(f, m)| {
        problem(
            format!("routes.{name}.{f}"),
            format!("route {name}: {f}: {m}"),
        )
    })?;
    let Some(obj) = route.as_object_mut() else {
        return Err(problem(
            format!("routes.{name}"),
            format!("route {name}: expected a table (a JSON object)"),
        ));
    };
    obj.insert("name".into(), name.clone().into());
    let route: RouteConfig = serde_json::from_value(route)
        .map_err(|e| problem(format!("routes.{name}"), format!("route {name}: {e}")))?;
    let one = ActionSettings {
        routes: vec![route.clone()],
        ..base.actions.clone()
    };
    one.validate()
        .map_err(|e| problem(format!("routes.{name}"), e.to_string()))?;
    // Scripts are read and compiled on every transform thread at start; a stored route can
    // only name one the file's routes already load.
    let loaded: Vec<&str> = base
        .actions
        .routes
        .iter()
        .flat_map(RouteConfig::transforms)
        .collect();
    if let Some(missing) = route.transforms().into_iter().find(|t| !loaded.contains(t)) {
        return Err(problem(
            format!("routes.{name}.transform"),
            format!(
                "route {name}: transform {missing:?} is not loaded: scripts are compiled at \
                 start, so name it in a route of the start-up file and restart first"
            ),
        ));
    }
    Ok(route)
}

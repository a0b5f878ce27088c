//! The console's configuration forms: providers (a generated secret shown once, on the page
//! that answers the form), secrets, routes, named destinations, their deletion, and a
//! provider's signed test event, which goes through hookd's own intake (`webhooks::receive`), verified and stored like
//! a real one. Each change calls the same `ops::config` functions as the admin API and is
//! audited under the API's action names.
//!
//! It must never act for a read-scope session, nor without a [`CsrfForm`], nor write a secret
//! anywhere but the one page that answers the form that made it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Map, Value};

use super::actions::refuse_read;
use super::pages::{self, ConfigForms, Filled, Outcome};
use super::session::CsrfForm;
use super::{Me, error_page, page_or_error};
use crate::http::{ApiError, AppState};
use crate::live::StoredDestination;
use crate::ops::ConsoleSession;
use crate::ops::config::{Change, ProviderRequest, ProviderWritten, SecretRequest};

/// The configuration page.
pub(super) async fn config(
    State(state): State<Arc<AppState>>,
    axum::Extension(me): Me,
) -> Response {
    pages::config(
        &me,
        &state.ops.config(),
        &ConfigForms::default(),
        StatusCode::OK,
    )
}

/// One provider's page.
pub(super) async fn provider(
    State(state): State<Arc<AppState>>,
    axum::Extension(me): Me,
    Path(name): Path<String>,
) -> Response {
    provider_page(&state, &me, &name, Outcome::default())
}

fn provider_page(state: &AppState, me: &ConsoleSession, name: &str, outcome: Outcome) -> Response {
    let result = (|| {
        let entry = state.ops.config_provider(name)?;
        let samples = state.ops.test_samples(name)?;
        Ok::<_, ApiError>(pages::config_provider(me, &entry, &samples, &outcome))
    })();
    page_or_error(me, result)
}

/// One route's page.
pub(super) async fn route(
    State(state): State<Arc<AppState>>,
    axum::Extension(me): Me,
    Path(name): Path<String>,
) -> Response {
    let Some(entry) = state
        .ops
        .config()
        .routes
        .into_iter()
        .find(|r| r.name == name)
    else {
        return error_page(Some(&me), ApiError::NotFound);
    };
    let mut filled = Filled::default();
    filled.values.insert("name".into(), name);
    if let Some(doc) = &entry.route {
        let pretty = serde_json::to_string_pretty(doc).unwrap_or_default();
        filled.values.insert("route".into(), pretty);
    }
    pages::config_route(&me, &entry, &filled)
}

/// The form's fields by name (the CSRF token left out).
fn values(form: &CsrfForm, names: &[&str]) -> BTreeMap<String, String> {
    names
        .iter()
        .map(|n| ((*n).to_owned(), form.get(n).unwrap_or("").to_owned()))
        .collect()
}

/// The form field a server's field (`routes.x.steps[0].url`, `settings.tolerance_secs`,
/// `name`) concerns: the first of `fields` it names, or `fallback`.
fn form_field(named: &str, fields: &[&'static str], fallback: &'static str) -> &'static str {
    fields
        .iter()
        .find(|f| named == **f || named.starts_with(&format!("{f}.")))
        .copied()
        .unwrap_or(fallback)
}

/// The JSON object of a form field, or the field's error.
fn json_object(field: &str, text: &str) -> Result<Map<String, Value>, ApiError> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(invalid(field, "expected a JSON object ({ ... })")),
        Err(e) => Err(invalid(field, &format!("not JSON: {e}"))),
    }
}

fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::InvalidConfig {
        field: field.to_owned(),
        message: message.to_owned(),
    }
}

/// Audit a change (or its failure) under the admin API's action name.
async fn audited<T>(
    state: &AppState,
    me: &ConsoleSession,
    action: &str,
    target: &str,
    result: Result<Change<T>, ApiError>,
) -> Result<T, ApiError> {
    let (status, detail, result) = match result {
        Ok(change) => (200, change.audit, Ok(change.answer)),
        Err(e) => (e.status_and_code().0.as_u16(), e.to_string(), Err(e)),
    };
    let target = Some(target.to_owned());
    state
        .ops
        .audit(&me.who, action, target, status, Some(detail))
        .await;
    result
}

/// A refused form: the configuration page again, filled as it was, the server's message next
/// to the field it names (any other error: the error page).
fn refill(
    state: &AppState,
    me: &ConsoleSession,
    e: ApiError,
    values: BTreeMap<String, String>,
    which: fn(&mut ConfigForms) -> &mut Filled,
    fields: &[&'static str],
) -> Response {
    let ApiError::InvalidConfig { field, message } = e else {
        return error_page(Some(me), e);
    };
    let mut forms = ConfigForms::default();
    let filled = which(&mut forms);
    let prefix = format!("routes.{}", values.get("name").map_or("", String::as_str));
    let named = field
        .strip_prefix(&prefix)
        .map(|r| r.trim_start_matches('.'))
        .filter(|r| !r.is_empty())
        .unwrap_or(&field)
        .to_owned();
    filled.values = values;
    filled.error = Some((
        form_field(&named, fields, fields[fields.len() - 1]),
        named,
        message,
    ));
    pages::config(me, &state.ops.config(), &forms, StatusCode::BAD_REQUEST)
}

/// A provider's page after a change, with the secret hookd generated, if it did (this once).
fn written_page(
    state: &AppState,
    me: &ConsoleSession,
    name: &str,
    written: ProviderWritten,
    done: &str,
) -> Response {
    let outcome = Outcome {
        secret: written.secret_id.zip(written.secret),
        done: Some(format!("{done}: version {}.", written.version)),
        ..Default::default()
    };
    provider_page(state, me, name, outcome)
}

/// Create a provider, or replace its scheme and settings.
pub(super) async fn put_provider(State(state): State<Arc<AppState>>, form: CsrfForm) -> Response {
    const FIELDS: &[&str] = &["name", "scheme", "secret", "settings"];
    let me = &form.session;
    let values = values(&form, FIELDS);
    let name = values["name"].trim().to_owned();
    let action = "config.provider.put";
    if let Some(refused) = refuse_read(&state, me, action, Some(name.clone())).await {
        return refused;
    }
    let run = async {
        if name.is_empty() {
            return Err(invalid("name", "a provider needs a name"));
        }
        let req = ProviderRequest {
            scheme: values["scheme"].trim().to_owned(),
            settings: json_object("settings", &values["settings"])?,
            secret: Some(values["secret"].clone()).filter(|s| !s.is_empty()),
            // The console does not edit schemas: the stored ones stay.
            schemas: None,
        };
        Ok(state.ops.put_provider(&me.who, &name, &req).await?)
    };
    match audited(&state, me, action, &name, run.await).await {
        Ok(written) => written_page(&state, me, &name, written, "Saved"),
        Err(e) => refill(&state, me, e, values, |f| &mut f.provider, FIELDS),
    }
}

/// Add a secret to a provider (the others stop verifying now if asked).
pub(super) async fn add_secret(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    form: CsrfForm,
) -> Response {
    let me = &form.session;
    let action = "config.provider.secret.add";
    if let Some(refused) = refuse_read(&state, me, action, Some(name.clone())).await {
        return refused;
    }
    let req = SecretRequest {
        secret: form
            .get("secret")
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        previous_expire_at: form.get("expire_previous").map(|_| chrono::Utc::now()),
        field: None,
    };
    let result = state
        .ops
        .add_secret(&me.who, &name, &req)
        .await
        .map_err(ApiError::from);
    match audited(&state, me, action, &name, result).await {
        Ok(written) => written_page(&state, me, &name, written, "Secret added"),
        Err(e) => error_page(Some(me), e),
    }
}

/// Create or replace a route from its name and its document as JSON.
pub(super) async fn put_route(State(state): State<Arc<AppState>>, form: CsrfForm) -> Response {
    const FIELDS: &[&str] = &["name", "route"];
    let me = &form.session;
    let values = values(&form, FIELDS);
    let name = values["name"].trim().to_owned();
    let action = "config.route.put";
    if let Some(refused) = refuse_read(&state, me, action, Some(name.clone())).await {
        return refused;
    }
    let run = async {
        let route = Value::Object(json_object("route", &values["route"])?);
        Ok(state.ops.put_route(&me.who, &name, &route).await?)
    };
    match audited(&state, me, action, &name, run.await).await {
        Ok(_) => Redirect::to(&format!("/ui/config/routes/{name}")).into_response(),
        Err(e) => refill(&state, me, e, values, |f| &mut f.route, FIELDS),
    }
}

/// `Name: value` lines as headers.
fn header_lines(text: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let mut headers = BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| invalid("headers", &format!("{line:?} is not `Name: value`")))?;
        headers.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    Ok(headers)
}

/// Create or replace a named destination.
pub(super) async fn put_destination(
    State(state): State<Arc<AppState>>,
    form: CsrfForm,
) -> Response {
    const FIELDS: &[&str] = &["name", "url", "headers"];
    let me = &form.session;
    let values = values(&form, FIELDS);
    let name = values["name"].trim().to_owned();
    let action = "config.destination.put";
    if let Some(refused) = refuse_read(&state, me, action, Some(name.clone())).await {
        return refused;
    }
    let run = async {
        let dest = StoredDestination {
            url: values["url"].trim().to_owned(),
            headers: header_lines(&values["headers"])?,
            timeout_ms: None,
        };
        Ok(state.ops.put_destination(&me.who, &name, &dest).await?)
    };
    match audited(&state, me, action, &name, run.await).await {
        Ok(_) => Redirect::to("/ui/config").into_response(),
        Err(e) => refill(&state, me, e, values, |f| &mut f.destination, FIELDS),
    }
}

/// What a console Delete button removes.
#[derive(Debug, Clone, Copy)]
enum Entry {
    Provider,
    Route,
    Destination,
}

impl Entry {
    /// The admin API's action name for its deletion (the audit log's).
    fn action(self) -> &'static str {
        match self {
            Self::Provider => "config.provider.delete",
            Self::Route => "config.route.delete",
            Self::Destination => "config.destination.delete",
        }
    }
}

/// Delete an entry with the function `DELETE /admin/config/...` calls, audited under its
/// action name; then the configuration page, or the error page saying why not (a destination
/// a route still names, an entry managed by file).
async fn delete(state: &AppState, form: &CsrfForm, entry: Entry, name: String) -> Response {
    let me = &form.session;
    if let Some(refused) = refuse_read(state, me, entry.action(), Some(name.clone())).await {
        return refused;
    }
    let result = match entry {
        Entry::Provider => state.ops.delete_provider(&me.who, &name).await,
        Entry::Route => state.ops.delete_route(&me.who, &name).await,
        Entry::Destination => state.ops.delete_destination(&me.who, &name).await,
    };
    let result = result.map_err(ApiError::from);
    match audited(state, me, entry.action(), &name, result).await {
        Ok(_) => Redirect::to("/ui/config").into_response(),
        Err(e) => error_page(Some(me), e),
    }
}

/// Delete a provider (its stored events stay).
pub(super) async fn delete_provider(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    form: CsrfForm,
) -> Response {
    delete(&state, &form, Entry::Provider, name).await
}

/// Delete a route.
pub(super) async fn delete_route(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    form: CsrfForm,
) -> Response {
    delete(&state, &form, Entry::Route, name).await
}

/// Delete a named destination (refused while a route names it).
pub(super) async fn delete_destination(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    form: CsrfForm,
) -> Response {
    delete(&state, &form, Entry::Destination, name).await
}

/// Sign a sample as the provider would and post it through hookd's own intake path; show the
/// accepted event's id, or why it was refused.
pub(super) async fn test_event(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    form: CsrfForm,
) -> Response {
    let me = &form.session;
    let action = "config.provider.test_event";
    if let Some(refused) = refuse_read(&state, me, action, Some(name.clone())).await {
        return refused;
    }
    let sample = form.get("sample").unwrap_or("").to_owned();
    let result = send_test(&state, &name, &sample, &headers).await;
    let (status, detail) = match &result {
        Ok(id) => (200, format!("sample {sample}: event {id}")),
        Err(e) => (400, format!("sample {sample}: {e}")),
    };
    state
        .ops
        .audit(&me.who, action, Some(name.clone()), status, Some(detail))
        .await;
    let outcome = Outcome {
        test: Some(result),
        ..Default::default()
    };
    provider_page(&state, me, &name, outcome)
}

/// The signed sample through `webhooks::receive`, as if the provider had posted it to the
/// host the console is reached at: the accepted event's id, or the refusal's message.
async fn send_test(
    state: &Arc<AppState>,
    name: &str,
    sample: &str,
    headers: &HeaderMap,
) -> Result<String, String> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    let signed = state
        .ops
        .signed_test_event(name, sample, &format!("http://{host}"))
        .map_err(|e| e.to_string())?;
    let uri: Uri = signed.url.parse().map_err(|e| format!("{e}"))?;
    let uri = Uri::builder()
        .path_and_query(uri.path_and_query().map_or("/", |p| p.as_str()))
        .build()
        .map_err(|e| e.to_string())?;
    let mut sent = HeaderMap::new();
    sent.insert(
        header::HOST,
        HeaderValue::from_str(&host).map_err(|e| e.to_string())?,
    );
    for (k, v) in &signed.headers {
        let k = HeaderName::from_bytes(k.as_bytes()).map_err(|e| e.to_string())?;
        sent.insert(k, HeaderValue::from_str(v).map_err(|e| e.to_string())?);
    }
    let answer = crate::http::webhooks::receive(
        State(state.clone()),
        Path(name.to_owned()),
        uri,
        sent,
        Ok(Bytes::from(signed.body)),
    )
    .await
    .map_err(|e| e.to_string())?;
    answer
        .1
        .get("id")
        .map(|id| id.as_str().map_or_else(|| id.to_string(), str::to_owned))
        .ok_or_else(|| format!("answered {}: {}", answer.0, answer.1.0))
}

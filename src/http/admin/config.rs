//! `/admin/config`: the configuration as data (providers, routes, named destinations), read by
//! any admin token and changed by operate tokens; every change is a new version, applied by
//! every process within about a second.
//!
//! Thin handlers over `ops::config`, with their OpenAPI annotations. Each change leaves its
//! version and before/after (no secret values) for the audit log entry.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::AuditNote;
use super::openapi::ErrorBody;
use crate::http::extract::query;
use crate::http::{ApiError, AppState};
use crate::live::StoredDestination;
use crate::ops::Principal;
use crate::ops::config::{
    ApplyQuery, ApplyResult, Change, ConfigFile, ConfigView, ProviderEntry, ProviderRequest,
    ProviderWritten, SecretRequest, Written,
};

/// A JSON body that must be there.
fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::BadBody(e.to_string()))
}

/// The answer, with the change's audit detail for the entry the guard writes.
fn written<T: Serialize>(change: Change<T>) -> Response {
    let mut resp = Json(&change.answer).into_response();
    resp.extensions_mut().insert(AuditNote(change.audit));
    resp
}

/// The whole configuration: what the start-up file and the environment define ("managed_by":
/// "file", read-only here) and what the API stored ("api").
#[utoipa::path(get, path = "/admin/config", tag = "config",
    responses((status = 200, body = ConfigView, description = "OK")))]
pub async fn config(State(state): State<Arc<AppState>>) -> Json<ConfigView> {
    Json(state.ops.config())
}

/// One provider of the configuration (its secrets without their values).
#[utoipa::path(get, path = "/admin/config/providers/{name}", tag = "config",
    params(("name" = String, Path, description = "Provider name")),
    responses(
        (status = 200, body = ProviderEntry, description = "OK"),
        (status = 404, body = ErrorBody, description = "No such provider"),
    ))]
pub async fn provider(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<ProviderEntry>, ApiError> {
    Ok(Json(state.ops.config_provider(&name)?))
}

/// Create a provider, or replace its scheme and settings (its secrets stay). Without `secret`
/// on creation, hookd generates one and answers it, this once.
#[utoipa::path(put, path = "/admin/config/providers/{name}", tag = "config",
    params(("name" = String, Path, description = "Provider name: its URL path segment")),
    request_body = ProviderRequest,
    responses(
        (status = 200, body = ProviderWritten, description = "Written and applied"),
        (status = 400, body = ErrorBody, description = "A setting is invalid (`field` names it)"),
        (status = 404, body = ErrorBody, description = "No such path (an empty name)"),
        (status = 409, body = ErrorBody, description = "Managed by file, or no HOOKD_SECRET_KEY"),
    ))]
pub async fn put_provider(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let req: ProviderRequest = body(&bytes)?;
    Ok(written(state.ops.put_provider(&who, &name, &req).await?))
}

/// Delete a provider (its stored events stay).
#[utoipa::path(delete, path = "/admin/config/providers/{name}", tag = "config",
    params(("name" = String, Path, description = "Provider name")),
    responses(
        (status = 200, body = Written, description = "Deleted"),
        (status = 404, body = ErrorBody, description = "No such provider"),
        (status = 409, body = ErrorBody, description = "Managed by file"),
    ))]
pub async fn delete_provider(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(written(state.ops.delete_provider(&who, &name).await?))
}

/// Add a secret to a provider; with `previous_expire_at`, its other secrets keep verifying
/// until then (a rotation with overlap). Without `secret`, hookd generates one and answers it,
/// this once.
#[utoipa::path(post, path = "/admin/config/providers/{name}/secrets", tag = "config",
    params(("name" = String, Path, description = "Provider name")),
    request_body = SecretRequest,
    responses(
        (status = 200, body = ProviderWritten, description = "Added and applied"),
        (status = 400, body = ErrorBody, description = "The secret is invalid for its scheme"),
        (status = 404, body = ErrorBody, description = "No such provider"),
        (status = 409, body = ErrorBody, description = "Managed by file, or no HOOKD_SECRET_KEY"),
    ))]
pub async fn add_secret(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let req: SecretRequest = body(&bytes)?;
    Ok(written(state.ops.add_secret(&who, &name, &req).await?))
}

/// Create a route (matched after the others) or replace it in its place. The body is a
/// `[[routes]]` entry as JSON; a forward step may name a destination instead of a `url`.
#[utoipa::path(put, path = "/admin/config/routes/{name}", tag = "config",
    params(("name" = String, Path, description = "Route name")),
    request_body(content = Object, description = "The route: provider, events, filters, steps, ..."),
    responses(
        (status = 200, body = Written, description = "Written and applied"),
        (status = 400, body = ErrorBody, description = "The route is invalid (`field` names it)"),
        (status = 404, body = ErrorBody, description = "No such path (an empty name)"),
        (status = 409, body = ErrorBody, description = "Managed by file"),
    ))]
pub async fn put_route(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let route: serde_json::Value = body(&bytes)?;
    Ok(written(state.ops.put_route(&who, &name, &route).await?))
}

/// Delete a route.
#[utoipa::path(delete, path = "/admin/config/routes/{name}", tag = "config",
    params(("name" = String, Path, description = "Route name")),
    responses(
        (status = 200, body = Written, description = "Deleted"),
        (status = 404, body = ErrorBody, description = "No such route"),
        (status = 409, body = ErrorBody, description = "Managed by file"),
    ))]
pub async fn delete_route(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(written(state.ops.delete_route(&who, &name).await?))
}

/// Create or replace a named destination; every route naming it follows.
#[utoipa::path(put, path = "/admin/config/destinations/{name}", tag = "config",
    params(("name" = String, Path, description = "Destination name")),
    request_body = StoredDestination,
    responses(
        (status = 200, body = Written, description = "Written and applied"),
        (status = 400, body = ErrorBody, description = "Its URL or headers are invalid, or a route naming it becomes invalid"),
        (status = 404, body = ErrorBody, description = "No such path (an empty name)"),
    ))]
pub async fn put_destination(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let dest: StoredDestination = body(&bytes)?;
    Ok(written(
        state.ops.put_destination(&who, &name, &dest).await?,
    ))
}

/// Delete a named destination (refused while a route names it).
#[utoipa::path(delete, path = "/admin/config/destinations/{name}", tag = "config",
    params(("name" = String, Path, description = "Destination name")),
    responses(
        (status = 200, body = Written, description = "Deleted"),
        (status = 404, body = ErrorBody, description = "No such destination"),
        (status = 409, body = ErrorBody, description = "A route names it"),
    ))]
pub async fn delete_destination(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(written(state.ops.delete_destination(&who, &name).await?))
}

/// The stored configuration as a file (`hookd config export` writes it as TOML): no secret;
/// each provider's `secret_env` names the variable `apply` reads its secret from.
#[utoipa::path(get, path = "/admin/config/export", tag = "config",
    responses((status = 200, body = ConfigFile, description = "OK")))]
pub async fn export(State(state): State<Arc<AppState>>) -> Json<ConfigFile> {
    Json(state.ops.export())
}

/// Make a file the whole stored configuration, in one version (all of it or nothing), after the
/// same checks as every change; with `dry_run`, only answer what it would change.
#[utoipa::path(post, path = "/admin/config/apply", tag = "config",
    params(ApplyQuery),
    request_body = ConfigFile,
    responses(
        (status = 200, body = ApplyResult, description = "Applied, or what it would change"),
        (status = 400, body = ErrorBody, description = "An entry is invalid (`field` names it)"),
        (status = 409, body = ErrorBody, description = "Managed by file, no HOOKD_SECRET_KEY, or changed meanwhile"),
    ))]
pub async fn apply(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    uri: Uri,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let q: ApplyQuery = query(&uri)?;
    let file: ConfigFile = body(&bytes)?;
    let result = state.ops.apply(&who, &file, q.dry_run).await?;
    let note = serde_json::json!({
        "version": result.version,
        "dry_run": q.dry_run,
        "changes": result.changes,
    });
    let mut resp = Json(&result).into_response();
    resp.extensions_mut().insert(AuditNote(note.to_string()));
    Ok(resp)
}

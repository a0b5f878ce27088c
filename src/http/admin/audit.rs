//! `/admin/audit` and `/admin/whoami`: the audit log of operator actions, and the token a
//! request is made with.
//!
//! Thin handlers over `ops::audit`, with their OpenAPI annotations.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::Uri;

use super::openapi::ErrorBody;
use crate::http::extract::query;
use crate::http::{ApiError, AppState};
use crate::ops::{AuditPage, AuditQuery, Principal, WhoAmI};

/// The audit log, newest first: every operate action (allowed or refused), who, what, when.
#[utoipa::path(get, path = "/admin/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditPage, description = "OK"), (status = 400, body = ErrorBody, description = "A parameter or the body is invalid")))]
pub async fn audit(
    State(state): State<Arc<AppState>>,
    uri: Uri,
) -> Result<Json<AuditPage>, ApiError> {
    let q: AuditQuery = query(&uri)?;
    Ok(Json(state.ops.audit_log(&q).await?))
}

/// The token's name and scope.
#[utoipa::path(get, path = "/admin/whoami", tag = "audit",
    responses((status = 200, body = WhoAmI, description = "OK")))]
pub async fn whoami(Extension(who): Extension<Principal>) -> Json<WhoAmI> {
    Json(WhoAmI::from(&who))
}

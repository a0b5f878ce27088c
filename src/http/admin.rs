//! `/admin`: bearer-token protected read access to events. With no `HOOKD_ADMIN_TOKEN` set the
//! whole tree answers 404, so an unconfigured admin API is indistinguishable from none.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};
use crate::event::{EventDetail, EventId};

pub async fn require_token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(token) = &state.admin_token else {
        return Err(ApiError::NotFound);
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(ApiError::Unauthorized)?;
    // Comparing digests keeps the comparison constant-time and independent of the token length.
    let ok: bool = Sha256::digest(presented.trim().as_bytes())
        .ct_eq(&Sha256::digest(token.expose().as_bytes()))
        .into();
    if !ok {
        return Err(ApiError::Unauthorized);
    }
    Ok(next.run(request).await)
}

pub async fn event(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<EventDetail>, ApiError> {
    let id: EventId = id.parse().map_err(|_| ApiError::NotFound)?;
    state
        .store
        .event(id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound)
}

//! `POST /webhooks/{provider}`: verify, store, then answer. The answer is sent only after the
//! commit, so a 2xx always means the event is durable.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use bytes::Bytes;
use serde_json::json;

use super::{ApiError, AppState};
use crate::store::Inserted;
use crate::verify::{Lookup, RawRequest};

pub async fn receive(
    State(state): State<Arc<AppState>>,
    Path(provider): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let verifier = match state.providers.lookup(&provider) {
        Lookup::Ready(v) => v,
        Lookup::NotConfigured { setting } => {
            return Err(ApiError::ProviderNotConfigured {
                provider,
                setting: setting.to_owned(),
            });
        }
        Lookup::Unknown => return Err(ApiError::UnknownProvider(provider)),
    };
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::BodyTooLarge {
                limit: state.max_body_bytes,
            }
        } else {
            ApiError::BadBody(r.body_text())
        }
    })?;
    let request = RawRequest {
        headers: &headers,
        body: &body,
        uri: &uri,
        now_unix: chrono::Utc::now().timestamp(),
    };
    let verified = verifier
        .verify(&provider, &request)
        .await
        .inspect_err(|e| {
            tracing::warn!(%provider, reason = e.reason(), error = %e, "webhook rejected");
        })?;
    // A signed URL handshake (Slack): echo the challenge; there is no event to store.
    if let Some(challenge) = verified.challenge() {
        tracing::info!(%provider, "answered a URL verification challenge");
        return Ok((StatusCode::OK, Json(json!({ "challenge": challenge }))));
    }
    match state.store.insert(&verified).await? {
        Inserted::New(id) => {
            tracing::info!(event_id = %id, %provider, event_type = verified.event_type(), "webhook accepted");
            // The event is committed; if the queue cannot take the hint, workers still find it.
            if let Err(e) = state.queue.enqueue(id).await {
                tracing::warn!(event_id = %id, error = %e, "enqueue failed; the event waits for a poll");
            }
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({ "status": "queued", "id": id })),
            ))
        }
        Inserted::Duplicate(id) => {
            tracing::info!(event_id = %id, %provider, "duplicate webhook");
            Ok((
                StatusCode::OK,
                Json(json!({ "status": "duplicate", "id": id })),
            ))
        }
    }
}

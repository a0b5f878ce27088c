//! `POST /webhooks/{provider}`: verify, store, then answer. The answer is sent only after the
//! commit, so a 2xx always means the event is durable.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use bytes::Bytes;
use serde_json::json;
use tracing::{Instrument, Span};

use super::{ApiError, AppState};
use crate::event::OrderKey;
use crate::store::Inserted;
use crate::telemetry::{metrics, trace};
use crate::verify::{Lookup, RawRequest, VerifiedWebhook};

type Accepted = (StatusCode, Json<serde_json::Value>);

pub async fn receive(
    State(state): State<Arc<AppState>>,
    Path(provider): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Accepted, ApiError> {
    let started = Instant::now();
    let known = !matches!(state.providers.load().lookup(&provider), Lookup::Unknown);
    // The path segment is the client's to choose: only known names become metric labels.
    let label = if known { provider.as_str() } else { "unknown" };
    Span::current().record("provider", label);
    let result = accept(&state, &provider, &uri, &headers, body).await;
    let outcome = match &result {
        Ok((StatusCode::ACCEPTED, _)) => "accepted",
        Ok((_, Json(v))) if v.get("challenge").is_some() => "challenge",
        Ok(_) => "duplicate",
        Err(e) => e.status_and_code().1,
    };
    metrics::webhook_received(label, outcome);
    metrics::accept_duration(label, started.elapsed());
    result
}

async fn accept(
    state: &AppState,
    provider: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Accepted, ApiError> {
    // The providers as they are now, for this whole request: a change applies to the next.
    let providers = state.providers.load();
    let verifier = match providers.lookup(provider) {
        Lookup::Ready(v) => v,
        Lookup::NotConfigured { setting } => {
            return Err(ApiError::ProviderNotConfigured {
                provider: provider.to_owned(),
                setting: setting.to_owned(),
            });
        }
        Lookup::Unknown => return Err(ApiError::UnknownProvider(provider.to_owned())),
    };
    let body = body.map_err(|r| body_error(state, &r))?;
    let request = RawRequest {
        headers,
        body: &body,
        uri,
        now_unix: chrono::Utc::now().timestamp(),
    };
    let mut verified = verifier
        .verify(provider, &request)
        .instrument(tracing::info_span!("verify", provider))
        .await
        .inspect_err(|e| {
            tracing::warn!(provider, reason = e.reason(), error = %e, "webhook rejected");
        })?;
    super::validate::check(&state.limits, &verified)
        .and_then(|()| {
            super::validate::check_schemas(&state.schemas, &state.stored_schemas.load(), &verified)
        })
        .inspect_err(|e| {
            tracing::warn!(provider, reason = e.reason(), error = %e, "webhook rejected");
        })?;
    // Before the operator's redactions: a header may be an order key and not be kept.
    let order = state.routes.load().ordering().keys(
        verified.provider(),
        verified.event_type(),
        verified.body(),
        verified.headers(),
    );
    verified.redact_headers(&state.limits.audit_redact_headers);
    // A signed URL handshake (Slack): echo the challenge; there is no event to store.
    if let Some(challenge) = verified.challenge() {
        tracing::info!(provider, "answered a URL verification challenge");
        return Ok((StatusCode::OK, Json(json!({ "challenge": challenge }))));
    }
    store(state, &verified, order).await
}

/// Why the body could not be read.
fn body_error(state: &AppState, r: &BytesRejection) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::BodyTooLarge {
            limit: state.max_body_bytes,
        }
    } else if super::limits::is_body_timeout(r) {
        ApiError::BodyTimeout
    } else {
        ApiError::BadBody(r.body_text())
    }
}

/// Commit a verified webhook, hint the queue (unless this process's workers claimed it in the
/// commit), and answer: 202 for a new event, 200 for one already stored.
async fn store(
    state: &AppState,
    verified: &VerifiedWebhook,
    order: Vec<OrderKey>,
) -> Result<Accepted, ApiError> {
    let traceparent = trace::traceparent(&Span::current());
    // Its first line (by route, then key) names the queue partition of an ordered event.
    let line = order
        .iter()
        .min_by(|a, b| (&a.route, &a.key).cmp(&(&b.route, &b.key)))
        .map(|k| (k.route.clone(), k.key.clone()));
    let inserted = state
        .intake
        .insert(verified, traceparent.as_deref(), order)
        .instrument(tracing::info_span!(
            "store.insert",
            db.system = state.store.backend()
        ))
        .await?;
    match inserted.inserted {
        Inserted::New(id) => {
            Span::current().record("event_id", tracing::field::display(id));
            tracing::info!(
                event_type = verified.event_type(),
                handed_over = inserted.handed_over,
                "webhook accepted"
            );
            // This process's workers have it already, claimed in the commit.
            if inserted.handed_over {
                return Ok((
                    StatusCode::ACCEPTED,
                    Json(json!({ "status": "queued", "id": id })),
                ));
            }
            // The event is committed; if the queue cannot take the hint, workers still find it.
            let enqueued = match &line {
                Some((route, key)) => state.queue.enqueue_in_line(id, route, key),
                None => state.queue.enqueue(id),
            }
            .instrument(tracing::info_span!("enqueue", queue = state.queue.kind()))
            .await;
            if let Err(e) = enqueued {
                tracing::warn!(error = %e, "enqueue failed; the event waits for a poll or the sweeper");
            }
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({ "status": "queued", "id": id })),
            ))
        }
        Inserted::Duplicate(id) => {
            Span::current().record("event_id", tracing::field::display(id));
            tracing::info!("duplicate webhook");
            Ok((
                StatusCode::OK,
                Json(json!({ "status": "duplicate", "id": id })),
            ))
        }
    }
}

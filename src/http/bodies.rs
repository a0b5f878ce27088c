//! Bodies of every route but `/webhooks/*` (the console's forms, the admin API's JSON, anything
//! sent to `/health` or an unknown path): read whole before any handler runs, under a small size
//! limit, within `HOOKD_BODY_TIMEOUT_MS`, and only while fewer than the non-reserved share of
//! `HOOKD_MAX_CONNECTIONS` are doing the same.
//!
//! Without this, a client that sends the headers of a login and then stays silent holds its
//! connection for ever, and enough of them hold every connection hookd will accept, so genuine
//! webhooks wait in the kernel's backlog (issue #20). The webhook route has its own admission
//! (`limits`) and size limit (`HOOKD_MAX_BODY_BYTES`) and is never touched here.
//!
//! Owns the size limits of these bodies and the share of connections they may hold. It must never
//! make a request wait for a slot (no slot: 503 at once), never read more than the limit, and
//! never send `100 Continue` for a body it is going to refuse.

use std::pin::Pin;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http_body::Body as _;

use super::{ApiError, AppState};

/// Largest body of a console request: its forms hold a token and a CSRF value (a few hundred
/// bytes); 8 KiB leaves room without letting a client park megabytes.
pub const UI_BODY_LIMIT: usize = 8 * 1024;
/// Largest body of an admin API request (a replay filter, a pause reason) and of every other
/// route that is not a webhook.
pub const ADMIN_BODY_LIMIT: usize = 64 * 1024;

/// The size limit for a request to `path` (never a webhook path).
fn limit_for(path: &str) -> usize {
    if path == "/ui" || path.starts_with("/ui/") {
        UI_BODY_LIMIT
    } else {
        ADMIN_BODY_LIMIT
    }
}

/// Whether `path` is the webhook route, which reads its own body (see `limits::admit`).
fn is_webhook(path: &str) -> bool {
    path.starts_with("/webhooks/")
}

/// Middleware on the whole router: every non-webhook body is buffered here, with its limits.
pub async fn bounded(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if is_webhook(path) || request.body().is_end_stream() {
        return next.run(request).await;
    }
    let limit = limit_for(path);
    // Refused on the declared length, before the body is polled: a client that sent
    // `Expect: 100-continue` gets its 413 without being told to send the body first.
    if declared_length(&request).is_some_and(|n| n > limit) {
        return closing(ApiError::BodyTooLarge { limit });
    }
    let Ok(slot) = state.admission.other_bodies.clone().try_acquire_owned() else {
        tracing::warn!(
            path,
            "non-webhook bodies hold their share of the connections; refused at once"
        );
        return closing(ApiError::Overloaded);
    };
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(state.admission.body_timeout(), collect(body, limit)).await;
    let bytes = match read {
        Err(_) => return ApiError::BodyTimeout.into_response(),
        Ok(Err(Collect::TooLarge)) => return closing(ApiError::BodyTooLarge { limit }),
        Ok(Err(Collect::Read(e))) => return closing(ApiError::BadBody(e.to_string())),
        Ok(Ok(bytes)) => bytes,
    };
    drop(slot);
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// `Content-Length`, when the client sent one that parses.
pub fn declared_length(request: &Request) -> Option<usize> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The error's answer, with the connection closed: the rest of the body is never read.
fn closing(e: ApiError) -> Response {
    let mut resp = e.into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

enum Collect {
    TooLarge,
    Read(axum::Error),
}

/// The whole body, or `TooLarge` as soon as it passes `limit` (for bodies sent without a
/// `Content-Length`).
async fn collect(mut body: Body, limit: usize) -> Result<Bytes, Collect> {
    let mut buf = BytesMut::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(Collect::Read)?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(Collect::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_forms_get_the_smaller_limit() {
        assert_eq!(limit_for("/ui/login"), UI_BODY_LIMIT);
        assert_eq!(limit_for("/ui"), UI_BODY_LIMIT);
        assert_eq!(limit_for("/admin/replays"), ADMIN_BODY_LIMIT);
        assert_eq!(limit_for("/uix"), ADMIN_BODY_LIMIT);
        assert!(is_webhook("/webhooks/stripe") && !is_webhook("/webhooksx"));
    }

    #[tokio::test]
    async fn a_body_over_the_limit_stops_at_the_limit() {
        let body = Body::from(vec![b'x'; 100]);
        assert!(matches!(collect(body, 99).await, Err(Collect::TooLarge)));
        let body = Body::from(vec![b'x'; 100]);
        assert!(matches!(collect(body, 100).await, Ok(b) if b.len() == 100));
    }
}

//! The HTTP server span of every webhook and admin request, named and attributed by the
//! OpenTelemetry semantic conventions, continuing an incoming W3C `traceparent`.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;
use tracing::field::Empty;

use crate::telemetry::trace;

pub async fn trace_requests(route: Option<MatchedPath>, request: Request, next: Next) -> Response {
    let route = route.map(|r| r.as_str().to_owned()).unwrap_or_default();
    let method = request.method().as_str().to_owned();
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = Empty,
        trace_id = Empty,
        provider = Empty,
        event_id = Empty,
    );
    trace::continue_from_headers(&span, request.headers());
    trace::record_trace_id(&span);
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    response
}

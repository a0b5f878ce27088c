//! `/admin/events/stream`: every event as it is accepted, as server-sent events (read scope).
//! Each message's `data:` is a `StreamEvent` (JSON) and its `id:` the cursor a reconnect sends
//! back as `Last-Event-ID` to resume without losing its place (`ops::stream` says how).
//!
//! A thin handler over `ops::stream`. The body is pulled, not pushed: the next poll of the
//! store happens only once the client has taken what was sent (backpressure), and keep-alive
//! comments flow while it waits. It must never hold the stream open past a shutdown.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;

use super::openapi::ErrorBody;
use crate::http::extract::query;
use crate::http::{ApiError, AppState};
use crate::ops::{EventStream, StreamBatch, StreamEvent, StreamQuery};

/// How often an idle stream sends a comment, so proxies and clients see it alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Events as they are accepted, from now or from `Last-Event-ID`, as server-sent events: each
/// message's `data` is one event (schema `StreamEvent`) and its `id` the cursor to resume from.
/// Should the store fail, a message of type `error` ends the stream.
#[utoipa::path(get, path = "/admin/events/stream", tag = "events", params(StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, format = Uuid,
         description = "The `id` of the last message received: resume from there")),
    responses(
        (status = 200, content_type = "text/event-stream", body = StreamEvent,
         description = "A stream of events, one per message"),
        (status = 400, body = ErrorBody, description = "A filter or the cursor is invalid"),
        (status = 503, body = ErrorBody, description = "This process serves its cap of streams"),
    ))]
pub async fn stream(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let q: StreamQuery = query(&uri)?;
    let last = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("not text"));
    let stream = state.ops.open_stream(&q, last)?;
    let messages = futures_util::stream::unfold(
        (Some(stream), VecDeque::new()),
        |(mut stream, mut queue): (Option<EventStream>, VecDeque<Event>)| async move {
            loop {
                if let Some(m) = queue.pop_front() {
                    return Some((Ok(m), (stream, queue)));
                }
                match stream.as_mut()?.next().await {
                    None => return None,
                    Some(Ok(batch)) => queue.extend(messages(batch)),
                    Some(Err(e)) => {
                        // The client reconnects from its cursor; this stream ends here. The
                        // details stay in the log, as for any answer (`http::error`).
                        tracing::warn!(error = %e, "event stream: the store failed; ending it");
                        let m = "the event store failed; reconnect with Last-Event-ID to resume";
                        queue.push_back(Event::default().event("error").data(m));
                        stream = None;
                    }
                }
            }
        },
    );
    Ok(Sse::new(messages).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// One message per event, each with the batch's cursor.
fn messages(batch: StreamBatch) -> Vec<Event> {
    let cursor = batch.cursor.to_string();
    batch
        .events
        .iter()
        .filter_map(|e| match Event::default().id(&cursor).json_data(e) {
            Ok(m) => Some(m),
            Err(err) => {
                tracing::error!(event = %e.id, error = %err, "event stream: cannot encode an event");
                None
            }
        })
        .collect()
}

//! The admin API beyond the basics in `admin.rs`: searching events, one event with its stored
//! request, replays and redrives (one, or all that match a filter, as background jobs), the
//! audit log, activity for charts, and the OpenAPI document of the whole `/admin` tree.
//!
//! Read endpoints need any admin token; every `POST` goes through [`operate_guard`], which
//! refuses tokens without the `operate` scope (403) and writes the audit log entry for every
//! attempt, allowed or not.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, MatchedPath, Path, Query, RawPathParams, Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use super::{ApiError, AppState};
use crate::event::{EventDetail, EventId, EventStatus};
use crate::ops::Principal;
use crate::ops::Scope;
use crate::store::admin::{
    ActivityBucket, AuditEntry, AuditFilter, EventFilter, EventSummary, Job, ReplayKind,
};

/// A note a handler leaves for the audit log entry of its request.
#[derive(Debug, Clone)]
pub struct AuditNote(pub String);

/// The audit log's name for an operate endpoint.
fn action_name(path: &str) -> &str {
    match path {
        "/admin/events/{id}/replay" => "event.replay",
        "/admin/replays" => "events.replay",
        "/admin/dlq/{id}/redrive" => "event.redrive",
        "/admin/dlq/redrive" => "dlq.redrive",
        "/admin/jobs/{id}/cancel" => "job.cancel",
        "/admin/providers/{name}/pause" => "provider.pause",
        "/admin/providers/{name}/resume" => "provider.resume",
        other => other,
    }
}

/// Route layer of every state-changing admin endpoint: the `operate` scope, and the audit log.
pub async fn operate_guard(
    State(state): State<Arc<AppState>>,
    path: MatchedPath,
    params: RawPathParams,
    request: Request,
    next: Next,
) -> Response {
    let Some(who) = request.extensions().get::<Principal>().cloned() else {
        return ApiError::Unauthorized.into_response();
    };
    let action = action_name(path.as_str()).to_owned();
    let target = params.iter().next().map(|(_, v)| v.to_owned());
    if !who.may_operate() {
        state
            .ops
            .audit(
                &who,
                &action,
                target,
                403,
                Some("refused: read scope".into()),
            )
            .await;
        return ApiError::Forbidden(format!(
            "token {:?} has the read scope; this needs an operate token",
            who.name
        ))
        .into_response();
    }
    let response = next.run(request).await;
    let detail = response
        .extensions()
        .get::<AuditNote>()
        .map(|n| n.0.clone());
    state
        .ops
        .audit(&who, &action, target, response.status().as_u16(), detail)
        .await;
    response
}

/// Longest text accepted in a filter.
const MAX_TEXT: usize = 1024;

/// A query string as `T`; a mistake is a JSON 400 like every other.
pub(crate) fn query<T: DeserializeOwned>(uri: &Uri) -> Result<T, ApiError> {
    Query::<T>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| ApiError::InvalidParam(e.body_text()))
}

fn text_param(name: &str, v: &Option<String>) -> Result<Option<String>, ApiError> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some(s) if s.len() > MAX_TEXT => Err(ApiError::InvalidParam(format!(
            "{name} is longer than {MAX_TEXT} bytes"
        ))),
        Some(s) => Ok(Some(s.to_owned())),
    }
}

/// A body field: like [`text_param`], but NUL is refused (it would be stored with the job).
fn body_text(name: &str, v: &Option<String>) -> Result<Option<String>, ApiError> {
    let v = text_param(name, v)?;
    if v.as_deref().is_some_and(|s| s.contains('\0')) {
        return Err(ApiError::InvalidParam(format!(
            "{name} must not contain NUL characters"
        )));
    }
    Ok(v)
}

/// An RFC 3339 time; one without an offset is taken as UTC.
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

fn time_param(name: &str, v: &Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => parse_time(s).map(Some).ok_or_else(|| {
            ApiError::InvalidParam(format!(
                "{name} must be an RFC 3339 time, e.g. 2024-05-01T12:00:00Z"
            ))
        }),
    }
}

fn statuses_param(v: &Option<String>) -> Result<Vec<EventStatus>, ApiError> {
    let Some(list) = v.as_deref().filter(|s| !s.is_empty()) else {
        return Ok(Vec::new());
    };
    list.split(',')
        .map(|s| {
            EventStatus::parse(s.trim()).ok_or_else(|| {
                ApiError::InvalidParam(format!(
                    "unknown status {s:?}; expected pending, processing, retry_scheduled, \
                     compensating, completed or dead_letter"
                ))
            })
        })
        .collect()
}

pub(crate) fn limit_param(v: Option<u32>) -> Result<u32, ApiError> {
    match v {
        None => Ok(50),
        Some(n @ 1..=500) => Ok(n),
        Some(_) => Err(ApiError::InvalidParam(
            "limit must be between 1 and 500".into(),
        )),
    }
}

pub(crate) fn event_cursor(v: &Option<String>) -> Result<Option<EventId>, ApiError> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| ApiError::InvalidParam("cursor is not one this API gave out".into())),
    }
}

/// Filters for listing events; all optional, all that are given must hold.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Provider name, e.g. `stripe`.
    #[param(max_length = 1024)]
    pub(crate) provider: Option<String>,
    /// Comma-separated statuses, e.g. `dead_letter,retry_scheduled`.
    #[param(
        pattern = "^(pending|processing|retry_scheduled|compensating|completed|dead_letter)(,(pending|processing|retry_scheduled|compensating|completed|dead_letter))*$"
    )]
    pub(crate) status: Option<String>,
    /// Glob on the event type: `*` matches any run of characters, e.g. `payment_intent.*`.
    #[param(max_length = 1024)]
    pub(crate) event_type: Option<String>,
    /// Received at or after this time (RFC 3339).
    #[param(format = DateTime)]
    pub(crate) received_after: Option<String>,
    /// Received before this time (RFC 3339).
    #[param(format = DateTime)]
    pub(crate) received_before: Option<String>,
    /// The provider's idempotency key (e.g. Stripe's `evt_...`), exactly.
    #[param(max_length = 1024)]
    pub(crate) idempotency_key: Option<String>,
    /// Text that must occur in the raw payload (case-sensitive).
    #[param(max_length = 1024)]
    pub(crate) q: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(format = Uuid)]
    pub(crate) cursor: Option<String>,
    /// Events per page, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub(crate) limit: Option<u32>,
}

impl EventQuery {
    pub(crate) fn filter(&self) -> Result<EventFilter, ApiError> {
        Ok(EventFilter {
            provider: text_param("provider", &self.provider)?,
            statuses: statuses_param(&self.status)?,
            event_type: text_param("event_type", &self.event_type)?,
            received_after: time_param("received_after", &self.received_after)?,
            received_before: time_param("received_before", &self.received_before)?,
            idempotency_key: text_param("idempotency_key", &self.idempotency_key)?,
            text: text_param("q", &self.q)?,
        })
    }
}

/// One page of events, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub events: Vec<EventSummary>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

pub(crate) async fn page(
    state: &AppState,
    filter: &EventFilter,
    cursor: Option<EventId>,
    limit: u32,
) -> Result<EventPage, ApiError> {
    // NUL is in no stored provider, type or key (and PostgreSQL text cannot hold one).
    let impossible = [
        &filter.provider,
        &filter.event_type,
        &filter.idempotency_key,
    ]
    .iter()
    .any(|v| v.as_deref().is_some_and(|s| s.contains('\0')));
    let mut events = if impossible {
        Vec::new()
    } else {
        state
            .ops
            .reads
            .list_events(filter, cursor, limit + 1)
            .await?
    };
    let more = events.len() > limit as usize;
    events.truncate(limit as usize);
    let next_cursor = more
        .then(|| events.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(EventPage {
        events,
        next_cursor,
    })
}

/// List events, newest first.
#[utoipa::path(get, path = "/admin/events", tag = "events", params(EventQuery),
    responses(
        (status = 200, body = EventPage, description = "OK"),
        (status = 400, body = ErrorBody, description = "A filter is invalid"),
    ))]
pub async fn list_events(
    State(state): State<Arc<AppState>>,
    uri: Uri,
) -> Result<Json<EventPage>, ApiError> {
    let q: EventQuery = query(&uri)?;
    let filter = q.filter()?;
    Ok(Json(
        page(
            &state,
            &filter,
            event_cursor(&q.cursor)?,
            limit_param(q.limit)?,
        )
        .await?,
    ))
}

/// One event with its whole history and the request as stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    #[serde(flatten)]
    pub detail: EventDetail,
    /// The request headers kept for audit; signature headers are stored as `[redacted]`.
    #[schema(value_type = Object)]
    pub headers: serde_json::Value,
    /// The raw body: text when it is UTF-8, else base64 (see `body_encoding`); `null` once
    /// retention purged it.
    pub body: Option<String>,
    /// `utf8` or `base64`.
    pub body_encoding: String,
}

pub(crate) fn event_id(id: &str) -> Result<EventId, ApiError> {
    id.parse().map_err(|_| ApiError::NotFound)
}

/// One event: transitions, step results, audit headers and the raw body.
#[utoipa::path(get, path = "/admin/events/{id}", tag = "events",
    params(("id" = String, Path, format = Uuid, description = "Event id")),
    responses(
        (status = 200, body = EventView, description = "OK"),
        (status = 404, body = ErrorBody, description = "No such thing"),
    ))]
pub async fn event(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<EventView>, ApiError> {
    let id = event_id(&id)?;
    let detail = state.ops.reads.event(id).await?.ok_or(ApiError::NotFound)?;
    let payload = state
        .ops
        .reads
        .event_payload(id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let (body, body_encoding) = match (&detail.body_purged_at, String::from_utf8(payload.body)) {
        (Some(_), _) => (None, "utf8"),
        (None, Ok(text)) => (Some(text), "utf8"),
        (None, Err(e)) => (
            Some(base64::engine::general_purpose::STANDARD.encode(e.as_bytes())),
            "base64",
        ),
    };
    Ok(Json(EventView {
        detail,
        headers: payload.headers,
        body,
        body_encoding: body_encoding.into(),
    }))
}

/// The raw body of one event, byte for byte, as a download (never rendered by a browser).
#[utoipa::path(get, path = "/admin/events/{id}/raw", tag = "events",
    params(("id" = String, Path, format = Uuid, description = "Event id")),
    responses(
        (status = 200, content_type = "application/octet-stream", body = Vec<u8>, description = "OK"),
        (status = 404, body = ErrorBody, description = "No such thing"),
    ))]
pub async fn event_raw(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = event_id(&id)?;
    let payload = state
        .ops
        .reads
        .event_payload(id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut resp = payload.body.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!("attachment; filename=\"{id}.body\""))
            .unwrap_or(HeaderValue::from_static("attachment")),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    Ok(resp)
}

/// Replay one completed or dead-lettered event: a new attempt cycle in which every step runs
/// again (also those that had succeeded). The replay is recorded as a transition.
#[utoipa::path(post, path = "/admin/events/{id}/replay", tag = "events",
    params(("id" = String, Path, format = Uuid, description = "Event id")),
    responses(
        (status = 200, body = EventDetail, description = "Replayed: the event is pending again"),
        (status = 403, body = ErrorBody, description = "The token has the read scope"),
        (status = 404, body = ErrorBody, description = "No such thing"),
        (status = 409, body = ErrorBody, description = "Still in progress, or the payload was purged"),
    ))]
pub async fn replay(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<EventDetail>, ApiError> {
    let id = event_id(&id)?;
    let event = state.ops.replay(id, ReplayKind::Replay, &who).await?;
    Ok(Json(event))
}

/// Redrive one dead-lettered event (a replay of a dead letter).
#[utoipa::path(post, path = "/admin/dlq/{id}/redrive", tag = "dead letters",
    params(("id" = String, Path, format = Uuid, description = "Event id")),
    responses(
        (status = 200, body = EventDetail, description = "Redriven: the event is pending again"),
        (status = 403, body = ErrorBody, description = "The token has the read scope"),
        (status = 404, body = ErrorBody, description = "No such thing"),
        (status = 409, body = ErrorBody, description = "Not dead-lettered, or the payload was purged"),
    ))]
pub async fn redrive(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<EventDetail>, ApiError> {
    let id = event_id(&id)?;
    let event = state.ops.replay(id, ReplayKind::Redrive, &who).await?;
    Ok(Json(event))
}

/// Filters for the dead-letter list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DlqQuery {
    /// Provider name.
    #[param(max_length = 1024)]
    provider: Option<String>,
    /// Glob on the event type.
    #[param(max_length = 1024)]
    event_type: Option<String>,
    /// Text that must occur in the raw payload (case-sensitive).
    #[param(max_length = 1024)]
    q: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(format = Uuid)]
    cursor: Option<String>,
    /// Events per page, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// The dead letters, newest first, with the error that put each there (`last_error`).
#[utoipa::path(get, path = "/admin/dlq", tag = "dead letters", params(DlqQuery),
    responses(
        (status = 200, body = EventPage, description = "OK"),
        (status = 400, body = ErrorBody, description = "A parameter or the body is invalid"),
    ))]
pub async fn dlq(
    State(state): State<Arc<AppState>>,
    uri: Uri,
) -> Result<Json<EventPage>, ApiError> {
    let q: DlqQuery = query(&uri)?;
    let filter = EventFilter {
        provider: text_param("provider", &q.provider)?,
        statuses: vec![EventStatus::DeadLetter],
        event_type: text_param("event_type", &q.event_type)?,
        text: text_param("q", &q.q)?,
        ..Default::default()
    };
    Ok(Json(
        page(
            &state,
            &filter,
            event_cursor(&q.cursor)?,
            limit_param(q.limit)?,
        )
        .await?,
    ))
}

/// The statuses a replay may start from.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Finished {
    Completed,
    DeadLetter,
}

/// Which events a bulk replay works through: at least one field (to replay every finished
/// event, give `received_after: "1970-01-01T00:00:00Z"`).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct ReplayRequest {
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 1024,
        pattern = "^[^\\x00]*$"
    )]
    provider: Option<String>,
    /// Replay events in these statuses (both when left out).
    #[serde(default)]
    #[schema(min_items = 1)]
    statuses: Vec<Finished>,
    /// Glob on the event type.
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 1024,
        pattern = "^[^\\x00]*$"
    )]
    event_type: Option<String>,
    #[schema(nullable = false, format = DateTime)]
    received_after: Option<String>,
    #[schema(nullable = false, format = DateTime)]
    received_before: Option<String>,
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 1024,
        pattern = "^[^\\x00]*$"
    )]
    idempotency_key: Option<String>,
    /// Text that must occur in the raw payload.
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 1024,
        pattern = "^[^\\x00]*$"
    )]
    text: Option<String>,
}

/// Which dead letters a bulk redrive works through (all of them when left out).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedriveRequest {
    #[schema(nullable = false, max_length = 1024, pattern = "^[^\\x00]*$")]
    provider: Option<String>,
    /// Glob on the event type.
    #[schema(nullable = false, max_length = 1024, pattern = "^[^\\x00]*$")]
    event_type: Option<String>,
    #[schema(nullable = false, format = DateTime)]
    received_after: Option<String>,
    #[schema(nullable = false, format = DateTime)]
    received_before: Option<String>,
    #[schema(nullable = false, max_length = 1024, pattern = "^[^\\x00]*$")]
    idempotency_key: Option<String>,
    /// Text that must occur in the raw payload.
    #[schema(nullable = false, max_length = 1024, pattern = "^[^\\x00]*$")]
    text: Option<String>,
}

/// A JSON body, where an empty body or `null` means the default.
fn json_body<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice::<Option<T>>(body)
        .map(Option::unwrap_or_default)
        .map_err(|e| ApiError::BadBody(e.to_string()))
}

impl ReplayRequest {
    fn filter(self) -> Result<EventFilter, ApiError> {
        let mut f = EventFilter {
            provider: body_text("provider", &self.provider)?,
            statuses: self
                .statuses
                .iter()
                .map(|s| match s {
                    Finished::Completed => EventStatus::Completed,
                    Finished::DeadLetter => EventStatus::DeadLetter,
                })
                .collect(),
            event_type: body_text("event_type", &self.event_type)?,
            received_after: time_param("received_after", &self.received_after)?,
            received_before: time_param("received_before", &self.received_before)?,
            idempotency_key: body_text("idempotency_key", &self.idempotency_key)?,
            text: body_text("text", &self.text)?,
        };
        if f == EventFilter::default() {
            return Err(ApiError::InvalidParam(
                "give at least one filter; to replay every event, set received_after to \
                 1970-01-01T00:00:00Z"
                    .into(),
            ));
        }
        if f.statuses.is_empty() {
            f.statuses = vec![EventStatus::Completed, EventStatus::DeadLetter];
        }
        Ok(f)
    }
}

impl RedriveRequest {
    fn filter(self) -> Result<EventFilter, ApiError> {
        Ok(EventFilter {
            provider: body_text("provider", &self.provider)?,
            statuses: vec![EventStatus::DeadLetter],
            event_type: body_text("event_type", &self.event_type)?,
            received_after: time_param("received_after", &self.received_after)?,
            received_before: time_param("received_before", &self.received_before)?,
            idempotency_key: body_text("idempotency_key", &self.idempotency_key)?,
            text: body_text("text", &self.text)?,
        })
    }
}

async fn start(
    state: &Arc<AppState>,
    who: &Principal,
    kind: ReplayKind,
    filter: EventFilter,
) -> Result<Response, ApiError> {
    let job = state.ops.start_job(kind, filter, who).await?;
    let mut resp = (StatusCode::ACCEPTED, Json(&job)).into_response();
    resp.extensions_mut().insert(AuditNote(format!(
        "job {} over {} event(s)",
        job.id, job.total
    )));
    Ok(resp)
}

/// Replay every completed or dead-lettered event a filter matches, in the background. The
/// answer is the job; follow it at `/admin/jobs/{id}`.
#[utoipa::path(post, path = "/admin/replays", tag = "jobs", request_body = ReplayRequest,
    responses(
        (status = 202, body = Job, description = "The job started"),
        (status = 400, body = ErrorBody, description = "A parameter or the body is invalid"),
        (status = 403, body = ErrorBody, description = "The token has the read scope"),
    ))]
pub async fn replay_many(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let filter = json_body::<ReplayRequest>(&body)?.filter()?;
    start(&state, &who, ReplayKind::Replay, filter).await
}

/// Redrive every dead letter (or those a filter matches), in the background.
#[utoipa::path(post, path = "/admin/dlq/redrive", tag = "dead letters",
    request_body(content = Option<RedriveRequest>, description = "Optional filter"),
    responses(
        (status = 202, body = Job, description = "The job started"),
        (status = 400, body = ErrorBody, description = "A parameter or the body is invalid"),
        (status = 403, body = ErrorBody, description = "The token has the read scope"),
    ))]
pub async fn redrive_all(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let filter = json_body::<RedriveRequest>(&body)?.filter()?;
    start(&state, &who, ReplayKind::Redrive, filter).await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<Job>,
}

/// The 50 most recent bulk jobs.
#[utoipa::path(get, path = "/admin/jobs", tag = "jobs",
    responses((status = 200, body = JobList, description = "OK")))]
pub async fn jobs(State(state): State<Arc<AppState>>) -> Result<Json<JobList>, ApiError> {
    Ok(Json(JobList {
        jobs: state.ops.store.jobs(50).await?,
    }))
}

fn job_id(id: &str) -> Result<Uuid, ApiError> {
    id.parse().map_err(|_| ApiError::NotFound)
}

/// One bulk job and its progress.
#[utoipa::path(get, path = "/admin/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, format = Uuid, description = "Job id")),
    responses((status = 200, body = Job, description = "OK"), (status = 404, body = ErrorBody, description = "No such thing")))]
pub async fn job(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    state
        .ops
        .store
        .job(job_id(&id)?)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound)
}

/// Ask a running job to stop after its current batch.
#[utoipa::path(post, path = "/admin/jobs/{id}/cancel", tag = "jobs",
    params(("id" = String, Path, format = Uuid, description = "Job id")),
    responses(
        (status = 200, body = Job, description = "Cancel requested"),
        (status = 403, body = ErrorBody, description = "The token has the read scope"),
        (status = 404, body = ErrorBody, description = "No such thing"),
        (status = 409, body = ErrorBody, description = "The job is no longer running"),
    ))]
pub async fn cancel_job(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let id = job_id(&id)?;
    let store = &state.ops.store;
    if !store.cancel_job(id).await? {
        let job = store.job(id).await?.ok_or(ApiError::NotFound)?;
        return Err(ApiError::Conflict {
            code: "job_not_running",
            message: format!("the job is {}", job.status.as_str()),
        });
    }
    store.job(id).await?.map(Json).ok_or(ApiError::NotFound)
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this actor (token name; console actions end in ` (console)`).
    #[param(max_length = 1024)]
    actor: Option<String>,
    /// Only this action, e.g. `event.replay`.
    #[param(max_length = 1024)]
    action: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<i64>,
    /// Entries per page, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next_cursor: Option<String>,
}

/// The audit log, newest first: every operate action (allowed or refused), who, what, when.
#[utoipa::path(get, path = "/admin/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditPage, description = "OK"), (status = 400, body = ErrorBody, description = "A parameter or the body is invalid")))]
pub async fn audit(
    State(state): State<Arc<AppState>>,
    uri: Uri,
) -> Result<Json<AuditPage>, ApiError> {
    let q: AuditQuery = query(&uri)?;
    let limit = limit_param(q.limit)?;
    let filter = AuditFilter {
        actor: text_param("actor", &q.actor)?,
        action: text_param("action", &q.action)?,
        before: q.cursor,
        limit: limit + 1,
    };
    let impossible = [&filter.actor, &filter.action]
        .iter()
        .any(|v| v.as_deref().is_some_and(|s| s.contains('\0')));
    let mut entries = if impossible {
        Vec::new()
    } else {
        state.ops.reads.audit(&filter).await?
    };
    let more = entries.len() > limit as usize;
    entries.truncate(limit as usize);
    let next_cursor = more
        .then(|| entries.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(Json(AuditPage {
        entries,
        next_cursor,
    }))
}

/// The time a chart covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
pub enum Window {
    /// Fifteen-second buckets.
    #[serde(rename = "15m")]
    Quarter,
    /// One-minute buckets.
    #[default]
    #[serde(rename = "1h")]
    Hour,
    /// Five-minute buckets.
    #[serde(rename = "6h")]
    SixHours,
    /// Half-hour buckets.
    #[serde(rename = "24h")]
    Day,
    /// Four-hour buckets.
    #[serde(rename = "7d")]
    Week,
}

impl Window {
    pub const ALL: [Self; 5] = [
        Self::Quarter,
        Self::Hour,
        Self::SixHours,
        Self::Day,
        Self::Week,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Quarter => "15m",
            Self::Hour => "1h",
            Self::SixHours => "6h",
            Self::Day => "24h",
            Self::Week => "7d",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|w| w.name() == s)
    }

    /// The span and the bucket size, in seconds.
    fn spans(self) -> (i64, u32) {
        match self {
            Self::Quarter => (900, 15),
            Self::Hour => (3600, 60),
            Self::SixHours => (6 * 3600, 300),
            Self::Day => (24 * 3600, 1800),
            Self::Week => (7 * 24 * 3600, 4 * 3600),
        }
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// `15m`, `1h` (default, one-minute buckets), `6h`, `24h` or `7d`.
    window: Option<Window>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    pub window: String,
    pub bucket_secs: u32,
    /// Events received, completed, retried and dead-lettered per bucket, oldest first.
    pub buckets: Vec<ActivityBucket>,
    /// Events waiting or dead-lettered, by status.
    #[schema(value_type = Object)]
    pub backlog: serde_json::Value,
}

/// Throughput and failures over time, and the backlog now.
#[utoipa::path(get, path = "/admin/stats", tag = "events", params(StatsQuery),
    responses((status = 200, body = Stats, description = "OK"), (status = 400, body = ErrorBody, description = "A parameter or the body is invalid")))]
pub async fn stats(State(state): State<Arc<AppState>>, uri: Uri) -> Result<Json<Stats>, ApiError> {
    let q: StatsQuery = query(&uri)?;
    Ok(Json(activity(&state, q.window.unwrap_or_default()).await?))
}

/// The activity over `window`, shared with the console's chart.
pub async fn activity(state: &AppState, window: Window) -> Result<Stats, ApiError> {
    let (span, bucket_secs) = window.spans();
    let since = Utc::now() - chrono::Duration::seconds(span - i64::from(bucket_secs));
    let buckets = state.ops.reads.activity(since, bucket_secs).await?;
    let backlog = state.ops.reads.backlog().await?;
    let by_status: serde_json::Map<String, serde_json::Value> = backlog
        .by_status
        .iter()
        .map(|(s, n)| (s.as_str().to_owned(), (*n).into()))
        .collect();
    Ok(Stats {
        window: window.name().to_owned(),
        bucket_secs,
        buckets,
        backlog: by_status.into(),
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmI {
    pub name: String,
    pub scope: Scope,
}

/// The token's name and scope.
#[utoipa::path(get, path = "/admin/whoami", tag = "audit",
    responses((status = 200, body = WhoAmI, description = "OK")))]
pub async fn whoami(Extension(who): Extension<Principal>) -> Json<WhoAmI> {
    Json(WhoAmI {
        name: who.name,
        scope: who.scope,
    })
}

/// The error body every endpoint answers with.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `not_found`, `forbidden`, `invalid_parameter`.
    pub error: String,
    pub message: String,
    /// On a 500: the id that the error log line carries too.
    pub correlation_id: Option<String>,
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        // Answers any admin request can get from the layers in front of the handlers: the token
        // check (401), the access guard (403, 429), the listener's header limit (431, no body)
        // and a store that is down (503). Documented once here so the contract test holds them to the spec.
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        let common = [
            ("401", error("Missing or unknown admin token")),
            (
                "403",
                error("The client address is outside [admin] allow, or a read token on a POST"),
            ),
            (
                "429",
                error("Too many failed logins from this address; see Retry-After"),
            ),
            (
                "431",
                ResponseBuilder::new()
                    .description("Request line and headers over HOOKD_MAX_HEADER_BYTES, or more than HOOKD_MAX_HEADERS (no body)")
                    .build(),
            ),
            (
                "503",
                error("The event store is unreachable; see Retry-After"),
            ),
        ];
        for item in openapi.paths.paths.values_mut() {
            for op in [&mut item.get, &mut item.post].into_iter().flatten() {
                for (code, response) in &common {
                    op.responses
                        .responses
                        .entry((*code).into())
                        .or_insert_with(|| response.clone().into());
                }
            }
        }
        if let Some(c) = openapi.components.as_mut() {
            c.add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(
                            "An admin token: HOOKD_ADMIN_TOKEN (operate), HOOKD_ADMIN_READ_TOKEN \
                             (read) or one of [[admin.tokens]]. Read tokens get 403 on every POST.",
                        ))
                        .build(),
                ),
            );
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hookd admin API",
        description = "Search, inspect, replay and redrive webhook events; pause providers; \
                       follow bulk jobs; read the audit log. Every request needs \
                       `Authorization: Bearer <admin token>`; `POST`s need the operate scope.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        list_events, event, event_raw, replay, replay_many, dlq, redrive, redrive_all, jobs, job,
        cancel_job, audit, stats, whoami, openapi_doc,
        super::admin::providers, super::admin::pause, super::admin::resume,
        super::admin::destinations,
    ),
    components(schemas(ErrorBody, Window)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "events", description = "Received events, their history and replays"),
        (name = "dead letters", description = "Events that failed for good, and redrives"),
        (name = "jobs", description = "Bulk replays and redrives running in the background"),
        (name = "providers", description = "Providers, pauses and destination breakers"),
        (name = "audit", description = "Who did what"),
    )
)]
pub struct ApiDoc;

/// The OpenAPI document as served and as committed in `docs/openapi.json`.
pub fn openapi_json() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}

/// This document (OpenAPI 3.1).
#[utoipa::path(get, path = "/admin/openapi.json", tag = "audit",
    responses((status = 200, content_type = "application/json", body = Object, description = "OK")))]
pub async fn openapi_doc() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json()).into_response()
}

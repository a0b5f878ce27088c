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
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use super::{ApiError, AppState};
use crate::config::Scope;
use crate::event::{EventDetail, EventId, EventStatus};
use crate::ops::Principal;
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

fn text_param(name: &str, v: &Option<String>) -> Result<Option<String>, ApiError> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some(s) if s.len() > MAX_TEXT => Err(ApiError::InvalidParam(format!(
            "{name} is longer than {MAX_TEXT} bytes"
        ))),
        // PostgreSQL text cannot hold NUL, and no stored value contains one.
        Some(s) if s.contains('\0') => Err(ApiError::InvalidParam(format!(
            "{name} must not contain NUL characters"
        ))),
        Some(s) => Ok(Some(s.to_owned())),
    }
}

fn time_param(name: &str, v: &Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| {
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

fn limit_param(v: Option<u32>) -> Result<u32, ApiError> {
    match v {
        None => Ok(50),
        Some(n @ 1..=500) => Ok(n),
        Some(_) => Err(ApiError::InvalidParam(
            "limit must be between 1 and 500".into(),
        )),
    }
}

fn event_cursor(v: &Option<String>) -> Result<Option<EventId>, ApiError> {
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
    provider: Option<String>,
    /// Comma-separated statuses, e.g. `dead_letter,retry_scheduled`.
    status: Option<String>,
    /// Glob on the event type: `*` matches any run of characters, e.g. `payment_intent.*`.
    event_type: Option<String>,
    /// Received at or after this time (RFC 3339).
    received_after: Option<String>,
    /// Received before this time (RFC 3339).
    received_before: Option<String>,
    /// The provider's idempotency key (e.g. Stripe's `evt_...`), exactly.
    idempotency_key: Option<String>,
    /// Text that must occur in the raw payload (case-sensitive).
    q: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Events per page, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

impl EventQuery {
    fn filter(&self) -> Result<EventFilter, ApiError> {
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

async fn page(
    state: &AppState,
    filter: &EventFilter,
    cursor: Option<EventId>,
    limit: u32,
) -> Result<EventPage, ApiError> {
    let mut events = state
        .ops
        .reads
        .list_events(filter, cursor, limit + 1)
        .await?;
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
        (status = 200, body = EventPage),
        (status = 400, body = ErrorBody, description = "A filter is invalid"),
    ))]
pub async fn list_events(
    State(state): State<Arc<AppState>>,
    Query(q): Query<EventQuery>,
) -> Result<Json<EventPage>, ApiError> {
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

fn event_id(id: &str) -> Result<EventId, ApiError> {
    id.parse().map_err(|_| ApiError::NotFound)
}

/// One event: transitions, step results, audit headers and the raw body.
#[utoipa::path(get, path = "/admin/events/{id}", tag = "events",
    params(("id" = String, Path, description = "Event id")),
    responses(
        (status = 200, body = EventView),
        (status = 404, body = ErrorBody),
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
    params(("id" = String, Path, description = "Event id")),
    responses(
        (status = 200, content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, body = ErrorBody),
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
    params(("id" = String, Path, description = "Event id")),
    responses(
        (status = 200, body = EventDetail, description = "Replayed: the event is pending again"),
        (status = 403, body = ErrorBody, description = "The token has the read scope"),
        (status = 404, body = ErrorBody),
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
    params(("id" = String, Path, description = "Event id")),
    responses(
        (status = 200, body = EventDetail, description = "Redriven: the event is pending again"),
        (status = 403, body = ErrorBody, description = "The token has the read scope"),
        (status = 404, body = ErrorBody),
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
    provider: Option<String>,
    /// Glob on the event type.
    event_type: Option<String>,
    /// Text that must occur in the raw payload (case-sensitive).
    q: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Events per page, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// The dead letters, newest first, with the error that put each there (`last_error`).
#[utoipa::path(get, path = "/admin/dlq", tag = "dead letters", params(DlqQuery),
    responses(
        (status = 200, body = EventPage),
        (status = 400, body = ErrorBody),
    ))]
pub async fn dlq(
    State(state): State<Arc<AppState>>,
    Query(q): Query<DlqQuery>,
) -> Result<Json<EventPage>, ApiError> {
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

/// Which events a bulk replay or redrive works through. At least one field must be set for a
/// replay (to replay everything, say `received_after: "1970-01-01T00:00:00Z"`).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    provider: Option<String>,
    /// Statuses to replay from: `completed`, `dead_letter` (both when left out). Ignored by a
    /// redrive, which takes dead letters only.
    #[serde(default)]
    statuses: Vec<EventStatus>,
    /// Glob on the event type.
    event_type: Option<String>,
    received_after: Option<DateTime<Utc>>,
    received_before: Option<DateTime<Utc>>,
    idempotency_key: Option<String>,
    /// Text that must occur in the raw payload.
    text: Option<String>,
}

impl BulkRequest {
    fn parse(body: &[u8]) -> Result<Self, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        serde_json::from_slice(body).map_err(|e| ApiError::BadBody(e.to_string()))
    }

    fn filter(self, kind: ReplayKind) -> Result<EventFilter, ApiError> {
        let mut f = EventFilter {
            provider: text_param("provider", &self.provider)?,
            statuses: self.statuses,
            event_type: text_param("event_type", &self.event_type)?,
            received_after: self.received_after,
            received_before: self.received_before,
            idempotency_key: text_param("idempotency_key", &self.idempotency_key)?,
            text: text_param("text", &self.text)?,
        };
        match kind {
            ReplayKind::Redrive => f.statuses = vec![EventStatus::DeadLetter],
            ReplayKind::Replay => {
                if f == EventFilter::default() {
                    return Err(ApiError::InvalidParam(
                        "give at least one filter; to replay every event, set received_after \
                         to 1970-01-01T00:00:00Z"
                            .into(),
                    ));
                }
                if let Some(s) = f
                    .statuses
                    .iter()
                    .find(|s| !matches!(s, EventStatus::Completed | EventStatus::DeadLetter))
                {
                    return Err(ApiError::InvalidParam(format!(
                        "only completed and dead_letter events can be replayed, not {s}"
                    )));
                }
                if f.statuses.is_empty() {
                    f.statuses = vec![EventStatus::Completed, EventStatus::DeadLetter];
                }
            }
        }
        Ok(f)
    }
}

async fn start(
    state: &Arc<AppState>,
    who: &Principal,
    kind: ReplayKind,
    body: &[u8],
) -> Result<Response, ApiError> {
    let filter = BulkRequest::parse(body)?.filter(kind)?;
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
#[utoipa::path(post, path = "/admin/replays", tag = "jobs", request_body = BulkRequest,
    responses(
        (status = 202, body = Job, description = "The job started"),
        (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "The token has the read scope"),
    ))]
pub async fn replay_many(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    start(&state, &who, ReplayKind::Replay, &body).await
}

/// Redrive every dead letter (or those a filter matches), in the background.
#[utoipa::path(post, path = "/admin/dlq/redrive", tag = "dead letters",
    request_body(content = Option<BulkRequest>, description = "Optional filter; `statuses` is ignored"),
    responses(
        (status = 202, body = Job, description = "The job started"),
        (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "The token has the read scope"),
    ))]
pub async fn redrive_all(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    start(&state, &who, ReplayKind::Redrive, &body).await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<Job>,
}

/// The 50 most recent bulk jobs.
#[utoipa::path(get, path = "/admin/jobs", tag = "jobs",
    responses((status = 200, body = JobList)))]
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
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody)))]
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
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, body = Job, description = "Cancel requested"),
        (status = 403, body = ErrorBody, description = "The token has the read scope"),
        (status = 404, body = ErrorBody),
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
    actor: Option<String>,
    /// Only this action, e.g. `event.replay`.
    action: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
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
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody)))]
pub async fn audit(
    State(state): State<Arc<AppState>>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = limit_param(q.limit)?;
    let before =
        match q.cursor.as_deref() {
            None | Some("") => None,
            Some(c) => Some(c.parse::<i64>().map_err(|_| {
                ApiError::InvalidParam("cursor is not one this API gave out".into())
            })?),
        };
    let mut entries = state
        .ops
        .reads
        .audit(&AuditFilter {
            actor: text_param("actor", &q.actor)?,
            action: text_param("action", &q.action)?,
            before,
            limit: limit + 1,
        })
        .await?;
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

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// `1h` (default, one-minute buckets), `6h`, `24h` or `7d`.
    window: Option<String>,
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
    responses((status = 200, body = Stats), (status = 400, body = ErrorBody)))]
pub async fn stats(
    State(state): State<Arc<AppState>>,
    Query(q): Query<StatsQuery>,
) -> Result<Json<Stats>, ApiError> {
    Ok(Json(
        activity(&state, q.window.as_deref().unwrap_or("1h")).await?,
    ))
}

/// The activity over `window`, shared with the console's chart.
pub async fn activity(state: &AppState, window: &str) -> Result<Stats, ApiError> {
    let (span, bucket_secs) = match window {
        "1h" => (3600, 60),
        "6h" => (6 * 3600, 300),
        "24h" => (24 * 3600, 1800),
        "7d" => (7 * 24 * 3600, 4 * 3600),
        _ => {
            return Err(ApiError::InvalidParam(
                "window must be 1h, 6h, 24h or 7d".into(),
            ));
        }
    };
    let since = Utc::now() - chrono::Duration::seconds(span - i64::from(bucket_secs));
    let buckets = state.ops.reads.activity(since, bucket_secs).await?;
    let backlog = state.ops.reads.backlog().await?;
    let by_status: serde_json::Map<String, serde_json::Value> = backlog
        .by_status
        .iter()
        .map(|(s, n)| (s.as_str().to_owned(), (*n).into()))
        .collect();
    Ok(Stats {
        window: window.to_owned(),
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
    responses((status = 200, body = WhoAmI)))]
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
    components(schemas(ErrorBody)),
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
    responses((status = 200, content_type = "application/json", body = Object)))]
pub async fn openapi_doc() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json()).into_response()
}

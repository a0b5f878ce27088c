//! The web console at `/ui`: server-rendered pages (no front-end build), a little JavaScript for
//! live refresh, and the same operator actions as the admin API, both calling the operator
//! layer (`ops`); actions are audited as `<token> (console)`.
//!
//! Security: login with an admin token into a session cookie (`session`); every state-changing
//! form carries the session's CSRF token, checked in constant time, and a cross-site `Origin` is
//! refused on top. Every value on a page is escaped by the templates (maud); a strict
//! Content-Security-Policy allows only this module's own script and style sheet. Handlers here
//! must never reach the store or call the admin API's handlers: they call `ops`.

mod actions;
mod config;
mod pages;
mod session;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::extract::query;
use super::{ApiError, AppState};
use crate::event::EventStatus;
use crate::ops::{ConsoleSession, EventFilter, EventQuery, Scope, Window, params};

type Me = axum::Extension<ConsoleSession>;

pub fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let authed = Router::new()
        .route("/", get(|| async { Redirect::to("/ui/events") }))
        .route("/events", get(events))
        .route("/events/rows", get(event_rows))
        .route("/events/{id}", get(event))
        .route("/events/{id}/live", get(event_live))
        .route("/events/{id}/replay", post(actions::replay))
        .route("/dlq", get(dlq))
        .route("/dlq/{id}/redrive", post(actions::redrive))
        .route("/dlq/redrive", post(actions::redrive_all))
        .route("/providers", get(providers))
        .route("/providers/{name}/pause", post(actions::pause))
        .route("/providers/{name}/resume", post(actions::resume))
        .route("/config", get(config::config))
        .route("/config/providers", post(config::put_provider))
        .route("/config/providers/{name}", get(config::provider))
        .route("/config/providers/{name}/secrets", post(config::add_secret))
        .route("/config/providers/{name}/test", post(config::test_event))
        .route(
            "/config/providers/{name}/delete",
            post(config::delete_provider),
        )
        .route("/config/routes", post(config::put_route))
        .route("/config/routes/{name}", get(config::route))
        .route("/config/routes/{name}/delete", post(config::delete_route))
        .route("/config/destinations", post(config::put_destination))
        .route(
            "/config/destinations/{name}/delete",
            post(config::delete_destination),
        )
        .route("/ordering", get(ordering))
        .route("/ordering/{id}/skip", post(actions::skip))
        .route("/audit", get(audit))
        .route("/logout", post(session::logout))
        .route_layer(middleware::from_fn_with_state(
            state,
            session::require_session,
        ));
    Router::new()
        .merge(authed)
        .route("/login", get(session::login_page).post(session::login))
        .route("/static/app.css", get(css))
        .route("/static/app.js", get(js))
        .layer(middleware::from_fn(security_headers))
}

/// Headers on every console response: a strict CSP, no framing, no sniffing, no caching.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut resp = next.run(request).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("app.css"),
    )
        .into_response()
}

async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("app.js"),
    )
        .into_response()
}

/// An error as a console page.
fn error_page(who: Option<&ConsoleSession>, e: ApiError) -> Response {
    let (status, _) = e.status_and_code();
    let message = match &e {
        // The details are in the log (with a correlation id); the page says what to do.
        ApiError::Store(_) if status.is_server_error() => {
            let _ = e.into_response();
            "The event store did not answer. Try again in a moment.".to_owned()
        }
        _ => e.to_string(),
    };
    pages::error(status, who, &message)
}

/// A page, or the error page of what went wrong.
fn page_or_error(me: &ConsoleSession, result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(|e| error_page(Some(me), e))
}

/// The chart's window from the query string (`window=1h`), the default when absent or unknown.
fn window(uri: &Uri) -> Window {
    uri.query()
        .and_then(|qs| {
            form_urlencoded::parse(qs.as_bytes())
                .find(|(k, _)| k == "window")
                .and_then(|(_, v)| Window::parse(&v))
        })
        .unwrap_or_default()
}

async fn events(State(state): State<Arc<AppState>>, axum::Extension(me): Me, uri: Uri) -> Response {
    let result = async {
        let q: EventQuery = query(&uri)?;
        let page = state.ops.events(&q).await?;
        let stats = state.ops.activity(window(&uri)).await?;
        let view = pages::EventsView {
            query: &q,
            providers: &state.ops.provider_names(),
            page: &page,
            stats: &stats,
            query_string: uri.query().unwrap_or(""),
        };
        Ok::<_, ApiError>(pages::events(&me, &view))
    }
    .await;
    page_or_error(&me, result)
}

/// The rows of the events table alone, for live refresh.
async fn event_rows(
    State(state): State<Arc<AppState>>,
    axum::Extension(me): Me,
    uri: Uri,
) -> Response {
    let result = async {
        let q: EventQuery = query(&uri)?;
        let filter = q.filter()?;
        let page = state
            .ops
            .page(&filter, None, params::limit(q.limit)?)
            .await?;
        Ok::<_, ApiError>(pages::respond(
            StatusCode::OK,
            pages::event_rows(&page.events),
        ))
    }
    .await;
    page_or_error(&me, result)
}

async fn event(
    State(state): State<Arc<AppState>>,
    axum::Extension(me): Me,
    Path(id): Path<String>,
    uri: Uri,
) -> Response {
    let result = async {
        let (detail, payload) = state.ops.event_detail(params::event_id(&id)?).await?;
        Ok::<_, ApiError>(pages::event(&me, &detail, &payload, flash(&uri)))
    }
    .await;
    page_or_error(&me, result)
}

/// Status, timeline and steps of one event alone, for live refresh.
async fn event_live(
    State(state): State<Arc<AppState>>,
    axum::Extension(me): Me,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        let (detail, _) = state.ops.event_detail(params::event_id(&id)?).await?;
        Ok::<_, ApiError>(pages::respond(StatusCode::OK, pages::event_live(&detail)))
    }
    .await;
    page_or_error(&me, result)
}

async fn dlq(State(state): State<Arc<AppState>>, axum::Extension(me): Me, uri: Uri) -> Response {
    let result = async {
        let q: EventQuery = query(&uri)?;
        let filter = EventFilter {
            statuses: vec![EventStatus::DeadLetter],
            ..q.filter()?
        };
        let cursor = params::event_cursor(&q.cursor)?;
        let page = state
            .ops
            .page(&filter, cursor, params::limit(q.limit)?)
            .await?;
        let jobs = state.ops.jobs(5).await?.jobs;
        let providers = state.ops.provider_names();
        Ok::<_, ApiError>(pages::dlq(&me, &q, &providers, &page, &jobs, flash(&uri)))
    }
    .await;
    page_or_error(&me, result)
}

async fn providers(
    State(state): State<Arc<AppState>>,
    axum::Extension(me): Me,
    uri: Uri,
) -> Response {
    let result = async {
        let list = state.ops.providers().await?;
        let dests = state.ops.destinations();
        Ok::<_, ApiError>(pages::providers(&me, &list, &dests, flash(&uri)))
    }
    .await;
    page_or_error(&me, result)
}

async fn ordering(
    State(state): State<Arc<AppState>>,
    axum::Extension(me): Me,
    uri: Uri,
) -> Response {
    let result = async {
        let list = state.ops.blocked_lines(&Default::default()).await?;
        Ok::<_, ApiError>(pages::ordering(&me, &list, flash(&uri)))
    }
    .await;
    page_or_error(&me, result)
}

async fn audit(State(state): State<Arc<AppState>>, axum::Extension(me): Me) -> Response {
    let result = async {
        let entries = state.ops.recent_audit(200).await?;
        Ok::<_, ApiError>(pages::audit(&me, &entries))
    }
    .await;
    page_or_error(&me, result)
}

/// The fixed message a redirect asks the next page to show (never text from the request).
fn flash(uri: &Uri) -> Option<&'static str> {
    let code = form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(k, _)| k == "done")
        .map(|(_, v)| v.into_owned())?;
    Some(match code.as_str() {
        "replay" => "Replayed: the event is processed again, every step included.",
        "redrive" => "Redriven: the dead letter is processed again.",
        "redrive-all" => "Redrive of the dead letters started; progress is below.",
        "pause" => "Paused: the provider's events wait; its webhooks are still accepted.",
        "resume" => "Resumed: waiting events are processed now.",
        "skip" => "Skipped: the events behind the dead letter are processed now.",
        _ => return None,
    })
}

/// The scope a session shows; used by the templates.
pub fn can_operate(me: &ConsoleSession) -> bool {
    me.who.scope == Scope::Operate
}

//! The web console at `/ui`: server-rendered pages (no front-end build), a little JavaScript for
//! live refresh, and the same operator actions as the admin API (`ops`), audited as
//! `<token> (console)`.
//!
//! Security: login with an admin token into a session cookie (`HttpOnly`, `SameSite=Strict`,
//! `Secure` behind https, path `/ui`); sessions are stored (only a digest of their id), so any
//! process can serve them and logout ends them. Every state-changing form carries the session's
//! CSRF token, checked in constant time, and a cross-site `Origin` is refused on top. Every value
//! on a page is escaped by the templates (maud); a strict Content-Security-Policy allows only
//! this module's own script and style sheet.

mod pages;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use chrono::Utc;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::admin_api::{self, EventQuery, Window};
use super::{ApiError, AppState};
use crate::event::{EventId, EventStatus};
use crate::ops::Principal;
use crate::ops::Scope;
use crate::store::admin::{AuditFilter, EventFilter, ReplayKind, Session};

const SESSION_COOKIE: &str = "hookd_session";
const LOGIN_COOKIE: &str = "hookd_login_csrf";

/// The logged-in operator of a console request.
#[derive(Debug, Clone)]
pub struct ConsoleSession {
    pub who: Principal,
    pub csrf: String,
}

pub fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let authed = Router::new()
        .route("/", get(|| async { Redirect::to("/ui/events") }))
        .route("/events", get(events))
        .route("/events/rows", get(event_rows))
        .route("/events/{id}", get(event))
        .route("/events/{id}/live", get(event_live))
        .route("/events/{id}/replay", post(replay))
        .route("/dlq", get(dlq))
        .route("/dlq/{id}/redrive", post(redrive))
        .route("/dlq/redrive", post(redrive_all))
        .route("/providers", get(providers))
        .route("/providers/{name}/pause", post(pause))
        .route("/providers/{name}/resume", post(resume))
        .route("/audit", get(audit))
        .route("/logout", post(logout))
        .route_layer(middleware::from_fn_with_state(state, require_session));
    Router::new()
        .merge(authed)
        .route("/login", get(login_page).post(login))
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

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn digest(id: &str) -> Vec<u8> {
    Sha256::digest(id.as_bytes()).to_vec()
}

/// 32 random bytes from the operating system, base64url.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random generator works");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn secure(state: &AppState, headers: &HeaderMap) -> bool {
    state.ops.secure_cookies
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

fn set_cookie(name: &str, value: &str, path: &str, max_age: i64, secure: bool) -> HeaderValue {
    let mut c =
        format!("{name}={value}; Path={path}; HttpOnly; SameSite=Strict; Max-Age={max_age}");
    if secure {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).expect("cookie values are base64url")
}

/// Every console page but the login needs a session; without one, pages send the browser to the
/// login and anything else is refused.
async fn require_session(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    if !state.ops.enabled() {
        return ApiError::NotFound.into_response();
    }
    match session(&state, request.headers()).await {
        Ok(Some(s)) => {
            request.extensions_mut().insert(s);
            next.run(request).await
        }
        Ok(None) if request.method() == Method::GET => Redirect::to("/ui/login").into_response(),
        Ok(None) => pages::error(
            StatusCode::FORBIDDEN,
            None,
            "Your session has ended. Log in again.",
        ),
        Err(e) => error_page(None, e),
    }
}

async fn session(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<ConsoleSession>, ApiError> {
    let Some(id) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let Some(s) = state.ops.store.session(&digest(id)).await? else {
        return Ok(None);
    };
    Ok(state
        .ops
        .tokens
        .console_principal(&s.token_name, &s.scope)
        .map(|who| ConsoleSession { who, csrf: s.csrf }))
}

/// A posted console form whose CSRF token matched the session's. Every state-changing console
/// handler takes one, so none can forget the check.
pub struct CsrfForm {
    pub session: ConsoleSession,
    fields: Vec<(String, String)>,
}

impl CsrfForm {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Whether a request's `Origin` (when the browser sends one) is this server.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, h)| h);
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

impl<S: Send + Sync> FromRequest<S> for CsrfForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let refused = |msg: &str| pages::error(StatusCode::FORBIDDEN, None, msg);
        let session = req
            .extensions()
            .get::<ConsoleSession>()
            .cloned()
            .ok_or_else(|| refused("Log in first."))?;
        if !same_origin(req.headers()) {
            return Err(refused("Cross-site form posts are refused."));
        }
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|_| refused("The form could not be read."))?;
        let fields = parse_form(&body);
        let sent = fields
            .iter()
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        if !bool::from(sent.as_bytes().ct_eq(session.csrf.as_bytes())) {
            return Err(refused(
                "This form has expired (its security token does not match your session). \
                 Reload the page and try again.",
            ));
        }
        Ok(Self { session, fields })
    }
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

async fn login_page(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if !state.ops.enabled() {
        return ApiError::NotFound.into_response();
    }
    if let Ok(Some(_)) = session(&state, &headers).await {
        return Redirect::to("/ui/events").into_response();
    }
    login_form(&state, &headers, StatusCode::OK, None)
}

fn login_form(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let csrf = random_token();
    let mut resp = pages::respond(status, pages::login(&csrf, error));
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            LOGIN_COOKIE,
            &csrf,
            "/ui/login",
            600,
            secure(state, headers),
        ),
    );
    resp
}

async fn login(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    if !state.ops.enabled() {
        return ApiError::NotFound.into_response();
    }
    let fields = parse_form(&body);
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    // Login CSRF: the form's token must be the one in the cookie the form came with.
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    let sent = field("csrf");
    if !same_origin(&headers)
        || expected.is_empty()
        || !bool::from(sent.as_bytes().ct_eq(expected.as_bytes()))
    {
        return login_form(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            Some("The login form expired. Try again."),
        );
    }
    let Some(who) = state.ops.tokens.authenticate(field("token").trim()) else {
        tracing::warn!("console login with an unknown token");
        return login_form(
            &state,
            &headers,
            StatusCode::UNAUTHORIZED,
            Some("That token is not an admin token of this hookd."),
        );
    };
    let id = random_token();
    let ttl =
        chrono::Duration::from_std(state.ops.session_ttl).unwrap_or(chrono::Duration::hours(12));
    let s = Session {
        token_name: who.name.clone(),
        scope: who.scope.as_str().to_owned(),
        csrf: random_token(),
        expires_at: Utc::now() + ttl,
    };
    if let Err(e) = state.ops.store.create_session(&digest(&id), &s).await {
        return error_page(None, e.into());
    }
    let console = Principal {
        console: true,
        ..who
    };
    state
        .ops
        .audit(&console, "console.login", None, 200, None)
        .await;
    let secure = secure(&state, &headers);
    let mut resp = Redirect::to("/ui/events").into_response();
    let h = resp.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &id, "/ui", ttl.num_seconds(), secure),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(LOGIN_COOKIE, "", "/ui/login", 0, secure),
    );
    resp
}

async fn logout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    form: CsrfForm,
) -> Response {
    if let Some(id) = cookie(&headers, SESSION_COOKIE)
        && let Err(e) = state.ops.store.delete_session(&digest(id)).await
    {
        return error_page(Some(&form.session), e.into());
    }
    let mut resp = Redirect::to("/ui/login").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", "/ui", 0, secure(&state, &headers)),
    );
    resp
}

/// Known provider names, for the filter's choices.
fn provider_names(state: &AppState) -> Vec<String> {
    state.providers.names().map(str::to_owned).collect()
}

async fn events(
    State(state): State<Arc<AppState>>,
    axum::Extension(me): axum::Extension<ConsoleSession>,
    uri: Uri,
) -> Response {
    let result = async {
        let q: EventQuery = admin_api::query(&uri)?;
        let window = uri
            .query()
            .and_then(|qs| {
                form_urlencoded::parse(qs.as_bytes())
                    .find(|(k, _)| k == "window")
                    .and_then(|(_, v)| Window::parse(&v))
            })
            .unwrap_or_default();
        let filter = q.filter()?;
        let page = admin_api::page(
            &state,
            &filter,
            admin_api::event_cursor(&q.cursor)?,
            admin_api::limit_param(q.limit)?,
        )
        .await?;
        let stats = admin_api::activity(&state, window).await?;
        Ok::<_, ApiError>(pages::events(
            &me,
            &q,
            &provider_names(&state),
            &page,
            &stats,
            window,
            uri.query().unwrap_or(""),
        ))
    }
    .await;
    result.unwrap_or_else(|e| error_page(Some(&me), e))
}

/// The rows of the events table alone, for live refresh.
async fn event_rows(
    State(state): State<Arc<AppState>>,
    axum::Extension(me): axum::Extension<ConsoleSession>,
    uri: Uri,
) -> Response {
    let result = async {
        let q: EventQuery = admin_api::query(&uri)?;
        let filter = q.filter()?;
        let page = admin_api::page(&state, &filter, None, admin_api::limit_param(q.limit)?).await?;
        Ok::<_, ApiError>(pages::respond(
            StatusCode::OK,
            pages::event_rows(&page.events),
        ))
    }
    .await;
    result.unwrap_or_else(|e| error_page(Some(&me), e))
}

async fn load_event(
    state: &AppState,
    id: &str,
) -> Result<(crate::event::EventDetail, crate::store::admin::EventPayload), ApiError> {
    let id: EventId = admin_api::event_id(id)?;
    let detail = state.ops.reads.event(id).await?.ok_or(ApiError::NotFound)?;
    let payload = state
        .ops
        .reads
        .event_payload(id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok((detail, payload))
}

async fn event(
    State(state): State<Arc<AppState>>,
    axum::Extension(me): axum::Extension<ConsoleSession>,
    Path(id): Path<String>,
    uri: Uri,
) -> Response {
    match load_event(&state, &id).await {
        Ok((detail, payload)) => pages::event(&me, &detail, &payload, flash(&uri)),
        Err(e) => error_page(Some(&me), e),
    }
}

/// Status, timeline and steps of one event alone, for live refresh.
async fn event_live(
    State(state): State<Arc<AppState>>,
    axum::Extension(me): axum::Extension<ConsoleSession>,
    Path(id): Path<String>,
) -> Response {
    match load_event(&state, &id).await {
        Ok((detail, _)) => pages::respond(StatusCode::OK, pages::event_live(&detail)),
        Err(e) => error_page(Some(&me), e),
    }
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
        _ => return None,
    })
}

fn needs_operate(me: &ConsoleSession) -> Option<Response> {
    (!me.who.may_operate()).then(|| {
        pages::error(
            StatusCode::FORBIDDEN,
            Some(me),
            "Your token has the read scope: log in with an operate token to change anything.",
        )
    })
}

/// Run an operator action from a form: scope, audit, then a redirect or an error page.
async fn act<F, Fut>(
    state: &AppState,
    form: &CsrfForm,
    action: &str,
    target: Option<String>,
    run: F,
) -> Response
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(String, Option<String>), ApiError>>,
{
    let me = &form.session;
    if let Some(refused) = needs_operate(me) {
        state
            .ops
            .audit(
                &me.who,
                action,
                target,
                403,
                Some("refused: read scope".into()),
            )
            .await;
        return refused;
    }
    match run().await {
        Ok((to, detail)) => {
            state.ops.audit(&me.who, action, target, 200, detail).await;
            Redirect::to(&to).into_response()
        }
        Err(e) => {
            let (status, _) = e.status_and_code();
            state
                .ops
                .audit(
                    &me.who,
                    action,
                    target,
                    status.as_u16(),
                    Some(e.to_string()),
                )
                .await;
            error_page(Some(me), e)
        }
    }
}

async fn replay(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    form: CsrfForm,
) -> Response {
    let who = form.session.who.clone();
    act(&state, &form, "event.replay", Some(id.clone()), || async {
        let eid = admin_api::event_id(&id)?;
        state.ops.replay(eid, ReplayKind::Replay, &who).await?;
        Ok((format!("/ui/events/{eid}?done=replay"), None))
    })
    .await
}

async fn redrive(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    form: CsrfForm,
) -> Response {
    let who = form.session.who.clone();
    act(&state, &form, "event.redrive", Some(id.clone()), || async {
        let eid = admin_api::event_id(&id)?;
        state.ops.replay(eid, ReplayKind::Redrive, &who).await?;
        Ok((format!("/ui/events/{eid}?done=redrive"), None))
    })
    .await
}

async fn redrive_all(State(state): State<Arc<AppState>>, form: CsrfForm) -> Response {
    let who = form.session.who.clone();
    let provider = form
        .get("provider")
        .filter(|p| !p.is_empty())
        .map(str::to_owned);
    let ops = state.ops.clone();
    act(&state, &form, "dlq.redrive", None, || async move {
        let filter = EventFilter {
            provider,
            statuses: vec![EventStatus::DeadLetter],
            ..Default::default()
        };
        let job = ops.start_job(ReplayKind::Redrive, filter, &who).await?;
        Ok((
            "/ui/dlq?done=redrive-all".to_owned(),
            Some(format!("job {} over {} event(s)", job.id, job.total)),
        ))
    })
    .await
}

async fn dlq(
    State(state): State<Arc<AppState>>,
    axum::Extension(me): axum::Extension<ConsoleSession>,
    uri: Uri,
) -> Response {
    let result = async {
        let q: EventQuery = admin_api::query(&uri)?;
        let filter = EventFilter {
            statuses: vec![EventStatus::DeadLetter],
            ..q.filter()?
        };
        let page = admin_api::page(
            &state,
            &filter,
            admin_api::event_cursor(&q.cursor)?,
            admin_api::limit_param(q.limit)?,
        )
        .await?;
        let jobs = state.ops.store.jobs(5).await?;
        Ok::<_, ApiError>(pages::dlq(
            &me,
            &q,
            &provider_names(&state),
            &page,
            &jobs,
            flash(&uri),
        ))
    }
    .await;
    result.unwrap_or_else(|e| error_page(Some(&me), e))
}

async fn providers(
    State(state): State<Arc<AppState>>,
    axum::Extension(me): axum::Extension<ConsoleSession>,
    uri: Uri,
) -> Response {
    let result = async {
        let axum::Json(list) = super::admin::providers(State(state.clone())).await?;
        let axum::Json(dests) = super::admin::destinations(State(state.clone())).await;
        Ok::<_, ApiError>(pages::providers(&me, &list, &dests, flash(&uri)))
    }
    .await;
    result.unwrap_or_else(|e| error_page(Some(&me), e))
}

async fn pause(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    form: CsrfForm,
) -> Response {
    let reason = form
        .get("reason")
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned);
    act(
        &state,
        &form,
        "provider.pause",
        Some(name.clone()),
        || async {
            let body = match &reason {
                Some(r) => serde_json::json!({ "reason": r }).to_string(),
                None => String::new(),
            };
            let _paused =
                super::admin::pause(State(state.clone()), Path(name.clone()), Bytes::from(body))
                    .await?;
            Ok(("/ui/providers?done=pause".to_owned(), reason.clone()))
        },
    )
    .await
}

async fn resume(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    form: CsrfForm,
) -> Response {
    act(
        &state,
        &form,
        "provider.resume",
        Some(name.clone()),
        || async {
            let _resumed = super::admin::resume(State(state.clone()), Path(name.clone())).await?;
            Ok(("/ui/providers?done=resume".to_owned(), None))
        },
    )
    .await
}

async fn audit(
    State(state): State<Arc<AppState>>,
    axum::Extension(me): axum::Extension<ConsoleSession>,
) -> Response {
    match state
        .ops
        .reads
        .audit(&AuditFilter {
            limit: 200,
            ..Default::default()
        })
        .await
    {
        Ok(entries) => pages::audit(&me, &entries),
        Err(e) => error_page(Some(&me), e.into()),
    }
}

/// The scope a session shows; used by the templates.
pub fn can_operate(me: &ConsoleSession) -> bool {
    me.who.scope == Scope::Operate
}

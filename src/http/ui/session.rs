//! Console sessions over HTTP: the login form and its CSRF cookie, the session cookie, the
//! layer that requires a session, the CSRF check of every state-changing form, and logout.
//!
//! Owns the cookies (`HttpOnly`, `SameSite=Strict`, `Secure` behind https, path `/ui`) and the
//! same-origin check. The sessions themselves are kept by `ops::sessions`. It must never let a
//! state-changing form through without the session's CSRF token, compared in constant time.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use subtle::ConstantTimeEq;

use super::{error_page, pages};
use crate::http::{ApiError, AppState};
use crate::ops::ConsoleSession;
use crate::ops::sessions::random_token;

const SESSION_COOKIE: &str = "hookd_session";
const LOGIN_COOKIE: &str = "hookd_login_csrf";

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

fn secure(state: &AppState, headers: &HeaderMap) -> bool {
    state.ops.secure_cookies()
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
pub(super) async fn require_session(
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
    Ok(state.ops.console_session(id).await?)
}

/// A posted console form whose CSRF token matched the session's. Every state-changing console
/// handler takes one, so none can forget the check.
pub struct CsrfForm {
    pub session: ConsoleSession,
    fields: Vec<(String, String)>,
}

impl CsrfForm {
    /// The value of field `name`, if the form has one.
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

pub(super) async fn login_page(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
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

pub(super) async fn login(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
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
    let opened = match state.ops.open_session(who).await {
        Ok(opened) => opened,
        Err(e) => return error_page(None, e.into()),
    };
    let secure = secure(&state, &headers);
    let mut resp = Redirect::to("/ui/events").into_response();
    let h = resp.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(
            SESSION_COOKIE,
            &opened.id,
            "/ui",
            opened.ttl.num_seconds(),
            secure,
        ),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(LOGIN_COOKIE, "", "/ui/login", 0, secure),
    );
    resp
}

pub(super) async fn logout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    form: CsrfForm,
) -> Response {
    if let Some(id) = cookie(&headers, SESSION_COOKIE)
        && let Err(e) = state.ops.close_session(id).await
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

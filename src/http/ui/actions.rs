//! The console's operator actions, from its forms: replay, redrive (one or all), pause and
//! resume, skipping a blocking dead letter. Each calls `ops` like the admin API does, and is audited as `<token> (console)`.
//!
//! Owns the scope check and the audit entry of a console action, and the redirect after it.
//! It must never act without a [`CsrfForm`] (the CSRF check) nor for a read-scope session.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::session::CsrfForm;
use super::{error_page, pages};
use crate::event::EventStatus;
use crate::http::{ApiError, AppState};
use crate::ops::{ConsoleSession, EventFilter, PauseRequest, ReplayKind, params};

fn needs_operate(me: &ConsoleSession) -> Option<Response> {
    (!me.who.may_operate()).then(|| {
        pages::error(
            StatusCode::FORBIDDEN,
            Some(me),
            "Your token has the read scope: log in with an operate token to change anything.",
        )
    })
}

/// The refusal of a read-scope session's action, audited; `None` when it may operate.
pub(super) async fn refuse_read(
    state: &AppState,
    me: &ConsoleSession,
    action: &str,
    target: Option<String>,
) -> Option<Response> {
    let refused = needs_operate(me)?;
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
    Some(refused)
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
    if let Some(refused) = refuse_read(state, me, action, target.clone()).await {
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

pub(super) async fn replay(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    form: CsrfForm,
) -> Response {
    replay_one(&state, id, &form, ReplayKind::Replay).await
}

pub(super) async fn redrive(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    form: CsrfForm,
) -> Response {
    replay_one(&state, id, &form, ReplayKind::Redrive).await
}

/// Replay or redrive one event, audited as `event.replay` or `event.redrive`, and show it.
async fn replay_one(state: &AppState, id: String, form: &CsrfForm, kind: ReplayKind) -> Response {
    let who = form.session.who.clone();
    let action = format!("event.{}", kind.as_str());
    act(state, form, &action, Some(id.clone()), || async {
        let eid = params::event_id(&id)?;
        state.ops.replay(eid, kind, &who).await?;
        Ok((format!("/ui/events/{eid}?done={}", kind.as_str()), None))
    })
    .await
}

pub(super) async fn redrive_all(State(state): State<Arc<AppState>>, form: CsrfForm) -> Response {
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

pub(super) async fn pause(
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
            let req = PauseRequest {
                reason: reason.clone(),
            };
            state.ops.pause(&name, &req).await?;
            Ok(("/ui/providers?done=pause".to_owned(), reason.clone()))
        },
    )
    .await
}

pub(super) async fn resume(
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
            state.ops.resume(&name).await?;
            Ok(("/ui/providers?done=resume".to_owned(), None))
        },
    )
    .await
}

/// Skip a dead letter that blocks its order keys, audited as `ordering.skip`.
pub(super) async fn skip(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    form: CsrfForm,
) -> Response {
    let who = form.session.who.clone();
    act(&state, &form, "ordering.skip", Some(id.clone()), || async {
        let eid = params::event_id(&id)?;
        state.ops.skip_in_line(eid, &who).await?;
        Ok(("/ui/ordering?done=skip".to_owned(), None))
    })
    .await
}

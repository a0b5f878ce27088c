//! The console's HTML. maud escapes every value it inserts; nothing here builds markup from
//! strings. Pages use only classes (the CSP allows no inline style or script). They render the
//! operator layer's typed answers; they must never fetch anything themselves.

mod config;
mod events;
mod ordering;
mod providers;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use crate::event::EventStatus;
use crate::ops::{AuditEntry, ConsoleSession};

pub use config::{
    ConfigForms, Filled, Outcome, config, provider as config_provider, route as config_route,
};
pub use events::{EventsView, dlq, event, event_live, event_rows, events};
pub use ordering::ordering;
pub use providers::providers;

pub(super) fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

pub(super) fn page(title: &str, me: Option<&ConsoleSession>, nav: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · hookd" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href="/ui/static/app.css";
                script src="/ui/static/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/ui/events" { "hookd" }
                    @if let Some(me) = me {
                        nav {
                            @for (href, label, key) in [
                                ("/ui/events", "Events", "events"),
                                ("/ui/dlq", "Dead letters", "dlq"),
                                ("/ui/providers", "Providers", "providers"),
                                ("/ui/config", "Configuration", "config"),
                                ("/ui/ordering", "Ordering", "ordering"),
                                ("/ui/audit", "Audit log", "audit"),
                            ] {
                                a href=(href) class=[(key == nav).then_some("active")] { (label) }
                            }
                        }
                        div.who {
                            span #who { (me.who.name) " · " (me.who.scope.as_str()) }
                            form method="post" action="/ui/logout" {
                                input type="hidden" name="csrf" value=(me.csrf);
                                button.link type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

pub fn respond(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [("content-type", "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

pub fn error(status: StatusCode, me: Option<&ConsoleSession>, message: &str) -> Response {
    respond(
        status,
        page(
            "Error",
            me,
            "",
            html! {
                section.card.error {
                    h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
                    p #error-message { (message) }
                    p { a href="/ui/events" { "Back to the events" } }
                }
            },
        ),
    )
}

pub fn login(csrf: &str, error: Option<&str>) -> Markup {
    page(
        "Log in",
        None,
        "",
        html! {
            section.card.login {
                h1 { "Log in to hookd" }
                p.muted { "Use an admin token: HOOKD_ADMIN_TOKEN, HOOKD_ADMIN_READ_TOKEN or one from [[admin.tokens]]." }
                @if let Some(e) = error { p.alert #login-error { (e) } }
                form method="post" action="/ui/login" {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="token" { "Admin token" }
                    input #token type="password" name="token" autocomplete="current-password" required autofocus;
                    button type="submit" { "Log in" }
                }
            }
        },
    )
}

pub(super) fn badge(status: EventStatus) -> Markup {
    html! { span class={ "badge st-" (status.as_str()) } { (status.as_str()) } }
}

pub fn audit(me: &ConsoleSession, entries: &[AuditEntry]) -> Response {
    respond(
        StatusCode::OK,
        page(
            "Audit log",
            Some(me),
            "audit",
            html! {
                section.card {
                    h1 { "Audit log" }
                    table.audit #audit {
                        thead { tr { th { "At (UTC)" } th { "Who" } th { "Action" } th { "Target" } th { "Result" } th { "Detail" } } }
                        tbody {
                            @if entries.is_empty() { tr { td.empty colspan="6" { "Nothing yet." } } }
                            @for e in entries {
                                tr {
                                    td.nowrap { (time(&e.at)) }
                                    td { (e.actor) }
                                    td.mono { (e.action) }
                                    td.mono.small { (e.target.clone().unwrap_or_default()) }
                                    td class=[(e.status >= 400).then_some("error-text")] { (e.status) }
                                    td.small { (e.detail.clone().unwrap_or_default()) }
                                }
                            }
                        }
                    }
                }
            },
        ),
    )
}

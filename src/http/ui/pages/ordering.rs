//! The ordering page: the order keys held up, by which event and why, how many events wait
//! behind each, and a skip form for a dead letter that blocks its key. It must never offer the
//! skip to a read-scope session.

use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use super::{page, respond, time};
use crate::event::EventStatus;
use crate::http::ui::can_operate;
use crate::ops::{BlockedLine, BlockedLines, ConsoleSession};

fn line_row(me: &ConsoleSession, l: &BlockedLine) -> Markup {
    let head = l.head.to_string();
    html! {
        tr data-key=(l.key) {
            td { (l.route) }
            td.mono { (l.key) }
            td.mono { a href={ "/ui/events/" (head) } { (head) } }
            td { span class={ "badge st-" (l.status) } { (l.status) } }
            td.num { (l.attempts) }
            td.num { (l.waiting_behind) }
            td.small { (time(&l.received_at)) }
            td.small { @if let Some(e) = &l.last_error { (e) } }
            td {
                @if can_operate(me) && l.status == EventStatus::DeadLetter {
                    form method="post" action={ "/ui/ordering/" (head) "/skip" }
                        data-confirm="Skip this dead letter? The events behind it start; it stays a dead letter." {
                        input type="hidden" name="csrf" value=(me.csrf);
                        button.small type="submit" { "Skip" }
                    }
                }
            }
        }
    }
}

pub fn ordering(me: &ConsoleSession, list: &BlockedLines, flash: Option<&str>) -> Response {
    respond(
        StatusCode::OK,
        page(
            "Ordering",
            Some(me),
            "ordering",
            html! {
                @if let Some(f) = flash { p.flash #flash { (f) } }
                section.card {
                    h1 { "Order keys held up" }
                    p.muted { "Routes with order_by deliver one event of a key at a time. These keys wait for their first event: retrying, or a dead letter on a route with on_dead_letter = \"block\"." }
                    table.ordering #blocked {
                        thead { tr { th { "Route" } th { "Key" } th { "Blocked by" } th { "Why" } th { "Attempts" } th { "Waiting" } th { "Received" } th { "Last error" } th {} } }
                        tbody {
                            @if list.lines.is_empty() { tr { td.empty colspan="9" { "No key is held up." } } }
                            @for l in &list.lines { (line_row(me, l)) }
                        }
                    }
                }
            },
        ),
    )
}

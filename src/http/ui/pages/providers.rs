//! The providers page: each provider's state with its pause and resume forms, and this
//! process's destination breakers. It must never offer pause or resume to a read-scope
//! session.

use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, SecondsFormat, Utc};
use maud::{Markup, html};

use super::{page, respond};
use crate::actions::breaker::DestinationState;
use crate::http::ui::can_operate;
use crate::ops::{ConsoleSession, DestinationList, ProviderList, ProviderView};

/// A time as the API writes it, or a dash.
fn api_time(t: Option<&DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| "—".into())
}

fn processing(p: &ProviderView) -> Markup {
    html! {
        @if p.paused {
            span.badge.st-dead_letter { "paused" }
            @if let Some(r) = &p.reason { " " span.muted { (r) } }
        } @else if p.auto_paused == Some(true) {
            span.badge.st-retry_scheduled { "auto-paused: breakers open" }
        } @else {
            span.badge.st-completed { "running" }
        }
    }
}

fn pause_form(me: &ConsoleSession, p: &ProviderView) -> Markup {
    let name = &p.name;
    html! {
        @if p.paused {
            form method="post" action={ "/ui/providers/" (name) "/resume" } {
                input type="hidden" name="csrf" value=(me.csrf);
                button.small type="submit" { "Resume" }
            }
        } @else {
            form.inline method="post" action={ "/ui/providers/" (name) "/pause" }
                data-confirm={ "Pause " (name) "? Its events wait until resumed." } {
                input type="hidden" name="csrf" value=(me.csrf);
                input.reason type="text" name="reason" placeholder="reason" maxlength="1000";
                button.small type="submit" { "Pause" }
            }
        }
    }
}

fn provider_row(me: &ConsoleSession, p: &ProviderView) -> Markup {
    html! {
        tr data-provider=(p.name) {
            td { strong { (p.name) } }
            td { @if p.accepting { "yes" } @else { span.muted { "no secret" } } }
            td { (processing(p)) }
            td.small {
                @for (k, n) in &p.counts { span.count { (k) " " (n) } " " }
            }
            td.small.mono {
                @for x in &p.destinations { (x) br; }
            }
            td {
                @if can_operate(me) { (pause_form(me, p)) }
            }
        }
    }
}

fn destination_row(d: &DestinationState) -> Markup {
    html! {
        tr {
            td.mono { (d.destination) }
            td { span class={ "badge br-" (d.state) } { (d.state) } }
            td.num { (d.consecutive_failures) }
            td { (api_time(d.open_until.as_ref())) }
            td.num { (d.in_flight) " / " (d.concurrency_limit) }
            td.num { (d.counters.opened) }
            td.num { (d.counters.probes) }
        }
    }
}

fn destinations(dests: &DestinationList) -> Markup {
    html! {
        section.card {
            h2 { "Destination breakers" }
            p.muted { "State of this process's breakers" @if !dests.workers { " (this process runs no workers)" } "." }
            table.destinations #destinations {
                thead { tr { th { "Destination" } th { "Breaker" } th { "Failures in a row" } th { "Open until" } th { "In flight" } th { "Opened" } th { "Probes" } } }
                tbody {
                    @if dests.destinations.is_empty() { tr { td.empty colspan="7" { "No destinations." } } }
                    @for d in &dests.destinations { (destination_row(d)) }
                }
            }
        }
    }
}

pub fn providers(
    me: &ConsoleSession,
    list: &ProviderList,
    dests: &DestinationList,
    flash: Option<&str>,
) -> Response {
    respond(
        StatusCode::OK,
        page(
            "Providers",
            Some(me),
            "providers",
            html! {
                @if let Some(f) = flash { p.flash #flash { (f) } }
                section.card {
                    h1 { "Providers" }
                    table.providers #providers {
                        thead { tr { th { "Provider" } th { "Accepting" } th { "Processing" } th { "Waiting or dead" } th { "Destinations" } th {} } }
                        tbody {
                            @for p in &list.providers { (provider_row(me, p)) }
                        }
                    }
                }
                (destinations(dests))
            },
        ),
    )
}

//! The pages of events: the list with its activity chart, one event with its timeline and
//! payload, and the dead letters with the recent bulk jobs. They must never offer an action
//! the session's scope does not allow, nor show a purged payload as if it were there.

use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use serde_json::Value;

use super::{badge, page, respond, time};
use crate::event::{EventDetail, EventStatus};
use crate::http::ui::can_operate;
use crate::ops::{
    ActivityBucket, ConsoleSession, EventPage, EventPayload, EventQuery, EventSummary, Job, Stats,
    Window,
};

const STATUSES: [EventStatus; 6] = [
    EventStatus::Pending,
    EventStatus::Processing,
    EventStatus::RetryScheduled,
    EventStatus::Compensating,
    EventStatus::Completed,
    EventStatus::DeadLetter,
];

pub fn event_rows(events: &[EventSummary]) -> Markup {
    html! {
        @if events.is_empty() {
            tr { td.empty colspan="7" { "No events match." } }
        }
        @for e in events {
            tr data-id=(e.id) {
                td.nowrap { (time(&e.received_at)) }
                td { (e.provider) }
                td { a href={ "/ui/events/" (e.id) } { (e.event_type) } }
                td { (badge(e.status)) }
                td.num { (e.attempts) }
                td.num { (e.replays) }
                td.mono.small { (e.idempotency_key) }
            }
        }
    }
}

/// Throughput and failures per bucket as an inline SVG bar chart.
fn chart(stats: &Stats) -> Markup {
    const W: f64 = 1000.0;
    const H: f64 = 120.0;
    let n = stats.buckets.len().max(1) as f64;
    let max = stats
        .buckets
        .iter()
        .map(|b| b.received.max(b.retried + b.dead_lettered).max(b.completed))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let slot = W / n;
    let bar = (slot * 0.42).max(1.0);
    let y = |v: u64| H - (v as f64 / max) * (H - 4.0);
    let total = |f: fn(&ActivityBucket) -> u64| stats.buckets.iter().map(f).sum::<u64>();
    let received = total(|b| b.received);
    let completed = total(|b| b.completed);
    let failed = total(|b| b.retried + b.dead_lettered);
    html! {
        figure.chart {
            figcaption {
                strong { "Activity, last " (stats.window) }
                span.legend.received { "received " (received) }
                span.legend.completed { "completed " (completed) }
                span.legend.failed { "failed attempts " (failed) }
                span.windows {
                    @for w in Window::ALL {
                        a href={ "/ui/events?window=" (w.name()) }
                            class=[(w.name() == stats.window).then_some("active")] { (w.name()) }
                    }
                }
            }
            svg #chart viewBox={ "0 0 " (W) " " (H + 18.0) } role="img"
                aria-label={ "Events received, completed and failed over the last " (stats.window) } {
                title { "Received " (received) ", completed " (completed) ", failed attempts " (failed) }
                line x1="0" y1=(H) x2=(W) y2=(H) stroke="#bbb" stroke-width="1" {}
                @for (i, b) in stats.buckets.iter().enumerate() {
                    @let x = i as f64 * slot;
                    @if b.received > 0 {
                        rect x=(format!("{:.1}", x + 1.0)) y=(format!("{:.1}", y(b.received)))
                            width=(format!("{bar:.1}")) height=(format!("{:.1}", H - y(b.received)))
                            fill="#4c78a8" { title { (time(&b.start)) ": " (b.received) " received" } }
                    }
                    @let f = b.retried + b.dead_lettered;
                    @if f > 0 {
                        rect x=(format!("{:.1}", x + 1.0 + bar)) y=(format!("{:.1}", y(f)))
                            width=(format!("{bar:.1}")) height=(format!("{:.1}", H - y(f)))
                            fill="#e45756" { title { (time(&b.start)) ": " (f) " failed attempts" } }
                    }
                    @if b.completed > 0 {
                        circle cx=(format!("{:.1}", x + slot / 2.0)) cy=(format!("{:.1}", y(b.completed)))
                            r="2.5" fill="#54a24b" { title { (time(&b.start)) ": " (b.completed) " completed" } }
                    }
                }
                @if let (Some(first), Some(_)) = (stats.buckets.first(), stats.buckets.last()) {
                    text x="0" y=(H + 14.0) font-size="11" fill="#666" { (time(&first.start)) " UTC" }
                    text x=(W) y=(H + 14.0) font-size="11" fill="#666" text-anchor="end" { "now" }
                }
                text x="4" y="12" font-size="11" fill="#666" { "max " (max as u64) }
            }
        }
    }
}

fn filter_form(action: &str, q: &EventQuery, providers: &[String], with_status: bool) -> Markup {
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    html! {
        form.filters #filters method="get" action=(action) {
            label { "Provider"
                select name="provider" {
                    option value="" { "any" }
                    @for p in providers {
                        option value=(p) selected[q.provider.as_deref() == Some(p.as_str())] { (p) }
                    }
                }
            }
            @if with_status {
                label { "Status"
                    select name="status" {
                        option value="" { "any" }
                        @for s in STATUSES {
                            option value=(s.as_str()) selected[q.status.as_deref() == Some(s.as_str())] { (s.as_str()) }
                        }
                    }
                }
            }
            label { "Type" input type="text" name="event_type" placeholder="payment_intent.*" value=(v(&q.event_type)); }
            label { "Key" input type="text" name="idempotency_key" placeholder="evt_…" value=(v(&q.idempotency_key)); }
            label { "Payload contains" input type="text" name="q" value=(v(&q.q)); }
            button type="submit" { "Filter" }
            a.clear href=(action) { "Clear" }
        }
    }
}

/// The query of this page without the cursor, for live refresh of the first page.
fn without_cursor(query: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(
            form_urlencoded::parse(query.as_bytes())
                .filter(|(k, _)| k != "cursor" && k != "window"),
        )
        .finish()
}

fn next_link(base: &str, query: &str, cursor: &str) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.extend_pairs(form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k != "cursor"));
    q.append_pair("cursor", cursor);
    format!("{base}?{}", q.finish())
}

/// What the events page shows.
pub struct EventsView<'a> {
    /// The filter as asked (shown in the form).
    pub query: &'a EventQuery,
    /// Provider names, the filter's choices.
    pub providers: &'a [String],
    pub page: &'a EventPage,
    pub stats: &'a Stats,
    /// The page's query string, for the live refresh and the next page's link.
    pub query_string: &'a str,
}

pub fn events(me: &ConsoleSession, view: &EventsView<'_>) -> Response {
    let EventsView {
        query: q,
        providers,
        page: page_,
        stats,
        query_string: query,
    } = *view;
    let first_page = q.cursor.as_deref().is_none_or(str::is_empty);
    let live = format!("/ui/events/rows?{}", without_cursor(query));
    respond(
        StatusCode::OK,
        page(
            "Events",
            Some(me),
            "events",
            html! {
                section.card { (chart(stats)) }
                section.card {
                    div.heading {
                        h1 { "Events" }
                        @if first_page {
                            label.live { input #live-toggle type="checkbox" checked; " live" }
                            span.muted #updated {}
                        }
                    }
                    (filter_form("/ui/events", q, providers, true))
                    table.events {
                        thead { tr { th { "Received (UTC)" } th { "Provider" } th { "Type" } th { "Status" } th { "Attempts" } th { "Replays" } th { "Key" } } }
                        tbody #rows data-live=[first_page.then_some(&live)] data-every="3000" {
                            (event_rows(&page_.events))
                        }
                    }
                    @if let Some(c) = &page_.next_cursor {
                        p.more { a #older href=(next_link("/ui/events", query, c)) { "Older events →" } }
                    }
                }
            },
        ),
    )
}

fn pretty(payload: &EventPayload) -> String {
    match serde_json::from_slice::<Value>(&payload.body) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
        Err(_) => match std::str::from_utf8(&payload.body) {
            Ok(text) => text.to_owned(),
            Err(_) => format!("({} bytes, not text)", payload.body.len()),
        },
    }
}

/// One line of the timeline: a transition or a step result, in time order.
enum Line<'a> {
    Transition(&'a crate::event::Transition),
    Step(&'a crate::event::StepResultRow),
}

pub fn event_live(e: &EventDetail) -> Markup {
    let mut lines: Vec<(DateTime<Utc>, u8, Line<'_>)> = e
        .transitions
        .iter()
        .map(|t| (t.at, 0, Line::Transition(t)))
        .chain(e.steps.iter().map(|s| (s.at, 1, Line::Step(s))))
        .collect();
    lines.sort_by_key(|(at, kind, _)| (*at, *kind));
    html! {
        div.summary {
            span { "Status " } span #status { (badge(e.status)) }
            span { "Attempts " strong { (e.attempts) } }
            span { "Replays " strong { (e.replays) } }
            @if let Some(next) = e.next_attempt_at { span { "Next attempt " (time(&next)) " UTC" } }
        }
        @if let Some(err) = &e.last_error { p.alert #last-error { (err) } }
        h2 { "Timeline" }
        ol.timeline #timeline {
            @for (at, _, line) in &lines {
                @match line {
                    Line::Transition(t) => li.transition {
                        span.at { (time(at)) }
                        span.what {
                            @if let Some(from) = t.from { (badge(from)) " → " }
                            (badge(t.to))
                        }
                        @if let Some(d) = &t.detail { span.detail { (d) } }
                    },
                    Line::Step(s) => li class={ "step " (s.outcome) } {
                        span.at { (time(at)) }
                        span.what { "step " code { (s.step) } " " (s.outcome) }
                        span.detail {
                            "replay " (s.generation) ", attempt " (s.attempt) ", " (s.duration_ms) " ms"
                            @if let Some(err) = &s.error { ": " (err) }
                        }
                    },
                }
            }
        }
    }
}

pub fn event(
    me: &ConsoleSession,
    e: &EventDetail,
    payload: &EventPayload,
    flash: Option<&str>,
) -> Response {
    let finished = matches!(e.status, EventStatus::Completed | EventStatus::DeadLetter);
    let headers: Vec<(String, String)> = payload
        .headers
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    respond(
        StatusCode::OK,
        page(
            &e.event_type,
            Some(me),
            "events",
            html! {
                @if let Some(f) = flash { p.flash #flash { (f) } }
                section.card {
                    div.heading {
                        h1 { (e.event_type) }
                        @if can_operate(me) && finished && e.body_purged_at.is_none() {
                            @let (action, label) = if e.status == EventStatus::DeadLetter {
                                (format!("/ui/dlq/{}/redrive", e.id), "Redrive")
                            } else {
                                (format!("/ui/events/{}/replay", e.id), "Replay")
                            };
                            form method="post" action=(action) data-confirm={ (label) " this event? Every step runs again." } {
                                input type="hidden" name="csrf" value=(me.csrf);
                                button #replay type="submit" { (label) }
                            }
                        }
                    }
                    dl.facts {
                        dt { "Id" } dd.mono { (e.id) }
                        dt { "Provider" } dd { (e.provider) }
                        dt { "Idempotency key" } dd.mono { (e.idempotency_key) }
                        dt { "Received" } dd { (time(&e.received_at)) " UTC" }
                        dt { "Payload" } dd {
                            (e.body_bytes) " bytes"
                            @if let Some(ct) = &e.content_type { ", " (ct) }
                            @if let Some(p) = &e.body_purged_at { ", purged " (time(p)) " UTC" }
                        }
                    }
                    div #live data-live={ "/ui/events/" (e.id) "/live" } data-every="1000" { (event_live(e)) }
                }
                section.card {
                    h2 { "Headers" }
                    table.headers {
                        @for (k, v) in &headers { tr { th.mono { (k) } td.mono { (v) } } }
                    }
                }
                section.card {
                    h2 { "Payload" }
                    @if e.body_purged_at.is_some() {
                        p.muted { "Purged by retention." }
                    } @else {
                        pre #payload { code { (pretty(payload)) } }
                    }
                }
            },
        ),
    )
}

fn job_line(j: &Job) -> Markup {
    html! {
        li.job {
            span class={ "badge job-" (j.status.as_str()) } { (j.status.as_str()) }
            " " (j.kind) " by " (j.created_by) ": "
            (j.processed) " of " (j.total) " looked at, " (j.replayed)
            @if j.kind == "redrive" { " redriven, " } @else { " replayed, " }
            (j.skipped) " skipped"
            span.muted { " · " (time(&j.created_at)) " UTC" }
        }
    }
}

pub fn dlq(
    me: &ConsoleSession,
    q: &EventQuery,
    providers: &[String],
    page_: &EventPage,
    jobs: &[Job],
    flash: Option<&str>,
) -> Response {
    let operate = can_operate(me);
    respond(
        StatusCode::OK,
        page(
            "Dead letters",
            Some(me),
            "dlq",
            html! {
                @if let Some(f) = flash { p.flash #flash { (f) } }
                section.card {
                    div.heading {
                        h1 { "Dead letters" }
                        @if operate && !page_.events.is_empty() {
                            form method="post" action="/ui/dlq/redrive"
                                data-confirm="Redrive every dead letter shown by this filter?" {
                                input type="hidden" name="csrf" value=(me.csrf);
                                input type="hidden" name="provider" value=(q.provider.clone().unwrap_or_default());
                                button #redrive-all type="submit" { "Redrive all" }
                            }
                        }
                    }
                    (filter_form("/ui/dlq", q, providers, false))
                    table.events #dead-letters {
                        thead { tr { th { "Received (UTC)" } th { "Provider" } th { "Type" } th { "Attempts" } th { "Last error" } th {} } }
                        tbody {
                            @if page_.events.is_empty() { tr { td.empty colspan="6" { "No dead letters." } } }
                            @for e in &page_.events {
                                tr data-id=(e.id) {
                                    td.nowrap { (time(&e.received_at)) }
                                    td { (e.provider) }
                                    td { a href={ "/ui/events/" (e.id) } { (e.event_type) } }
                                    td.num { (e.attempts) }
                                    td.error-text { (e.last_error.clone().unwrap_or_default()) }
                                    td {
                                        @if operate {
                                            form method="post" action={ "/ui/dlq/" (e.id) "/redrive" } {
                                                input type="hidden" name="csrf" value=(me.csrf);
                                                button.small.redrive type="submit" { "Redrive" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @if let Some(c) = &page_.next_cursor {
                        p.more { a href={ "/ui/dlq?cursor=" (c) } { "Older →" } }
                    }
                }
                @if !jobs.is_empty() {
                    section.card {
                        h2 { "Recent bulk jobs" }
                        ul.jobs #jobs { @for j in jobs { (job_line(j)) } }
                    }
                }
            },
        ),
    )
}

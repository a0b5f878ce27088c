//! The configuration pages: providers, routes and named destinations (the live configuration),
//! with the forms that create, edit and delete them, a provider's page with its secrets and the
//! "send a signed test event" form. Entries the start-up file or the environment define are shown
//! "managed by file", without forms. A secret appears only on the page that answers the form
//! that made it. It must never offer a form to a read-scope session.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use super::{page, respond, time};
use crate::http::ui::can_operate;
use crate::ops::ConsoleSession;
use crate::ops::config::{ConfigView, ManagedBy, ProviderEntry, RouteEntry};
use crate::testevent::samples::Sample;

/// What a form was filled with, and the server's message on the form field it concerns.
#[derive(Debug, Default)]
pub struct Filled {
    pub values: BTreeMap<String, String>,
    /// (form field, the field the server named, its message).
    pub error: Option<(&'static str, String, String)>,
}

impl Filled {
    fn value(&self, field: &str) -> &str {
        self.values.get(field).map_or("", String::as_str)
    }

    /// The server's message, next to the form field it concerns.
    fn error_for(&self, field: &str) -> Markup {
        html! {
            @if let Some((f, named, message)) = &self.error {
                @if *f == field {
                    p.alert.field-error data-field=(field) {
                        @if named != field { code { (named) } ": " }
                        (message)
                    }
                }
            }
        }
    }
}

/// The forms of the configuration page, one of them perhaps filled with an error.
#[derive(Debug, Default)]
pub struct ConfigForms {
    pub provider: Filled,
    pub route: Filled,
    pub destination: Filled,
}

fn managed(m: ManagedBy) -> Markup {
    html! {
        @match m {
            ManagedBy::File => span.badge.managed { "managed by file" },
            ManagedBy::Api => span.badge.st-pending { "api" },
        }
    }
}

fn csrf(me: &ConsoleSession) -> Markup {
    html! { input type="hidden" name="csrf" value=(me.csrf); }
}

fn text(f: &Filled, name: &str, label: &str, placeholder: &str) -> Markup {
    html! {
        label {
            (label)
            input type="text" name=(name) value=(f.value(name)) placeholder=(placeholder);
        }
        (f.error_for(name))
    }
}

fn area(f: &Filled, name: &str, label: &str, placeholder: &str) -> Markup {
    html! {
        label {
            (label)
            textarea name=(name) rows="6" placeholder=(placeholder) { (f.value(name)) }
        }
        (f.error_for(name))
    }
}

fn provider_form(me: &ConsoleSession, f: &Filled) -> Markup {
    html! {
        form.config #provider-form method="post" action="/ui/config/providers" {
            (csrf(me))
            (text(f, "name", "Name (its URL: /webhooks/<name>)", "acme"))
            (text(f, "scheme", "Scheme", "stripe, github, hmac, standard, ..."))
            (area(f, "settings", "Settings (JSON object, optional)", r#"{"tolerance_secs": 300}"#))
            (text(f, "secret", "Secret (empty: hookd makes one and shows it once)", ""))
            button type="submit" { "Save provider" }
        }
    }
}

/// The route form, filled with `f` (a route's name and its document as JSON).
pub fn route_form(me: &ConsoleSession, f: &Filled) -> Markup {
    html! {
        form.config #route-form method="post" action="/ui/config/routes" {
            (csrf(me))
            (text(f, "name", "Name", "billing"))
            (area(f, "route", "Route (JSON: provider, events, filters, steps, ...)",
                r#"{"provider": "stripe", "events": ["invoice.*"], "steps": [{"action": "forward", "destination": "billing"}]}"#))
            button type="submit" { "Save route" }
        }
    }
}

fn destination_form(me: &ConsoleSession, f: &Filled) -> Markup {
    html! {
        form.config #destination-form method="post" action="/ui/config/destinations" {
            (csrf(me))
            (text(f, "name", "Name", "billing"))
            (text(f, "url", "URL", "https://billing.internal/hooks"))
            (area(f, "headers", "Headers (one `Name: value` a line, optional)", ""))
            button type="submit" { "Save destination" }
        }
    }
}

/// The Delete button of an entry stored through the API (asks for confirmation first).
fn delete_form(me: &ConsoleSession, kind: &str, name: &str, warning: &str) -> Markup {
    html! {
        form.inline.delete method="post" action={ "/ui/config/" (kind) "s/" (name) "/delete" }
            data-confirm={ "Delete " (kind) " " (name) "? " (warning) } {
            (csrf(me))
            button.danger type="submit" { "Delete " (kind) }
        }
    }
}

fn providers_table(view: &ConfigView) -> Markup {
    html! {
        table #config-providers {
            thead { tr { th { "Name" } th { "Scheme" } th { "Defined by" } th { "Secrets" } } }
            tbody {
                @for p in &view.providers {
                    tr data-provider=(p.name) {
                        td { a href={ "/ui/config/providers/" (p.name) } { (p.name) } }
                        td.mono { (p.scheme) }
                        td { (managed(p.managed_by)) }
                        td.num { @if p.managed_by == ManagedBy::Api { (p.secrets.len()) } @else { "—" } }
                    }
                }
            }
        }
    }
}

fn routes_table(routes: &[RouteEntry]) -> Markup {
    html! {
        table #config-routes {
            thead { tr { th { "Name (in match order)" } th { "Defined by" } th { "Route" } } }
            tbody {
                @if routes.is_empty() { tr { td.empty colspan="3" { "No routes." } } }
                @for r in routes {
                    tr data-route=(r.name) {
                        td { a href={ "/ui/config/routes/" (r.name) } { (r.name) } }
                        td { (managed(r.managed_by)) }
                        td.mono.small { @if let Some(doc) = &r.route { (doc) } }
                    }
                }
            }
        }
    }
}

/// The configuration page: every provider, route and destination, and the forms.
pub fn config(
    me: &ConsoleSession,
    view: &ConfigView,
    forms: &ConfigForms,
    status: StatusCode,
) -> Response {
    let write = can_operate(me);
    let body = html! {
        section.card {
            div.heading { h1 { "Configuration" } span.muted { "version " (view.version) } }
            p.muted { "Changes apply to every hookd process within about a second. What the start-up file or the environment defines is managed by file: change it there." }
            h2 { "Providers" }
            (providers_table(view))
            @if write { h2 { "New provider, or replace one's scheme and settings" } (provider_form(me, &forms.provider)) }
        }
        section.card {
            h2 { "Routes" }
            (routes_table(&view.routes))
            @if write { h2 { "New route, or replace one" } (route_form(me, &forms.route)) }
        }
        section.card {
            h2 { "Named destinations" }
            table #config-destinations {
                thead { tr { th { "Name" } th { "URL" } th { "Headers" } @if write { th {} } } }
                tbody {
                    @if view.destinations.is_empty() { tr { td.empty colspan="3" { "No named destinations." } } }
                    @for d in &view.destinations {
                        tr data-destination=(d.name) {
                            td { (d.name) }
                            td.mono { (d.destination.url) }
                            td.mono.small { @for k in d.destination.headers.keys() { (k) br; } }
                            @if write { td { (delete_form(me, "destination", &d.name, "A route that names it must be changed first.")) } }
                        }
                    }
                }
            }
            @if write { h2 { "New destination, or replace one" } (destination_form(me, &forms.destination)) }
        }
    };
    respond(status, page("Configuration", Some(me), "config", body))
}

/// One route: its document in the form, or "managed by file".
pub fn route(me: &ConsoleSession, entry: &RouteEntry, filled: &Filled) -> Response {
    let body = html! {
        section.card {
            div.heading { h1 { "Route " (entry.name) } (managed(entry.managed_by)) }
            @if entry.managed_by == ManagedBy::File {
                p #readonly { "This route is managed by file (the start-up configuration): it is read-only here." }
            } @else if can_operate(me) {
                (route_form(me, filled))
                (delete_form(me, "route", &entry.name, "Events it matches stop running its steps."))
            } @else if let Some(doc) = &entry.route {
                pre { (doc) }
            }
            p { a href="/ui/config" { "Back to the configuration" } }
        }
    };
    respond(StatusCode::OK, page("Route", Some(me), "config", body))
}

/// What a provider's page shows once, in answer to the form just posted.
#[derive(Debug, Default)]
pub struct Outcome {
    /// A secret hookd just generated: its id and value, shown on this page only.
    pub secret: Option<(String, String)>,
    /// A signed test event: the accepted event's id, or why it was refused.
    pub test: Option<Result<String, String>>,
    /// A change made (its message).
    pub done: Option<String>,
}

fn secret_once(secret: &Option<(String, String)>) -> Markup {
    html! {
        @if let Some((id, value)) = secret {
            div.flash #secret-once {
                p { strong { "The secret (" (id) "), shown this once: copy it now." } " hookd keeps it encrypted and never shows it again." }
                code #secret-value { (value) }
            }
        }
    }
}

fn test_form(
    me: &ConsoleSession,
    p: &ProviderEntry,
    samples: &[&Sample],
    outcome: &Outcome,
) -> Markup {
    html! {
        h2 { "Send a signed test event" }
        @match &outcome.test {
            Some(Ok(id)) => p.flash #test-result { "Accepted: event " a #test-event href={ "/ui/events/" (id) } { (id) } },
            Some(Err(e)) => p.alert #test-result { (e) },
            None => {}
        }
        @if p.scheme == "paypal" {
            p.muted #no-test { "PayPal signs with its own certificate and private key, which only PayPal has: a test event cannot be signed here. Use PayPal's Webhooks Simulator." }
        } @else if samples.is_empty() {
            p.muted #no-test { "There are no samples for scheme " code { (p.scheme) } "." }
        } @else if can_operate(me) {
            p.muted { "A sample signed with the provider's secret as the provider signs it, sent through hookd's own intake: verified, stored and processed like a real one." }
            form.inline #test-form method="post" action={ "/ui/config/providers/" (p.name) "/test" } {
                (csrf(me))
                select name="sample" { @for s in samples { option value=(s.name) { (s.name) } } }
                button type="submit" { "Send a signed test event" }
            }
        }
    }
}

fn secrets_section(me: &ConsoleSession, p: &ProviderEntry) -> Markup {
    html! {
        h2 { "Secrets" }
        table #secrets {
            thead { tr { th { "Id" } th { "Key id" } th { "Added (UTC)" } th { "Stops verifying" } } }
            tbody {
                @for s in &p.secrets {
                    tr { td.mono { (s.id) } td.mono { (s.kid) } td { (time(&s.added_at)) } td { @if let Some(t) = &s.expires_at { (time(t)) } @else { "—" } } }
                }
            }
        }
        @if can_operate(me) {
            form.inline #secret-form method="post" action={ "/ui/config/providers/" (p.name) "/secrets" } {
                (csrf(me))
                input type="text" name="secret" placeholder="new secret (empty: hookd makes one)";
                label.small { input type="checkbox" name="expire_previous" value="1"; " the others stop verifying now" }
                button type="submit" { "Add a secret" }
            }
        }
    }
}

/// A provider: its settings, its secrets, the forms, and what the last form did.
pub fn provider(
    me: &ConsoleSession,
    p: &ProviderEntry,
    samples: &[&Sample],
    outcome: &Outcome,
) -> Response {
    let body = html! {
        section.card {
            div.heading { h1 { "Provider " (p.name) } (managed(p.managed_by)) }
            @if let Some(d) = &outcome.done { p.flash #flash { (d) } }
            (secret_once(&outcome.secret))
            dl.facts {
                dt { "Scheme" } dd.mono { (p.scheme) }
                dt { "Receives at" } dd.mono { "/webhooks/" (p.name) }
            }
            @if p.managed_by == ManagedBy::File {
                p #readonly { "This provider is managed by file (the start-up configuration or the environment): it is read-only here." }
            } @else {
                @if !p.settings.is_empty() { pre #settings { (serde_json::Value::Object(p.settings.clone())) } }
                (secrets_section(me, p))
            }
            (test_form(me, p, samples, outcome))
            @if p.managed_by == ManagedBy::Api && can_operate(me) {
                h2 { "Delete" }
                (delete_form(me, "provider", &p.name, "Its webhooks are refused from then on; its stored events stay."))
            }
            p { a href="/ui/config" { "Back to the configuration" } }
        }
    };
    respond(StatusCode::OK, page("Provider", Some(me), "config", body))
}

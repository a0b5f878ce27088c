//! The OpenAPI document of the admin API, assembled from the handlers' annotations and the
//! operator layer's types, with the answers every request can get from the layers in front of
//! the handlers. Served at `/admin/openapi.json` and committed as `docs/openapi.json` (a test
//! compares them). It must never describe an answer the API does not give.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::{audit, config, dlq, events, jobs, ordering, providers, stream};
use crate::ops::Window;

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
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        // Answers any admin request can get from the layers in front of the handlers: the token
        // check (401), the access guard (403, 429), the listener's header limit (431, no body)
        // and a store that is down (503). Documented once here so the contract test holds them to the spec.
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        let common = [
            ("401", error("Missing or unknown admin token")),
            (
                "403",
                error("The client address is outside [admin] allow, or a read token on a POST, PUT or DELETE"),
            ),
            (
                "429",
                error("Too many failed logins from this address; see Retry-After"),
            ),
            (
                "431",
                ResponseBuilder::new()
                    .description("Request line and headers over HOOKD_MAX_HEADER_BYTES, or more than HOOKD_MAX_HEADERS (no body)")
                    .build(),
            ),
            (
                "503",
                error("The event store is unreachable; see Retry-After"),
            ),
        ];
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                for (code, response) in &common {
                    op.responses
                        .responses
                        .entry((*code).into())
                        .or_insert_with(|| response.clone().into());
                }
            }
        }
        if let Some(c) = openapi.components.as_mut() {
            c.add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(
                            "An admin token: HOOKD_ADMIN_TOKEN (operate), HOOKD_ADMIN_READ_TOKEN \
                             (read) or one of [[admin.tokens]]. Read tokens get 403 on every POST, PUT and DELETE.",
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
                       follow bulk jobs; read the audit log; configure providers, routes and \
                       destinations. Every request needs `Authorization: Bearer <admin token>`; \
                       `POST`, `PUT` and `DELETE` need the operate scope.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        events::list_events, events::event, events::event_raw, events::replay, jobs::replay_many,
        dlq::dlq, dlq::redrive, dlq::redrive_all, jobs::jobs, jobs::job, jobs::cancel_job,
        audit::audit, events::stats, audit::whoami, openapi_doc,
        providers::providers, providers::pause, providers::resume, providers::destinations,
        stream::stream,
        config::config, config::provider, config::put_provider, config::delete_provider,
        config::add_secret, config::put_route, config::delete_route, config::put_destination,
        config::delete_destination, config::export, config::apply,
        ordering::blocked, ordering::skip,
    ),
    components(schemas(ErrorBody, Window)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "events", description = "Received events, their history and replays"),
        (name = "dead letters", description = "Events that failed for good, and redrives"),
        (name = "jobs", description = "Bulk replays and redrives running in the background"),
        (name = "providers", description = "Providers, pauses and destination breakers"),
        (name = "audit", description = "Who did what"),
        (name = "config", description = "Providers, routes and named destinations, live in every process"),
        (name = "ordering", description = "Order keys held up, and skipping a blocking dead letter"),
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
    responses((status = 200, content_type = "application/json", body = Object, description = "OK")))]
pub async fn openapi_doc() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json()).into_response()
}

//! Order keys: which line of which ordered route an accepted event joins. A route with
//! `order_by` delivers the events that share a key one at a time, in the order hookd committed
//! them; the key is read at intake from the verified payload (a JSON pointer) or a request
//! header.
//!
//! Owns computing an event's keys (`order_by` and `on_dead_letter` are read and checked with
//! the other route settings). It must never
//! touch the store: the store keeps the lines and decides when an event may start.

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::Digest;

use super::filter::Filter;
use super::glob_match;
use super::settings::{OnDeadLetter, OrderBy, RouteConfig};
use crate::event::OrderKey;

/// Keys longer than this are stored as their SHA-256: a line's key stays small in the index
/// whatever a provider sends.
const MAX_KEY_BYTES: usize = 200;

/// The key of a payload (`Null` when the body is not JSON) and headers; `None` when the event
/// has none (a missing or `null` value, an empty string).
fn key_of(by: &OrderBy, payload: &Value, headers: &BTreeMap<String, String>) -> Option<String> {
    let raw = match by {
        OrderBy::Header(name) => headers.get(name)?.clone(),
        OrderBy::Pointer(p) => match payload.pointer(p)? {
            Value::Null => return None,
            Value::String(s) => s.clone(),
            // Numbers, booleans, objects: their JSON text.
            other => other.to_string(),
        },
    };
    if raw.is_empty() {
        return None;
    }
    if raw.len() > MAX_KEY_BYTES {
        return Some(format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(raw.as_bytes()))
        ));
    }
    Some(raw)
}

struct OrderedRoute {
    name: String,
    provider: String,
    events: Vec<String>,
    filters: Vec<Filter>,
    by: OrderBy,
    block: bool,
}

/// The ordered routes, for the accept path.
pub struct Ordering {
    routes: Vec<OrderedRoute>,
}

impl Ordering {
    /// The routes with an `order_by` (checked by [`super::ActionSettings::validate`]; one that
    /// does not parse is left out, never ordered by something else).
    pub fn new(routes: &[RouteConfig]) -> Self {
        let routes = routes
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let by = OrderBy::parse(r.order_by.as_deref()?).ok()?;
                Some(OrderedRoute {
                    name: r.display_name(i),
                    provider: r.provider.clone(),
                    events: r.events.clone(),
                    filters: r.filters.clone(),
                    by,
                    block: r.on_dead_letter == OnDeadLetter::Block,
                })
            })
            .collect();
        Self { routes }
    }

    /// The event's key on each ordered route it matches. A route whose key the event lacks
    /// orders nothing for it: the event runs there unordered.
    pub fn keys(
        &self,
        provider: &str,
        event_type: &str,
        body: &[u8],
        headers: &BTreeMap<String, String>,
    ) -> Vec<OrderKey> {
        let mut payload: Option<Value> = None;
        let mut keys = Vec::new();
        for r in &self.routes {
            if !glob_match(&r.provider, provider)
                || !r.events.iter().any(|g| glob_match(g, event_type))
            {
                continue;
            }
            // Parsed once, and only when an ordered route matches on provider and type.
            let payload =
                payload.get_or_insert_with(|| serde_json::from_slice(body).unwrap_or(Value::Null));
            if !r.filters.iter().all(|f| f.matches(payload)) {
                continue;
            }
            if let Some(key) = key_of(&r.by, payload, headers) {
                keys.push(OrderKey {
                    route: r.name.clone(),
                    key,
                    block: r.block,
                });
            }
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::RouteError;

    fn route(toml: &str) -> RouteConfig {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn order_by_parses_pointers_and_headers() {
        assert_eq!(
            OrderBy::parse("/data/object/id").unwrap(),
            OrderBy::Pointer("/data/object/id".into())
        );
        assert_eq!(
            OrderBy::parse("header:X-Shop-Id").unwrap(),
            OrderBy::Header("x-shop-id".into())
        );
        for bad in ["data/id", "header:", "header:a b", ""] {
            assert!(
                matches!(OrderBy::parse(bad), Err(RouteError::OrderBy(s)) if s == bad),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_bad_order_by_or_a_block_without_it_names_the_route_and_the_field() {
        let check = |toml: &str| {
            let settings = crate::actions::ActionSettings {
                routes: vec![route(toml)],
                ..Default::default()
            };
            settings.validate().unwrap_err().to_string()
        };
        assert_eq!(
            check("name = 'ledger'\norder_by = 'data/id'\nsteps = [{ action = 'log' }]"),
            r#"route ledger: order_by "data/id" must be a JSON pointer ("/data/object/id") or "header:<name>""#
        );
        assert_eq!(
            check("on_dead_letter = 'block'\nsteps = [{ action = 'log' }]"),
            r#"route route0: on_dead_letter = "block" needs order_by"#
        );
        let unknown = toml::from_str::<RouteConfig>(
            "order_by = '/id'\non_dead_letter = 'retry'\nsteps = [{ action = 'log' }]",
        );
        assert!(unknown.unwrap_err().to_string().contains("on_dead_letter"));
    }

    #[test]
    fn keys_come_from_the_payload_or_a_header_and_may_be_missing() {
        let routes = [
            route(
                "name = 'ledger'\nprovider = 'stripe'\norder_by = '/data/object/id'\n\
                 on_dead_letter = 'block'\nsteps = [{ action = 'log' }]",
            ),
            route(
                "name = 'shop'\norder_by = 'header:X-Shop-Id'\nevents = ['order.*']\n\
                 steps = [{ action = 'log' }]",
            ),
            route("name = 'plain'\nsteps = [{ action = 'log' }]"),
        ];
        let o = Ordering::new(&routes);
        let headers = BTreeMap::from([("x-shop-id".to_owned(), "s1".to_owned())]);
        let body = br#"{"data":{"object":{"id":"in_1"}}}"#;
        assert_eq!(
            o.keys("stripe", "order.paid", body, &headers),
            vec![
                OrderKey {
                    route: "ledger".into(),
                    key: "in_1".into(),
                    block: true
                },
                OrderKey {
                    route: "shop".into(),
                    key: "s1".into(),
                    block: false
                },
            ]
        );
        // No key (missing, null, not JSON), or the route does not match: unordered there.
        assert!(
            o.keys("stripe", "x", br#"{"data":{}}"#, &headers)
                .is_empty()
        );
        assert!(
            o.keys(
                "stripe",
                "x",
                br#"{"data":{"object":{"id":null}}}"#,
                &headers
            )
            .is_empty()
        );
        assert!(
            o.keys("stripe", "x", b"not json", &BTreeMap::new())
                .is_empty()
        );
        assert!(o.keys("github", "push", body, &headers).is_empty());
        // Numbers are keys by their JSON text; long keys by their digest.
        let k = o.keys("stripe", "x", br#"{"data":{"object":{"id":42}}}"#, &headers);
        assert_eq!(k[0].key, "42");
        let long = format!(r#"{{"data":{{"object":{{"id":"{}"}}}}}}"#, "a".repeat(500));
        let k = o.keys("stripe", "x", long.as_bytes(), &headers);
        assert!(k[0].key.starts_with("sha256:") && k[0].key.len() == 71);
    }
}

//! Routing filters: conditions on the event's JSON payload, addressed by JSON pointer.
//!
//! Owns parsing a filter from the config (exactly one condition per filter, a well-formed
//! pointer) and deciding whether a payload satisfies it. It must never look at anything but the
//! payload it is given: provider and event-type matching belong to the route.

use serde::Deserialize;
use serde_json::Value;

/// One condition a route puts on the payload, e.g.
/// `{ pointer = "/data/object/currency", equals = "usd" }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawFilter")]
pub struct Filter {
    pointer: String,
    condition: Condition,
}

#[derive(Debug, Clone, PartialEq)]
enum Condition {
    /// The value at the pointer equals this one (numbers compare by value: 2000 == 2000.0).
    Equals(Value),
    /// The pointer resolves (`true`) or does not (`false`). A JSON `null` counts as present.
    Exists(bool),
    /// The value at the pointer equals one of these.
    In(Vec<Value>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilter {
    pointer: String,
    equals: Option<Value>,
    exists: Option<bool>,
    #[serde(rename = "in")]
    one_of: Option<Vec<Value>>,
}

/// A filter that cannot be evaluated, by its pointer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error(
        "filter pointer {0:?} must be a JSON pointer: empty or starting with '/', e.g. \
         \"/data/object/currency\""
    )]
    Pointer(String),
    #[error("filter on {0:?}: `in` list is empty")]
    EmptyIn(String),
    #[error("filter on {0:?} needs exactly one of `equals`, `exists` or `in`")]
    Condition(String),
}

impl TryFrom<RawFilter> for Filter {
    type Error = FilterError;

    fn try_from(raw: RawFilter) -> Result<Self, FilterError> {
        if !(raw.pointer.is_empty() || raw.pointer.starts_with('/')) {
            return Err(FilterError::Pointer(raw.pointer));
        }
        let condition = match (raw.equals, raw.exists, raw.one_of) {
            (Some(v), None, None) => Condition::Equals(v),
            (None, Some(b), None) => Condition::Exists(b),
            (None, None, Some(list)) if !list.is_empty() => Condition::In(list),
            (None, None, Some(_)) => return Err(FilterError::EmptyIn(raw.pointer)),
            _ => return Err(FilterError::Condition(raw.pointer)),
        };
        Ok(Self {
            pointer: raw.pointer,
            condition,
        })
    }
}

impl Filter {
    /// Whether `payload` satisfies this filter. A body that is not JSON is `Value::Null`:
    /// nothing exists in it.
    pub fn matches(&self, payload: &Value) -> bool {
        let found = payload.pointer(&self.pointer);
        match &self.condition {
            Condition::Exists(want) => found.is_some() == *want,
            Condition::Equals(v) => found.is_some_and(|f| same(f, v)),
            Condition::In(list) => found.is_some_and(|f| list.iter().any(|v| same(f, v))),
        }
    }
}

/// JSON equality, except that numbers compare by value: TOML `2000` and JSON `2000.0` are equal.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(s: &str) -> Result<Filter, String> {
        #[derive(Deserialize)]
        struct W {
            f: Filter,
        }
        toml::from_str::<W>(&format!("f = {s}"))
            .map(|w| w.f)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn conditions() {
        let p = json!({"data": {"object": {"currency": "usd", "amount": 2000, "x": null}}});
        let eq = parse(r#"{ pointer = "/data/object/currency", equals = "usd" }"#).unwrap();
        assert!(eq.matches(&p));
        assert!(!eq.matches(&json!({"data": {"object": {"currency": "eur"}}})));
        assert!(!eq.matches(&Value::Null));
        let num = parse(r#"{ pointer = "/data/object/amount", equals = 2000 }"#).unwrap();
        assert!(num.matches(&p));
        assert!(num.matches(&json!({"data": {"object": {"amount": 2000.0}}})));
        assert!(!num.matches(&json!({"data": {"object": {"amount": "2000"}}})));
        let exists = parse(r#"{ pointer = "/data/object/x", exists = true }"#).unwrap();
        assert!(exists.matches(&p), "null is present");
        let absent = parse(r#"{ pointer = "/data/object/refund", exists = false }"#).unwrap();
        assert!(absent.matches(&p));
        assert!(absent.matches(&Value::Null));
        let one_of =
            parse(r#"{ pointer = "/data/object/currency", in = ["eur", "usd"] }"#).unwrap();
        assert!(one_of.matches(&p));
        assert!(!one_of.matches(&json!({"data": {"object": {"currency": "gbp"}}})));
    }

    #[test]
    fn invalid_filters_say_why() {
        let e = parse(r#"{ pointer = "data.object", equals = 1 }"#).unwrap_err();
        assert!(e.contains("JSON pointer"), "{e}");
        let e = parse(r#"{ pointer = "/a", equals = 1, exists = true }"#).unwrap_err();
        assert!(e.contains("exactly one"), "{e}");
        let e = parse(r#"{ pointer = "/a" }"#).unwrap_err();
        assert!(e.contains("exactly one"), "{e}");
        let e = parse(r#"{ pointer = "/a", in = [] }"#).unwrap_err();
        assert!(e.contains("empty"), "{e}");
        let e = parse(r#"{ pointer = "/a", equal = 1 }"#).unwrap_err();
        assert!(e.contains("equal"), "{e}");
    }
}

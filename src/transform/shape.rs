//! The contract of a script's answer: `null` skips the step; `{ body, headers }` is what the
//! step delivers. `body` is a string (sent as is, `text/plain; charset=utf-8` unless the
//! headers say otherwise) or any other JSON value (sent serialized, `application/json`);
//! `headers` is optional, an object of string values. Anything else is refused with what was
//! wrong, never guessed at.
//!
//! It must never let a script set a header hookd owns (`x-hookd-*`, the Standard Webhooks
//! signature headers) or one that frames the request (`host`, `content-length`, ...).

use std::collections::BTreeMap;

use rquickjs::{CatchResultExt, CaughtError, Ctx, Object, Value};

use super::{Payload, Transformed};

/// Why an answer is not taken.
pub(super) enum Refused<'js> {
    /// It is not of the expected shape.
    Shape(String),
    /// Reading it threw (a getter, `toJSON`, the memory cap, the deadline).
    Caught(CaughtError<'js>),
}

impl<'js> From<CaughtError<'js>> for Refused<'js> {
    fn from(e: CaughtError<'js>) -> Self {
        Self::Caught(e)
    }
}

/// Headers that describe the request itself or that hookd sets, by exact name.
const RESERVED: [&str; 6] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "traceparent",
    "user-agent",
];
/// Header prefixes hookd owns.
const RESERVED_PREFIXES: [&str; 2] = ["x-hookd-", "webhook-"];

/// Read what `transform` returned.
pub(super) fn read<'js>(ctx: &Ctx<'js>, value: Value<'js>) -> Result<Transformed, Refused<'js>> {
    if value.is_null() {
        return Ok(Transformed::Skip);
    }
    let shape = |s: String| Refused::Shape(s);
    if value.is_promise() {
        return Err(shape(
            "it returned a Promise (transforms are synchronous: no async function)".into(),
        ));
    }
    let Some(object) = value.as_object().filter(|_| !value.is_array()) else {
        return Err(shape(format!("it returned {}", describe(&value))));
    };
    for key in object.keys::<String>() {
        let key = key.catch(ctx)?;
        if key != "body" && key != "headers" {
            return Err(shape(format!(
                "the returned object has an unknown key {key:?}"
            )));
        }
    }
    let body: Value = object.get("body").catch(ctx)?;
    let (body, default_type) = if let Some(s) = body.as_string() {
        (s.to_string().catch(ctx)?, "text/plain; charset=utf-8")
    } else if body.is_undefined() {
        return Err(shape("the returned object has no `body`".into()));
    } else {
        let json = ctx.json_stringify(body.clone()).catch(ctx)?;
        let Some(json) = json else {
            return Err(shape(format!(
                "`body` is {}, which has no JSON form",
                describe(&body)
            )));
        };
        (json.to_string().catch(ctx)?, "application/json")
    };
    let mut headers = headers(ctx, object)?;
    let content_type = headers
        .remove("content-type")
        .unwrap_or_else(|| default_type.to_owned());
    Ok(Transformed::Deliver(Payload {
        body: body.into_bytes(),
        content_type: Some(content_type),
        headers,
    }))
}

/// `headers`: absent, `null`, or an object of strings with valid, non-reserved names.
fn headers<'js>(
    ctx: &Ctx<'js>,
    object: &Object<'js>,
) -> Result<BTreeMap<String, String>, Refused<'js>> {
    let value: Value = object.get("headers").catch(ctx)?;
    if value.is_undefined() || value.is_null() {
        return Ok(BTreeMap::new());
    }
    let Some(map) = value.as_object().filter(|_| !value.is_array()) else {
        return Err(Refused::Shape(format!(
            "`headers` is {}, not an object",
            describe(&value)
        )));
    };
    let mut out = BTreeMap::new();
    for prop in map.props::<String, Value>() {
        let (name, v) = prop.catch(ctx)?;
        let lower = name.to_ascii_lowercase();
        let Some(text) = v.as_string() else {
            return Err(Refused::Shape(format!(
                "header {name:?} is {}, not a string",
                describe(&v)
            )));
        };
        let text = text.to_string().catch(ctx)?;
        check_header(&lower, &text).map_err(Refused::Shape)?;
        out.insert(lower, text);
    }
    Ok(out)
}

/// A header the script may set: a valid name and value, and not one hookd owns.
fn check_header(name: &str, value: &str) -> Result<(), String> {
    if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(format!("header name {name:?} is invalid"));
    }
    if reqwest::header::HeaderValue::from_str(value).is_err() {
        return Err(format!("header {name:?} has an invalid value"));
    }
    if RESERVED.contains(&name) || RESERVED_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return Err(format!(
            "header {name:?} is set by hookd, not by a transform"
        ));
    }
    Ok(())
}

/// A value's kind, for error messages.
fn describe(v: &Value<'_>) -> String {
    if v.is_undefined() {
        "undefined (did the function `return`?)".into()
    } else if v.is_array() {
        "an array".into()
    } else if v.is_function() {
        "a function".into()
    } else {
        format!("a value of type {}", v.type_name())
    }
}

#[cfg(test)]
mod tests {
    use super::check_header;

    #[test]
    fn reserved_and_invalid_headers_are_refused() {
        assert!(check_header("x-ledger-source", "stripe").is_ok());
        assert!(
            check_header("x-hookd-event-id", "1")
                .unwrap_err()
                .contains("set by hookd")
        );
        assert!(check_header("webhook-signature", "v1,x").is_err());
        assert!(check_header("content-length", "1").is_err());
        assert!(
            check_header("bad name", "x")
                .unwrap_err()
                .contains("invalid")
        );
        assert!(
            check_header("x-a", "line\nbreak")
                .unwrap_err()
                .contains("invalid value")
        );
    }
}

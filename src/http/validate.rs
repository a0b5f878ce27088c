//! Checks on a verified webhook before it is stored: its idempotency key and event type must be
//! short and printable (they become database keys, log fields, route matches and admin output),
//! a JSON payload may nest at most [`MAX_JSON_DEPTH`] levels (so every later parse of it, by route
//! filters, schemas and the console, succeeds), and its payload must match the JSON Schemas
//! configured for its provider and event type (the file's `[[schemas]]`, compiled once at start,
//! and those of providers stored through the admin API, compiled with each version of the live
//! configuration). Runs after verification (an unsigned request never gets this far) and before
//! the store.
//!
//! Owns these limits and the reasons they give. It must never change a value: a webhook either
//! passes as it is or is refused with a 400 that names the field.

use std::borrow::Cow;

use super::settings::{Limits, SchemaRule};
use crate::actions::glob_match;
use crate::live::LiveSchema;
use crate::verify::VerifiedWebhook;

/// Why a verified webhook was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValidationError {
    #[error("the idempotency key (the provider's event or delivery id) {0}")]
    IdempotencyKey(&'static str),
    #[error("the event type {0}")]
    EventType(&'static str),
    /// Arrays and objects nested deeper than [`MAX_JSON_DEPTH`].
    #[error("the JSON payload nests arrays and objects deeper than {MAX_JSON_DEPTH} levels")]
    TooDeep,
    /// The payload does not match a configured JSON Schema.
    #[error("the payload does not match the schema {schema}: {message} (at {path:?})")]
    Schema {
        schema: String,
        /// JSON pointer of the first value that failed (`""`: the whole payload).
        path: String,
        message: String,
    },
}

impl ValidationError {
    /// The stable reason code.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::IdempotencyKey(_) => "invalid_idempotency_key",
            Self::EventType(_) => "invalid_event_type",
            Self::TooDeep => "too_deeply_nested",
            Self::Schema { .. } => "schema_violation",
        }
    }
}

/// Deepest nesting of arrays and objects a JSON payload may have: serde_json's own recursion
/// limit (it refuses the 128th level), so the worker's parse for route filters cannot fail on
/// an event accepted here. Verifiers read only a few fields and skip the rest without that
/// limit, hence the separate check.
pub const MAX_JSON_DEPTH: usize = 127;

/// Check the key, the event type and the payload's nesting against the limits.
pub fn check(limits: &Limits, webhook: &VerifiedWebhook) -> Result<(), ValidationError> {
    field(webhook.idempotency_key(), limits.max_id_bytes, false)
        .map_err(ValidationError::IdempotencyKey)?;
    field(webhook.event_type(), limits.max_event_type_bytes, true)
        .map_err(ValidationError::EventType)?;
    if nesting_exceeds(webhook.body(), MAX_JSON_DEPTH) {
        return Err(ValidationError::TooDeep);
    }
    Ok(())
}

/// Whether a body that looks like JSON (starts with `{` or `[`) nests deeper than `max`. One pass
/// over the bytes, no recursion and no allocation: a 30,000-deep body costs what its length
/// costs. Brackets inside strings do not count; other bodies (forms) are not JSON and pass.
pub fn nesting_exceeds(body: &[u8], max: usize) -> bool {
    if !looks_like_json(body) {
        return false;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// A JSON object or array, by its first byte that is not white space.
pub fn looks_like_json(body: &[u8]) -> bool {
    matches!(
        body.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    )
}

/// Validate the payload against every schema whose provider and event-type globs match: the
/// file's, then the stored providers'. The body is parsed once, and only when a schema applies.
pub fn check_schemas(
    rules: &[SchemaRule],
    stored: &[LiveSchema],
    webhook: &VerifiedWebhook,
) -> Result<(), ValidationError> {
    let file = rules.iter().map(|r| {
        let name = r.path.to_string_lossy();
        (
            r.provider.as_str(),
            r.events.as_slice(),
            name,
            &*r.validator,
        )
    });
    let stored = stored.iter().map(|r| {
        let name = Cow::Borrowed(r.name.as_str());
        (
            r.provider.as_str(),
            r.events.as_slice(),
            name,
            &*r.validator,
        )
    });
    let mut payload: Option<serde_json::Value> = None;
    for (provider, events, schema, validator) in file.chain(stored) {
        let applies = (provider == "*" || provider == webhook.provider())
            && events.iter().any(|g| glob_match(g, webhook.event_type()));
        if !applies {
            continue;
        }
        if payload.is_none() {
            payload = Some(serde_json::from_slice(webhook.body()).map_err(|e| {
                ValidationError::Schema {
                    schema: schema.to_string(),
                    path: String::new(),
                    message: format!("the body is not JSON ({e})"),
                }
            })?);
        }
        let value = payload.as_ref().expect("parsed above");
        if let Some(e) = validator.iter_errors(value).next() {
            return Err(ValidationError::Schema {
                schema: schema.to_string(),
                path: e.instance_path().as_str().to_owned(),
                // Masked: says what is wrong without echoing the payload's values into logs.
                message: e.masked().to_string(),
            });
        }
    }
    Ok(())
}

/// Printable ASCII, `1..=max` bytes; spaces inside only where `spaces` (GitLab's `Push Hook`).
fn field(value: &str, max: usize, spaces: bool) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("is empty");
    }
    if value.len() > max {
        return Err("is too long");
    }
    let ok = |b: u8| b.is_ascii_graphic() || (spaces && b == b' ');
    if !value.bytes().all(ok) {
        return Err(if spaces {
            "may only hold printable ASCII characters"
        } else {
            "may only hold printable ASCII characters without spaces"
        });
    }
    if value.starts_with(' ') || value.ends_with(' ') {
        return Err("may not start or end with a space");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn real_ids_and_types_pass() {
        for v in [
            "evt_1NG8Du2eZvKYlo2CUI79vXWy",
            "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            "8PT597110X687430LKGECATA",
            "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        ] {
            assert_eq!(field(v, 255, false), Ok(()));
        }
        for v in [
            "payment_intent.succeeded",
            "Push Hook",
            "orders/create",
            "Issue.create",
        ] {
            assert_eq!(field(v, 128, true), Ok(()));
        }
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(field("", 10, true).is_err());
        assert!(field(&"a".repeat(11), 10, true).is_err());
        assert!(field("a\nb", 10, true).is_err());
        assert!(field("caf\u{e9}", 10, true).is_err());
        assert!(field("a b", 10, false).is_err());
        assert!(field(" a", 10, true).is_err());
        assert!(field("a\u{0}", 10, true).is_err());
    }

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn nesting_is_limited_where_serde_json_stops() {
        let ok = nested(MAX_JSON_DEPTH);
        assert!(!nesting_exceeds(ok.as_bytes(), MAX_JSON_DEPTH));
        assert!(serde_json::from_str::<serde_json::Value>(&ok).is_ok());
        let deep = nested(MAX_JSON_DEPTH + 1);
        assert!(nesting_exceeds(deep.as_bytes(), MAX_JSON_DEPTH));
        assert!(serde_json::from_str::<serde_json::Value>(&deep).is_err());
        assert!(nesting_exceeds(nested(30_000).as_bytes(), MAX_JSON_DEPTH));
        // Brackets in strings (escaped quotes included) are text; forms are not JSON.
        let text = format!(r#"{{"a":"\"{}"}}"#, "[".repeat(500));
        assert!(!nesting_exceeds(text.as_bytes(), MAX_JSON_DEPTH));
        let form = format!("a={}", "[".repeat(500));
        assert!(!nesting_exceeds(form.as_bytes(), MAX_JSON_DEPTH));
    }

    proptest! {
        #[test]
        fn accepted_values_are_short_printable_ascii(s in "\\PC{0,40}", max in 1usize..40) {
            if field(&s, max, true).is_ok() {
                prop_assert!(!s.is_empty() && s.len() <= max);
                prop_assert!(s.bytes().all(|b| (0x20..0x7f).contains(&b)));
            }
        }
    }
}

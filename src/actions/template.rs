//! Text templates over an event, for email subjects and bodies and for broker routing keys,
//! subjects and stream keys:
//! `Payment {{/data/object/id}} for {{/data/object/amount}} ({{type}} from {{provider}})`.
//!
//! Owns parsing (at config load, so a typo stops start-up rather than an email) and rendering.
//! Placeholders: `{{provider}}`, `{{type}}`, `{{id}}` (hookd's event id), `{{key}}` (the
//! provider's idempotency key), `{{attempt}}`, `{{received_at}}`, and `{{/json/pointer}}` into the
//! payload. It must never fail at render time: a pointer that finds nothing renders as empty.

use std::fmt::Write;

use serde::Deserialize;
use serde_json::Value;

use crate::event::ClaimedEvent;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Provider,
    Type,
    Id,
    Key,
    Attempt,
    ReceivedAt,
    Pointer(String),
}

/// A template with a mistake, quoted with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template {0:?}: `{{{{` without a closing `}}}}`")]
    Unclosed(String),
    #[error(
        "template {template:?}: unknown placeholder {{{{{name}}}}}; use provider, type, id, key, \
         attempt, received_at or a JSON pointer such as {{{{/data/object/id}}}}"
    )]
    Placeholder { template: String, name: String },
}

impl TryFrom<String> for Template {
    type Error = TemplateError;

    fn try_from(src: String) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = src.as_str();
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| TemplateError::Unclosed(src.clone()))?;
            let name = after[..close].trim();
            parts.push(match name {
                "provider" => Part::Provider,
                "type" => Part::Type,
                "id" => Part::Id,
                "key" => Part::Key,
                "attempt" => Part::Attempt,
                "received_at" => Part::ReceivedAt,
                p if p.starts_with('/') => Part::Pointer(p.to_owned()),
                other => {
                    return Err(TemplateError::Placeholder {
                        template: src.clone(),
                        name: other.to_owned(),
                    });
                }
            });
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self { parts })
    }
}

impl Template {
    /// No text and no placeholder: renders as the empty string for every event.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Fill in the placeholders. Strings from the payload are inserted as they are; other JSON
    /// values (numbers, objects, ...) as compact JSON.
    pub fn render(&self, event: &ClaimedEvent, payload: &Value) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Provider => out.push_str(&event.provider),
                Part::Type => out.push_str(&event.event_type),
                Part::Id => {
                    let _ = write!(out, "{}", event.id);
                }
                Part::Key => out.push_str(&event.idempotency_key),
                Part::Attempt => {
                    let _ = write!(out, "{}", event.attempt);
                }
                Part::ReceivedAt => out.push_str(&event.received_at.to_rfc3339()),
                Part::Pointer(p) => match payload.pointer(p) {
                    None | Some(Value::Null) => {}
                    Some(Value::String(s)) => out.push_str(s),
                    Some(v) => {
                        let _ = write!(out, "{v}");
                    }
                },
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventId;
    use serde_json::json;

    fn event() -> ClaimedEvent {
        ClaimedEvent {
            id: EventId::new(),
            provider: "stripe".into(),
            event_type: "charge.succeeded".into(),
            idempotency_key: "evt_1".into(),
            content_type: None,
            body: Vec::new(),
            attempt: 2,
            received_at: chrono::Utc::now(),
            traceparent: None,
            delivery: None,
            generation: 0,
            ordered: false,
        }
    }

    #[test]
    fn renders_names_and_pointers() {
        let t = Template::try_from(
            "{{ type }} from {{provider}} ({{key}}, try {{attempt}}): {{/data/object/amount}} {{/data/object/currency}}{{/missing}}!"
                .to_owned(),
        )
        .unwrap();
        let p = json!({"data": {"object": {"amount": 2000, "currency": "usd"}}});
        assert_eq!(
            t.render(&event(), &p),
            "charge.succeeded from stripe (evt_1, try 2): 2000 usd!"
        );
        let e = event();
        let id = Template::try_from("{{id}}".to_owned()).unwrap();
        assert_eq!(id.render(&e, &Value::Null), e.id.to_string());
        let obj = Template::try_from("{{/data}}".to_owned()).unwrap();
        assert_eq!(obj.render(&e, &json!({"data": {"a": [1]}})), r#"{"a":[1]}"#);
    }

    #[test]
    fn mistakes_are_found_at_load() {
        let e = Template::try_from("Hello {{name}}".to_owned())
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown placeholder {{name}}"), "{e}");
        let e = Template::try_from("Hello {{type".to_owned())
            .unwrap_err()
            .to_string();
        assert!(e.contains("without a closing"), "{e}");
        assert_eq!(
            Template::try_from("no placeholders } {".to_owned())
                .unwrap()
                .render(&event(), &Value::Null),
            "no placeholders } {"
        );
    }
}

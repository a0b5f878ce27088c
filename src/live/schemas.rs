//! The JSON Schemas of stored providers, compiled: what webhooks of those providers must match
//! besides the file's `[[schemas]]`. Compiled with every version built, so a schema that does not
//! compile is refused with the change that brings it (400 naming its field), never at a webhook.
//!
//! Owns the compiled form and its checks. It must never fetch anything: remote `$ref`s are not
//! resolved (jsonschema is built without that feature), as for the file's schemas.

use std::sync::Arc;

use super::document::StoredProvider;

/// One compiled schema of a stored provider.
#[derive(Clone)]
pub struct LiveSchema {
    pub provider: String,
    /// Globs on the event type.
    pub events: Vec<String>,
    /// Where it is configured (`providers.<name>.schemas[<i>]`), named in a refusal.
    pub name: String,
    pub validator: Arc<jsonschema::Validator>,
}

impl std::fmt::Debug for LiveSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSchema")
            .field("provider", &self.provider)
            .field("events", &self.events)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A stored schema that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("{field} is invalid: expected a valid JSON Schema: {source}")]
pub struct InvalidSchema {
    /// `providers.<name>.schemas[<i>].schema`.
    pub field: String,
    #[source]
    source: Box<jsonschema::ValidationError<'static>>,
}

/// Compile the schemas of stored provider `name`; a bad one names its field.
pub fn compile(name: &str, p: &StoredProvider) -> Result<Vec<LiveSchema>, InvalidSchema> {
    p.schemas
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let at = format!("providers.{name}.schemas[{i}]");
            let validator = jsonschema::validator_for(&s.schema).map_err(|e| InvalidSchema {
                field: format!("{at}.schema"),
                source: Box::new(e),
            })?;
            Ok(LiveSchema {
                provider: name.to_owned(),
                events: s.events.clone(),
                name: at,
                validator: Arc::new(validator),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::live::StoredSchema;

    fn provider(schema: serde_json::Value) -> StoredProvider {
        StoredProvider {
            scheme: "stripe".into(),
            settings: Default::default(),
            secrets: Vec::new(),
            schemas: vec![StoredSchema {
                events: vec!["invoice.*".into()],
                schema,
            }],
        }
    }

    #[test]
    fn a_schema_compiles_and_a_bad_one_names_its_field() {
        let ok = compile("acme", &provider(json!({"type": "object"}))).unwrap();
        assert_eq!(ok[0].name, "providers.acme.schemas[0]");
        assert!(ok[0].validator.is_valid(&json!({})));
        assert!(!ok[0].validator.is_valid(&json!(1)));
        let e = compile("acme", &provider(json!({"type": 12}))).unwrap_err();
        assert_eq!(e.field, "providers.acme.schemas[0].schema");
        assert!(e.to_string().contains("valid JSON Schema"), "{e}");
    }
}

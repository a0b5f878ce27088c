//! What a forward or broker step sends: the event's body as received, or what the step's
//! JavaScript transform made of it, or nothing when the transform skipped the step; and, at
//! start, the transform threads with every script the routes name. It must never send anything
//! itself (the steps do) nor decide about retries.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{ActionError, ActionSettings, Payload, RouteConfig, Step};
use crate::event::ClaimedEvent;
use crate::transform::{Script, TransformError, TransformInput, Transformed, Transforms};

/// What `step` sends for `event`; `None` when its transform skipped it. `payload` is the parsed
/// body, `headers` the webhook request's stored headers (only a transform reads them).
pub(super) async fn of_step(
    transforms: Option<&Transforms>,
    step: &Step,
    event: &ClaimedEvent,
    payload: &Value,
    headers: &BTreeMap<String, String>,
) -> Result<Option<Payload>, ActionError> {
    let Some(script) = &step.transform else {
        return Ok(Some(Payload {
            body: event.body.clone(),
            ..Payload::default()
        }));
    };
    // Start-up loaded every script a route names, so the pool exists when a step has one.
    let transforms = transforms.ok_or_else(|| {
        ActionError::Transform(TransformError::Unknown {
            file: script.clone(),
        })
    })?;
    let input = TransformInput {
        id: event.id.to_string(),
        provider: event.provider.clone(),
        event_type: event.event_type.clone(),
        idempotency_key: event.idempotency_key.clone(),
        attempt: event.attempt,
        received_at: event.received_at.to_rfc3339(),
        headers: headers.clone(),
        body: payload.clone(),
        text: String::from_utf8_lossy(&event.body).into_owned(),
    };
    match transforms.run(script, input).await {
        Ok(Transformed::Deliver(p)) => Ok(Some(p)),
        Ok(Transformed::Skip) => Ok(None),
        Err(e) => Err(ActionError::Transform(e)),
    }
}

/// Read every script the routes name and compile each on every transform thread; `None` when
/// no route names one (no thread is started).
pub(super) fn start_transforms(
    settings: &ActionSettings,
) -> Result<Option<Transforms>, TransformError> {
    let paths: BTreeSet<&str> = settings
        .routes
        .iter()
        .flat_map(RouteConfig::transforms)
        .collect();
    if paths.is_empty() {
        return Ok(None);
    }
    let scripts = paths
        .into_iter()
        .map(|p| Script::read(std::path::Path::new(p)))
        .collect::<Result<Vec<_>, _>>()?;
    Transforms::start(&settings.transform, &scripts).map(Some)
}

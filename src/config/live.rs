//! Reads the settings of the live configuration: `HOOKD_SECRET_KEY` (environment only: a key
//! does not belong in a file next to what it protects) and `HOOKD_CONFIG_CHECK_SECS`. Fills
//! [`LiveSettings`]; the key format is `live`'s.

use std::sync::Arc;
use std::time::Duration;

use super::ConfigError;
use super::reader::Reader;
use crate::live::{LiveSettings, SECRET_KEY_VAR, SecretKeys};

pub(super) fn live(r: &Reader<'_>) -> Result<LiveSettings, ConfigError> {
    let d = LiveSettings::default();
    let keys = r
        .set(SECRET_KEY_VAR)
        .map(|v| {
            SecretKeys::parse(v).map_err(|e| ConfigError::Refused {
                setting: SECRET_KEY_VAR.to_owned(),
                // Never the key itself.
                value: "(hidden)".to_owned(),
                expected: e.to_string(),
                source: Box::new(e),
            })
        })
        .transpose()?;
    let check = r.positive(
        "HOOKD_CONFIG_CHECK_SECS",
        Some("config.check_secs"),
        d.check_interval.as_secs(),
    )?;
    Ok(LiveSettings {
        keys: keys.map(Arc::new),
        check_interval: Duration::from_secs(check),
    })
}

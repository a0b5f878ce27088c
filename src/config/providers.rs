//! Reads the providers: every `[providers.<name>]` section, as plain values, handed with the
//! environment to `verify`'s scheme registry, which knows what each scheme reads. Also
//! `HOOKD_PUBLIC_URL`, which the schemes that sign the URL need.

use std::collections::BTreeMap;

use super::ConfigError;
use super::reader::{Reader, invalid};
use crate::store::redact_url;
use crate::verify::{FileSection, FileValue, ProviderConfig, registry};

/// `HOOKD_PUBLIC_URL`: an http(s) base URL, kept without its trailing slash.
pub(super) fn public_url(r: &Reader<'_>) -> Result<Option<String>, ConfigError> {
    let Some(value) = r.text(Some("HOOKD_PUBLIC_URL"), Some("server.public_url"))? else {
        return Ok(None);
    };
    let refused = || {
        invalid(
            "HOOKD_PUBLIC_URL",
            &redact_url(&value),
            "the http(s) URL providers call hookd at, e.g. https://hooks.example.com \
             (no credentials or query)",
        )
    };
    let url = reqwest::Url::parse(&value).map_err(|_| refused())?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(refused());
    }
    Ok(Some(value.trim_end_matches('/').to_owned()))
}

/// Every provider, built-in or configured, with its scheme's settings.
pub(super) fn providers(
    r: &Reader<'_>,
    public_url: Option<&str>,
) -> Result<Vec<ProviderConfig>, ConfigError> {
    let tables = r
        .section::<BTreeMap<String, toml::Table>>("providers")?
        .unwrap_or_default();
    let sections: BTreeMap<String, FileSection> = tables
        .into_iter()
        .map(|(name, table)| {
            let fields = table
                .into_iter()
                .map(|(key, value)| (key, file_value(value)))
                .collect();
            (name, fields)
        })
        .collect();
    let env = |var: &str| r.raw(var).map(str::to_owned);
    Ok(registry::read_providers(&sections, &env, public_url)?)
}

fn file_value(value: toml::Value) -> FileValue {
    match value {
        toml::Value::String(s) => FileValue::Text(s),
        toml::Value::Integer(n) => FileValue::Integer(n),
        toml::Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .map_or(FileValue::Other("array"), FileValue::List),
        other => FileValue::Other(other.type_str()),
    }
}

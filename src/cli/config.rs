//! `hookd config export` and `hookd config apply FILE [--dry-run]`: the stored configuration as
//! a TOML file and back, through the admin API (`/admin/config/export`, `/admin/config/apply`).
//!
//! A provider's secret is never written into the file: its table names the variable that holds
//! it (`secret_env`), read here when the file is applied. It must never print a secret.

use std::path::Path;

use anyhow::{Context, bail};
use serde_json::{Map, Value};

use super::commands::Session;
use crate::ops::config::{ApplyResult, ConfigFile, FileProvider};

/// `hookd config export`: the stored configuration as TOML, on `out`.
pub async fn export(s: &mut Session<'_>) -> anyhow::Result<()> {
    let answer = s.client.get("/config/export", &[]).await?;
    let file: ConfigFile = serde_json::from_slice(&answer)?;
    writeln!(
        s.out,
        "# hookd configuration stored through the admin API (`hookd config export`).\n\
         # Secrets are not written: `hookd config apply` reads each provider's secret from its\n\
         # secret_env variable, and keeps the stored one when that variable is unset.\n"
    )?;
    s.out.write_all(to_toml(&file)?.as_bytes())?;
    Ok(())
}

/// `hookd config apply FILE [--dry-run]`: print the difference, then apply it (or not).
pub async fn apply(s: &mut Session<'_>, path: &Path, dry_run: bool) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file = from_toml(&text, &|var| {
        std::env::var(var).ok().filter(|v| !v.is_empty())
    })
    .with_context(|| format!("{} is not a configuration file", path.display()))?;
    let query = if dry_run { "?dry_run=true" } else { "" };
    let answer = s
        .client
        .post(
            &format!("/config/apply{query}"),
            Some(serde_json::to_string(&file)?),
        )
        .await?;
    s.show(&answer, |out, r: &ApplyResult| {
        for line in &r.changes {
            writeln!(out, "{line}")?;
        }
        match (r.changes.is_empty(), r.applied) {
            (true, _) => writeln!(out, "nothing to change (version {})", r.version)?,
            (false, true) => writeln!(out, "applied as version {}", r.version)?,
            (false, false) => writeln!(out, "dry run: nothing was changed")?,
        }
        Ok(())
    })
}

/// JSON `null`s dropped (TOML has none): a route may hold one.
fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// The file as TOML: `[providers.<name>]` tables with their settings inline, `[[routes]]`,
/// `[destinations.<name>]`.
fn to_toml(file: &ConfigFile) -> anyhow::Result<String> {
    let mut providers = Map::new();
    for (name, p) in &file.providers {
        let mut table = p.settings.clone();
        table.insert("scheme".into(), p.scheme.clone().into());
        if let Some(var) = &p.secret_env {
            table.insert("secret_env".into(), var.clone().into());
        }
        if !p.schemas.is_empty() {
            table.insert("schemas".into(), serde_json::to_value(&p.schemas)?);
        }
        providers.insert(name.clone(), Value::Object(table));
    }
    let mut doc = Map::new();
    doc.insert("providers".into(), Value::Object(providers));
    doc.insert("routes".into(), serde_json::to_value(&file.routes)?);
    doc.insert(
        "destinations".into(),
        serde_json::to_value(&file.destinations)?,
    );
    let table: toml::Table = serde_json::from_value(without_nulls(Value::Object(doc)))?;
    Ok(toml::to_string(&table)?)
}

/// A TOML file as the API takes it; `env` looks up each provider's `secret_env`.
fn from_toml(text: &str, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<ConfigFile> {
    let table: toml::Table = toml::from_str(text)?;
    let Value::Object(mut doc) = serde_json::to_value(table)? else {
        bail!("expected a table");
    };
    let mut file = ConfigFile::default();
    if let Some(Value::Object(providers)) = doc.remove("providers") {
        for (name, p) in providers {
            let Value::Object(mut settings) = p else {
                bail!("providers.{name} must be a table");
            };
            if settings.contains_key("secret") {
                bail!(
                    "providers.{name}.secret: a secret is not written in the file; name its variable with secret_env"
                );
            }
            let Some(Value::String(scheme)) = settings.remove("scheme") else {
                bail!("providers.{name}.scheme is required");
            };
            let secret_env = match settings.remove("secret_env") {
                Some(Value::String(v)) => Some(v),
                None => None,
                Some(_) => bail!("providers.{name}.secret_env must be the name of a variable"),
            };
            let secret = secret_env.as_deref().and_then(env);
            let schemas = match settings.remove("schemas") {
                Some(s) => serde_json::from_value(s).with_context(|| {
                    format!("providers.{name}.schemas must be [[providers.{name}.schemas]] tables with events and schema")
                })?,
                None => Vec::new(),
            };
            let provider = FileProvider {
                scheme,
                settings,
                secret_env,
                secret,
                schemas,
            };
            file.providers.insert(name, provider);
        }
    }
    if let Some(routes) = doc.remove("routes") {
        file.routes = serde_json::from_value(routes).context("routes must be [[routes]] tables")?;
    }
    if let Some(dests) = doc.remove("destinations") {
        file.destinations = serde_json::from_value(dests).context("in [destinations]")?;
    }
    if let Some(key) = doc.keys().next() {
        bail!("{key} is not part of a configuration file (providers, routes, destinations)");
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[providers.acme]
scheme = "stripe"
tolerance_secs = 600
secret_env = "ACME_WEBHOOK_SECRET"

[[routes]]
name = "bill"
provider = "acme"
steps = [{ action = "forward", destination = "billing" }]

[destinations.billing]
url = "https://billing.example/hook"
"#;

    #[test]
    fn a_file_round_trips_and_reads_secrets_from_their_variable() {
        let env = |v: &str| (v == "ACME_WEBHOOK_SECRET").then(|| "whsec_x".to_owned());
        let file = from_toml(FILE, &env).unwrap();
        let acme = &file.providers["acme"];
        assert_eq!(acme.secret.as_deref(), Some("whsec_x"));
        assert_eq!(acme.settings["tolerance_secs"], 600);
        let mut exported = file.clone();
        exported.providers.get_mut("acme").unwrap().secret = None;
        let text = to_toml(&exported).unwrap();
        assert!(!text.contains("whsec_x"), "{text}");
        assert_eq!(from_toml(&text, &|_| None).unwrap(), exported);
    }

    #[test]
    fn a_secret_written_in_the_file_is_refused() {
        let e = from_toml(
            "[providers.a]\nscheme = \"stripe\"\nsecret = \"s\"\n",
            &|_| None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("secret_env"), "{e}");
        assert!(from_toml("[other]\nx = 1\n", &|_| None).is_err());
    }
}

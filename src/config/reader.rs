//! The one place settings are read from: the environment first, then the TOML file, then the
//! default the owning subsystem gives. Each setting is named once, by its variable and its file
//! key, where it is read; there is no second, file-shaped copy of the settings.
//!
//! Owns lookup, parsing and the messages that name the setting. It must never hold a default or
//! a rule of its own: those belong to the subsystem whose settings type is being filled. Every
//! file key it is asked about is remembered, so a key nobody asked about is reported as unknown
//! rather than silently ignored.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::ConfigError;
use super::duration::{SPAN_EXPECTED, Span};

/// The environment and the parsed config file.
pub(super) struct Reader<'a> {
    env: &'a HashMap<String, String>,
    file: toml::Table,
    /// The file's text, to say where a mistake in a structured section is.
    text: String,
    /// The config file in use, if any.
    path: Option<PathBuf>,
    /// File keys (dotted) that have been looked up; a table key covers everything under it.
    asked: RefCell<BTreeSet<String>>,
}

/// A setting's value, with the name it was found under and its text, for range checks.
struct Got<T> {
    value: T,
    name: String,
    shown: String,
}

/// A value as found: from the environment (its text) or from the file (its value).
enum Found<'v> {
    Env(&'v str),
    File(toml::Value),
}

impl<'a> Reader<'a> {
    /// Read the file named by `HOOKD_CONFIG`, or `hookd.toml` in the working directory when it
    /// exists.
    pub fn new(env: &'a HashMap<String, String>) -> Result<Self, ConfigError> {
        let mut reader = Self {
            env,
            file: toml::Table::new(),
            text: String::new(),
            path: None,
            asked: RefCell::default(),
        };
        reader.path = match reader.raw("HOOKD_CONFIG") {
            Some(p) => Some(PathBuf::from(p)),
            None if Path::new("hookd.toml").exists() => Some(PathBuf::from("hookd.toml")),
            None => None,
        };
        if let Some(path) = &reader.path {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            reader.file = toml::from_str(&text).map_err(|source| ConfigError::Parse {
                path: path.clone(),
                source,
            })?;
            reader.text = text;
        }
        Ok(reader)
    }

    /// The folder of the config file, against which paths in it are resolved.
    pub fn file_dir(&self) -> Option<&Path> {
        self.path.as_deref().and_then(Path::parent)
    }

    /// A variable, trimmed; `None` when unset or empty.
    pub fn raw(&self, var: &str) -> Option<&'a str> {
        self.env
            .get(var)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
    }

    /// A variable as set, empty included (`HOOKD_LOG_DIR=` means "no log files").
    pub fn set(&self, var: &str) -> Option<&'a str> {
        self.env.get(var).map(|s| s.trim())
    }

    /// A file value, by dotted key; remembered as asked for.
    pub fn file_value(&self, key: &str) -> Option<&toml::Value> {
        self.asked.borrow_mut().insert(key.to_owned());
        let mut parts = key.split('.');
        let first = parts.next()?;
        let mut value = self.file.get(first)?;
        for part in parts {
            value = value.as_table()?.get(part)?;
        }
        Some(value)
    }

    fn find(&self, var: Option<&str>, key: Option<&str>) -> Option<Found<'a>> {
        let from_file = key.and_then(|k| self.file_value(k).cloned());
        match var.and_then(|v| self.raw(v)) {
            Some(v) => Some(Found::Env(v)),
            None => from_file.map(Found::File),
        }
    }

    /// A setting from `var` or the file's `key`, else `default`.
    pub fn get<T: FromStr + DeserializeOwned>(
        &self,
        var: &str,
        key: Option<&str>,
        default: T,
        expected: &str,
    ) -> Result<T, ConfigError> {
        self.get_in(Some(var), key, expected)
            .map(|v| v.map_or(default, |g| g.value))
    }

    /// A setting, with the name and text it came from (for range checks); `None` when unset.
    fn get_in<T: FromStr + DeserializeOwned>(
        &self,
        var: Option<&str>,
        key: Option<&str>,
        expected: &str,
    ) -> Result<Option<Got<T>>, ConfigError> {
        match self.find(var, key) {
            None => Ok(None),
            Some(Found::Env(v)) => {
                let var = var.unwrap_or_default();
                match v.parse() {
                    Ok(value) => Ok(Some(Got {
                        value,
                        name: var.to_owned(),
                        shown: v.to_owned(),
                    })),
                    Err(_) => Err(invalid(var, v, expected)),
                }
            }
            Some(Found::File(value)) => {
                let key = key.unwrap_or_default();
                let shown = shown(&value);
                match value.try_into() {
                    Ok(value) => Ok(Some(Got {
                        value,
                        name: key.to_owned(),
                        shown,
                    })),
                    Err(_) => Err(invalid(key, &shown, expected)),
                }
            }
        }
    }

    /// A setting without a default: `None` when neither the variable nor the key is set.
    pub fn opt<T: FromStr + DeserializeOwned>(
        &self,
        var: &str,
        key: Option<&str>,
        expected: &str,
    ) -> Result<Option<T>, ConfigError> {
        Ok(self.get_in(Some(var), key, expected)?.map(|g| g.value))
    }

    /// A setting only the file has.
    pub fn file<T: FromStr + DeserializeOwned>(
        &self,
        key: &str,
        expected: &str,
    ) -> Result<Option<T>, ConfigError> {
        Ok(self.get_in(None, Some(key), expected)?.map(|g| g.value))
    }

    /// A whole number above zero.
    pub fn positive<T: FromStr + DeserializeOwned + PartialOrd + Default>(
        &self,
        var: &str,
        key: Option<&str>,
        default: T,
    ) -> Result<T, ConfigError> {
        const EXPECTED: &str = "a positive whole number";
        match self.get_in::<T>(Some(var), key, EXPECTED)? {
            None => Ok(default),
            Some(g) if g.value <= T::default() => Err(invalid(&g.name, &g.shown, EXPECTED)),
            Some(g) => Ok(g.value),
        }
    }

    /// A duration above zero, written `3d`, `12h`, `30m`, `90s`, `500ms` or as seconds.
    pub fn span(
        &self,
        var: &str,
        key: Option<&str>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match self.get_in::<Span>(Some(var), key, SPAN_EXPECTED)? {
            None => Ok(default),
            Some(g) if g.value.0.is_zero() => Err(invalid(&g.name, &g.shown, SPAN_EXPECTED)),
            Some(g) => Ok(g.value.0),
        }
    }

    /// A whole number in `lo..=hi`.
    pub fn within<T: FromStr + DeserializeOwned + PartialOrd + Display>(
        &self,
        var: &str,
        key: Option<&str>,
        default: T,
        (lo, hi): (T, T),
    ) -> Result<T, ConfigError> {
        let expected = format!("a whole number from {lo} to {hi}");
        match self.get_in::<T>(Some(var), key, &expected)? {
            None => Ok(default),
            Some(g) if g.value < lo || g.value > hi => Err(invalid(&g.name, &g.shown, &expected)),
            Some(g) => Ok(g.value),
        }
    }

    /// Text from `var` or the file's `key`.
    pub fn text(
        &self,
        var: Option<&str>,
        key: Option<&str>,
    ) -> Result<Option<String>, ConfigError> {
        Ok(self.get_in::<String>(var, key, "text")?.map(|g| g.value))
    }

    /// A list: the variable's comma-separated entries (trimmed), or the file's array.
    pub fn list(&self, var: &str, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
        match self.find(Some(var), Some(key)) {
            None => Ok(None),
            Some(Found::Env(v)) => Ok(Some(v.split(',').map(|s| s.trim().to_owned()).collect())),
            Some(Found::File(value)) => {
                let shown = shown(&value);
                value
                    .try_into()
                    .map(Some)
                    .map_err(|_| invalid(key, &shown, "a list of text"))
            }
        }
    }

    /// A structured part of the file (routes, schemas, tables), read whole through serde.
    pub fn section<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, ConfigError> {
        let Some(value) = self.file_value(key).cloned() else {
            return Ok(None);
        };
        value
            .try_into()
            .map(Some)
            .map_err(|source| ConfigError::Section {
                key: key.to_owned(),
                // The same mistake, found again in the text: now with its line and column.
                source: super::spans::locate::<T>(&self.text, key).unwrap_or(source),
            })
    }

    /// The first file key nobody asked about: a misspelt or unsupported setting.
    pub fn unknown_key(&self) -> Result<(), ConfigError> {
        let asked = self.asked.borrow();
        let covered = |key: &str| {
            asked.contains(key)
                || key
                    .char_indices()
                    .filter(|(_, c)| *c == '.')
                    .any(|(i, _)| asked.contains(&key[..i]))
        };
        let mut stack: Vec<(String, &toml::Value)> =
            self.file.iter().map(|(k, v)| (k.clone(), v)).collect();
        while let Some((key, value)) = stack.pop() {
            if covered(&key) {
                continue;
            }
            let prefix = format!("{key}.");
            let read_inside = asked.iter().any(|k| k.starts_with(&prefix));
            match value.as_table() {
                // A table hookd reads: look for the key inside it that it does not.
                Some(table) if read_inside => {
                    stack.extend(table.iter().map(|(k, v)| (format!("{key}.{k}"), v)));
                }
                _ => {
                    let known = siblings(&asked, &key);
                    return Err(ConfigError::UnknownKey {
                        path: self.path.clone().unwrap_or_default(),
                        key,
                        known,
                    });
                }
            }
        }
        Ok(())
    }
}

/// The keys hookd reads next to `key` (in the same table), for the message that refuses it.
fn siblings(asked: &BTreeSet<String>, key: &str) -> String {
    let parent = key.rsplit_once('.').map(|(p, _)| format!("{p}."));
    let parent = parent.as_deref().unwrap_or("");
    let names: BTreeSet<&str> = asked
        .iter()
        .filter_map(|k| k.strip_prefix(parent))
        .map(|rest| rest.split('.').next().unwrap_or(rest))
        .collect();
    names.into_iter().collect::<Vec<_>>().join(", ")
}

/// A file value as a message shows it: a scalar's text, else its kind.
fn shown(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        other => format!("(a {})", other.type_str()),
    }
}

/// A value that cannot be used: the setting's name (variable or file key), what it holds, and
/// what it should be.
pub(super) fn invalid(setting: &str, value: &str, expected: &str) -> ConfigError {
    ConfigError::Invalid {
        setting: setting.to_owned(),
        value: value.to_owned(),
        expected: expected.to_owned(),
    }
}

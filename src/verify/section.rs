//! One provider's settings as configured, handed by the configuration reader to its scheme: the
//! fields of its `[providers.<name>]` section and its environment variables. And the errors that
//! name a wrong setting.
//!
//! Owns the naming of a provider's settings (`stripe-eu` reads `STRIPE_EU_WEBHOOK_SECRET` and
//! `providers.stripe-eu.secret`) and their lookup, environment first. It must never read the
//! environment or a file itself, nor know any scheme: each scheme reads what it needs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::Secrets;
use super::paypal_certs::{CertSetupError, PrefixError, RootsError};
use super::standard::KeyError;

/// `stripe-eu` reads `STRIPE_EU_WEBHOOK_SECRET`, `STRIPE_EU_TOLERANCE_SECS`, ...
pub fn env_prefix(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

/// A value of a `[providers.<name>]` field, as the file gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileValue {
    Text(String),
    Integer(i64),
    List(Vec<String>),
    /// Anything else (a table, a boolean, a date, a list of non-text): the kind, for messages.
    Other(&'static str),
}

impl FileValue {
    /// What kind of value it is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Text(_) => "text",
            Self::Integer(_) => "integer",
            Self::List(_) => "list",
            Self::Other(kind) => kind,
        }
    }
}

/// The fields of one `[providers.<name>]` section, by key.
pub type FileSection = BTreeMap<String, FileValue>;

/// One provider's settings as configured, for its scheme to read: the fields of its section and
/// its environment variables (which win over the file).
pub struct Section<'a> {
    pub(super) name: &'a str,
    pub(super) env_prefix: String,
    pub(super) file: &'a FileSection,
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
    pub(super) public_url: Option<&'a str>,
    pub(super) default_tolerance_secs: u64,
}

impl Section<'_> {
    /// `<PREFIX>_<suffix>`: the variable of this provider's setting.
    pub fn var(&self, suffix: &str) -> String {
        format!("{}_{suffix}", self.env_prefix)
    }

    /// `providers.<name>.<field>`: the file key of this provider's setting.
    pub fn key(&self, field: &str) -> String {
        format!("providers.{}.{field}", self.name)
    }

    /// The provider's name (its URL path segment).
    pub fn name(&self) -> &str {
        self.name
    }

    fn wrong_type(&self, field: &str, expected: &'static str) -> SettingError {
        SettingError::Type {
            key: self.key(field),
            expected,
            found: self.file.get(field).map_or("nothing", FileValue::kind),
        }
    }

    /// A text field of the file (the generic scheme's fields have no variable).
    pub fn text(&self, field: &str) -> Result<Option<&str>, SettingError> {
        match self.file.get(field) {
            None => Ok(None),
            Some(FileValue::Text(t)) => Ok(Some(t)),
            Some(_) => Err(self.wrong_type(field, "text")),
        }
    }

    /// Whether the file sets this field.
    pub fn has(&self, field: &str) -> bool {
        self.file.contains_key(field)
    }

    /// Secrets: the variable's comma-separated list, or the field (text: comma-separated; a
    /// list: each entry whole, so a secret may hold a comma). `None` when there is none.
    pub fn secrets(&self, suffix: &str, field: &str) -> Result<Option<Secrets>, SettingError> {
        if let Some(v) = (self.env)(&self.var(suffix)) {
            return Ok(Secrets::from_list(&v));
        }
        match self.file.get(field) {
            None => Ok(None),
            Some(FileValue::Text(t)) => Ok(Secrets::from_list(t)),
            Some(FileValue::List(l)) => Ok(Secrets::new(l.iter().cloned())),
            Some(_) => Err(self.wrong_type(field, "text or a list of text")),
        }
    }

    /// A list: the variable's comma-separated entries, or the field's list.
    pub fn list(&self, suffix: &str, field: &str) -> Result<Option<Vec<String>>, SettingError> {
        if let Some(v) = (self.env)(&self.var(suffix)) {
            return Ok(Some(v.split(',').map(|s| s.trim().to_owned()).collect()));
        }
        match self.file.get(field) {
            None => Ok(None),
            Some(FileValue::List(l)) => Ok(Some(l.clone())),
            Some(_) => Err(self.wrong_type(field, "a list of text")),
        }
    }

    /// A file path: the variable, or the field.
    pub fn path(&self, suffix: &str, field: &str) -> Result<Option<PathBuf>, SettingError> {
        if let Some(v) = (self.env)(&self.var(suffix)) {
            return Ok(Some(PathBuf::from(v)));
        }
        Ok(self.text(field)?.map(PathBuf::from))
    }

    /// `<PREFIX>_TOLERANCE_SECS` or `tolerance_secs`: a positive number of seconds.
    pub fn tolerance(&self) -> Result<u64, SettingError> {
        let setting = self.var("TOLERANCE_SECS");
        let invalid = |value: String| SettingError::Invalid {
            setting: setting.clone(),
            value,
            expected: "a positive whole number",
        };
        if let Some(v) = (self.env)(&setting) {
            return match v.parse::<u64>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(invalid(v)),
            };
        }
        match self.file.get("tolerance_secs") {
            None => Ok(self.default_tolerance_secs),
            Some(FileValue::Integer(n)) if *n > 0 => Ok(n.unsigned_abs()),
            Some(FileValue::Integer(_)) => Err(invalid("(from the config file)".into())),
            Some(_) => Err(self.wrong_type("tolerance_secs", "a positive whole number")),
        }
    }
}

/// A provider that cannot be set up, by name.
#[derive(Debug, thiserror::Error)]
#[error("provider {provider}: {source}")]
pub struct ProviderError {
    pub provider: String,
    pub source: Box<SettingError>,
}

/// What is wrong with a provider's settings; each names the variable or file key to fix, and
/// never shows a secret.
#[derive(Debug, thiserror::Error)]
pub enum SettingError {
    #[error("the name is the URL path segment: up to 64 lower-case letters, digits, '-' and '_'")]
    Name,
    #[error("scheme {given:?} is unknown; expected one of {known}")]
    UnknownScheme { given: String, known: String },
    #[error("set scheme (one of {known})")]
    NoScheme { known: String },
    #[error("providers.{provider}.{field} does not apply to scheme {scheme:?}")]
    NotApplicable {
        provider: String,
        field: String,
        scheme: &'static str,
    },
    #[error("{key} is not a provider setting")]
    UnknownField { key: String },
    #[error("{key}: expected {expected}, found {found}")]
    Type {
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("reads the same environment variables as provider {other}: rename one")]
    SamePrefix { other: String },
    #[error("{setting}={value:?} is invalid: expected {expected}")]
    Invalid {
        setting: String,
        value: String,
        expected: &'static str,
    },
    #[error("{setting}: {source}")]
    Keys { setting: String, source: KeyError },
    #[error("{setting}: {source}")]
    CertPrefix {
        setting: String,
        source: PrefixError,
    },
    #[error("{setting} is empty")]
    Empty { setting: String },
    #[error("{setting}: {source}")]
    TrustRoots { setting: String, source: RootsError },
    #[error("{key} is required: {what}")]
    Required { key: String, what: &'static str },
    /// A part of the generic scheme's description (header name, template).
    #[error("{key}: {source}")]
    Spec {
        key: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{key} = {value:?}: expected {expected}")]
    Choice {
        key: String,
        value: String,
        expected: &'static str,
    },
    #[error("{key} needs {needs}")]
    Needs { key: String, needs: &'static str },
    #[error("set {what}_header or {what}_pointer in providers.{provider}, not both")]
    Both {
        what: &'static str,
        provider: String,
    },
    #[error("{key} = {value:?}: a JSON pointer starts with '/', e.g. \"/id\"")]
    Pointer { key: String, value: String },
    /// The generic scheme as a whole cannot be verified safely.
    #[error("providers.{provider}: {source}")]
    Scheme {
        provider: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(transparent)]
    Setup(CertSetupError),
}

//! The signature schemes hookd knows, as one table: for each scheme, the settings it reads (the
//! variable that turns a provider on, the fields of its `[providers.<name>]` section), how they
//! become its [`VerifierConfig`], and whether it is also a built-in provider of the same name.
//! A new scheme is its file in `verify/` plus one entry in [`SCHEMES`] (and its variant of
//! [`VerifierConfig`]); the configuration reader needs no change.
//!
//! Owns the meaning of a provider's settings, their defaults and their checks, and the naming of
//! its environment variables (`stripe-eu` reads `STRIPE_EU_WEBHOOK_SECRET`). It must never read
//! the environment or a file itself: the reader hands it a [`Section`] of values already read,
//! and every mistake comes back as a [`SettingError`] that names the setting.

use std::collections::{BTreeMap, HashMap};

use super::section::{FileSection, FileValue, ProviderError, Section, SettingError, env_prefix};
use super::settings::{ProviderConfig, VerifierConfig};
use super::standard::StandardKeys;
use super::{Secrets, generic, paypal};

/// One scheme: what it reads and how.
pub struct SchemeEntry {
    pub name: &'static str,
    /// Also a provider of the same name, on as soon as its secret is set.
    pub built_in: bool,
    /// The variable suffix (`WEBHOOK_SECRET`) and the section field (`secret`) of the secret
    /// that turns a provider of this scheme on.
    pub secret: (&'static str, &'static str),
    /// Section fields it reads besides `scheme` and its secret.
    pub fields: &'static [&'static str],
    /// The timestamp window when `tolerance_secs` is not set (schemes that sign a time).
    pub default_tolerance_secs: Option<u64>,
    /// Its settings, given the secrets (`None` while they are unset: most schemes then have
    /// nothing to check; the generic one still checks its description).
    read: fn(&Section<'_>, Option<Secrets>) -> Result<Option<VerifierConfig>, SettingError>,
}

const TIMED: &[&str] = &["tolerance_secs"];
const SECRET: (&str, &str) = ("WEBHOOK_SECRET", "secret");

/// Every scheme hookd knows. Each one but `hmac` is also a built-in provider of the same name.
pub const SCHEMES: &[SchemeEntry] = &[
    SchemeEntry {
        name: "stripe",
        built_in: true,
        secret: SECRET,
        fields: TIMED,
        default_tolerance_secs: Some(300),
        read: |s, secrets| {
            let Some(secrets) = secrets else {
                return Ok(None);
            };
            Ok(Some(VerifierConfig::Stripe {
                secrets,
                tolerance_secs: s.tolerance()?,
            }))
        },
    },
    SchemeEntry {
        name: "github",
        built_in: true,
        secret: SECRET,
        fields: &[],
        default_tolerance_secs: None,
        read: |_, secrets| Ok(secrets.map(|secrets| VerifierConfig::Github { secrets })),
    },
    SchemeEntry {
        name: "paypal",
        built_in: true,
        secret: ("WEBHOOK_ID", "webhook_id"),
        fields: &["tolerance_secs", "cert_url_prefixes", "trust_roots"],
        default_tolerance_secs: Some(300),
        read: |s, ids| {
            let Some(ids) = ids else { return Ok(None) };
            Ok(Some(VerifierConfig::Paypal(paypal::settings(s, ids)?)))
        },
    },
    SchemeEntry {
        name: "standard",
        built_in: true,
        secret: SECRET,
        fields: TIMED,
        default_tolerance_secs: Some(300),
        read: |s, secrets| {
            let Some(secrets) = secrets else {
                return Ok(None);
            };
            let keys = StandardKeys::parse(&secrets).map_err(|source| SettingError::Keys {
                setting: format!("{} ({})", s.var("WEBHOOK_SECRET"), s.key("secret")),
                source,
            })?;
            Ok(Some(VerifierConfig::Standard {
                keys,
                tolerance_secs: s.tolerance()?,
            }))
        },
    },
    SchemeEntry {
        name: "shopify",
        built_in: true,
        secret: SECRET,
        fields: &[],
        default_tolerance_secs: None,
        read: |_, secrets| Ok(secrets.map(|secrets| VerifierConfig::Shopify { secrets })),
    },
    SchemeEntry {
        name: "slack",
        built_in: true,
        secret: SECRET,
        fields: TIMED,
        default_tolerance_secs: Some(300),
        read: |s, secrets| {
            let Some(secrets) = secrets else {
                return Ok(None);
            };
            Ok(Some(VerifierConfig::Slack {
                secrets,
                tolerance_secs: s.tolerance()?,
            }))
        },
    },
    SchemeEntry {
        name: "gitlab",
        built_in: true,
        secret: SECRET,
        fields: &[],
        default_tolerance_secs: None,
        read: |_, secrets| Ok(secrets.map(|secrets| VerifierConfig::Gitlab { secrets })),
    },
    SchemeEntry {
        name: "twilio",
        built_in: true,
        secret: SECRET,
        fields: &["shared_key_secret"],
        default_tolerance_secs: None,
        read: |s, secrets| {
            let Some(auth_tokens) = secrets else {
                return Ok(None);
            };
            Ok(Some(VerifierConfig::Twilio {
                auth_tokens,
                shared_keys: s.secrets("SHARED_KEY_SECRET", "shared_key_secret")?,
                public_url: s.public_url.map(str::to_owned),
            }))
        },
    },
    SchemeEntry {
        name: "paddle",
        built_in: true,
        secret: SECRET,
        fields: TIMED,
        // Paddle's SDKs allow 5 s.
        default_tolerance_secs: Some(5),
        read: |s, secrets| {
            let Some(secrets) = secrets else {
                return Ok(None);
            };
            Ok(Some(VerifierConfig::Paddle {
                secrets,
                tolerance_secs: s.tolerance()?,
            }))
        },
    },
    SchemeEntry {
        name: "square",
        built_in: true,
        secret: SECRET,
        fields: &[],
        default_tolerance_secs: None,
        read: |s, secrets| {
            Ok(secrets.map(|secrets| VerifierConfig::Square {
                secrets,
                public_url: s.public_url.map(str::to_owned),
            }))
        },
    },
    SchemeEntry {
        name: "linear",
        built_in: true,
        secret: SECRET,
        fields: TIMED,
        // Linear's SDK allows 60 s.
        default_tolerance_secs: Some(60),
        read: |s, secrets| {
            let Some(secrets) = secrets else {
                return Ok(None);
            };
            Ok(Some(VerifierConfig::Linear {
                secrets,
                tolerance_secs: s.tolerance()?,
            }))
        },
    },
    SchemeEntry {
        name: "hmac",
        built_in: false,
        secret: SECRET,
        fields: generic::FIELDS,
        default_tolerance_secs: Some(300),
        read: |s, secrets| {
            // Checked even while the secret is unset, so a mistake shows at start, not when
            // the secret is set.
            let spec = generic::spec(s)?;
            Ok(secrets.map(|secrets| VerifierConfig::Hmac { secrets, spec }))
        },
    },
];

/// The scheme of this name.
pub fn scheme(name: &str) -> Option<&'static SchemeEntry> {
    SCHEMES.iter().find(|s| s.name == name)
}

/// Section fields that hold a secret besides the one that turns the provider on (Twilio's
/// Webhook Setting shared key): the admin API stores them encrypted, never as settings.
const MORE_SECRETS: &[(&str, &str)] = &[("twilio", "shared_key_secret")];

impl SchemeEntry {
    /// Its section fields that hold a secret besides [`SchemeEntry::secret`].
    pub fn more_secrets(&self) -> impl Iterator<Item = &'static str> + '_ {
        MORE_SECRETS
            .iter()
            .filter(|(scheme, _)| *scheme == self.name)
            .map(|(_, field)| *field)
    }
}

fn scheme_names() -> String {
    SCHEMES
        .iter()
        .map(|s| s.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A provider name is its URL path segment.
fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 64
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Every provider: the built-ins, each under its own name unless a section of that name says
/// otherwise, and every `[providers.<name>]` section. `env` looks a variable up (set and not
/// empty); `public_url` is where providers reach hookd, for the schemes that sign the URL.
pub fn read_providers(
    sections: &BTreeMap<String, FileSection>,
    env: &dyn Fn(&str) -> Option<String>,
    public_url: Option<&str>,
) -> Result<Vec<ProviderConfig>, ProviderError> {
    let none = FileSection::new();
    let mut names: Vec<&str> = SCHEMES
        .iter()
        .filter(|s| s.built_in)
        .map(|s| s.name)
        .collect();
    names.extend(sections.keys().map(String::as_str));
    names.sort_unstable();
    names.dedup();
    let mut providers = Vec::new();
    let mut prefixes: HashMap<String, &str> = HashMap::new();
    for name in names {
        let file = sections.get(name).unwrap_or(&none);
        let error = |source| ProviderError {
            provider: name.to_owned(),
            source: Box::new(source),
        };
        let provider = read_provider(name, file, env, public_url).map_err(error)?;
        if let Some(other) = prefixes.insert(env_prefix(name), name) {
            return Err(error(SettingError::SamePrefix {
                other: other.to_owned(),
            }));
        }
        providers.push(provider);
    }
    Ok(providers)
}

/// The scheme a section names, or the built-in of the provider's name.
fn scheme_of(name: &str, file: &FileSection) -> Result<&'static SchemeEntry, SettingError> {
    match file.get("scheme") {
        Some(FileValue::Text(s)) => scheme(s).ok_or_else(|| SettingError::UnknownScheme {
            given: s.clone(),
            known: scheme_names(),
        }),
        Some(other) => Err(SettingError::Type {
            key: format!("providers.{name}.scheme"),
            expected: "text",
            found: other.kind(),
        }),
        None => scheme(name)
            .filter(|s| s.built_in)
            .ok_or_else(|| SettingError::NoScheme {
                known: scheme_names(),
            }),
    }
}

/// Every field of the section applies to its scheme.
fn check_fields(name: &str, scheme: &SchemeEntry, file: &FileSection) -> Result<(), SettingError> {
    let applies = |f: &str| f == "scheme" || f == scheme.secret.1 || scheme.fields.contains(&f);
    let known = |f: &str| {
        SCHEMES
            .iter()
            .any(|s| f == s.secret.1 || s.fields.contains(&f))
    };
    let Some(field) = file.keys().find(|f| !applies(f)) else {
        return Ok(());
    };
    if !known(field) {
        return Err(SettingError::UnknownField {
            key: format!("providers.{name}.{field}"),
        });
    }
    Err(SettingError::NotApplicable {
        provider: name.to_owned(),
        field: field.clone(),
        scheme: scheme.name,
    })
}

/// One provider from its section and the environment.
fn read_provider(
    name: &str,
    file: &FileSection,
    env: &dyn Fn(&str) -> Option<String>,
    public_url: Option<&str>,
) -> Result<ProviderConfig, SettingError> {
    if !valid_name(name) {
        return Err(SettingError::Name);
    }
    let scheme = scheme_of(name, file)?;
    check_fields(name, scheme, file)?;
    let section = Section {
        name,
        env_prefix: env_prefix(name),
        file,
        env,
        public_url,
        default_tolerance_secs: scheme.default_tolerance_secs.unwrap_or(300),
    };
    let (suffix, field) = scheme.secret;
    let secrets = section.secrets(suffix, field)?;
    Ok(ProviderConfig {
        name: name.to_owned(),
        setting: section.var(suffix),
        verifier: (scheme.read)(&section, secrets)?,
    })
}

/// One provider written through the admin API: its section as stored, secrets included, and no
/// environment. The same checks and messages as a `[providers.<name>]` section of the file.
pub fn read_stored(
    name: &str,
    file: &FileSection,
    public_url: Option<&str>,
) -> Result<ProviderConfig, ProviderError> {
    read_provider(name, file, &|_| None, public_url).map_err(|source| ProviderError {
        provider: name.to_owned(),
        source: Box::new(source),
    })
}

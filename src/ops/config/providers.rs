//! Writing providers: creating and replacing them, adding secrets (rotation with overlap) and
//! deleting them. A secret is encrypted before it goes anywhere, and returned only when hookd
//! generated it, in that one answer.

use std::collections::BTreeMap;

use base64::Engine;
use chrono::Utc;
use serde_json::Value;

use super::{
    Change, ProviderRequest, ProviderWritten, SecretRequest, Written, audit, invalid, managed,
    stored_entry, to_json,
};
use crate::live::keys::{Sealed, random_bytes};
use crate::live::{SECRET_KEY_VAR, StoredProvider, StoredSecret};
use crate::ops::{Ops, OpsError, Principal};
use crate::verify::registry;

/// A random secret in the form the scheme expects; PayPal's is its webhook id, given by PayPal.
fn generate(scheme: &str) -> Result<String, OpsError> {
    let bytes = random_bytes(32);
    match scheme {
        "paypal" => Err(invalid(
            "secret",
            "scheme paypal needs `secret`: the webhook id PayPal shows for the webhook",
        )),
        "standard" => Ok(format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )),
        _ => Ok(hex::encode(bytes)),
    }
}

/// Refuse a secret given as a setting (it would be stored and shown in plaintext).
pub(super) fn no_secret_in_settings(
    name: &str,
    scheme: &str,
    settings: &serde_json::Map<String, Value>,
) -> Result<(), OpsError> {
    let Some(entry) = registry::scheme(scheme) else {
        return Ok(());
    };
    let main = entry.secret.1;
    match std::iter::once(main)
        .chain(entry.more_secrets())
        .find(|f| settings.contains_key(*f))
    {
        Some(field) if field == main => Err(invalid(
            format!("settings.{field}"),
            format!(
                "a secret is not a setting: give it as `secret` when creating the provider, or \
                 add it with POST /admin/config/providers/{name}/secrets"
            ),
        )),
        Some(field) => Err(invalid(
            format!("settings.{field}"),
            format!(
                "a secret is not a setting: add it with POST \
                 /admin/config/providers/{name}/secrets and \"field\": \"{field}\""
            ),
        )),
        None => Ok(()),
    }
}

/// The field a new secret fills: the scheme's main secret (`None`), or one of its other
/// secret fields.
fn secret_field(scheme: &str, field: Option<&str>) -> Result<Option<String>, OpsError> {
    let Some(field) = field else {
        return Ok(None);
    };
    let more: Vec<&str> = registry::scheme(scheme)
        .map(|e| e.more_secrets().collect())
        .unwrap_or_default();
    if more.contains(&field) {
        return Ok(Some(field.to_owned()));
    }
    let expected = if more.is_empty() {
        format!("scheme {scheme} has no other secret: leave `field` out")
    } else {
        format!("scheme {scheme}'s other secrets: {}", more.join(", "))
    };
    Err(invalid(
        "field",
        format!("{field:?} is not a secret field: {expected}"),
    ))
}

/// A short random id for a secret.
pub(super) fn new_id() -> String {
    hex::encode(random_bytes(6))
}

impl Ops {
    /// Encrypt `plain` as secret `id` of `provider`.
    pub(super) fn seal(
        &self,
        provider: &str,
        id: &str,
        plain: &str,
    ) -> Result<StoredSecret, OpsError> {
        let keys = self.live.keys().ok_or_else(|| OpsError::Conflict {
            code: "secret_key_missing",
            message: format!(
                "storing a secret needs an encryption key: set {SECRET_KEY_VAR} to \
                 <key id>:<base64 of 32 bytes> (e.g. k1:$(openssl rand -base64 32)) on every \
                 hookd process"
            ),
        })?;
        let place = format!("{provider}/{id}");
        let Sealed { kid, data } = keys.seal(plain, &place);
        Ok(StoredSecret {
            id: id.to_owned(),
            kid,
            ciphertext: data,
            added_at: Utc::now(),
            expires_at: None,
            field: None,
        })
    }

    /// Create provider `name`, or replace its scheme and settings, and its schemas when given
    /// (its secrets stay).
    pub async fn put_provider(
        &self,
        who: &Principal,
        name: &str,
        req: &ProviderRequest,
    ) -> Result<Change<ProviderWritten>, OpsError> {
        if self.live.base().manages_provider(name) {
            return Err(managed("provider", name));
        }
        no_secret_in_settings(name, &req.scheme, &req.settings)?;
        let existing = self.live.latest().await?.1.providers.get(name).cloned();
        let (secret, generated) = match (&existing, &req.secret) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "secret",
                    format!(
                        "the provider exists: add a secret with POST \
                         /admin/config/providers/{name}/secrets"
                    ),
                ));
            }
            (Some(_), None) => (None, false),
            (None, Some(s)) if s.trim().is_empty() => {
                return Err(invalid("secret", "the secret is empty"));
            }
            (None, Some(s)) => (Some(s.clone()), false),
            (None, None) => (Some(generate(&req.scheme)?), true),
        };
        let id = new_id();
        let sealed = secret
            .as_deref()
            .map(|s| self.seal(name, &id, s))
            .transpose()?;
        let settings: BTreeMap<String, Value> = req.settings.clone().into_iter().collect();
        let ((before, after), version) = self
            .change(who, &format!("provider {name} written"), |doc| {
                let before = doc.providers.get(name).map(|p| stored_entry(name, p));
                let entry =
                    doc.providers
                        .entry(name.to_owned())
                        .or_insert_with(|| StoredProvider {
                            scheme: req.scheme.clone(),
                            settings: BTreeMap::new(),
                            secrets: Vec::new(),
                            schemas: Vec::new(),
                        });
                entry.scheme = req.scheme.clone();
                entry.settings = settings.clone();
                if let Some(schemas) = &req.schemas {
                    entry.schemas = schemas.clone();
                }
                if let Some(s) = &sealed {
                    entry.secrets.push(s.clone());
                }
                Ok((before, stored_entry(name, entry)))
            })
            .await?;
        Ok(Change {
            audit: audit(version, before.as_ref().map(to_json), Some(to_json(&after))),
            answer: ProviderWritten {
                version,
                provider: after,
                secret_id: sealed.map(|_| id),
                secret: secret.filter(|_| generated),
            },
        })
    }

    /// Add a secret to provider `name` (its main one, or another secret field of its scheme);
    /// with `previous_expire_at`, the ones of that field it had stop verifying then (a rotation
    /// with overlap).
    pub async fn add_secret(
        &self,
        who: &Principal,
        name: &str,
        req: &SecretRequest,
    ) -> Result<Change<ProviderWritten>, OpsError> {
        if self.live.base().manages_provider(name) {
            return Err(managed("provider", name));
        }
        let scheme = match self.live.latest().await?.1.providers.get(name) {
            Some(p) => p.scheme.clone(),
            None => return Err(OpsError::NotFound),
        };
        let field = secret_field(&scheme, req.field.as_deref())?;
        let (secret, generated) = match &req.secret {
            Some(s) if s.trim().is_empty() => {
                return Err(invalid("secret", "the secret is empty"));
            }
            Some(s) => (s.clone(), false),
            None => (generate(&scheme)?, true),
        };
        let id = new_id();
        let sealed = StoredSecret {
            field: field.clone(),
            ..self.seal(name, &id, &secret)?
        };
        let ((before, after), version) = self
            .change(who, &format!("provider {name}: secret {id} added"), |doc| {
                let p = doc.providers.get_mut(name).ok_or(OpsError::NotFound)?;
                let before = stored_entry(name, p);
                if let Some(at) = req.previous_expire_at {
                    // Only the secrets of the same field: a rotation of one kind of secret.
                    for s in p.secrets.iter_mut().filter(|s| s.field == field) {
                        s.expires_at = Some(s.expires_at.map_or(at, |e| e.min(at)));
                    }
                }
                p.secrets.push(sealed.clone());
                Ok((before, stored_entry(name, p)))
            })
            .await?;
        Ok(Change {
            audit: audit(version, Some(to_json(&before)), Some(to_json(&after))),
            answer: ProviderWritten {
                version,
                provider: after,
                secret_id: Some(id),
                secret: generated.then_some(secret),
            },
        })
    }

    /// Delete provider `name` (its stored events stay).
    pub async fn delete_provider(
        &self,
        who: &Principal,
        name: &str,
    ) -> Result<Change<Written>, OpsError> {
        if self.live.base().manages_provider(name) {
            return Err(managed("provider", name));
        }
        let (before, version) = self
            .change(who, &format!("provider {name} deleted"), |doc| {
                let p = doc.providers.remove(name).ok_or(OpsError::NotFound)?;
                Ok(stored_entry(name, &p))
            })
            .await?;
        Ok(Change {
            audit: audit(version, Some(to_json(&before)), None),
            answer: Written { version },
        })
    }
}

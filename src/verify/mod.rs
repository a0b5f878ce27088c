//! Provider signature verification: the only way to turn raw request bytes into a
//! [`VerifiedWebhook`], the only type the store accepts.
//!
//! Owns each provider's scheme, secret rotation and timestamp windows. It must never do I/O,
//! never parse or re-serialise the body before the signature has been checked over the exact
//! raw bytes, and never compare MACs in variable time.

mod github;
mod hmac;
mod stripe;

use std::collections::BTreeMap;
use std::fmt;

use axum::http::HeaderMap;
use bytes::Bytes;
use sha2::{Digest, Sha256};

pub use github::GithubVerifier;
pub use stripe::StripeVerifier;

/// A request as it arrived, before anything is trusted.
pub struct RawRequest<'a> {
    pub headers: &'a HeaderMap,
    pub body: &'a Bytes,
    /// Seconds since the Unix epoch at arrival, for timestamp windows.
    pub now_unix: i64,
}

/// A webhook whose signature has been checked. Fields are private and the constructor is
/// visible only inside `verify`, so nothing else can make one from unverified input.
#[derive(Debug, Clone)]
pub struct VerifiedWebhook {
    provider: String,
    idempotency_key: String,
    event_type: String,
    content_type: Option<String>,
    body: Bytes,
    headers: BTreeMap<String, String>,
}

impl VerifiedWebhook {
    fn new(
        provider: &str,
        idempotency_key: String,
        event_type: String,
        req: &RawRequest<'_>,
        signature_headers: &[&str],
    ) -> Self {
        Self {
            provider: provider.to_owned(),
            idempotency_key,
            event_type,
            content_type: header_str(req.headers, "content-type").map(str::to_owned),
            body: req.body.clone(),
            headers: audit_headers(req.headers, signature_headers),
        }
    }

    pub fn provider(&self) -> &str {
        &self.provider
    }
    pub fn idempotency_key(&self) -> &str {
        &self.idempotency_key
    }
    pub fn event_type(&self) -> &str {
        &self.event_type
    }
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }
    /// The raw body, byte for byte as received.
    pub fn body(&self) -> &Bytes {
        &self.body
    }
    /// Request headers kept for audit, with signature headers redacted.
    pub fn headers(&self) -> &BTreeMap<String, String> {
        &self.headers
    }
}

/// Why a request was rejected. Each variant has a stable machine-readable reason code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("missing signature header {0}")]
    MissingSignature(&'static str),
    #[error("malformed signature header: {0}")]
    MalformedSignature(&'static str),
    #[error("no signature matched any configured secret")]
    InvalidSignature,
    #[error("timestamp {timestamp} is outside the tolerance of {tolerance_secs} s")]
    TimestampOutOfTolerance { timestamp: i64, tolerance_secs: u64 },
    #[error("missing required header {0}")]
    MissingHeader(&'static str),
    #[error("body is not valid JSON: {0}")]
    InvalidJson(String),
}

impl VerifyError {
    /// The reason code sent to the client and used in logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingSignature(_) => "missing_signature",
            Self::MalformedSignature(_) => "malformed_signature",
            Self::InvalidSignature => "invalid_signature",
            Self::TimestampOutOfTolerance { .. } => "timestamp_out_of_tolerance",
            Self::MissingHeader(_) => "missing_header",
            Self::InvalidJson(_) => "invalid_json",
        }
    }
}

/// One provider's signature scheme.
pub trait Verifier: Send + Sync {
    /// Check the request and extract what the store needs. `provider` is the name the
    /// request was addressed to (the URL path segment).
    fn verify(&self, provider: &str, req: &RawRequest<'_>) -> Result<VerifiedWebhook, VerifyError>;
}

/// A secret that never shows up in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Non-empty list of currently valid secrets: more than one while a secret is being rotated.
#[derive(Debug, Clone)]
pub struct Secrets(Vec<Secret>);

impl Secrets {
    /// Secrets taken as they are (a secret may hold any character, commas included);
    /// `None` when there is none. Empty strings are dropped.
    pub fn new<S: Into<String>>(secrets: impl IntoIterator<Item = S>) -> Option<Self> {
        let v: Vec<Secret> = secrets
            .into_iter()
            .map(Into::into)
            .filter(|s| !s.is_empty())
            .map(Secret)
            .collect();
        (!v.is_empty()).then_some(Self(v))
    }

    /// Parse a comma-separated list (the environment's form), trimming spaces around each.
    pub fn from_list(list: &str) -> Option<Self> {
        Self::new(list.split(',').map(str::trim))
    }
    pub fn iter(&self) -> impl Iterator<Item = &Secret> {
        self.0.iter()
    }
}

pub(crate) fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Fallback idempotency key when the provider gives none: the body's SHA-256, so a byte-identical
/// redelivery is still recognised.
fn body_digest_key(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

/// Make sure the body is well-formed JSON and pull out the few fields a scheme needs, in one parse.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, VerifyError> {
    serde_json::from_slice(body).map_err(|e| VerifyError::InvalidJson(e.to_string()))
}

/// Headers worth keeping for audit. Signature headers are redacted, hop-by-hop noise dropped.
fn audit_headers(headers: &HeaderMap, signature_headers: &[&str]) -> BTreeMap<String, String> {
    const DROP: &[&str] = &[
        "authorization",
        "cookie",
        "connection",
        "content-length",
        "host",
    ];
    headers
        .iter()
        .filter(|(k, _)| !DROP.contains(&k.as_str()))
        .map(|(k, v)| {
            let name = k.as_str();
            let value = if signature_headers
                .iter()
                .any(|s| s.eq_ignore_ascii_case(name))
            {
                "[redacted]".to_owned()
            } else {
                String::from_utf8_lossy(v.as_bytes()).into_owned()
            };
            (name.to_owned(), value)
        })
        .collect()
}

/// What a request's provider name resolves to.
pub enum Lookup<'a> {
    Ready(&'a dyn Verifier),
    /// A provider hookd knows but that has no secret: it accepts nothing until this is set.
    NotConfigured {
        setting: &'static str,
    },
    Unknown,
}

/// The providers this process accepts, by the name used in `/webhooks/{provider}`.
#[derive(Default)]
pub struct Providers {
    ready: BTreeMap<String, Box<dyn Verifier>>,
}

/// Built-in providers and the setting that turns each on.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("stripe", "STRIPE_WEBHOOK_SECRET"),
    ("github", "GITHUB_WEBHOOK_SECRET"),
];

impl Providers {
    pub fn insert(&mut self, name: &str, verifier: Box<dyn Verifier>) {
        self.ready.insert(name.to_owned(), verifier);
    }

    pub fn lookup(&self, name: &str) -> Lookup<'_> {
        if let Some(v) = self.ready.get(name) {
            return Lookup::Ready(v.as_ref());
        }
        match BUILT_IN.iter().find(|(n, _)| *n == name) {
            Some((_, setting)) => Lookup::NotConfigured { setting },
            None => Lookup::Unknown,
        }
    }

    /// Names of the providers that accept requests.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.ready.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests;

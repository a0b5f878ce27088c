//! Provider signature verification: the only way to turn raw request bytes into a
//! [`VerifiedWebhook`], the only type the store accepts.
//!
//! Owns each provider's scheme (one file per provider), secret rotation and timestamp windows,
//! and the meaning of each provider's settings: [`registry`] is the table of schemes (what each
//! reads, how it becomes its verifier), filled from a [`Section`] the configuration reader hands
//! over. It never reads the environment or a file itself.
//! It must never parse or re-serialise the body before the signature has been checked over the
//! exact raw bytes, and never compare MACs in variable time.
//!
//! Verification does no I/O, with one exception: PayPal signs with a certificate that the request
//! names by URL, so [`paypal_certs`] fetches it (only from allow-listed URLs, never following
//! redirects) and caches it. That one exception is why [`Verifier::verify`] is async.

mod generic;
mod github;
mod gitlab;
mod hmac;
mod linear;
mod paddle;
mod paypal;
pub mod paypal_certs;
pub mod registry;
mod section;
mod settings;
mod shopify;
mod slack;
mod square;
mod standard;
mod stripe;
mod twilio;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use axum::http::{HeaderMap, Uri};
use bytes::Bytes;
use sha2::{Digest, Sha256};

pub use generic::{
    Encoding as HmacEncoding, GenericVerifier, HmacSpec, Part as HmacPart, Source as HmacSource,
    SpecError as HmacSpecError,
};
pub use github::GithubVerifier;
pub use gitlab::GitlabVerifier;
pub use hmac::Algorithm;
pub use linear::LinearVerifier;
pub use paddle::PaddleVerifier;
pub use paypal::{PaypalSettings, PaypalVerifier};
pub use section::{FileSection, FileValue, ProviderError, Section, SettingError, env_prefix};
pub use settings::{ProviderConfig, VerifierConfig};
pub use shopify::ShopifyVerifier;
pub use slack::SlackVerifier;
pub use square::SquareVerifier;
pub use standard::{KeyError as StandardKeyError, StandardKeys, StandardVerifier};
pub use stripe::StripeVerifier;
pub use twilio::TwilioVerifier;

/// A request as it arrived, before anything is trusted.
pub struct RawRequest<'a> {
    pub headers: &'a HeaderMap,
    pub body: &'a Bytes,
    /// Path and query as received, for the schemes that sign the URL (Twilio, Square).
    pub uri: &'a Uri,
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
    challenge: Option<String>,
    /// The signature covers the body and nothing else (no time, no delivery id): a captured
    /// request can be replayed with any delivery id, so the store also treats a byte-identical
    /// body as a duplicate within the replay window.
    signs_only_body: bool,
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
            challenge: None,
            signs_only_body: false,
        }
    }

    /// Mark a scheme whose signature covers only the body (GitHub, Shopify).
    fn signed_only_over_body(mut self) -> Self {
        self.signs_only_body = true;
        self
    }

    /// Mark a signed URL handshake (Slack's `url_verification`): the provider wants this value
    /// echoed back, and there is no event to store.
    fn with_challenge(mut self, challenge: String) -> Self {
        self.challenge = Some(challenge);
        self
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
    /// Redact these headers (lower-case names) too: the operator's own list
    /// (`HOOKD_AUDIT_REDACT_HEADERS`). Only ever hides values; nothing verified changes.
    pub fn redact_headers(&mut self, names: &[String]) {
        for name in names {
            if let Some(v) = self.headers.get_mut(name.as_str()) {
                REDACTED.clone_into(v);
            }
        }
    }

    /// Whether the signature covers only the body (see the field).
    pub fn signs_only_body(&self) -> bool {
        self.signs_only_body
    }

    /// Set for a verified handshake that must be answered with this value instead of stored.
    pub fn challenge(&self) -> Option<&str> {
        self.challenge.as_deref()
    }
}

/// Why a request was rejected. Each variant has a stable machine-readable reason code.
/// Messages name headers and describe the problem; they never contain a secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("missing signature header {0}")]
    MissingSignature(Cow<'static, str>),
    #[error("malformed signature header: {0}")]
    MalformedSignature(&'static str),
    #[error("no signature matched any configured secret")]
    InvalidSignature,
    #[error("malformed timestamp: {0}")]
    MalformedTimestamp(&'static str),
    #[error("timestamp {timestamp} is outside the tolerance of {tolerance_secs} s")]
    TimestampOutOfTolerance { timestamp: i64, tolerance_secs: u64 },
    #[error("missing required header {0}")]
    MissingHeader(Cow<'static, str>),
    #[error("body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("unsupported signature algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    #[error("certificate URL is not on the allow-list")]
    CertUrlNotAllowed,
    /// The certificate could not be fetched: a passing fault, so the provider should retry.
    #[error("signing certificate unavailable: {0}")]
    CertUnavailable(String),
    #[error("signing certificate rejected: {0}")]
    InvalidCert(String),
}

impl VerifyError {
    /// The reason code sent to the client and used in logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingSignature(_) => "missing_signature",
            Self::MalformedSignature(_) => "malformed_signature",
            Self::InvalidSignature => "invalid_signature",
            Self::MalformedTimestamp(_) => "malformed_timestamp",
            Self::TimestampOutOfTolerance { .. } => "timestamp_out_of_tolerance",
            Self::MissingHeader(_) => "missing_header",
            Self::InvalidJson(_) => "invalid_json",
            Self::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            Self::CertUrlNotAllowed => "cert_url_not_allowed",
            Self::CertUnavailable(_) => "cert_unavailable",
            Self::InvalidCert(_) => "invalid_cert",
        }
    }

    /// A value taken from the request, shortened so that a hostile header cannot flood logs.
    fn unsupported(value: &str) -> Self {
        Self::UnsupportedAlgorithm(value.chars().take(40).collect())
    }
}

/// One provider's signature scheme.
#[async_trait::async_trait]
pub trait Verifier: Send + Sync {
    /// Check the request and extract what the store needs. `provider` is the name the
    /// request was addressed to (the URL path segment).
    async fn verify(
        &self,
        provider: &str,
        req: &RawRequest<'_>,
    ) -> Result<VerifiedWebhook, VerifyError>;
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
    /// Each secret's UTF-8 bytes: the HMAC key of most schemes.
    fn keys(&self) -> Vec<&[u8]> {
        self.0.iter().map(|s| s.0.as_bytes()).collect()
    }
}

pub(crate) fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// A header that must be present and non-empty.
fn required_header<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
    shown: &'static str,
) -> Result<&'h str, VerifyError> {
    header_str(headers, name)
        .filter(|s| !s.is_empty())
        .ok_or(VerifyError::MissingHeader(shown.into()))
}

/// The signature header, or `missing_signature` naming it as the provider documents it.
fn signature_header<'h>(
    headers: &'h HeaderMap,
    name: &str,
    shown: impl Into<Cow<'static, str>>,
) -> Result<&'h str, VerifyError> {
    header_str(headers, name).ok_or_else(|| VerifyError::MissingSignature(shown.into()))
}

/// A unix time in seconds, as signed by the provider.
fn parse_unix(value: &str) -> Result<i64, VerifyError> {
    value
        .parse::<i64>()
        .map_err(|_| VerifyError::MalformedTimestamp("not a unix time in seconds"))
}

/// Reject a signed time too far in the past (replay) or in the future (a pre-signed request).
fn check_window(timestamp: i64, now: i64, tolerance_secs: u64) -> Result<(), VerifyError> {
    if timestamp.abs_diff(now) > tolerance_secs {
        return Err(VerifyError::TimestampOutOfTolerance {
            timestamp,
            tolerance_secs,
        });
    }
    Ok(())
}

/// The header value as a non-empty idempotency key.
fn header_key(headers: &HeaderMap, name: &str) -> Option<String> {
    header_str(headers, name)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Standard (padded) base64, as every provider here sends it.
fn decode_base64(value: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(value).ok()
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

fn is_form(headers: &HeaderMap) -> bool {
    header_str(headers, "content-type")
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"))
}

/// The URL the provider called, for schemes that sign it: the configured public base URL (hookd
/// behind a proxy or TLS terminator) or else `http://<Host>`, then the path and query as received.
fn called_url(public_url: Option<&str>, req: &RawRequest<'_>) -> Result<String, VerifyError> {
    let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
    match public_url {
        Some(base) => Ok(format!("{}{path}", base.trim_end_matches('/'))),
        None => {
            let host = required_header(req.headers, "host", "Host")?;
            Ok(format!("http://{host}{path}"))
        }
    }
}

/// Headers worth keeping for audit. Signature headers and credential-like headers (see
/// [`is_credential`]) are redacted, hop-by-hop noise dropped. A header sent more than once keeps
/// its first value, the one the verifiers read (`HeaderMap::get`), so the record shows what was
/// verified.
fn audit_headers(headers: &HeaderMap, signature_headers: &[&str]) -> BTreeMap<String, String> {
    const DROP: &[&str] = &["connection", "content-length", "host"];
    let mut kept = BTreeMap::new();
    for (k, v) in headers {
        let name = k.as_str();
        if DROP.contains(&name) || kept.contains_key(name) {
            continue;
        }
        let secret = is_credential(name)
            || signature_headers
                .iter()
                .any(|s| s.eq_ignore_ascii_case(name));
        let value = if secret {
            REDACTED.to_owned()
        } else {
            String::from_utf8_lossy(v.as_bytes()).into_owned()
        };
        kept.insert(name.to_owned(), value);
    }
    kept
}

/// What a redacted header's value is stored as.
pub const REDACTED: &str = "[redacted]";

/// Parts of a (lower-case) header name that mark a credential: `Authorization`,
/// `Proxy-Authorization`, `Cookie`, `X-Api-Key`, `X-Auth-Token`, `X-Amz-Security-Token`,
/// `X-Client-Secret` and the like. Names with `idempotency` in them (Twilio's
/// `I-Twilio-Idempotency-Token`) are ids, not credentials. More names can be listed in
/// `HOOKD_AUDIT_REDACT_HEADERS`.
pub const CREDENTIAL_MARKERS: &[&str] = &[
    "auth",
    "cookie",
    "token",
    "secret",
    "password",
    "passwd",
    "api-key",
    "apikey",
    "api_key",
    "session",
    "credential",
    "signature",
];

/// Whether a (lower-case) header name looks like it carries a credential.
pub fn is_credential(name: &str) -> bool {
    !name.contains("idempotency") && CREDENTIAL_MARKERS.iter().any(|m| name.contains(m))
}

/// What a request's provider name resolves to.
pub enum Lookup<'a> {
    Ready(&'a dyn Verifier),
    /// A provider hookd knows but that has no secret: it accepts nothing until this is set.
    NotConfigured {
        setting: &'a str,
    },
    Unknown,
}

/// The providers this process accepts, by the name used in `/webhooks/{provider}`.
#[derive(Default)]
pub struct Providers {
    ready: BTreeMap<String, Box<dyn Verifier>>,
    /// Known providers without their secret, and the setting that would turn each on.
    off: BTreeMap<String, String>,
}

impl Providers {
    pub fn insert(&mut self, name: &str, verifier: Box<dyn Verifier>) {
        self.off.remove(name);
        self.ready.insert(name.to_owned(), verifier);
    }

    /// A provider that is known but accepts nothing until `setting` is set.
    pub fn insert_off(&mut self, name: &str, setting: &str) {
        if !self.ready.contains_key(name) {
            self.off.insert(name.to_owned(), setting.to_owned());
        }
    }

    pub fn lookup(&self, name: &str) -> Lookup<'_> {
        if let Some(v) = self.ready.get(name) {
            return Lookup::Ready(v.as_ref());
        }
        match self.off.get(name) {
            Some(setting) => Lookup::NotConfigured { setting },
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

//! The `forward` action: POST the event's raw body (or what the step's transform made of it) to
//! a URL, optionally signed with the Standard Webhooks scheme, and read `Retry-After` from
//! 429/503 answers.
//!
//! Owns the outgoing request (headers, signature, timeout) and the classification of its answer.
//! It must never follow a redirect (the event would go somewhere the route never named), never
//! alter the payload it is given, and never decide about retries: it only reports what the
//! destination said.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use chrono::{DateTime, Utc};
use hmac::{KeyInit, Mac};
use serde::Deserialize;
use tracing::Instrument;

use super::egress::{EgressPolicy, EgressResolver};
use super::{ActionError, ForwardSettings, Payload, error_chain};
use crate::event::ClaimedEvent;
use crate::telemetry::trace;

/// A route's Standard Webhooks signing secrets (`whsec_<base64>`). Several are allowed so a
/// receiver can rotate: every request carries one signature per secret.
#[derive(Clone, Deserialize)]
#[serde(try_from = "SecretList")]
pub struct SigningKeys(Vec<Vec<u8>>);

impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKeys({} redacted)", self.0.len())
    }
}

/// `signing_secret = "whsec_..."` or `signing_secret = ["whsec_old", "whsec_new"]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum SecretList {
    One(String),
    Many(Vec<String>),
}

/// Secrets are base64, with or without padding (as the official libraries accept them).
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A signing secret that cannot be used, by its position (never its value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningKeyError {
    #[error("signing_secret: the list is empty")]
    Empty,
    #[error("signing_secret #{0}: must start with whsec_ (Standard Webhooks format)")]
    Prefix(usize),
    #[error("signing_secret #{0}: the part after whsec_ is not base64")]
    Base64(usize),
    #[error("signing_secret #{0}: {1} bytes is too short; use at least 16 random bytes")]
    Short(usize, usize),
}

impl TryFrom<SecretList> for SigningKeys {
    type Error = SigningKeyError;

    fn try_from(list: SecretList) -> Result<Self, SigningKeyError> {
        let secrets = match list {
            SecretList::One(s) => vec![s],
            SecretList::Many(v) => v,
        };
        if secrets.is_empty() {
            return Err(SigningKeyError::Empty);
        }
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let n = i + 1;
                let b64 = s
                    .trim()
                    .strip_prefix("whsec_")
                    .ok_or(SigningKeyError::Prefix(n))?;
                let key = B64.decode(b64).map_err(|_| SigningKeyError::Base64(n))?;
                // Standard Webhooks secrets are 24 to 64 random bytes.
                if key.len() < 16 {
                    return Err(SigningKeyError::Short(n, key.len()));
                }
                Ok(key)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self(keys))
    }
}

impl SigningKeys {
    /// The `webhook-signature` value: `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`
    /// for each secret, separated by spaces.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        self.0
            .iter()
            .map(|key| {
                let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key)
                    .expect("HMAC takes keys of any length");
                mac.update(msg_id.as_bytes());
                mac.update(b".");
                mac.update(timestamp.to_string().as_bytes());
                mac.update(b".");
                mac.update(body);
                format!("v1,{}", b64.encode(mac.finalize().into_bytes()))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The client every forward goes through. Its settings are the guarantees of this module: no
/// redirect is followed (it could send the event somewhere the route never named), no proxy
/// from the environment is used, and every address a name resolves to is checked against the
/// egress policy. There is no fallback
/// client: if this cannot be built, start-up stops.
pub(super) fn client(
    settings: &ForwardSettings,
    egress: Arc<EgressPolicy>,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(EgressResolver(egress))
        // An HTTP_PROXY in the environment would be the only host the resolver checks:
        // the proxy would then reach whatever the forward names, policy or not.
        .no_proxy()
        .user_agent(settings.user_agent.as_str())
        .build()
}

/// What a forward step needs besides the event.
pub(super) struct ForwardRequest<'a> {
    pub url: &'a str,
    pub timeout: Duration,
    pub headers: &'a BTreeMap<String, String>,
    pub signing: Option<&'a SigningKeys>,
    /// `webhook-id`: stable across attempts of this step, different for every step.
    pub message_id: &'a str,
    /// What is sent (and signed).
    pub payload: Payload,
}

/// POST the event to the step's URL and classify the answer.
pub(super) async fn forward(
    http: &reqwest::Client,
    mut r: ForwardRequest<'_>,
    event: &ClaimedEvent,
) -> Result<(), ActionError> {
    let url = r.url;
    let span = tracing::info_span!(
        "forward",
        otel.name = "POST",
        otel.kind = "client",
        http.request.method = "POST",
        url.full = %url,
        http.response.status_code = tracing::field::Empty,
    );
    let mut req = request(http, &r, event);
    // The receiving service joins the event's trace as a child of this client span.
    if let Some(tp) = trace::traceparent(&span) {
        req = req.header("traceparent", tp);
    }
    let sent = req
        .body(std::mem::take(&mut r.payload.body))
        .send()
        .instrument(span.clone())
        .await;
    let resp = sent.map_err(|e| {
        if e.is_timeout() {
            ActionError::Timeout {
                url: url.to_owned(),
                timeout_ms: r.timeout.as_millis() as u64,
            }
        } else {
            ActionError::Transport {
                url: url.to_owned(),
                error: error_chain(&e),
            }
        }
    })?;
    let status = resp.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_success() {
        return Ok(());
    }
    let retry_after = matches!(status.as_u16(), 429 | 503)
        .then(|| {
            resp.headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, Utc::now()))
        })
        .flatten();
    Err(ActionError::Status {
        url: url.to_owned(),
        status: status.as_u16(),
        retry_after,
    })
}

/// The request with hookd's headers, the transform's, the route's (which win over the
/// transform's) and, when the route signs, the Standard Webhooks signature over the body sent.
fn request(
    http: &reqwest::Client,
    r: &ForwardRequest<'_>,
    event: &ClaimedEvent,
) -> reqwest::RequestBuilder {
    let mut req = http
        .post(r.url)
        .timeout(r.timeout)
        .header(
            "content-type",
            r.payload
                .content_type
                .as_deref()
                .or(event.content_type.as_deref())
                .unwrap_or("application/octet-stream"),
        )
        .header("x-hookd-event-id", event.id.to_string())
        .header("x-hookd-provider", &event.provider)
        .header("x-hookd-event-type", &event.event_type)
        .header("x-hookd-attempt", event.attempt.to_string());
    if event.generation > 0 {
        // An operator replayed the event: the receiver may want to tell it apart.
        req = req.header("x-hookd-replay", event.generation.to_string());
    }
    for (k, v) in &r.payload.headers {
        if !r.headers.keys().any(|own| own.eq_ignore_ascii_case(k)) {
            req = req.header(k, v);
        }
    }
    for (k, v) in r.headers {
        req = req.header(k, v);
    }
    if let Some(keys) = r.signing {
        let ts = Utc::now().timestamp();
        req = req
            .header("webhook-id", r.message_id)
            .header("webhook-timestamp", ts.to_string())
            .header(
                "webhook-signature",
                keys.sign(r.message_id, ts, &r.payload.body),
            );
    }
    req
}

/// `Retry-After`: delay-seconds or an HTTP date (RFC 9110). A date in the past means "now".
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some((at.with_timezone(&Utc) - now).to_std().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(toml_value: &str) -> Result<SigningKeys, String> {
        #[derive(Deserialize)]
        struct W {
            s: SigningKeys,
        }
        toml::from_str::<W>(&format!("s = {toml_value}"))
            .map(|w| w.s)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn signature_matches_the_standard_webhooks_test_vector() {
        // From the Standard Webhooks specification's reference tests.
        let k = keys(r#""whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw""#).unwrap();
        assert_eq!(
            k.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        let two = keys(
            r#"["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]"#,
        )
        .unwrap();
        let sig = two.sign("m", 1, b"x");
        assert_eq!(sig.split(' ').count(), 2);
        assert!(!format!("{two:?}").contains("MfKQ"));
    }

    #[test]
    fn bad_secrets_are_refused() {
        assert!(
            keys(r#""MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw""#)
                .unwrap_err()
                .contains("whsec_")
        );
        assert!(
            keys(r#""whsec_not base64!""#)
                .unwrap_err()
                .contains("base64")
        );
        assert!(keys(r#""whsec_YWJj""#).unwrap_err().contains("too short"));
        assert!(keys("[]").unwrap_err().contains("empty"));
    }

    #[test]
    fn retry_after_seconds_or_date() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}

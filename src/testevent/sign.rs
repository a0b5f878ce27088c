//! A test webhook signed exactly as each provider signs it, with the secret hookd is configured
//! with, so local development and the console can exercise the real accept path (the equivalent
//! of `stripe trigger` for every provider hookd knows).
//!
//! The signing here is written independently of the verifiers in `verify/`, from the providers'
//! documentation; the tests post what it makes to a real hookd, whose verifiers must accept it.

use base64::Engine;
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::verify::{
    Algorithm, HmacEncoding, HmacPart, HmacSource, HmacSpec, ProviderConfig, Secrets, StandardKeys,
    VerifierConfig,
};

/// A request ready to send: where, with which headers, and the body (which a scheme that signs
/// a time inside the body, Linear, may have changed).
#[derive(Debug, Clone)]
pub struct Signed {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub body_changed: bool,
}

impl Signed {
    /// The request as a `curl` command line (single-quoted for a POSIX shell).
    pub fn curl(&self) -> String {
        let q = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        let mut out = format!("curl -i -X POST {}", q(&self.url));
        for (k, v) in &self.headers {
            out.push_str(&format!(" \\\n  -H {}", q(&format!("{k}: {v}"))));
        }
        out.push_str(&format!(
            " \\\n  --data-binary {}",
            q(&String::from_utf8_lossy(&self.body))
        ));
        out
    }
}

fn hmac(alg: Algorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    fn run<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut m = <M as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().to_vec()
    }
    match alg {
        Algorithm::Sha1 => run::<hmac::Hmac<sha1::Sha1>>(key, parts),
        Algorithm::Sha256 => run::<hmac::Hmac<Sha256>>(key, parts),
        Algorithm::Sha512 => run::<hmac::Hmac<sha2::Sha512>>(key, parts),
    }
}

fn sha256_hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    hmac(Algorithm::Sha256, key, parts)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The first configured secret (any of them verifies during a rotation).
fn first(secrets: &Secrets) -> &[u8] {
    secrets
        .iter()
        .next()
        .map(|s| s.expose().as_bytes())
        .unwrap_or_default()
}

fn is_json(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok()
}

/// `name value` of each form parameter, sorted, concatenated (Twilio's scheme).
fn sorted_params(body: &[u8]) -> String {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    pairs.sort();
    pairs.dedup();
    pairs.into_iter().map(|(k, v)| k + &v).collect()
}

/// A request taking shape while it is signed.
struct Draft<'a> {
    /// Where it is posted (Twilio's JSON scheme adds the body's digest to it).
    url: String,
    /// The URL the provider signs: the one hookd reconstructs (`HOOKD_PUBLIC_URL`).
    signed_url: String,
    content_type: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    body_changed: bool,
    event_type: Option<&'a str>,
    now: i64,
    /// `now` in decimal, as most schemes sign it.
    ts: String,
}

impl Draft<'_> {
    fn h(&mut self, k: &str, v: String) {
        self.headers.push((k.to_owned(), v));
    }
}

fn id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Sign `body` for `provider` as its provider would, to be posted to `base` (where hookd is
/// reached, e.g. `http://127.0.0.1:3001`) at Unix time `now`. `event_type` fills the header of
/// schemes that carry the type in a header (GitHub, GitLab, Shopify, generic HMAC).
pub fn sign(
    provider: &ProviderConfig,
    base: &str,
    public_url: Option<&str>,
    body: Vec<u8>,
    event_type: Option<&str>,
    now: i64,
) -> Result<Signed, String> {
    let name = &provider.name;
    let verifier = provider.verifier.as_ref().ok_or_else(|| {
        format!(
            "provider {name} is not configured: set {} to the secret hookd should use",
            provider.setting
        )
    })?;
    let path = format!("/webhooks/{name}");
    let content_type = if is_json(&body) {
        "application/json"
    } else {
        "application/x-www-form-urlencoded"
    };
    let mut d = Draft {
        url: format!("{}{path}", base.trim_end_matches('/')),
        // Twilio and Square sign the URL they call: the one hookd reconstructs.
        signed_url: format!("{}{path}", public_url.unwrap_or(base).trim_end_matches('/')),
        content_type,
        headers: vec![("content-type".into(), content_type.into())],
        body,
        body_changed: false,
        event_type,
        now,
        ts: now.to_string(),
    };
    sign_with(verifier, &mut d)?;
    Ok(Signed {
        url: d.url,
        headers: d.headers,
        body: d.body,
        body_changed: d.body_changed,
    })
}

/// Add the headers (and changes) of `verifier`'s scheme to `d`.
fn sign_with(verifier: &VerifierConfig, d: &mut Draft<'_>) -> Result<(), String> {
    let ts = d.ts.clone();
    match verifier {
        VerifierConfig::Stripe { secrets, .. } => {
            let mac = sha256_hmac(first(secrets), &[ts.as_bytes(), b".", &d.body]);
            d.h(
                "stripe-signature",
                format!("t={ts},v1={}", hex::encode(mac)),
            );
        }
        VerifierConfig::Github { secrets } => {
            let mac = sha256_hmac(first(secrets), &[&d.body]);
            d.h(
                "x-hub-signature-256",
                format!("sha256={}", hex::encode(mac)),
            );
            d.h("x-github-event", d.event_type.unwrap_or("ping").to_owned());
            d.h("x-github-delivery", id());
        }
        VerifierConfig::Paypal(_) => {
            return Err(
                "PayPal signs with its own certificate and private key, which only PayPal has: \
                 send test events with PayPal's Webhooks Simulator instead"
                    .into(),
            );
        }
        VerifierConfig::Standard { keys, .. } => standard(d, keys)?,
        VerifierConfig::Shopify { secrets } => {
            let mac = sha256_hmac(first(secrets), &[&d.body]);
            d.h("x-shopify-hmac-sha256", b64(&mac));
            let topic = d.event_type.unwrap_or("orders/create").to_owned();
            d.h("x-shopify-topic", topic);
            d.h("x-shopify-webhook-id", id());
        }
        VerifierConfig::Slack { secrets, .. } => {
            let mac = sha256_hmac(first(secrets), &[b"v0:", ts.as_bytes(), b":", &d.body]);
            d.h("x-slack-request-timestamp", ts.clone());
            d.h("x-slack-signature", format!("v0={}", hex::encode(mac)));
        }
        VerifierConfig::Gitlab { secrets } => {
            let token = String::from_utf8_lossy(first(secrets)).into_owned();
            d.h("x-gitlab-token", token);
            let event = d.event_type.unwrap_or("Push Hook").to_owned();
            d.h("x-gitlab-event", event);
            d.h("x-gitlab-event-uuid", id());
        }
        VerifierConfig::Twilio { auth_tokens, .. } => twilio(d, auth_tokens),
        VerifierConfig::Paddle { secrets, .. } => {
            let mac = sha256_hmac(first(secrets), &[ts.as_bytes(), b":", &d.body]);
            d.h(
                "paddle-signature",
                format!("ts={ts};h1={}", hex::encode(mac)),
            );
        }
        VerifierConfig::Square { secrets, .. } => {
            let mac = sha256_hmac(first(secrets), &[d.signed_url.as_bytes(), &d.body]);
            d.h("x-square-hmacsha256-signature", b64(&mac));
        }
        VerifierConfig::Linear { secrets, .. } => linear(d, secrets)?,
        VerifierConfig::Hmac { secrets, spec } => generic(d, secrets, spec),
    }
    Ok(())
}

/// Standard Webhooks: only a `whsec_` secret can sign (`whpk_` keys only verify).
fn standard(d: &mut Draft<'_>, keys: &StandardKeys) -> Result<(), String> {
    let key = keys.hmac_keys().first().ok_or(
        "only public keys (whpk_) are configured: hookd can verify v1a signatures but \
         cannot make them; add the whsec_ secret to sign",
    )?;
    let msg_id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    let ts = d.ts.clone();
    let mac = sha256_hmac(
        key,
        &[msg_id.as_bytes(), b".", ts.as_bytes(), b".", &d.body],
    );
    d.h("webhook-id", msg_id);
    d.h("webhook-timestamp", ts);
    d.h("webhook-signature", format!("v1,{}", b64(&mac)));
    Ok(())
}

fn twilio(d: &mut Draft<'_>, auth_tokens: &Secrets) {
    let mac = if d.content_type == "application/json" {
        // JSON bodies: the URL carries the body's SHA-256 and only the URL is signed.
        let query = format!("?bodySHA256={}", hex::encode(Sha256::digest(&d.body)));
        d.url.push_str(&query);
        hmac(
            Algorithm::Sha1,
            first(auth_tokens),
            &[d.signed_url.as_bytes(), query.as_bytes()],
        )
    } else {
        let params = sorted_params(&d.body);
        hmac(
            Algorithm::Sha1,
            first(auth_tokens),
            &[d.signed_url.as_bytes(), params.as_bytes()],
        )
    };
    d.h("x-twilio-signature", b64(&mac));
    d.h("i-twilio-idempotency-token", id());
}

/// Linear signs its send time inside the body: set it to now.
fn linear(d: &mut Draft<'_>, secrets: &Secrets) -> Result<(), String> {
    let mut v: serde_json::Value = serde_json::from_slice(&d.body)
        .map_err(|_| "a Linear payload is a JSON object".to_owned())?;
    let obj = v
        .as_object_mut()
        .ok_or("a Linear payload is a JSON object")?;
    obj.insert("webhookTimestamp".into(), (d.now * 1000).into());
    d.body = serde_json::to_vec(&v).map_err(|e| e.to_string())?;
    d.body_changed = true;
    let mac = sha256_hmac(first(secrets), &[&d.body]);
    d.h("linear-signature", hex::encode(mac));
    d.h("linear-delivery", id());
    Ok(())
}

/// Generic HMAC, as its configuration describes it.
fn generic(d: &mut Draft<'_>, secrets: &Secrets, spec: &HmacSpec) {
    let mut signed: Vec<u8> = Vec::new();
    for part in &spec.signed {
        match part {
            HmacPart::Literal(s) => signed.extend_from_slice(s.as_bytes()),
            HmacPart::Body => signed.extend_from_slice(&d.body),
            HmacPart::Timestamp => signed.extend_from_slice(d.ts.as_bytes()),
        }
    }
    let mac = hmac(spec.algorithm, first(secrets), &[&signed]);
    let mac = match spec.encoding {
        HmacEncoding::Hex => hex::encode(mac),
        HmacEncoding::Base64 => b64(&mac),
    };
    d.h(&spec.header, format!("{}{mac}", spec.prefix));
    if let Some(t) = &spec.timestamp_header {
        d.h(t, d.ts.clone());
    }
    if let Some(HmacSource::Header(k)) = &spec.idempotency {
        d.h(k, id());
    }
    if let Some(HmacSource::Header(k)) = &spec.event_type {
        d.h(k, d.event_type.unwrap_or("test").to_owned());
    }
}

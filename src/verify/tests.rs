//! Verifier tests shared helpers, and the Stripe and GitHub tests: known-answer vectors from
//! PROVIDERS.md and fixtures signed by the providers' own SDKs (`tests/fixtures`, made by
//! `tools/fixtures/generate.sh`). Every other provider's tests sit at the end of its own file.

use axum::http::{HeaderMap, HeaderValue};
use bytes::Bytes;
use serde::Deserialize;

use super::*;

#[derive(Deserialize)]
struct Fixtures<T> {
    cases: Vec<T>,
}

/// The cases of a fixture file made by `tools/fixtures/generate.sh`.
pub(crate) fn fixture_cases<T: serde::de::DeserializeOwned>(json: &str) -> Vec<T> {
    serde_json::from_str::<Fixtures<T>>(json).unwrap().cases
}

#[derive(Deserialize)]
struct StripeCase {
    name: String,
    secret: String,
    timestamp: i64,
    body: String,
    header: String,
}

#[derive(Deserialize)]
struct GithubCase {
    name: String,
    secret: String,
    body: String,
    signature: String,
}

fn stripe_cases() -> Vec<StripeCase> {
    fixture_cases(include_str!("../../tests/fixtures/stripe.json"))
}

fn github_cases() -> Vec<GithubCase> {
    fixture_cases(include_str!("../../tests/fixtures/github.json"))
}

pub(crate) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn stripe(secret: &str) -> StripeVerifier {
    StripeVerifier::new(Secrets::new([secret]).unwrap(), 300)
}

/// Verifiers are async for PayPal's certificate fetch; the others never wait, so a
/// throwaway single-threaded runtime is enough to drive them.
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

pub(crate) fn run(
    v: &dyn Verifier,
    h: &HeaderMap,
    body: &str,
    now: i64,
) -> Result<VerifiedWebhook, VerifyError> {
    run_at(v, h, body.as_bytes(), now, "/webhooks/p")
}

/// Verify a request that arrived at `uri` (path and query).
pub(crate) fn run_at(
    v: &dyn Verifier,
    h: &HeaderMap,
    body: &[u8],
    now: i64,
    uri: &str,
) -> Result<VerifiedWebhook, VerifyError> {
    let body = Bytes::copy_from_slice(body);
    let uri: axum::http::Uri = uri.parse().unwrap();
    block_on(v.verify(
        "p",
        &RawRequest {
            headers: h,
            body: &body,
            uri: &uri,
            now_unix: now,
        },
    ))
}

#[test]
fn stripe_known_answer() {
    let h = headers(&[(
        "stripe-signature",
        "t=1700000000,v1=6530f4779363a01f813dcc6d4febc2c65a12216ea2c3e82ef7046db28c00ac47",
    )]);
    let w = run(
        &stripe("whsec_test_secret"),
        &h,
        r#"{"id":"evt_123","object":"event","type":"ping"}"#,
        1_700_000_000,
    )
    .unwrap();
    assert_eq!(w.idempotency_key(), "evt_123");
    assert_eq!(w.event_type(), "ping");
    assert_eq!(w.headers()["stripe-signature"], "[redacted]");
}

#[test]
fn stripe_sdk_fixtures_verify() {
    let cases = stripe_cases();
    assert!(cases.len() >= 5);
    for c in cases {
        let h = headers(&[("stripe-signature", &c.header)]);
        let w = run(&stripe(&c.secret), &h, &c.body, c.timestamp)
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(
            w.body().as_ref(),
            c.body.as_bytes(),
            "{}: body kept byte for byte",
            c.name
        );
        assert!(w.idempotency_key().starts_with("evt_"), "{}", c.name);
        // Any change of one byte, the wrong secret, or the wrong time must fail.
        let tampered = format!("{} ", c.body);
        assert_eq!(
            run(&stripe(&c.secret), &h, &tampered, c.timestamp).unwrap_err(),
            VerifyError::InvalidSignature
        );
        assert_eq!(
            run(&stripe("whsec_other"), &h, &c.body, c.timestamp).unwrap_err(),
            VerifyError::InvalidSignature
        );
        assert!(matches!(
            run(&stripe(&c.secret), &h, &c.body, c.timestamp + 301).unwrap_err(),
            VerifyError::TimestampOutOfTolerance { .. }
        ));
        assert!(matches!(
            run(&stripe(&c.secret), &h, &c.body, c.timestamp - 301).unwrap_err(),
            VerifyError::TimestampOutOfTolerance { .. }
        ));
        // Rotation: the right secret anywhere in the list is enough.
        let rotated = StripeVerifier::new(
            Secrets::from_list(&format!("whsec_old, {}", c.secret)).unwrap(),
            300,
        );
        run(&rotated, &h, &c.body, c.timestamp).unwrap();
    }
}

#[test]
fn stripe_header_edge_cases() {
    let c = &stripe_cases()[0];
    let v1 = c.header.split("v1=").nth(1).unwrap();
    let t = c.timestamp;
    let body = &c.body;
    let v = stripe(&c.secret);
    let check = |header: &str| run(&v, &headers(&[("stripe-signature", header)]), body, t);
    // Several v1 entries, in any order, with v0 and unknown schemes ignored.
    check(&format!("t={t},v1={},v1={v1}", "ab".repeat(32))).unwrap();
    check(&format!("t={t},v0={v1},v1={v1},x=1")).unwrap();
    check(&format!(" t={t} , v1={v1} ")).unwrap();
    // v0 alone is a downgrade attempt: never accepted.
    assert_eq!(
        check(&format!("t={t},v0={v1}")).unwrap_err().reason(),
        "malformed_signature"
    );
    assert_eq!(
        check(&format!("v1={v1}")).unwrap_err().reason(),
        "malformed_signature"
    );
    assert_eq!(
        check(&format!("t=abc,v1={v1}")).unwrap_err().reason(),
        "malformed_signature"
    );
    assert_eq!(
        check(&format!("t={t},v1=zz")).unwrap_err().reason(),
        "malformed_signature"
    );
    assert_eq!(
        check(&format!("t={t},v1={}", &v1[..10])).unwrap_err(),
        VerifyError::InvalidSignature
    );
    assert_eq!(
        check("garbage").unwrap_err().reason(),
        "malformed_signature"
    );
    assert_eq!(check("").unwrap_err().reason(), "malformed_signature");
    assert_eq!(
        run(&v, &HeaderMap::new(), body, t).unwrap_err().reason(),
        "missing_signature"
    );
}

#[test]
fn stripe_signed_but_not_json_is_invalid_json() {
    let secret = "whsec_x";
    let body = "not json";
    let t = 1_700_000_000;
    let mac = hex::encode(hmac::hmac_sha256(
        secret.as_bytes(),
        &[b"1700000000.", body.as_bytes()],
    ));
    let h = headers(&[("stripe-signature", &format!("t={t},v1={mac}"))]);
    assert_eq!(
        run(&stripe(secret), &h, body, t).unwrap_err().reason(),
        "invalid_json"
    );
}

fn github(secret: &str) -> GithubVerifier {
    GithubVerifier::new(Secrets::new([secret]).unwrap())
}

#[test]
fn github_known_answer() {
    let secrets = Secrets::from_list("It's a Secret to Everybody").unwrap();
    let mac = github::parse_header(
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
    )
    .unwrap();
    assert!(hmac::any_secret_matches(
        &secrets,
        &[b"Hello, World!"],
        &[mac]
    ));
}

#[test]
fn github_sdk_fixtures_verify() {
    let cases = github_cases();
    assert!(cases.len() >= 4);
    for c in cases {
        let h = headers(&[
            ("x-hub-signature-256", &c.signature),
            ("x-github-event", "push"),
            ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ]);
        let result = run(&github(&c.secret), &h, &c.body, 0);
        if serde_json::from_str::<serde_json::Value>(&c.body).is_ok() {
            let w = result.unwrap_or_else(|e| panic!("{}: {e}", c.name));
            assert_eq!(w.idempotency_key(), "72d3162e-cc78-11e3-81ab-4c9367dc0958");
            assert_eq!(w.event_type(), "push");
            assert_eq!(w.body().as_ref(), c.body.as_bytes());
        } else {
            // Signature good, body not JSON: rejected for the body, not the signature.
            assert_eq!(result.unwrap_err().reason(), "invalid_json", "{}", c.name);
        }
        let tampered = format!("{} ", c.body);
        assert_eq!(
            run(&github(&c.secret), &h, &tampered, 0).unwrap_err(),
            VerifyError::InvalidSignature
        );
        assert_eq!(
            run(&github("other"), &h, &c.body, 0).unwrap_err(),
            VerifyError::InvalidSignature
        );
        let rotated = GithubVerifier::new(Secrets::new(["old-secret", c.secret.as_str()]).unwrap());
        let r = run(&rotated, &h, &c.body, 0);
        assert_ne!(r.err(), Some(VerifyError::InvalidSignature), "{}", c.name);
    }
}

#[test]
fn github_header_edge_cases() {
    let v = github("s");
    let body = "{}";
    let mac = hex::encode(hmac::hmac_sha256(b"s", &[body.as_bytes()]));
    let ok = format!("sha256={mac}");
    let with = |sig: &str, event: Option<&str>| {
        let mut h = headers(&[("x-hub-signature-256", sig), ("x-github-delivery", "d-1")]);
        if let Some(e) = event {
            h.insert("x-github-event", HeaderValue::from_str(e).unwrap());
        }
        run(&v, &h, body, 0)
    };
    let w = with(&ok, Some("ping")).unwrap();
    assert_eq!(w.idempotency_key(), "d-1");
    assert!(w.signs_only_body());
    // Only the body is signed: without a delivery id a replay could not be told apart.
    let no_delivery = headers(&[("x-hub-signature-256", &ok), ("x-github-event", "ping")]);
    assert_eq!(
        run(&v, &no_delivery, body, 0).unwrap_err().reason(),
        "missing_header"
    );
    assert_eq!(with(&ok, None).unwrap_err().reason(), "missing_header");
    assert_eq!(
        with(&mac, Some("ping")).unwrap_err().reason(),
        "malformed_signature"
    );
    assert_eq!(
        with("sha256=xyz", Some("ping")).unwrap_err().reason(),
        "malformed_signature"
    );
    assert_eq!(
        with("sha256=abcd", Some("ping")).unwrap_err().reason(),
        "malformed_signature"
    );
    assert_eq!(
        with(&format!("sha1={mac}"), Some("ping"))
            .unwrap_err()
            .reason(),
        "malformed_signature"
    );
    assert_eq!(
        run(&v, &HeaderMap::new(), body, 0).unwrap_err().reason(),
        "missing_signature"
    );
    // Form-encoded hooks carry `payload=<json>`: accepted without JSON parsing.
    let form = "payload=%7B%7D";
    let mac = hex::encode(hmac::hmac_sha256(b"s", &[form.as_bytes()]));
    let h = headers(&[
        ("x-hub-signature-256", &format!("sha256={mac}")),
        ("x-github-event", "push"),
        ("x-github-delivery", "d-2"),
        ("content-type", "application/x-www-form-urlencoded"),
    ]);
    run(&v, &h, form, 0).unwrap();
}

#[test]
fn secrets_never_show_in_debug() {
    let s = Secrets::from_list("whsec_topsecret").unwrap();
    assert!(!format!("{s:?}").contains("topsecret"));
}

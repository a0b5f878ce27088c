//! Webhooks signed the way the providers sign them, computed here independently of hookd's
//! verifiers (so a verifier bug cannot hide behind a shared helper), and the test secrets.

use axum::http::HeaderMap;
use bytes::Bytes;
use hmac::{KeyInit, Mac};
use hookd::event::EventId;

/// The Stripe signing secret every test server is given.
pub const STRIPE_SECRET: &str = "whsec_integration_secret";
/// A GitHub signing secret, for tests that configure GitHub.
pub const GITHUB_SECRET: &str = "github-integration-secret";

/// Now, in Unix seconds (signature timestamps).
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// `Stripe-Signature` for `body` at time `t`.
pub fn stripe_header(secret: &str, body: &str, t: i64) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// `X-Hub-Signature-256` for `body`.
pub fn github_signature(secret: &str, body: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A Stripe event body with a unique id: `(id, body)`.
pub fn stripe_event(event_type: &str) -> (String, String) {
    let id = format!("evt_{}", uuid::Uuid::new_v4().simple());
    let body = format!(
        r#"{{"id":"{id}","object":"event","type":"{event_type}","data":{{"object":{{"amount":2000,"currency":"usd","note":"caf\u00e9 ☕"}}}}}}"#
    );
    (id, body)
}

/// A POST of the Stripe event `body` to the hookd at `url`, signed now with the test secret, as
/// Stripe sends it; more headers may be added before it is sent.
pub fn stripe_request(http: &reqwest::Client, url: &str, body: &str) -> reqwest::RequestBuilder {
    http.post(format!("{url}/webhooks/stripe"))
        .header(
            "stripe-signature",
            stripe_header(STRIPE_SECRET, body, now()),
        )
        .header("content-type", "application/json")
        .body(body.to_owned())
}

/// POST a Stripe event to the hookd at `url`, signed now with the test secret (for a hookd
/// running as a child process; [`super::TestServer::post_stripe`] for one in this process).
pub async fn post_stripe(url: &str, body: &str) -> reqwest::Response {
    stripe_request(&reqwest::Client::new(), url, body)
        .send()
        .await
        .unwrap()
}

/// The event id in a webhook's answer.
pub async fn id_of(resp: reqwest::Response) -> EventId {
    let v: serde_json::Value = resp.json().await.unwrap();
    v["id"].as_str().expect("id in response").parse().unwrap()
}

/// A `VerifiedWebhook` made the only way there is: a signed request through the verifier.
pub async fn verified_stripe(body: &str) -> hookd::verify::VerifiedWebhook {
    use hookd::verify::{RawRequest, Secrets, StripeVerifier, Verifier};
    let mut headers = HeaderMap::new();
    headers.insert(
        "stripe-signature",
        stripe_header(STRIPE_SECRET, body, now()).parse().unwrap(),
    );
    let body = Bytes::copy_from_slice(body.as_bytes());
    let uri: axum::http::Uri = "/webhooks/stripe".parse().unwrap();
    StripeVerifier::new(Secrets::new([STRIPE_SECRET]).unwrap(), 300)
        .verify(
            "stripe",
            &RawRequest {
                headers: &headers,
                body: &body,
                uri: &uri,
                now_unix: now(),
            },
        )
        .await
        .unwrap()
}

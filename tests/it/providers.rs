//! Every provider over real HTTP: each request is signed here, independently of hookd's verifiers,
//! the way the provider signs it. Valid → 202, redelivery → 200, and each kind of forgery → 400 with
//! its reason, with nothing stored. These run on SQLite (storage is covered by `webhooks.rs`), except
//! one that runs on both backends.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::*;
use base64::Engine;
use hmac::{KeyInit, Mac};
use reqwest::StatusCode;

const PUBLIC_URL: &str = "https://hooks.example.com";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn hmac256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

fn hmac1(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = hmac::Hmac::<sha1::Sha1>::new_from_slice(key).unwrap();
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// A signed request: headers, body, and the query string after `/webhooks/{provider}`.
#[derive(Clone)]
struct Req {
    headers: Vec<(String, String)>,
    body: String,
    query: String,
}

impl Req {
    fn new(headers: &[(&str, String)], body: String) -> Self {
        Self {
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            body,
            query: String::new(),
        }
    }

    fn with_header(mut self, name: &str, value: Option<String>) -> Self {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        if let Some(v) = value {
            self.headers.push((name.to_owned(), v));
        }
        self
    }

    fn header(&self, name: &str) -> String {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

async fn send(server: &TestServer, provider: &str, req: &Req) -> reqwest::Response {
    let mut r = server
        .http
        .post(format!("{}/webhooks/{provider}{}", server.url, req.query))
        .body(req.body.clone());
    for (k, v) in &req.headers {
        r = r.header(k, v);
    }
    r.send().await.expect("request sent")
}

/// Sends `req` and checks the status and, for errors, the reason code.
async fn expect(
    server: &TestServer,
    provider: &str,
    req: &Req,
    status: u16,
    code: &str,
    what: &str,
) {
    let r = send(server, provider, req).await;
    assert_eq!(r.status().as_u16(), status, "{provider}: {what}");
    let v: serde_json::Value = r.json().await.unwrap();
    let got = v["error"].as_str().or(v["status"].as_str()).unwrap_or("");
    assert_eq!(got, code, "{provider}: {what}: {v}");
}

/// Signs an event with this id, at this unix time, with this secret.
type Signer = fn(secret: &str, id: &str, t: i64) -> Req;

/// How one provider is checked.
struct Spec {
    name: &'static str,
    /// Settings for the server: the secrets (old first) and anything else the provider needs.
    env: &'static [(&'static str, &'static str)],
    toml: &'static str,
    old: &'static str,
    new: &'static str,
    wrong: &'static str,
    sign: Signer,
    sig_header: &'static str,
    /// False for GitLab, whose token is sent as is: nothing binds it to the body.
    signs_body: bool,
    /// Seconds of tolerance for schemes that sign a time.
    tolerance: Option<i64>,
    truncated: &'static str,
    garbage: &'static str,
    event_type: &'static str,
}

/// The whole contract for one provider.
async fn check(b: Backend, spec: &Spec) {
    let db = TestDb::new(b).await;
    let server = TestServer::start(&db, spec.toml, spec.env).await;
    let name = spec.name;
    let sign = spec.sign;

    let id = unique("evt_");
    let first = send(&server, name, &sign(spec.new, &id, now())).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED, "{name}: valid");
    let event = server.event(id_of(first).await).await;
    assert_eq!(event.idempotency_key, id, "{name}: idempotency key");
    assert_eq!(event.event_type, spec.event_type, "{name}: event type");
    assert_eq!(event.provider, name);

    // A redelivery is signed afresh, and is still the same event.
    let again = sign(spec.new, &id, now());
    expect(&server, name, &again, 200, "duplicate", "redelivery").await;
    // Rotation: the old secret is still accepted while both are configured.
    let rotated = sign(spec.old, &unique("evt_"), now());
    expect(&server, name, &rotated, 202, "queued", "old secret").await;

    let fresh = unique("evt_");
    let good = sign(spec.new, &fresh, now());
    if spec.signs_body {
        let mut tampered = good.clone();
        tampered.body.push(' ');
        expect(
            &server,
            name,
            &tampered,
            400,
            "invalid_signature",
            "tampered body",
        )
        .await;
    }
    let wrong = sign(spec.wrong, &fresh, now());
    expect(
        &server,
        name,
        &wrong,
        400,
        "invalid_signature",
        "wrong secret",
    )
    .await;
    let missing = good.clone().with_header(spec.sig_header, None);
    expect(
        &server,
        name,
        &missing,
        400,
        "missing_signature",
        "missing header",
    )
    .await;
    let sig = good.header(spec.sig_header);
    let truncated = good
        .clone()
        .with_header(spec.sig_header, Some(sig[..sig.len() / 2].to_owned()));
    expect(
        &server,
        name,
        &truncated,
        400,
        spec.truncated,
        "truncated header",
    )
    .await;
    let garbage = good
        .clone()
        .with_header(spec.sig_header, Some("garbage".to_owned()));
    expect(&server, name, &garbage, 400, spec.garbage, "garbage header").await;
    if let Some(tol) = spec.tolerance {
        for (what, t) in [("stale", now() - tol - 30), ("future", now() + tol + 30)] {
            let req = sign(spec.new, &fresh, t);
            expect(&server, name, &req, 400, "timestamp_out_of_tolerance", what).await;
        }
    }
    // The forged one was never stored: its genuine delivery is new.
    let genuine = sign(spec.new, &fresh, now());
    expect(
        &server,
        name,
        &genuine,
        202,
        "queued",
        "genuine after forgeries",
    )
    .await;
    assert_eq!(
        server.total_events().await,
        3,
        "{name}: only genuine events stored"
    );
    server.stop().await;
}

// --- Standard Webhooks ---------------------------------------------------------------------------

fn standard_key(secret: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap()
}

fn sign_standard(secret: &str, id: &str, t: i64) -> Req {
    let body = format!(
        r#"{{"type":"invoice.paid","timestamp":"2024-01-01T00:00:00Z","data":{{"ref":"{id}"}}}}"#
    );
    let sig = b64(&hmac256(
        &standard_key(secret),
        format!("{id}.{t}.{body}").as_bytes(),
    ));
    Req::new(
        &[
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", t.to_string()),
            ("webhook-signature", format!("v1,{sig}")),
            ("content-type", "application/json".into()),
        ],
        body,
    )
}

const STANDARD: Spec = Spec {
    name: "standard",
    env: &[(
        "STANDARD_WEBHOOK_SECRET",
        "whsec_b2xkLXN0YW5kYXJkLXNlY3JldA==,whsec_bmV3LXN0YW5kYXJkLXNlY3JldA==",
    )],
    toml: "",
    old: "whsec_b2xkLXN0YW5kYXJkLXNlY3JldA==",
    new: "whsec_bmV3LXN0YW5kYXJkLXNlY3JldA==",
    wrong: "whsec_d3Jvbmctc2VjcmV0",
    sign: sign_standard,
    sig_header: "webhook-signature",
    signs_body: true,
    tolerance: Some(300),
    truncated: "invalid_signature",
    garbage: "malformed_signature",
    event_type: "invoice.paid",
};

// --- Shopify -------------------------------------------------------------------------------------

fn sign_shopify(secret: &str, id: &str, _t: i64) -> Req {
    // Each delivery its own body: Shopify signs only the body, so a byte-identical body under a
    // new webhook id is a replay (a duplicate).
    let body = format!(
        r#"{{"id":820982911946154508,"email":"jon@example.com","total_price":"403.00","note":"{id}"}}"#
    );
    let body = body.as_str();
    Req::new(
        &[
            (
                "x-shopify-hmac-sha256",
                b64(&hmac256(secret.as_bytes(), body.as_bytes())),
            ),
            ("x-shopify-topic", "orders/create".into()),
            ("x-shopify-webhook-id", id.to_owned()),
            ("x-shopify-shop-domain", "hookd-test.myshopify.com".into()),
            ("content-type", "application/json".into()),
        ],
        body.to_owned(),
    )
}

const SHOPIFY: Spec = Spec {
    name: "shopify",
    env: &[("SHOPIFY_WEBHOOK_SECRET", "shpss_old,shpss_new")],
    toml: "",
    old: "shpss_old",
    new: "shpss_new",
    wrong: "shpss_wrong",
    sign: sign_shopify,
    sig_header: "x-shopify-hmac-sha256",
    signs_body: true,
    tolerance: None,
    truncated: "malformed_signature",
    garbage: "malformed_signature",
    event_type: "orders/create",
};

// --- Slack ---------------------------------------------------------------------------------------

fn sign_slack(secret: &str, id: &str, t: i64) -> Req {
    let body = format!(
        r#"{{"type":"event_callback","event_id":"{id}","event":{{"type":"app_mention","text":"hi"}}}}"#
    );
    let mac = hmac256(secret.as_bytes(), format!("v0:{t}:{body}").as_bytes());
    Req::new(
        &[
            ("x-slack-signature", format!("v0={}", hex::encode(mac))),
            ("x-slack-request-timestamp", t.to_string()),
            ("content-type", "application/json".into()),
        ],
        body,
    )
}

const SLACK: Spec = Spec {
    name: "slack",
    env: &[("SLACK_WEBHOOK_SECRET", "slack-old,slack-new")],
    toml: "",
    old: "slack-old",
    new: "slack-new",
    wrong: "slack-wrong",
    sign: sign_slack,
    sig_header: "x-slack-signature",
    signs_body: true,
    tolerance: Some(300),
    truncated: "malformed_signature",
    garbage: "malformed_signature",
    event_type: "app_mention",
};

// --- GitLab --------------------------------------------------------------------------------------

fn sign_gitlab(secret: &str, id: &str, _t: i64) -> Req {
    let body = r#"{"object_kind":"push","ref":"refs/heads/main","project":{"id":15}}"#;
    Req::new(
        &[
            ("x-gitlab-token", secret.to_owned()),
            ("x-gitlab-event", "Push Hook".into()),
            ("idempotency-key", id.to_owned()),
            ("x-gitlab-event-uuid", unique("")),
            ("content-type", "application/json".into()),
        ],
        body.to_owned(),
    )
}

const GITLAB: Spec = Spec {
    name: "gitlab",
    env: &[("GITLAB_WEBHOOK_SECRET", "gitlab-old-token,gitlab-new-token")],
    toml: "",
    old: "gitlab-old-token",
    new: "gitlab-new-token",
    wrong: "gitlab-wrong-token",
    sign: sign_gitlab,
    sig_header: "x-gitlab-token",
    signs_body: false,
    tolerance: None,
    truncated: "invalid_signature",
    garbage: "invalid_signature",
    event_type: "Push Hook",
};

// --- Twilio --------------------------------------------------------------------------------------

fn sign_twilio(token: &str, id: &str, _t: i64) -> Req {
    let params = [
        ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
        ("From", "+4915112345678"),
        ("To", "+4930123456"),
        ("Body", "Grüße & 100% a+b"),
        ("SmsStatus", "received"),
    ];
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut signed = format!("{PUBLIC_URL}/webhooks/twilio");
    for (k, v) in sorted {
        signed.push_str(k);
        signed.push_str(v);
    }
    Req::new(
        &[
            (
                "x-twilio-signature",
                b64(&hmac1(token.as_bytes(), signed.as_bytes())),
            ),
            ("i-twilio-idempotency-token", id.to_owned()),
            ("content-type", "application/x-www-form-urlencoded".into()),
        ],
        body,
    )
}

const TWILIO: Spec = Spec {
    name: "twilio",
    env: &[
        ("TWILIO_WEBHOOK_SECRET", "twilio-old-token,twilio-new-token"),
        ("HOOKD_PUBLIC_URL", PUBLIC_URL),
    ],
    toml: "",
    old: "twilio-old-token",
    new: "twilio-new-token",
    wrong: "twilio-wrong-token",
    sign: sign_twilio,
    sig_header: "x-twilio-signature",
    signs_body: true,
    tolerance: None,
    truncated: "malformed_signature",
    garbage: "malformed_signature",
    event_type: "message.received",
};

// --- Paddle --------------------------------------------------------------------------------------

fn sign_paddle(secret: &str, id: &str, t: i64) -> Req {
    let body = format!(r#"{{"event_id":"{id}","event_type":"transaction.completed","data":{{}}}}"#);
    let mac = hmac256(secret.as_bytes(), format!("{t}:{body}").as_bytes());
    Req::new(
        &[
            (
                "paddle-signature",
                format!("ts={t};h1={}", hex::encode(mac)),
            ),
            ("content-type", "application/json".into()),
        ],
        body,
    )
}

const PADDLE: Spec = Spec {
    name: "paddle",
    env: &[("PADDLE_WEBHOOK_SECRET", "pdl_ntfset_old,pdl_ntfset_new")],
    toml: "",
    old: "pdl_ntfset_old",
    new: "pdl_ntfset_new",
    wrong: "pdl_ntfset_wrong",
    sign: sign_paddle,
    sig_header: "paddle-signature",
    signs_body: true,
    tolerance: Some(5),
    truncated: "malformed_signature",
    garbage: "malformed_signature",
    event_type: "transaction.completed",
};

// --- Square --------------------------------------------------------------------------------------

fn sign_square(key: &str, id: &str, _t: i64) -> Req {
    let body = format!(
        r#"{{"merchant_id":"MLEFBHHSJGVHD","type":"payment.updated","event_id":"{id}","data":{{}}}}"#
    );
    let signed = format!("{PUBLIC_URL}/webhooks/square{body}");
    Req::new(
        &[
            (
                "x-square-hmacsha256-signature",
                b64(&hmac256(key.as_bytes(), signed.as_bytes())),
            ),
            ("content-type", "application/json".into()),
        ],
        body,
    )
}

const SQUARE: Spec = Spec {
    name: "square",
    env: &[
        ("SQUARE_WEBHOOK_SECRET", "sq-old-key,sq-new-key"),
        ("HOOKD_PUBLIC_URL", PUBLIC_URL),
    ],
    toml: "",
    old: "sq-old-key",
    new: "sq-new-key",
    wrong: "sq-wrong-key",
    sign: sign_square,
    sig_header: "x-square-hmacsha256-signature",
    signs_body: true,
    tolerance: None,
    truncated: "malformed_signature",
    garbage: "malformed_signature",
    event_type: "payment.updated",
};

// --- Linear --------------------------------------------------------------------------------------

fn sign_linear(secret: &str, id: &str, t: i64) -> Req {
    let body = format!(
        r#"{{"action":"create","type":"Issue","data":{{"id":"2174add1"}},"webhookTimestamp":{}}}"#,
        t * 1000 + 123
    );
    Req::new(
        &[
            (
                "linear-signature",
                hex::encode(hmac256(secret.as_bytes(), body.as_bytes())),
            ),
            ("linear-delivery", id.to_owned()),
            ("content-type", "application/json".into()),
        ],
        body,
    )
}

const LINEAR: Spec = Spec {
    name: "linear",
    env: &[("LINEAR_WEBHOOK_SECRET", "lin_wh_old,lin_wh_new")],
    toml: "",
    old: "lin_wh_old",
    new: "lin_wh_new",
    wrong: "lin_wh_wrong",
    sign: sign_linear,
    sig_header: "linear-signature",
    signs_body: true,
    tolerance: Some(60),
    truncated: "malformed_signature",
    garbage: "malformed_signature",
    event_type: "Issue.create",
};

// --- Generic HMAC from configuration -------------------------------------------------------------

const ACME_TOML: &str = r#"
[providers.acme]
scheme = "hmac"
header = "X-Acme-Signature"
prefix = "sha256="
algorithm = "sha256"
encoding = "hex"
signed = "{timestamp}.{body}"
timestamp_header = "X-Acme-Timestamp"
tolerance_secs = 120
idempotency_pointer = "/data/id"
event_type_header = "X-Acme-Event"
"#;

fn sign_acme(secret: &str, id: &str, t: i64) -> Req {
    let body = format!(r#"{{"data":{{"id":"{id}","amount":5}}}}"#);
    let mac = hmac256(secret.as_bytes(), format!("{t}.{body}").as_bytes());
    Req::new(
        &[
            ("x-acme-signature", format!("sha256={}", hex::encode(mac))),
            ("x-acme-timestamp", t.to_string()),
            ("x-acme-event", "order.paid".into()),
            ("content-type", "application/json".into()),
        ],
        body,
    )
}

const ACME: Spec = Spec {
    name: "acme",
    env: &[("ACME_WEBHOOK_SECRET", "acme-old,acme-new")],
    toml: ACME_TOML,
    old: "acme-old",
    new: "acme-new",
    wrong: "acme-wrong",
    sign: sign_acme,
    sig_header: "x-acme-signature",
    signs_body: true,
    tolerance: Some(120),
    truncated: "malformed_signature",
    garbage: "malformed_signature",
    event_type: "order.paid",
};

// --- A second Stripe account under another name ---------------------------------------------------

fn sign_stripe(secret: &str, id: &str, t: i64) -> Req {
    let body = format!(r#"{{"id":"{id}","object":"event","type":"charge.succeeded"}}"#);
    Req::new(
        &[
            ("stripe-signature", stripe_header(secret, &body, t)),
            ("content-type", "application/json".into()),
        ],
        body,
    )
}

const STRIPE_EU: Spec = Spec {
    name: "stripe-eu",
    env: &[("STRIPE_EU_WEBHOOK_SECRET", "whsec_eu_old,whsec_eu_new")],
    toml: "[providers.stripe-eu]\nscheme = \"stripe\"\n",
    old: "whsec_eu_old",
    new: "whsec_eu_new",
    wrong: STRIPE_SECRET,
    sign: sign_stripe,
    sig_header: "stripe-signature",
    signs_body: true,
    tolerance: Some(300),
    truncated: "invalid_signature",
    garbage: "malformed_signature",
    event_type: "charge.succeeded",
};

async fn standard(b: Backend) {
    check(b, &STANDARD).await
}

both_backends!(standard);

macro_rules! sqlite_tests {
    ($($name:ident => $spec:expr),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            check(Backend::Sqlite, &$spec).await
        }
    )*};
}

sqlite_tests!(
    shopify => SHOPIFY,
    slack => SLACK,
    gitlab => GITLAB,
    twilio => TWILIO,
    paddle => PADDLE,
    square => SQUARE,
    linear => LINEAR,
    generic_hmac => ACME,
    stripe_second_account => STRIPE_EU,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svix_headers_and_v1a_signatures() {
    let db = TestDb::new(Backend::Sqlite).await;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    use aws_lc_rs::signature::KeyPair;
    let whpk = format!("whpk_{}", b64(pair.public_key().as_ref()));
    let server = TestServer::start(&db, "", &[("STANDARD_WEBHOOK_SECRET", &whpk)]).await;
    let (id, t) = (unique("msg_"), now());
    let body = r#"{"type":"user.created"}"#;
    let sig = b64(pair.sign(format!("{id}.{t}.{body}").as_bytes()).as_ref());
    let req = Req::new(
        &[
            ("svix-id", id.clone()),
            ("svix-timestamp", t.to_string()),
            ("svix-signature", format!("v1a,{sig}")),
        ],
        body.to_owned(),
    );
    expect(&server, "standard", &req, 202, "queued", "svix + v1a").await;
    let hmac_only = sign_standard("whsec_bmV3LXN0YW5kYXJkLXNlY3JldA==", &id, t);
    expect(
        &server,
        "standard",
        &hmac_only,
        400,
        "invalid_signature",
        "v1 without a whsec",
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_url_verification_is_answered_not_stored() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db, "", &[("SLACK_WEBHOOK_SECRET", "slack-new")]).await;
    let t = now();
    let body = r#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let mac = hmac256(b"slack-new", format!("v0:{t}:{body}").as_bytes());
    let req = Req::new(
        &[
            ("x-slack-signature", format!("v0={}", hex::encode(mac))),
            ("x-slack-request-timestamp", t.to_string()),
            ("content-type", "application/json".into()),
        ],
        body.to_owned(),
    );
    let r = send(&server, "slack", &req).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        v["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
    // Unsigned, it is a forgery like any other.
    let forged = req.with_header("x-slack-signature", Some(format!("v0={}", "0".repeat(64))));
    expect(
        &server,
        "slack",
        &forged,
        400,
        "invalid_signature",
        "unsigned challenge",
    )
    .await;
    assert_eq!(server.total_events().await, 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_json_body_with_body_sha256() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(
        &db,
        "",
        &[
            ("TWILIO_WEBHOOK_SECRET", "twilio-new-token"),
            ("HOOKD_PUBLIC_URL", PUBLIC_URL),
        ],
    )
    .await;
    let body = r#"{"type":"com.twilio.messaging.message.delivered","data":{"messageSid":"SM01"}}"#;
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body.as_bytes()));
    let query = format!("?bodySHA256={hash}");
    let url = format!("{PUBLIC_URL}/webhooks/twilio{query}");
    let mut req = Req::new(
        &[
            (
                "x-twilio-signature",
                b64(&hmac1(b"twilio-new-token", url.as_bytes())),
            ),
            ("i-twilio-idempotency-token", unique("tw_")),
            ("content-type", "application/json".into()),
        ],
        body.to_owned(),
    );
    req.query = query;
    let r = send(&server, "twilio", &req).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let e = server.event(id_of(r).await).await;
    assert_eq!(e.event_type, "com.twilio.messaging.message.delivered");
    let mut tampered = req.clone();
    tampered.body = body.replace("SM01", "SM02");
    expect(
        &server,
        "twilio",
        &tampered,
        400,
        "invalid_signature",
        "body hash",
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfigured_providers_name_their_setting() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db, "", &[]).await;
    for (provider, setting) in [
        ("paypal", "PAYPAL_WEBHOOK_ID"),
        ("standard", "STANDARD_WEBHOOK_SECRET"),
        ("twilio", "TWILIO_WEBHOOK_SECRET"),
        ("linear", "LINEAR_WEBHOOK_SECRET"),
    ] {
        let r = send(&server, provider, &Req::new(&[], "{}".into())).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{provider}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"], "provider_not_configured");
        assert!(v["message"].as_str().unwrap().contains(setting), "{v}");
    }
    server.stop().await;
}

// --- PayPal, with a certificate authority and a certificate server made here ---------------------

struct Pki {
    root_pem: String,
    chain_pem: String,
    key: rcgen::KeyPair,
}

/// Root → intermediate → leaf with this CN, the way PayPal's certificates are issued.
fn paypal_pki(cn: &str) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let ca = |name: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p
    };
    let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let root_params = ca("hookd integration test root");
    let root = root_params.self_signed(&root_key).unwrap();
    let root_issuer = Issuer::new(root_params, &root_key);
    let mid_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mid_params = ca("hookd integration test intermediate");
    let mid = mid_params.signed_by(&mid_key, &root_issuer).unwrap();
    let mid_issuer = Issuer::new(mid_params, &mid_key);
    let key = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap();
    let mut p = CertificateParams::new(vec![cn.to_owned()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    let leaf = p.signed_by(&key, &mid_issuer).unwrap();
    Pki {
        root_pem: root.pem(),
        chain_pem: format!("{}{}", leaf.pem(), mid.pem()),
        key,
    }
}

/// Serves `/certs/{name}` from a fixed map and counts requests.
struct CertServer {
    base: String,
    hits: Arc<AtomicUsize>,
}

type CertState = (Arc<Vec<(&'static str, String)>>, Arc<AtomicUsize>);

async fn serve_cert(
    axum::extract::State((certs, hits)): axum::extract::State<CertState>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> (StatusCode, String) {
    hits.fetch_add(1, Ordering::SeqCst);
    match certs.iter().find(|(n, _)| *n == name) {
        Some((_, pem)) => (StatusCode::OK, pem.clone()),
        None => (StatusCode::NOT_FOUND, String::new()),
    }
}

async fn cert_server(certs: Vec<(&'static str, String)>) -> CertServer {
    let hits = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new()
        .route("/certs/{name}", axum::routing::get(serve_cert))
        .with_state((Arc::new(certs), hits.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    CertServer {
        base: format!("http://{addr}/certs/"),
        hits,
    }
}

const PAYPAL_BODY: &str = r#"{"id":"WH-ID","event_version":"1.0","event_type":"PAYMENT.CAPTURE.COMPLETED","resource":{"id":"42311647XV020574X","amount":{"value":"10.00"}}}"#;

fn paypal_request(pki: &Pki, cert_url: &str, webhook_id: &str, event_id: &str, t: i64) -> Req {
    use rcgen::SigningKey;
    let body = PAYPAL_BODY.replace("WH-ID", event_id);
    let time = chrono::DateTime::from_timestamp(t, 0).unwrap().to_rfc3339();
    let transmission = unique("");
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(body.as_bytes());
    let msg = format!("{transmission}|{time}|{webhook_id}|{crc}");
    let sig = b64(&pki.key.sign(msg.as_bytes()).unwrap());
    Req::new(
        &[
            ("paypal-transmission-id", transmission),
            ("paypal-transmission-time", time),
            ("paypal-transmission-sig", sig),
            ("paypal-cert-url", cert_url.to_owned()),
            ("paypal-auth-algo", "SHA256withRSA".into()),
            ("content-type", "application/json".into()),
        ],
        body,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paypal_certificate_scheme() {
    let pki = paypal_pki("messageverificationcerts.paypal.com");
    let impostor = paypal_pki("messageverificationcerts.example.com");
    let certs = cert_server(vec![
        ("CERT-good", pki.chain_pem.clone()),
        ("CERT-impostor", impostor.chain_pem.clone()),
        ("CERT-junk", "not a certificate".into()),
    ])
    .await;
    // An allow-listed place where nothing answers: PayPal's side is down.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_base = format!("http://{}/certs/", closed.local_addr().unwrap());
    drop(closed);

    let db = TestDb::new(Backend::Sqlite).await;
    let roots = db.dir.path().join("roots.pem");
    std::fs::write(&roots, format!("{}{}", pki.root_pem, impostor.root_pem)).unwrap();
    let prefixes = format!("{},{closed_base}", certs.base);
    let server = TestServer::start(
        &db,
        "",
        &[
            ("PAYPAL_WEBHOOK_ID", "WH-HOOK-OLD,8PT597110X687430LKGECATA"),
            ("PAYPAL_CERT_URL_PREFIXES", &prefixes),
            ("PAYPAL_TRUST_ROOTS", roots.to_str().unwrap()),
        ],
    )
    .await;
    let good_url = format!("{}CERT-good", certs.base);
    let ours = "8PT597110X687430LKGECATA";
    let p = "paypal";

    let id = unique("WH-");
    let r = send(
        &server,
        p,
        &paypal_request(&pki, &good_url, ours, &id, now()),
    )
    .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let e = server.event(id_of(r).await).await;
    assert_eq!(
        (e.idempotency_key.as_str(), e.event_type.as_str()),
        (id.as_str(), "PAYMENT.CAPTURE.COMPLETED")
    );
    let again = paypal_request(&pki, &good_url, ours, &id, now());
    expect(&server, p, &again, 200, "duplicate", "redelivery").await;
    // Either configured webhook id is ours.
    let other_id = paypal_request(&pki, &good_url, "WH-HOOK-OLD", &unique("WH-"), now());
    expect(&server, p, &other_id, 202, "queued", "second webhook id").await;

    let fresh = unique("WH-");
    let good = paypal_request(&pki, &good_url, ours, &fresh, now());
    let mut tampered = good.clone();
    tampered.body = tampered.body.replace("10.00", "99.00");
    expect(
        &server,
        p,
        &tampered,
        400,
        "invalid_signature",
        "tampered body",
    )
    .await;
    let foreign = paypal_request(&pki, &good_url, "SOMEONE-ELSES-WEBHOOK", &fresh, now());
    expect(
        &server,
        p,
        &foreign,
        400,
        "invalid_signature",
        "another webhook's id",
    )
    .await;
    let wrong_key = paypal_request(&impostor, &good_url, ours, &fresh, now());
    expect(
        &server,
        p,
        &wrong_key,
        400,
        "invalid_signature",
        "signed by another key",
    )
    .await;
    let missing = good.clone().with_header("paypal-transmission-sig", None);
    expect(
        &server,
        p,
        &missing,
        400,
        "missing_signature",
        "missing signature",
    )
    .await;
    let sig = good.header("paypal-transmission-sig");
    let truncated = good.clone().with_header(
        "paypal-transmission-sig",
        Some(sig[..sig.len() / 2].to_owned()),
    );
    expect(
        &server,
        p,
        &truncated,
        400,
        "malformed_signature",
        "truncated",
    )
    .await;
    let garbage = good
        .clone()
        .with_header("paypal-transmission-sig", Some("garbage".into()));
    expect(&server, p, &garbage, 400, "malformed_signature", "garbage").await;
    for (what, t) in [("stale", now() - 330), ("future", now() + 330)] {
        let req = paypal_request(&pki, &good_url, ours, &fresh, t);
        expect(&server, p, &req, 400, "timestamp_out_of_tolerance", what).await;
    }
    let ssrf = paypal_request(
        &pki,
        "http://169.254.169.254/latest/meta-data/",
        ours,
        &fresh,
        now(),
    );
    expect(
        &server,
        p,
        &ssrf,
        400,
        "cert_url_not_allowed",
        "cert URL off the list",
    )
    .await;
    let impostor_cert = format!("{}CERT-impostor", certs.base);
    let req = paypal_request(&impostor, &impostor_cert, ours, &fresh, now());
    expect(&server, p, &req, 400, "invalid_cert", "CN not PayPal's").await;
    for name in ["CERT-junk", "CERT-missing"] {
        let req = paypal_request(&pki, &format!("{}{name}", certs.base), ours, &fresh, now());
        expect(&server, p, &req, 400, "invalid_cert", name).await;
    }
    let down = paypal_request(
        &pki,
        &format!("{closed_base}CERT-good"),
        ours,
        &fresh,
        now(),
    );
    let r = send(&server, p, &down).await;
    assert_eq!(
        r.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "certificate server down"
    );
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "cert_unavailable"
    );

    // The good certificate was fetched once and then served from the cache; rejected ones
    // were not cached (each fetched again would count).
    let hits_before = certs.hits.load(Ordering::SeqCst);
    let genuine = paypal_request(&pki, &good_url, ours, &fresh, now());
    expect(
        &server,
        p,
        &genuine,
        202,
        "queued",
        "genuine after forgeries",
    )
    .await;
    assert_eq!(certs.hits.load(Ordering::SeqCst), hits_before, "cached");
    assert_eq!(hits_before, 4, "good once, impostor, junk, missing");
    assert_eq!(server.total_events().await, 3);
    server.stop().await;
}

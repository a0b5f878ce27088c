//! The live configuration: providers, routes and destinations written through the admin API,
//! applied by every process within about a second without a restart (PostgreSQL's NOTIFY, and
//! the version check when a notification is missed), secrets encrypted at rest under
//! `HOOKD_SECRET_KEY`, rotated with overlap, re-encrypted by `hookd secrets rotate-key`, and
//! what the file defines kept read-only.

use std::time::{Duration, Instant};

use hookd::app::{self, Roles};
use hookd::config::Config;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{
    ADMIN_TOKEN, Backend, Behaviour, Hookd, STRIPE_SECRET, Target, TestDb, TestServer, base_vars,
    both_backends, eventually, now, stripe_event, stripe_header,
};

const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const K2: &str = "k2:HxAREhMUFRYXGBkaGxwdHh8AAQIDBAUGBwgJCgsMDQ4=";
const ACME_SECRET: &str = "whsec_acme_first_secret_value";

/// `PUT`, `POST` or `DELETE /admin{path}` on `url` with the admin token.
async fn admin(method: &str, url: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = reqwest::Client::new()
        .request(method, format!("{url}/admin{path}"))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A Stripe-signed event to `/webhooks/{provider}` on `url`, signed with `secret`.
async fn post_signed(url: &str, provider: &str, secret: &str) -> StatusCode {
    let (_, body) = stripe_event("invoice.paid");
    reqwest::Client::new()
        .post(format!("{url}/webhooks/{provider}"))
        .header("stripe-signature", stripe_header(secret, &body, now()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
}

/// Create provider `acme` (scheme stripe) with [`ACME_SECRET`] through `url`.
async fn create_acme(url: &str) -> Value {
    let (status, answer) = admin(
        "PUT",
        url,
        "/config/providers/acme",
        Some(
            json!({"scheme": "stripe", "secret": ACME_SECRET, "settings": {"tolerance_secs": 600}}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

/// The latest stored document, read from the raw rows.
async fn raw_document(db: &TestDb) -> String {
    let store = hookd::store::connect(&db.url, 1, Duration::from_secs(5))
        .await
        .unwrap();
    store
        .config_latest()
        .await
        .unwrap()
        .expect("a version")
        .document
}

/// A provider created through the API on one process verifies webhooks on a second process
/// (two `hookd serve` on one PostgreSQL database) within about a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_created_on_one_process_verifies_on_another() {
    let db = TestDb::new(Backend::Postgres).await;
    let key = [("HOOKD_SECRET_KEY", K1.to_owned())];
    let a = Hookd::spawn_with(&db, "", "serve", &key, "a.log").await;
    let b = Hookd::spawn_with(&db, "", "serve", &key, "b.log").await;
    assert_eq!(
        post_signed(&b.url, "acme", ACME_SECRET).await,
        StatusCode::NOT_FOUND
    );
    let created = Instant::now();
    create_acme(&a.url).await;
    // On the process that wrote it: at once.
    assert_eq!(
        post_signed(&a.url, "acme", ACME_SECRET).await,
        StatusCode::ACCEPTED
    );
    eventually(
        "the other process to accept acme's webhooks",
        Duration::from_secs(10),
        || post_signed(&b.url, "acme", ACME_SECRET),
        |s| *s == StatusCode::ACCEPTED,
    )
    .await;
    let took = created.elapsed();
    println!("provider created on a, verifying on b after {took:?}");
    // Wrongly signed: still refused.
    assert_eq!(
        post_signed(&b.url, "acme", "whsec_wrong").await,
        StatusCode::BAD_REQUEST
    );
}

/// `body`, Stripe-signed with `secret`, to `/webhooks/{provider}` on `url`: status and answer.
async fn post_body(url: &str, provider: &str, secret: &str, body: &str) -> (StatusCode, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{url}/webhooks/{provider}"))
        .header("stripe-signature", stripe_header(secret, body, now()))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A JSON Schema on `invoice.*` events: `data.object.amount` must be an integer.
fn amount_schema() -> Value {
    json!([{"events": ["invoice.*"], "schema": {
        "type": "object", "required": ["data"],
        "properties": {"data": {"type": "object", "required": ["object"], "properties": {
            "object": {"type": "object", "required": ["amount"],
                "properties": {"amount": {"type": "integer"}}}}}}}}])
}

/// A JSON Schema given to a provider through the API refuses a non-conforming payload on a
/// second process within about a second, with the answer a file's `[[schemas]]` gives; other
/// event types and conforming payloads pass; a schema that does not compile is a 400 naming its
/// field, and stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_schema_applies_on_another_process() {
    let db = TestDb::new(Backend::Postgres).await;
    let key = [("HOOKD_SECRET_KEY", K1.to_owned())];
    let a = Hookd::spawn_with(&db, "", "serve", &key, "a.log").await;
    let b = Hookd::spawn_with(&db, "", "serve", &key, "b.log").await;
    create_acme(&a.url).await;
    let bad =
        r#"{"id":"evt_live_schema_1","type":"invoice.paid","data":{"object":{"amount":"2000"}}}"#;
    eventually(
        "the other process to accept acme's webhooks",
        Duration::from_secs(10),
        || post_body(&b.url, "acme", ACME_SECRET, bad),
        |(s, _)| *s == StatusCode::ACCEPTED,
    )
    .await;

    let with_schema = json!({"scheme": "stripe", "settings": {"tolerance_secs": 600},
        "schemas": amount_schema()});
    let written = Instant::now();
    let (status, answer) = admin("PUT", &a.url, "/config/providers/acme", Some(with_schema)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["provider"]["schemas"], amount_schema(), "{answer}");
    let bad =
        r#"{"id":"evt_live_schema_2","type":"invoice.paid","data":{"object":{"amount":"2000"}}}"#;
    let (_, refused) = eventually(
        "the other process to apply acme's schema",
        Duration::from_secs(10),
        || post_body(&b.url, "acme", ACME_SECRET, bad),
        |(s, _)| *s == StatusCode::BAD_REQUEST,
    )
    .await;
    println!(
        "schema written on a, applied on b after {:?}",
        written.elapsed()
    );
    assert_eq!(refused["error"], "schema_violation", "{refused}");
    assert_eq!(refused["path"], "/data/object/amount", "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("integer") && message.contains("providers.acme.schemas[0]"),
        "{message}"
    );
    let good =
        r#"{"id":"evt_live_schema_3","type":"invoice.paid","data":{"object":{"amount":2000}}}"#;
    assert_eq!(
        post_body(&b.url, "acme", ACME_SECRET, good).await.0,
        StatusCode::ACCEPTED
    );
    let other = r#"{"id":"evt_live_schema_4","type":"charge.succeeded"}"#;
    assert_eq!(
        post_body(&b.url, "acme", ACME_SECRET, other).await.0,
        StatusCode::ACCEPTED
    );
    let (_, shown) = admin("GET", &b.url, "/config/providers/acme", None).await;
    assert_eq!(shown["schemas"], amount_schema(), "{shown}");

    // A schema that does not compile: 400 naming it; nothing stored, the old one still applies.
    let before = raw_document(&db).await;
    let broken = json!({"scheme": "stripe", "schemas": [{"schema": {"type": 12}}]});
    let (status, answer) = admin("PUT", &a.url, "/config/providers/acme", Some(broken)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"], "invalid_config", "{answer}");
    assert_eq!(
        answer["field"], "providers.acme.schemas[0].schema",
        "{answer}"
    );
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("valid JSON Schema"),
        "{answer}"
    );
    let (status, answer) = admin(
        "PUT",
        &a.url,
        "/config/providers/acme",
        Some(json!({"scheme": "stripe", "schemas": [{"events": "invoice.*", "schema": {}}]})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(raw_document(&db).await, before);
    let bad =
        r#"{"id":"evt_live_schema_5","type":"invoice.paid","data":{"object":{"amount":"1"}}}"#;
    assert_eq!(
        post_body(&a.url, "acme", ACME_SECRET, bad).await.0,
        StatusCode::BAD_REQUEST
    );

    // Without `schemas`, a write keeps them; `[]` removes them.
    let (_, kept) = admin(
        "PUT",
        &a.url,
        "/config/providers/acme",
        Some(json!({"scheme": "stripe", "settings": {"tolerance_secs": 300}})),
    )
    .await;
    assert_eq!(kept["provider"]["schemas"], amount_schema(), "{kept}");
    let (_, removed) = admin(
        "PUT",
        &a.url,
        "/config/providers/acme",
        Some(json!({"scheme": "stripe", "schemas": []})),
    )
    .await;
    assert_eq!(removed["provider"]["schemas"], json!([]), "{removed}");
    assert_eq!(
        post_body(&a.url, "acme", ACME_SECRET, bad).await.0,
        StatusCode::ACCEPTED
    );
}

/// A route created through the API on an `api` process reaches a separate `worker`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_change_reaches_a_worker() {
    let db = TestDb::new(Backend::Postgres).await;
    let target = Target::start(Behaviour::default()).await;
    let api = Hookd::spawn_with(&db, "", "api", &[], "api.log").await;
    let _worker = Hookd::spawn_with(&db, "", "worker", &[], "worker.log").await;
    let route = json!({"provider": "stripe", "events": ["invoice.*"],
        "steps": [{"action": "forward", "url": target.url}]});
    let (status, answer) = admin("PUT", &api.url, "/config/routes/to-target", Some(route)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // Events accepted before the worker applied the route complete unrouted; each probe sends
    // a new one until one is forwarded.
    eventually(
        "an event to be forwarded by the new route",
        Duration::from_secs(20),
        || async {
            assert_eq!(
                post_signed(&api.url, "stripe", STRIPE_SECRET).await,
                StatusCode::ACCEPTED
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
            target.hits()
        },
        |hits| *hits > 0,
    )
    .await;
}

/// A secret rotated with overlap: both verify until the cutoff, then only the new one.
async fn secret_rotation_with_overlap(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = TestServer::start(&db, "", &[("HOOKD_SECRET_KEY", K1)]).await;
    create_acme(&s.url).await;
    let cutoff = chrono::Utc::now() + chrono::Duration::seconds(3);
    let (status, answer) = admin(
        "POST",
        &s.url,
        "/config/providers/acme/secrets",
        Some(json!({"previous_expire_at": cutoff})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // Generated, and shown this once.
    let new = answer["secret"]
        .as_str()
        .expect("the generated secret")
        .to_owned();
    let secrets = answer["provider"]["secrets"].as_array().unwrap();
    assert_eq!(secrets.len(), 2);
    assert!(!answer["provider"].to_string().contains(&new));
    assert_eq!(
        post_signed(&s.url, "acme", ACME_SECRET).await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        post_signed(&s.url, "acme", &new).await,
        StatusCode::ACCEPTED
    );
    eventually(
        "the old secret to stop verifying after the cutoff",
        Duration::from_secs(15),
        || post_signed(&s.url, "acme", ACME_SECRET),
        |s| *s == StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(chrono::Utc::now() >= cutoff, "refused before the cutoff");
    assert_eq!(
        post_signed(&s.url, "acme", &new).await,
        StatusCode::ACCEPTED
    );
    // Never shown again: not in the configuration, nor in the audit log.
    let config = s.admin_get("/config").await.to_string();
    let audit = s.admin_get("/audit").await.to_string();
    for text in [&config, &audit] {
        assert!(
            !text.contains(&new) && !text.contains(ACME_SECRET),
            "{text}"
        );
    }
    assert!(audit.contains("config.provider.secret.add"), "{audit}");
}

/// The database holds no plaintext secret; a wrong `HOOKD_SECRET_KEY` (a key id it does not
/// have, or another key under the same id) stops start-up with a clear message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_encrypted_and_a_wrong_key_stops_start_up() {
    let db = TestDb::new(Backend::Postgres).await;
    let s = TestServer::start(&db, "", &[("HOOKD_SECRET_KEY", K1)]).await;
    create_acme(&s.url).await;
    s.stop().await;
    let doc = raw_document(&db).await;
    assert!(
        !doc.contains(ACME_SECRET),
        "plaintext in the database: {doc}"
    );
    assert!(doc.contains("\"kid\":\"k1\""), "{doc}");

    let start_with = |key: &str| {
        let mut vars = base_vars(&db, "");
        vars.push(("HOOKD_SECRET_KEY".into(), key.into()));
        Config::from_vars(vars).unwrap()
    };
    let Err(e) = app::start(&start_with(K2), Roles::SERVE).await else {
        panic!("started without the key the secrets are under");
    };
    let msg = e.to_string();
    assert!(
        msg.contains("\"k1\"") && msg.contains("HOOKD_SECRET_KEY"),
        "{msg}"
    );
    let same_id_other_key = K2.replace("k2:", "k1:");
    let Err(e) = app::start(&start_with(&same_id_other_key), Roles::SERVE).await else {
        panic!("started with another key under the same id");
    };
    assert!(e.to_string().contains("does not decrypt"), "{e}");
    let mut vars = base_vars(&db, "");
    vars.retain(|(k, _)| k != "HOOKD_SECRET_KEY");
    let Err(e) = app::start(&Config::from_vars(vars).unwrap(), Roles::SERVE).await else {
        panic!("started without any key");
    };
    assert!(e.to_string().contains("HOOKD_SECRET_KEY is not set"), "{e}");
}

/// Without `HOOKD_SECRET_KEY`, storing a secret is refused with what to set; a malformed key
/// stops start-up naming the variable, never showing the value.
async fn without_a_key_storing_a_secret_is_refused(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = TestServer::start(&db, "", &[]).await;
    let (status, answer) = admin(
        "PUT",
        &s.url,
        "/config/providers/acme",
        Some(json!({"scheme": "stripe", "secret": ACME_SECRET})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"], "secret_key_missing");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("set HOOKD_SECRET_KEY"),
        "{answer}"
    );
    assert_eq!(s.admin_get("/config").await["version"], 0);
    // A route has no secret: it is stored without a key.
    let (status, _) = admin(
        "PUT",
        &s.url,
        "/config/routes/logit",
        Some(json!({"steps": [{"action": "log"}]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let mut vars = base_vars(&db, "");
    vars.push(("HOOKD_SECRET_KEY".into(), "k1:c2hvcnQ=".into()));
    let e = Config::from_vars(vars).unwrap_err().to_string();
    assert!(
        e.contains("HOOKD_SECRET_KEY") && !e.contains("c2hvcnQ"),
        "{e}"
    );
}

/// Bad settings answer 400 naming the field, with the message the file gets for the same
/// mistake; what the file and the environment define is read-only (409).
async fn validation_and_file_managed_entries(backend: Backend) {
    let db = TestDb::new(backend).await;
    let file = "[[routes]]\nname = \"from-file\"\nsteps = [{ action = \"log\" }]\n";
    let s = TestServer::start(&db, file, &[("HOOKD_SECRET_KEY", K1)]).await;

    // A provider setting of the wrong type: the file's message.
    let (status, answer) = admin(
        "PUT",
        &s.url,
        "/config/providers/acme",
        Some(json!({"scheme": "stripe", "secret": "x", "settings": {"tolerance_secs": "soon"}})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"], "invalid_config");
    assert_eq!(answer["field"], "providers.acme");
    let toml = "[providers.acme]\nscheme = \"stripe\"\nsecret = \"x\"\ntolerance_secs = \"soon\"\n";
    let mut vars = base_vars(&db, toml);
    vars.push(("HOOKD_SECRET_KEY".into(), K1.into()));
    let from_file = Config::from_vars(vars).unwrap_err().to_string();
    assert_eq!(answer["message"].as_str().unwrap(), from_file);
    assert!(
        from_file.contains("providers.acme.tolerance_secs"),
        "{from_file}"
    );

    // An unknown scheme, and a route the file would refuse: the same messages.
    let (status, answer) = admin(
        "PUT",
        &s.url,
        "/config/providers/acme",
        Some(json!({"scheme": "strip", "secret": "x"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("scheme \"strip\" is unknown"),
        "{answer}"
    );
    let (status, answer) = admin(
        "PUT",
        &s.url,
        "/config/routes/bad",
        Some(json!({"steps": [{"action": "forward", "url": "ftp://example.com/x"}]})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["field"], "routes.bad");
    let toml = "[[routes]]\nname = \"bad\"\nsteps = [{ action = \"forward\", url = \"ftp://example.com/x\" }]\n";
    let from_file = Config::from_vars(base_vars(&db, toml))
        .unwrap_err()
        .to_string();
    assert_eq!(answer["message"].as_str().unwrap(), from_file);
    // A destination that does not exist, named by the step's field.
    let (status, answer) = admin(
        "PUT",
        &s.url,
        "/config/routes/bad",
        Some(json!({"steps": [{"action": "forward", "destination": "nowhere"}]})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["field"], "routes.bad.steps[0].destination");
    // Nothing was stored by any of them.
    assert_eq!(s.admin_get("/config").await["version"], 0);

    // The file's provider (stripe, from STRIPE_WEBHOOK_SECRET) and route are read-only.
    let (status, answer) = admin(
        "PUT",
        &s.url,
        "/config/providers/stripe",
        Some(json!({"scheme": "stripe", "secret": "x"})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(answer["error"], "managed_by_file");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("managed by file"),
        "{answer}"
    );
    let (status, _) = admin("DELETE", &s.url, "/config/routes/from-file", None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let config = s.admin_get("/config").await;
    let stripe = config["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "stripe")
        .expect("stripe listed");
    assert_eq!(stripe["managed_by"], "file");
    assert_eq!(config["routes"][0]["managed_by"], "file");
}

/// A read token reads the configuration and may not change it (403, audited).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_need_the_operate_scope() {
    let db = TestDb::new(Backend::Sqlite).await;
    let read = "read-token-for-integration-tests-000";
    let s = TestServer::start(&db, "", &[("HOOKD_ADMIN_READ_TOKEN", read)]).await;
    let http = reqwest::Client::new();
    let get = http
        .get(format!("{}/admin/config", s.url))
        .bearer_auth(read)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), StatusCode::OK);
    let put = http
        .put(format!("{}/admin/config/routes/r", s.url))
        .bearer_auth(read)
        .json(&json!({"steps": [{"action": "log"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::FORBIDDEN);
    let audit = s.admin_get("/audit").await;
    assert_eq!(audit["entries"][0]["action"], "config.route.put");
    assert_eq!(audit["entries"][0]["status"], 403);
}

/// Named destinations: routes name them, follow their changes, and one in use cannot be
/// deleted; every change is one version, audited with its before and after.
async fn named_destinations(backend: Backend) {
    let db = TestDb::new(backend).await;
    let first = Target::start(Behaviour::default()).await;
    let second = Target::start(Behaviour::default()).await;
    let s = TestServer::start(&db, "", &[]).await;
    let dest = |url: &str| Some(json!({"url": url, "headers": {"x-team": "billing"}}));
    let (status, answer) = admin(
        "PUT",
        &s.url,
        "/config/destinations/billing",
        dest(&first.url),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let route = json!({"provider": "stripe",
        "steps": [{"action": "forward", "destination": "billing"}]});
    let (status, answer) = admin("PUT", &s.url, "/config/routes/bill", Some(route)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["version"], 2);
    assert_eq!(
        s.post_stripe(&stripe_event("a").1).await.status(),
        StatusCode::ACCEPTED
    );
    let got = first.wait_received(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].headers["x-team"], "billing");
    let (status, _) = admin(
        "PUT",
        &s.url,
        "/config/destinations/billing",
        dest(&second.url),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        s.post_stripe(&stripe_event("b").1).await.status(),
        StatusCode::ACCEPTED
    );
    second.wait_received(1, Duration::from_secs(10)).await;
    let (status, answer) = admin("DELETE", &s.url, "/config/destinations/billing", None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(answer["error"], "destination_in_use");
    let (status, _) = admin("DELETE", &s.url, "/config/routes/bill", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = admin("DELETE", &s.url, "/config/destinations/billing", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = admin("DELETE", &s.url, "/config/destinations/billing", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let audit = s.admin_get("/audit?action=config.destination.put").await;
    let detail: Value =
        serde_json::from_str(audit["entries"][0]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["before"]["url"], first.url.as_str());
    assert_eq!(detail["after"]["url"], second.url.as_str());
    assert_eq!(s.admin_get("/config").await["version"], 5);
}

both_backends!(
    secret_rotation_with_overlap,
    without_a_key_storing_a_secret_is_refused,
    validation_and_file_managed_entries,
    named_destinations,
);

/// A notification missed while the listener's connection was down is caught by the version
/// check after it reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_notification_is_caught_by_the_version_check() {
    let db = TestDb::new(Backend::Postgres).await;
    let key = [("HOOKD_SECRET_KEY", K1)];
    let a = TestServer::start(&db, "", &key).await;
    let b = TestServer::start(&db, "", &key).await;
    let pg = hookd::store::PgStore::connect(&db.url, 1, Duration::from_secs(5))
        .await
        .unwrap();
    let kill = "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity
                WHERE application_name = $1 AND datname = current_database()";
    // Both listeners must be connected before theirs are cut (a loaded machine may still be
    // opening one).
    let listening = "SELECT count(*) FROM pg_stat_activity
                     WHERE application_name = $1 AND datname = current_database()";
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let n: i64 = sqlx::query_scalar(listening)
            .bind(hookd::live::watch::APPLICATION_NAME)
            .fetch_one(pg.pool())
            .await
            .unwrap();
        if n >= 2 || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let killed: i64 = sqlx::query_scalar(kill)
        .bind(hookd::live::watch::APPLICATION_NAME)
        .fetch_one(pg.pool())
        .await
        .unwrap();
    assert_eq!(killed, 2, "both listeners' connections");
    // Written while the listeners are down: their NOTIFY is lost.
    create_acme(&a.url).await;
    eventually(
        "the other process to apply the change it was not notified of",
        Duration::from_secs(15),
        || post_signed(&b.url, "acme", ACME_SECRET),
        |s| *s == StatusCode::ACCEPTED,
    )
    .await;
}

/// `hookd secrets rotate-key` re-encrypts every secret under the new key; then the old key can
/// be removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_key_re_encrypts_under_the_new_key() {
    let db = TestDb::new(Backend::Postgres).await;
    let s = TestServer::start(&db, "", &[("HOOKD_SECRET_KEY", K1)]).await;
    create_acme(&s.url).await;
    s.stop().await;
    let run = |key: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_hookd"))
            .args(["secrets", "rotate-key"])
            .env_clear()
            .envs(base_vars(&db, ""))
            .env("HOOKD_SECRET_KEY", key)
            .output()
            .unwrap()
    };
    let out = run(&format!("{K2},{K1}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("1 secret(s) re-encrypted under key \"k2\""),
        "{stdout}"
    );
    let doc = raw_document(&db).await;
    assert!(
        doc.contains("\"kid\":\"k2\"") && !doc.contains("\"kid\":\"k1\""),
        "{doc}"
    );
    // Again: nothing left to move.
    assert!(String::from_utf8_lossy(&run(&format!("{K2},{K1}")).stdout).contains("0 secret(s)"));
    // The old key removed: hookd starts and verifies with the secret.
    let s = TestServer::start(&db, "", &[("HOOKD_SECRET_KEY", K2)]).await;
    assert_eq!(
        post_signed(&s.url, "acme", ACME_SECRET).await,
        StatusCode::ACCEPTED
    );
}

/// `hookd config <args>` against `url`, with the admin token and `env`; its output.
async fn config_cli(url: &str, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hookd"));
    cmd.arg("config")
        .args(args)
        .env_clear()
        .env("HOOKD_URL", url)
        .env("HOOKD_ADMIN_TOKEN", ADMIN_TOKEN)
        .envs(env.iter().copied());
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

/// Everything `GET /admin/config` shows but the version.
async fn entries(s: &TestServer) -> Value {
    let mut config = s.admin_get("/config").await;
    config.as_object_mut().unwrap().remove("version");
    config
}

/// `hookd config export` then `hookd config apply` round-trips to the same configuration, with
/// no secret in the file; `--dry-run` shows the difference and changes nothing; a new provider
/// in the file needs its secret's variable.
async fn export_then_apply_round_trips(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = TestServer::start(&db, "", &[("HOOKD_SECRET_KEY", K1)]).await;
    create_acme(&s.url).await;
    let with_schema = json!({"scheme": "stripe", "settings": {"tolerance_secs": 600},
        "schemas": amount_schema()});
    admin("PUT", &s.url, "/config/providers/acme", Some(with_schema)).await;
    let dest = json!({"url": "https://billing.example/hook", "headers": {"x-team": "billing"}});
    admin("PUT", &s.url, "/config/destinations/billing", Some(dest)).await;
    let route = json!({"provider": "acme", "events": ["invoice.*"],
        "steps": [{"action": "forward", "destination": "billing"}, {"action": "log"}]});
    admin("PUT", &s.url, "/config/routes/bill", Some(route)).await;
    let before = entries(&s).await;

    let out = config_cli(&s.url, &["export"], &[]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported = String::from_utf8(out.stdout).unwrap();
    assert!(!exported.contains(ACME_SECRET), "{exported}");
    assert!(
        exported.contains("secret_env = \"ACME_WEBHOOK_SECRET\"")
            && exported.contains("[[providers.acme.schemas]]"),
        "{exported}"
    );
    let file = db.dir.path().join("exported.toml");
    std::fs::write(&file, &exported).unwrap();
    let file = file.to_str().unwrap();

    // Change things, then look at what applying the export would undo.
    admin("DELETE", &s.url, "/config/routes/bill", None).await;
    admin(
        "PUT",
        &s.url,
        "/config/routes/extra",
        Some(json!({"steps": [{"action": "log"}]})),
    )
    .await;
    let version = s.admin_get("/config").await["version"].clone();
    let out = config_cli(&s.url, &["apply", file, "--dry-run"], &[]).await;
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.contains("+ route bill") && printed.contains("- route extra"),
        "{printed}"
    );
    assert!(printed.contains("dry run"), "{printed}");
    assert_eq!(s.admin_get("/config").await["version"], version);

    let out = config_cli(&s.url, &["apply", file], &[]).await;
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("applied as version"), "{printed}");
    assert_eq!(entries(&s).await, before);
    assert_eq!(
        s.admin_get("/config").await["version"],
        version.as_i64().unwrap() + 1,
        "one version for the whole file"
    );
    // The secret was kept (its variable is unset): acme still verifies.
    assert_eq!(
        post_signed(&s.url, "acme", ACME_SECRET).await,
        StatusCode::ACCEPTED
    );
    let again = config_cli(&s.url, &["apply", file], &[]).await;
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to change"));

    // A new provider takes its secret from its variable, and is refused without it.
    let with_new = format!(
        "{exported}\n[providers.fresh]\nscheme = \"github\"\nsecret_env = \"FRESH_WEBHOOK_SECRET\"\n"
    );
    std::fs::write(file, with_new).unwrap();
    let out = config_cli(&s.url, &["apply", file], &[]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("set FRESH_WEBHOOK_SECRET"));
    let out = config_cli(
        &s.url,
        &["apply", file],
        &[("FRESH_WEBHOOK_SECRET", "gh-secret")],
    )
    .await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("+ provider fresh"));
    let doc = raw_document(&db).await;
    assert!(!doc.contains("gh-secret"), "{doc}");
}

both_backends!(export_then_apply_round_trips);

/// Every other refused change: the status, the code and the field it names; none stores
/// anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_refused_change_says_why_and_stores_nothing() {
    let db = TestDb::new(Backend::Sqlite).await;
    let s = TestServer::start(&db, "", &[("HOOKD_SECRET_KEY", K1)]).await;
    create_acme(&s.url).await;
    let refused = [
        // A secret among the settings.
        (
            "PUT",
            "/config/providers/other",
            json!({"scheme": "github", "settings": {"secret": "s"}}),
            400,
            "settings.secret",
        ),
        // A secret when replacing: secrets are added, with an overlap.
        (
            "PUT",
            "/config/providers/acme",
            json!({"scheme": "stripe", "secret": "s"}),
            400,
            "secret",
        ),
        (
            "PUT",
            "/config/providers/other",
            json!({"scheme": "stripe", "secret": " "}),
            400,
            "secret",
        ),
        // PayPal's webhook id cannot be made up.
        (
            "PUT",
            "/config/providers/pp",
            json!({"scheme": "paypal"}),
            400,
            "secret",
        ),
        (
            "PUT",
            "/config/providers/Bad%20Name",
            json!({"scheme": "stripe", "secret": "s"}),
            400,
            "providers.Bad Name",
        ),
        (
            "POST",
            "/config/providers/acme/secrets",
            json!({"secret": ""}),
            400,
            "secret",
        ),
        (
            "POST",
            "/config/providers/nobody/secrets",
            json!({}),
            404,
            "",
        ),
        ("DELETE", "/config/providers/nobody", Value::Null, 404, ""),
        (
            "PUT",
            "/config/routes/r1",
            json!({"name": "r2", "steps": [{"action": "log"}]}),
            400,
            "name",
        ),
        ("PUT", "/config/routes/r1", json!([1, 2]), 400, "route"),
        (
            "PUT",
            "/config/routes/a%20b",
            json!({"steps": [{"action": "log"}]}),
            400,
            "name",
        ),
        (
            "PUT",
            "/config/routes/r1",
            json!({"steps": []}),
            400,
            "routes.r1",
        ),
        // Scripts are compiled at start: a stored route cannot bring a new one.
        (
            "PUT",
            "/config/routes/r1",
            json!({"transform": "transforms/new.js", "steps": [{"action": "log"}]}),
            400,
            "routes.r1.transform",
        ),
        ("DELETE", "/config/routes/nobody", Value::Null, 404, ""),
        (
            "PUT",
            "/config/destinations/d",
            json!({"url": "https://x.example", "bogus": 1}),
            400,
            "",
        ),
        (
            "DELETE",
            "/config/destinations/nobody",
            Value::Null,
            404,
            "",
        ),
    ];
    for (method, path, body, status, field) in refused {
        let body = (!body.is_null()).then_some(body);
        let (got, answer) = admin(method, &s.url, path, body).await;
        assert_eq!(got.as_u16(), status, "{method} {path}: {answer}");
        if !field.is_empty() {
            assert_eq!(answer["field"], field, "{method} {path}: {answer}");
        }
        assert!(answer["message"].is_string(), "{method} {path}: {answer}");
    }
    assert_eq!(s.admin_get("/config").await["version"], 1);
    // A malformed body is 400 too.
    let resp = reqwest::Client::new()
        .put(format!("{}/admin/config/routes/r1", s.url))
        .bearer_auth(ADMIN_TOKEN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

/// An event accepted under one configuration is processed under the one current when its
/// attempt starts: its retry follows the route's new destination.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_runs_under_the_configuration_current_when_it_starts() {
    let db = TestDb::new(Backend::Sqlite).await;
    let down = Target::start(Behaviour {
        always_fail: true,
        ..Default::default()
    })
    .await;
    let up = Target::start(Behaviour::default()).await;
    let s = TestServer::start(
        &db,
        "",
        &[("HOOKD_RETRY_BASE_MS", "1000"), ("HOOKD_MAX_ATTEMPTS", "5")],
    )
    .await;
    let route = |url: &str| {
        Some(json!({"provider": "stripe", "steps": [{"action": "forward", "url": url}]}))
    };
    let (status, _) = admin("PUT", &s.url, "/config/routes/r", route(&down.url)).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = stripe_event("invoice.paid");
    assert_eq!(s.post_stripe(&body).await.status(), StatusCode::ACCEPTED);
    down.wait_hits(1, Duration::from_secs(10)).await;
    // Its retry is due 2 s after the failure: change the route meanwhile.
    let (status, _) = admin("PUT", &s.url, "/config/routes/r", route(&up.url)).await;
    assert_eq!(status, StatusCode::OK);
    let got = up.wait_received(1, Duration::from_secs(20)).await;
    assert_eq!(got[0].body, body.as_bytes());
    s.wait_all(
        1,
        hookd::event::EventStatus::Completed,
        Duration::from_secs(10),
    )
    .await;
}

/// A provider created through the API is held to the rate limit like the file's providers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_provider_gets_the_rate_limit() {
    let db = TestDb::new(Backend::Sqlite).await;
    let s = TestServer::start(
        &db,
        "",
        &[
            ("HOOKD_SECRET_KEY", K1),
            ("HOOKD_RATE_LIMIT_PER_SEC", "1"),
            ("HOOKD_RATE_LIMIT_BURST", "1"),
        ],
    )
    .await;
    create_acme(&s.url).await;
    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(post_signed(&s.url, "acme", ACME_SECRET).await);
    }
    assert_eq!(answers[0], StatusCode::ACCEPTED, "{answers:?}");
    assert!(
        answers.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{answers:?}"
    );
}

/// A Twilio form webhook to provider `tw` on `url`, signed as a Webhook Setting signs it: HMAC
/// SHA-256 keyed with `shared_key` over the URL and the sorted parameters, announced by
/// `X-Twilio-Webhooks-Signature-Settings`.
async fn post_twilio_shared_key(url: &str, shared_key: &str, sid: &str) -> StatusCode {
    use base64::Engine;
    use hmac::{KeyInit, Mac};
    let called = format!("{url}/webhooks/tw");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(shared_key.as_bytes()).unwrap();
    mac.update(format!("{called}MessageSid{sid}MessageStatusdelivered").as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    reqwest::Client::new()
        .post(called)
        .header("x-twilio-signature", signature)
        .header(
            "x-twilio-webhooks-signature-settings",
            "key=KS1,algorithm=HMAC_SHA256",
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("MessageSid={sid}&MessageStatus=delivered"))
        .send()
        .await
        .unwrap()
        .status()
}

/// Twilio's `shared_key_secret` through the API: a secret of that field, encrypted and shown
/// once when hookd makes it, verifies what a Webhook Setting signs; given as a setting it is
/// refused (it would be stored in plaintext), as is a field the scheme does not have; rotating
/// it leaves the auth token alone, and applying an export keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_shared_key_secret_through_the_api() {
    let db = TestDb::new(Backend::Sqlite).await;
    let s = TestServer::start(&db, "", &[("HOOKD_SECRET_KEY", K1)]).await;
    let provider = "/config/providers/tw";
    let with_setting = json!({"scheme": "twilio", "secret": "auth-token-1",
        "settings": {"shared_key_secret": "plain"}});
    let (status, answer) = admin("PUT", &s.url, provider, Some(with_setting)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["field"], "settings.shared_key_secret", "{answer}");
    let (status, answer) = admin(
        "PUT",
        &s.url,
        provider,
        Some(json!({"scheme": "twilio", "secret": "auth-token-1"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        post_twilio_shared_key(&s.url, "shared-1", "SM1").await,
        StatusCode::BAD_REQUEST
    );

    let secrets = "/config/providers/tw/secrets";
    let (status, added) = admin(
        "POST",
        &s.url,
        secrets,
        Some(json!({"field": "shared_key_secret"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{added}");
    let shared = added["secret"].as_str().expect("generated, shown once");
    let listed = added["provider"]["secrets"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1]["field"], "shared_key_secret", "{added}");
    assert!(listed[0].get("field").is_none(), "{added}");
    assert_eq!(
        post_twilio_shared_key(&s.url, shared, "SM2").await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        post_twilio_shared_key(&s.url, "shared-wrong", "SM3").await,
        StatusCode::BAD_REQUEST
    );
    assert!(!raw_document(&db).await.contains(shared));
    let shown = s.admin_get(provider).await;
    assert!(!shown.to_string().contains(shared), "{shown}");

    // A field the scheme does not have.
    for (path, field) in [
        (secrets, "nope"),
        ("/config/providers/acme/secrets", "shared_key_secret"),
    ] {
        if path.contains("acme") {
            create_acme(&s.url).await;
        }
        let (status, answer) = admin("POST", &s.url, path, Some(json!({"field": field}))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["field"], "field", "{answer}");
    }

    // Rotating the shared key expires the old one only.
    let (status, rotated) = admin(
        "POST",
        &s.url,
        secrets,
        Some(json!({"field": "shared_key_secret", "secret": "shared-2",
            "previous_expire_at": "2000-01-01T00:00:00Z"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let listed = rotated["provider"]["secrets"].as_array().unwrap();
    assert!(
        listed[0]["expires_at"].is_null(),
        "the auth token expired: {rotated}"
    );
    assert!(!listed[1]["expires_at"].is_null(), "{rotated}");
    assert_eq!(
        post_twilio_shared_key(&s.url, shared, "SM4").await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post_twilio_shared_key(&s.url, "shared-2", "SM5").await,
        StatusCode::ACCEPTED
    );

    // An export applied with a new auth token keeps the shared key.
    let exported = s.admin_get("/config/export").await;
    let mut file = exported.clone();
    file["providers"]["tw"]["secret"] = json!("auth-token-2");
    let (status, applied) = admin("POST", &s.url, "/config/apply", Some(file)).await;
    assert_eq!(status, StatusCode::OK, "{applied}");
    assert_eq!(
        post_twilio_shared_key(&s.url, "shared-2", "SM6").await,
        StatusCode::ACCEPTED
    );
    let mut file = exported;
    file["providers"]["tw"]["settings"] = json!({"shared_key_secret": "plain"});
    let (status, answer) = admin("POST", &s.url, "/config/apply", Some(file)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["field"], "settings.shared_key_secret", "{answer}");
}

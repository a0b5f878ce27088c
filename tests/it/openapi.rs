//! The admin API's OpenAPI document: the one served is the one committed in `docs/openapi.json`,
//! and a contract test (schemathesis, from PyPI) drives every operation from it against a real
//! server with data in it and finds no server error and no answer that contradicts the document.

use std::time::Duration;

use crate::support::*;
use hookd::event::EventStatus;
use reqwest::StatusCode;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_document_is_the_committed_one() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db, "", &[]).await;
    let r = server
        .http
        .get(format!("{}/admin/openapi.json", server.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/json");
    let served = r.text().await.unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        served == committed,
        "docs/openapi.json differs from the document hookd serves: the admin API changed. \
         Regenerate it with `cargo run -- openapi > docs/openapi.json` and commit it."
    );
    let doc: serde_json::Value = serde_json::from_str(&served).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // Every operation documents the answers every admin endpoint can give.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(
                op["responses"]["401"].is_object(),
                "{method} {path}: no 401"
            );
            if matches!(method.as_str(), "post" | "put" | "delete") {
                assert!(
                    op["responses"]["403"].is_object(),
                    "{method} {path}: no 403"
                );
            }
        }
    }
    // The document needs a token like the rest of the tree.
    let r = server
        .http
        .get(format!("{}/admin/openapi.json", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_test_finds_no_server_error() {
    let python = python();
    let schemathesis = python.with_file_name("schemathesis");
    assert!(
        schemathesis.exists(),
        "schemathesis is missing from the test virtualenv ({}): run scripts/test.sh, which \
         installs tests/py/requirements.txt",
        schemathesis.display()
    );
    // PostgreSQL: the stricter store (text cannot hold NUL, types are checked).
    let db = TestDb::new(Backend::Postgres).await;
    let failing = Target::start(Behaviour {
        always_fail: true,
        ..Default::default()
    })
    .await;
    let routes = format!(
        "[[routes]]\nprovider = \"stripe\"\nevents = [\"invoice.*\"]\nsteps = [{{ action = \"forward\", url = \"{}\" }}]\n",
        failing.url
    );
    // The fuzzer sends many requests without a valid token on purpose: the failed-login limit
    // (a 429 by design) would end the run before it covers the API.
    let server = TestServer::start(
        &db,
        &routes,
        &[
            ("HOOKD_MAX_ATTEMPTS", "1"),
            ("HOOKD_ADMIN_MAX_FAILURES", "1000000"),
        ],
    )
    .await;
    // Data to find: completed events and a dead letter.
    for t in [
        "charge.succeeded",
        "customer.created",
        "invoice.payment_failed",
    ] {
        let (_, body) = stripe_event(t);
        server.post_stripe(&body).await;
    }
    server.wait_all(1, EventStatus::DeadLetter, WAIT).await;

    let work = tempfile::tempdir().unwrap();
    let url = format!("{}/admin/openapi.json", server.url);
    let cwd = work.path().to_owned();
    let settings =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/schemathesis.toml");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&schemathesis)
            .current_dir(cwd)
            .arg("--config-file")
            .arg(settings)
            .args(["run", &url])
            .args(["--header", &format!("Authorization: Bearer {ADMIN_TOKEN}")])
            // Every check but one: empty values are taken as "not given" rather than refused.
            .args([
                "--checks",
                "all",
                "--exclude-checks",
                "negative_data_rejection",
            ])
            // A stream never ends: it would only time out here (its tests are in listen.rs).
            .args(["--exclude-path", "/admin/events/stream"])
            .args([
                "--max-examples",
                "10",
                "--no-shrink",
                "--request-timeout",
                "10",
            ])
            .env("NO_COLOR", "1")
            .output()
            .expect("run schemathesis")
    })
    .await
    .unwrap();
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}"
    );
    assert!(report.contains("passed"), "{report}");
    server.stop().await;
}

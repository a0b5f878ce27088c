//! Tests of the `hookd` binary as a separate OS process: crash recovery after `kill -9`,
//! SIGTERM, and the command line.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;
use hookd::event::EventStatus;
use reqwest::StatusCode;

both_backends!(
    kill_9_during_a_forward_loses_nothing,
    kill_9_during_compensation_resumes_it,
    sigterm_drains_and_exits_cleanly
);

async fn kill_9_during_a_forward_loses_nothing(b: Backend) {
    let db = TestDb::new(b).await;
    let target = Target::start(Behaviour {
        hang_first: true,
        ..Default::default()
    })
    .await;
    let routes = forward_route(&target.url);
    let mut first = Hookd::spawn(&db, &routes, "first.log").await;
    let (_, body) = stripe_event("payment_intent.succeeded");
    let r = post_stripe(&first.url, &body).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = id_of(r).await;
    // The forward is in flight: kill the process without any chance to clean up.
    target.wait_hits(1, Duration::from_secs(10)).await;
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    let second = Hookd::spawn(&db, &routes, "second.log").await;
    // Lease is 2 s in tests: the restarted process takes the event over once it expires.
    let e = second
        .wait_status(id, EventStatus::Completed, Duration::from_secs(15))
        .await;
    assert_eq!(e["attempts"], 2, "{e:#}");
    assert_eq!(target.received().len(), 1, "one forward answered");
    assert_eq!(
        target.hits(),
        2,
        "the interrupted forward and the one that completed"
    );
    let expired = e["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["detail"].as_str().unwrap_or("").contains("lease expired"));
    assert!(expired, "{e:#}");
}

async fn kill_9_during_compensation_resumes_it(b: Backend) {
    let db = TestDb::new(b).await;
    let step = Target::start(Behaviour::default()).await;
    // The compensation hangs the first time: the process is killed in the middle of it.
    let undo = Target::start(Behaviour {
        hang_first: true,
        ..Default::default()
    })
    .await;
    let failing = Target::start(Behaviour {
        always_fail: true,
        ..Default::default()
    })
    .await;
    let routes = format!(
        "[worker]\nmax_attempts = 1\n\n[[routes]]\nname = \"saga\"\nprovider = \"stripe\"\n\
         steps = [{{ action = \"forward\", url = \"{}\", compensate = {{ action = \"forward\", url = \"{}\" }} }}, \
         {{ action = \"forward\", url = \"{}\" }}]\n",
        step.url, undo.url, failing.url
    );
    let mut first = Hookd::spawn(&db, &routes, "first.log").await;
    let (_, body) = stripe_event("payment_intent.succeeded");
    let r = post_stripe(&first.url, &body).await;
    let id = id_of(r).await;
    undo.wait_hits(1, Duration::from_secs(10)).await;
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    let second = Hookd::spawn(&db, &routes, "second.log").await;
    let e = second
        .wait_status(id, EventStatus::DeadLetter, Duration::from_secs(15))
        .await;
    assert_eq!(
        (step.hits(), failing.hits()),
        (1, 1),
        "the steps do not run again: {e:#}"
    );
    assert_eq!(undo.hits(), 2, "the interrupted compensation and its retry");
    assert_eq!(undo.succeeded().len(), 1);
    let comp: Vec<&str> = e["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["step"] == "saga/0:compensate:forward")
        .map(|s| s["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(comp, ["succeeded"], "{e:#}");
    let details: Vec<&str> = e["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["detail"].as_str().unwrap_or(""))
        .collect();
    assert!(
        details.iter().any(|d| d.contains("lease expired")),
        "{details:#?}"
    );
    assert!(
        details
            .last()
            .unwrap()
            .contains("saga/0:compensate:forward succeeded"),
        "{details:#?}"
    );
}

async fn sigterm_drains_and_exits_cleanly(b: Backend) {
    let db = TestDb::new(b).await;
    let target = Target::start(Behaviour {
        delay: Duration::from_millis(700),
        ..Default::default()
    })
    .await;
    let routes = forward_route(&target.url);
    let mut hookd = Hookd::spawn(&db, &routes, "term.log").await;
    let (_, body) = stripe_event("payment_intent.succeeded");
    let r = post_stripe(&hookd.url, &body).await;
    let id = id_of(r).await;
    target.wait_hits(1, Duration::from_secs(10)).await;
    let pid = hookd.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = hookd.child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(target.received().len(), 1, "the in-flight forward finished");

    let again = Hookd::spawn(&db, &routes, "after.log").await;
    let e = again.event(id).await;
    assert_eq!(e["status"], "completed", "{e:#}");
    assert_eq!(e["attempts"], 1);
    drop(again);
    assert_eq!(target.hits(), 1);
}

#[test]
fn migrate_creates_the_embedded_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hookd"))
        .arg("migrate")
        .current_dir(dir.path())
        .env_clear()
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("data/hookd.db").exists());
}

#[test]
fn invalid_configuration_names_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hookd"))
        .current_dir(dir.path())
        .env_clear()
        .env("HOOKD_MAX_ATTEMPTS", "many")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HOOKD_MAX_ATTEMPTS"), "{err}");
}

#[test]
fn unreachable_database_fails_start_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hookd"))
        .current_dir(dir.path())
        .env_clear()
        .env("DATABASE_URL", "postgres://postgres:pw@127.0.0.1:1/nodb")
        .env("HOOKD_STORE_TIMEOUT_MS", "500")
        .env("HOOKD_STORE_WAIT_SECS", "2")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        err.contains("cannot open the store") && err.contains("HOOKD_STORE_WAIT_SECS"),
        "{err}"
    );
    // It waited, and said so, before giving up.
    assert!(log.contains("store not reachable; waiting for it"), "{log}");
    assert!(
        !err.contains(":pw@") && !log.contains(":pw@"),
        "password leaked"
    );
}

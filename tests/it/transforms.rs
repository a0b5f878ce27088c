//! JavaScript transforms on real events: the three committed examples through the real `hookd`
//! binary to real targets; scripts that loop, allocate without bound, throw or answer in the
//! wrong shape; a syntax error at start; and `hookd transform test`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::support::*;
use hookd::event::{EventDetail, EventStatus};
use reqwest::StatusCode;

both_backends!(
    the_examples_reshape_real_events_and_skips_are_recorded,
    failing_transforms_fail_their_step_with_a_clear_error,
    a_skipped_step_is_done_on_a_retry_and_never_compensated,
    a_skipped_step_tells_its_destinations_breaker_nothing
);

const WAIT: Duration = Duration::from_secs(30);

/// Write a script into the test's folder; its path as a route names it.
fn script(db: &TestDb, name: &str, source: &str) -> String {
    let path = db.dir.path().join(name);
    std::fs::write(&path, source).unwrap();
    path.display().to_string()
}

async fn post_github_push(url: &str, body: &str, delivery: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{url}/webhooks/github"))
        .header("x-hub-signature-256", github_signature(GITHUB_SECRET, body))
        .header("x-github-event", "push")
        .header("x-github-delivery", delivery)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap()
}

async fn the_examples_reshape_real_events_and_skips_are_recorded(b: Backend) {
    let db = TestDb::new(b).await;
    let ledger = Target::start(Behaviour::default()).await;
    let live = Target::start(Behaviour::default()).await;
    let chat = Target::start(Behaviour::default()).await;
    // The route's transform for the ledger; the step's own for the pass-through of live events.
    let routes = format!(
        r#"[[routes]]
name = "ledger"
provider = "stripe"
transform = "{}"
steps = [{{ action = "forward", url = "{}" }}]
[[routes]]
name = "live"
provider = "stripe"
steps = [{{ action = "forward", url = "{}", transform = "{}" }}]
[[routes]]
name = "chat"
provider = "github"
transform = "{}"
steps = [{{ action = "forward", url = "{}" }}]
"#,
        example_transform("stripe-ledger.js"),
        ledger.url,
        live.url,
        example_transform("stripe-drop-test-mode.js"),
        example_transform("github-push-chat.js"),
        chat.url,
    );
    let hookd = Hookd::spawn_with(
        &db,
        &routes,
        "serve",
        &[("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET.to_owned())],
        "hookd.log",
    )
    .await;

    // A live payment: a ledger entry, and the event unchanged to the live route.
    let payment = LIVE_PAYMENT;
    let r = post_stripe(&hookd.url, payment).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let paid = id_of(r).await;
    let e = hookd.wait_status(paid, EventStatus::Completed, WAIT).await;
    let entry = &ledger.wait_received(1, WAIT).await[0];
    assert_eq!(
        json(&entry.body),
        live_payment_ledger_entry(&paid.to_string())
    );
    assert_eq!(entry.headers["content-type"], "application/json");
    assert_eq!(entry.headers["idempotency-key"], "stripe:evt_live_1");
    assert_eq!(entry.headers["x-hookd-event-id"], paid.to_string().as_str());
    let passed = &live.wait_received(1, WAIT).await[0];
    assert_eq!(passed.body, payment.as_bytes(), "byte for byte");
    assert_eq!(passed.headers["content-type"], "application/json");
    assert_eq!(
        step_outcomes(&e),
        [
            ("ledger/0:forward".to_owned(), "succeeded".to_owned()),
            ("live/0:forward".to_owned(), "succeeded".to_owned())
        ]
    );

    // A test-mode charge: the ledger does not book charges, the live route drops test mode.
    // Both steps are skipped, recorded as such, and the event completes.
    let test_mode = r#"{"id":"evt_test_1","object":"event","type":"charge.succeeded","created":1765130531,"livemode":false,"data":{"object":{"id":"ch_1","amount":100,"currency":"usd"}}}"#;
    let skipped = id_of(post_stripe(&hookd.url, test_mode).await).await;
    let e = hookd
        .wait_status(skipped, EventStatus::Completed, WAIT)
        .await;
    assert_eq!(
        step_outcomes(&e),
        [
            ("ledger/0:forward".to_owned(), "skipped".to_owned()),
            ("live/0:forward".to_owned(), "skipped".to_owned())
        ]
    );
    let done = e["transitions"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(done["to"], "completed");
    assert!(
        done["detail"]
            .as_str()
            .unwrap()
            .contains("skipped by their transform: ledger/0:forward, live/0:forward"),
        "{done:#}"
    );

    // A GitHub push: one chat message.
    let push = r#"{"ref":"refs/heads/main","compare":"https://github.com/acme/api/compare/1a2b...9f8e","pusher":{"name":"octocat"},"repository":{"full_name":"acme/api"},"commits":[{"id":"7d1e0c2b9a8f7e6d","message":"Fix rounding of refunds\n\nCloses #42","author":{"name":"Mona Lisa"}},{"id":"9f8e7d6c5b4a3928","message":"Bump version","author":{"name":"Octocat"}}]}"#;
    let pushed = id_of(post_github_push(&hookd.url, push, "delivery-1").await).await;
    hookd
        .wait_status(pushed, EventStatus::Completed, WAIT)
        .await;
    let message = &chat.wait_received(1, WAIT).await[0];
    assert_eq!(
        json(&message.body),
        serde_json::json!({"text": "octocat pushed 2 commits to acme/api main: https://github.com/acme/api/compare/1a2b...9f8e\n• 7d1e0c2 Fix rounding of refunds (Mona Lisa)\n• 9f8e7d6 Bump version (Octocat)"})
    );
    // A stored event, as the CLI shows it, is an event file for `hookd transform test`, which
    // makes of it what the running hookd sent.
    let shown = Command::new(env!("CARGO_BIN_EXE_hookd"))
        .args(["events", "show", &pushed.to_string(), "--json"])
        .args(["--url", &hookd.url, "--token", ADMIN_TOKEN])
        .env_clear()
        .output()
        .unwrap();
    assert!(shown.status.success(), "{shown:?}");
    let file = db.dir.path().join("pushed.json");
    std::fs::write(&file, &shown.stdout).unwrap();
    let (code, out, err) = transform_test(&[
        &example_transform("github-push-chat.js"),
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (_, body) = out.split_once("\n\n").unwrap();
    assert_eq!(body.trim_end().as_bytes(), &message.body[..]);
    // Nothing else reached any target: the skips sent nothing.
    assert_eq!((ledger.hits(), live.hits(), chat.hits()), (1, 1, 1));
}

async fn failing_transforms_fail_their_step_with_a_clear_error(b: Backend) {
    let db = TestDb::new(b).await;
    let target = Target::start(Behaviour::default()).await;
    let scripts = [
        (
            "loop",
            script(
                &db,
                "loop.js",
                "function transform(event) {\n  for (;;) {}\n}\n",
            ),
        ),
        (
            "grow",
            script(
                &db,
                "grow.js",
                "function transform(event) {\n  const kept = [];\n  for (;;) kept.push('x'.repeat(4096) + kept.length);\n}\n",
            ),
        ),
        (
            "throw",
            script(
                &db,
                "throw.js",
                "function transform(event) {\n  const amount = event.body.data.object.amount;\n  throw new RangeError('amount ' + amount + ' is not booked');\n}\n",
            ),
        ),
        (
            "shape",
            script(
                &db,
                "shape.js",
                "function transform(event) {\n  return { payload: event.body };\n}\n",
            ),
        ),
        (
            "ok",
            script(
                &db,
                "ok.js",
                "function transform(event) {\n  return { body: { ok: event.type } };\n}\n",
            ),
        ),
    ];
    let routes: String = scripts
        .iter()
        .map(|(name, path)| {
            format!(
                "[[routes]]\nname = \"{name}\"\nprovider = \"stripe\"\nevents = [\"{name}.*\"]\n\
                 transform = \"{path}\"\nsteps = [{{ action = \"forward\", url = \"{}\" }}]\n",
                target.url
            )
        })
        .collect();
    // One transform thread and one attempt: a looping script holds the only thread for its
    // whole time cap, and events behind it still finish.
    let server = TestServer::start(
        &db,
        &routes,
        &[
            ("HOOKD_TRANSFORM_TIMEOUT_MS", "500"),
            ("HOOKD_TRANSFORM_MEMORY_MB", "8"),
            ("HOOKD_TRANSFORM_THREADS", "1"),
            ("HOOKD_MAX_ATTEMPTS", "1"),
        ],
    )
    .await;
    let mut ids = Vec::new();
    for (name, _) in &scripts {
        let (_, body) = stripe_event(&format!("{name}.created"));
        let r = server.post_stripe(&body).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        ids.push((*name, id_of(r).await));
    }
    // More well-behaved events after the loop: the worker keeps processing.
    let mut fine = Vec::new();
    for _ in 0..5 {
        let (_, body) = stripe_event("ok.later");
        fine.push(id_of(server.post_stripe(&body).await).await);
    }
    for id in fine {
        server.wait_status(id, EventStatus::Completed, WAIT).await;
    }
    let path = |name: &str| scripts.iter().find(|(n, _)| *n == name).unwrap().1.clone();
    let expected = [
        (
            "loop",
            format!(
                "transform {}: stopped after 500 ms (HOOKD_TRANSFORM_TIMEOUT_MS)",
                path("loop")
            ),
        ),
        (
            "grow",
            format!(
                "transform {}: out of memory (the cap is 8 MB, HOOKD_TRANSFORM_MEMORY_MB)",
                path("grow")
            ),
        ),
        (
            "throw",
            format!(
                "transform {}:3: RangeError: amount 2000 is not booked",
                path("throw")
            ),
        ),
        (
            "shape",
            format!(
                "transform {}: the returned object has an unknown key \"payload\"; expected null \
                 (skip) or {{ body, headers }} (body: a string, sent as is, or a JSON value; \
                 headers: an object of strings)",
                path("shape")
            ),
        ),
    ];
    for (name, id) in &ids {
        let e: EventDetail = if *name == "ok" {
            server.wait_status(*id, EventStatus::Completed, WAIT).await
        } else {
            server.wait_status(*id, EventStatus::DeadLetter, WAIT).await
        };
        let Some((_, error)) = expected.iter().find(|(n, _)| n == name) else {
            continue;
        };
        assert_eq!(e.steps.len(), 1, "{e:#?}");
        assert_eq!(e.steps[0].outcome, "failed");
        assert_eq!(e.steps[0].error.as_deref(), Some(error.as_str()), "{name}");
        assert_eq!(e.last_error.as_deref(), Some(error.as_str()), "{name}");
    }
    // Only the well-behaved events reached the target.
    let bodies: Vec<serde_json::Value> = target.received().iter().map(|r| json(&r.body)).collect();
    assert_eq!(bodies.len(), 6, "{bodies:?}");
    assert!(
        bodies
            .iter()
            .all(|b| b["ok"].as_str().unwrap().starts_with("ok."))
    );
}

async fn a_skipped_step_is_done_on_a_retry_and_never_compensated(b: Backend) {
    let db = TestDb::new(b).await;
    let skipped = Target::start(Behaviour::default()).await;
    let undo = Target::start(Behaviour::default()).await;
    let failing = Target::start(Behaviour {
        always_fail: true,
        ..Default::default()
    })
    .await;
    let skip = script(&db, "skip.js", "function transform(event) { return null; }");
    let routes = format!(
        "[[routes]]\nname = \"r\"\nprovider = \"stripe\"\nsteps = [\n\
         {{ action = \"forward\", url = \"{}\", transform = \"{skip}\", \
            compensate = {{ action = \"forward\", url = \"{}\" }} }},\n\
         {{ action = \"forward\", url = \"{}\" }},\n]\n",
        skipped.url, undo.url, failing.url
    );
    let server = TestServer::start(&db, &routes, &[("HOOKD_MAX_ATTEMPTS", "2")]).await;
    let (_, body) = stripe_event("charge.succeeded");
    let id = id_of(server.post_stripe(&body).await).await;
    let e = server.wait_status(id, EventStatus::DeadLetter, WAIT).await;
    let results: Vec<(&str, u32, &str)> = e
        .steps
        .iter()
        .map(|s| (s.step.as_str(), s.attempt, s.outcome.as_str()))
        .collect();
    // The skip is recorded once: the second attempt resumes at the failed step.
    assert_eq!(
        results,
        [
            ("r/0:forward", 1, "skipped"),
            ("r/1:forward", 1, "failed"),
            ("r/1:forward", 2, "failed")
        ],
        "{e:#?}"
    );
    // Nothing was sent for the skipped step, so there was nothing to undo.
    assert_eq!((skipped.hits(), undo.hits()), (0, 0));
    assert!(
        !e.transitions
            .iter()
            .any(|t| t.to == EventStatus::Compensating),
        "{e:#?}"
    );
}

async fn a_skipped_step_tells_its_destinations_breaker_nothing(b: Backend) {
    let db = TestDb::new(b).await;
    let target = Target::start(Behaviour::default()).await;
    target.set_down(true);
    let skip = script(&db, "skip.js", "function transform(event) { return null; }");
    // Two routes to the same destination: `fail.*` events reach it, `skip.*` events are
    // skipped by their transform before anything is sent.
    let routes = format!(
        "[[routes]]\nprovider = \"stripe\"\nevents = [\"fail.*\"]\n\
         steps = [{{ action = \"forward\", url = \"{url}\" }}]\n\
         [[routes]]\nprovider = \"stripe\"\nevents = [\"skip.*\"]\n\
         steps = [{{ action = \"forward\", url = \"{url}\", transform = \"{skip}\" }}]\n",
        url = target.url
    );
    let server = TestServer::start(
        &db,
        &routes,
        &[
            ("HOOKD_BREAKER_FAILURES", "2"),
            // No retry within the test: only the events below reach the destination.
            ("HOOKD_RETRY_BASE_MS", "600000"),
        ],
    )
    .await;
    let send = |event_type: &'static str| {
        let server = &server;
        async move {
            let (_, body) = stripe_event(event_type);
            id_of(server.post_stripe(&body).await).await
        }
    };
    let first = send("fail.one").await;
    server
        .wait_status(first, EventStatus::RetryScheduled, WAIT)
        .await;
    let skipped = send("skip.one").await;
    let e = server
        .wait_status(skipped, EventStatus::Completed, WAIT)
        .await;
    assert_eq!(e.steps[0].outcome, "skipped");
    // The skip did not count as the destination answering: the next failure is the second in
    // a row, and opens the breaker (the event waits, its attempt not counted).
    let second = send("fail.two").await;
    let e = eventually(
        "the second failure to open the breaker",
        WAIT,
        || server.event(second),
        |e: &EventDetail| {
            e.transitions.iter().any(|t| {
                t.detail
                    .as_deref()
                    .is_some_and(|d| d.contains("circuit breaker open"))
            })
        },
    )
    .await;
    // Blamed on the outage: kept in the transition, not as a failed step of the event.
    assert!(e.steps.is_empty(), "{e:#?}");
    assert_eq!(target.hits(), 2);
}

#[tokio::test]
async fn a_syntax_error_stops_start_up_naming_the_file_and_line() {
    let db = TestDb::new(Backend::Sqlite).await;
    let bad = script(
        &db,
        "bad.js",
        "function transform(event) {\n  return {\n    body: event.body,,\n  };\n}\n",
    );
    let routes = format!(
        "[[routes]]\nprovider = \"stripe\"\nsteps = [{{ action = \"forward\", url = \"http://127.0.0.1:9/in\", transform = \"{bad}\" }}]\n"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_hookd"))
        .arg("serve")
        .env_clear()
        .envs(base_vars(&db, &routes))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let log =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains(&format!("transform {bad}:3: SyntaxError")),
        "{log}"
    );
}

fn transform_test(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hookd"))
        .args(["transform", "test"])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_clear()
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn transform_test_prints_what_a_step_sends_with_its_exit_status() {
    let dir = PathBuf::from("examples/transforms");
    let arg = |p: &str| dir.join(p).display().to_string();
    // Sent: exit 0, the content type, headers and body.
    let (code, out, err) = transform_test(&[
        &arg("stripe-ledger.js"),
        &arg("events/stripe-payment-intent.json"),
    ]);
    assert_eq!(code, 0, "{err}");
    let (head, body) = out.split_once("\n\n").unwrap();
    assert_eq!(
        head,
        "content-type: application/json\nidempotency-key: stripe:evt_3QbLx2EfGh7aB1cD0e9FgH2i"
    );
    let entry: serde_json::Value = serde_json::from_str(body.trim_end()).unwrap();
    assert_eq!(entry["amount_minor"], 4999);
    assert_eq!(entry["currency"], "EUR");
    let (code, out, _) =
        transform_test(&[&arg("github-push-chat.js"), &arg("events/github-push.json")]);
    assert_eq!(code, 0);
    assert!(
        out.contains(r#""text":"octocat pushed 2 commits to acme/api main"#),
        "{out}"
    );
    let (code, out, _) = transform_test(&[
        &arg("stripe-drop-test-mode.js"),
        &arg("events/stripe-payment-intent.json"),
    ]);
    assert_eq!(code, 0);
    assert!(
        // The event file gives `body` only: `text` is made from it (compact JSON).
        out.starts_with("content-type: application/json\n\n{\"created\":1765130531,")
            && out.contains("\"livemode\":true"),
        "{out}"
    );
    // Skipped: exit 3.
    let (code, out, _) = transform_test(&[
        &arg("stripe-drop-test-mode.js"),
        &arg("events/stripe-test-mode.json"),
    ]);
    assert_eq!(
        (code, out.as_str()),
        (3, "skipped: the transform returned null\n")
    );
    // The script fails: exit 1, the error with file and line on stderr.
    let tmp = tempfile::tempdir().unwrap();
    let throws = tmp.path().join("throws.js");
    std::fs::write(
        &throws,
        "function transform(e) {\n  throw new Error('no ' + e.type);\n}\n",
    )
    .unwrap();
    let (code, out, err) =
        transform_test(&[throws.to_str().unwrap(), &arg("events/github-push.json")]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(
        err,
        format!("transform {}:2: Error: no push\n", throws.display())
    );
    let looping = tmp.path().join("loop.js");
    std::fs::write(&looping, "function transform(e) { while (true) {} }").unwrap();
    let (code, _, err) = transform_test(&[
        looping.to_str().unwrap(),
        &arg("events/github-push.json"),
        "--timeout-ms",
        "100",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("stopped after 100 ms"), "{err}");
    // The command cannot run: exit 2.
    let (code, _, err) = transform_test(&[&arg("stripe-ledger.js"), "no-such-event.json"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot read the event file no-such-event.json"),
        "{err}"
    );
    let (code, _, err) = transform_test(&[&arg("stripe-ledger.js"), &arg("stripe-ledger.js")]);
    assert_eq!(code, 2);
    assert!(err.contains("is not an event"), "{err}");
}

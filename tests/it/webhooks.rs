//! End-to-end tests over real HTTP, each against SQLite and against PostgreSQL.

use std::time::Duration;

use crate::support::*;
use hookd::event::EventStatus;
use reqwest::StatusCode;

const WAIT: Duration = Duration::from_secs(15);

both_backends!(
    new_event_is_forwarded_once_with_exact_bytes,
    duplicate_is_acknowledged_and_not_forwarded_again,
    concurrent_copies_make_one_event_and_one_forward,
    rejected_requests_store_nothing,
    failing_target_is_retried_with_growing_delays,
    always_failing_target_dead_letters,
    succeeded_steps_are_not_repeated_on_retry,
    unrouted_event_completes,
    github_event_is_accepted,
    admin_api_shows_history_and_checks_token,
    store_down_means_503_and_recovery,
    shutdown_finishes_in_flight_steps,
    shutdown_past_the_grace_period_hands_leases_back,
    outcomes_are_written_together_and_steps_kept_without_the_lease,
);

async fn new_event_is_forwarded_once_with_exact_bytes(b: Backend) {
    let db = TestDb::new(b).await;
    let target = Target::start(Behaviour::default()).await;
    let server = TestServer::start(&db, &forward_route(&target.url), &[]).await;
    // Bytes a re-serialiser would change: CRLF, odd spacing, escaped and raw non-ASCII.
    let body = "{\r\n  \"id\" : \"evt_exact\",\t\"type\":\"payment_intent.succeeded\",\r\n  \"note\":\"\\u00e9 é ☕\"  }";
    let resp = server.post_stripe(body).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["status"], "queued");
    let id = v["id"].as_str().unwrap().parse().unwrap();
    let e = server.wait_status(id, EventStatus::Completed, WAIT).await;
    assert_eq!(e.attempts, 1);
    assert_eq!(e.idempotency_key, "evt_exact");
    let got = target.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body.as_ref(), body.as_bytes());
    let h = &got[0].headers;
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["x-hookd-event-id"], id.to_string().as_str());
    assert_eq!(h["x-hookd-provider"], "stripe");
    assert_eq!(h["x-hookd-event-type"], "payment_intent.succeeded");
    let transitions: Vec<_> = e.transitions.iter().map(|t| t.to).collect();
    assert_eq!(
        transitions,
        [
            EventStatus::Pending,
            EventStatus::Processing,
            EventStatus::Completed
        ]
    );
    server.stop().await;
}

async fn duplicate_is_acknowledged_and_not_forwarded_again(b: Backend) {
    let db = TestDb::new(b).await;
    let target = Target::start(Behaviour::default()).await;
    let server = TestServer::start(&db, &forward_route(&target.url), &[]).await;
    let (_, body) = stripe_event("charge.succeeded");
    let first = server.post_stripe(&body).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let id = id_of(first).await;
    server.wait_status(id, EventStatus::Completed, WAIT).await;
    // A redelivery carries a new timestamp and signature but the same event id.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = server.post_stripe(&body).await;
    assert_eq!(again.status(), StatusCode::OK);
    let v: serde_json::Value = again.json().await.unwrap();
    assert_eq!(v["status"], "duplicate");
    assert_eq!(v["id"], id.to_string());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(target.hits(), 1);
    assert_eq!(server.total_events().await, 1);
    server.stop().await;
}

async fn concurrent_copies_make_one_event_and_one_forward(b: Backend) {
    let db = TestDb::new(b).await;
    let target = Target::start(Behaviour::default()).await;
    let server = TestServer::start(&db, &forward_route(&target.url), &[]).await;
    let (_, body) = stripe_event("charge.succeeded");
    let sends = (0..20).map(|_| {
        let (http, url, body) = (server.http.clone(), server.url.clone(), body.clone());
        async move { stripe_request(&http, &url, &body).send().await.unwrap() }
    });
    let responses = futures_join_all(sends).await;
    let mut statuses: Vec<u16> = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    for r in responses {
        statuses.push(r.status().as_u16());
        ids.insert(id_of(r).await);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        19,
        "{statuses:?}"
    );
    assert_eq!(ids.len(), 1);
    let id = *ids.first().unwrap();
    server.wait_status(id, EventStatus::Completed, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(target.hits(), 1);
    assert_eq!(server.total_events().await, 1);
    server.stop().await;
}

async fn futures_join_all<F>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

async fn rejected_requests_store_nothing(b: Backend) {
    let db = TestDb::new(b).await;
    let server = TestServer::start(&db, "", &[("HOOKD_MAX_BODY_BYTES", "2048")]).await;
    let (_, body) = stripe_event("charge.succeeded");
    let t = now();
    let sig = |secret: &str, body: &str, t: i64| stripe_header(secret, body, t);
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, String, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "bad signature",
            vec![("stripe-signature", sig("whsec_wrong", &body, t))],
            body.clone(),
            400,
            "invalid_signature",
        ),
        (
            "tampered body",
            vec![("stripe-signature", sig(STRIPE_SECRET, &body, t))],
            body.replace("2000", "9000"),
            400,
            "invalid_signature",
        ),
        (
            "missing signature",
            vec![],
            body.clone(),
            400,
            "missing_signature",
        ),
        (
            "garbage header",
            vec![("stripe-signature", "\u{1}garbage".replace('\u{1}', ""))],
            body.clone(),
            400,
            "malformed_signature",
        ),
        (
            "stale timestamp",
            vec![("stripe-signature", sig(STRIPE_SECRET, &body, t - 400))],
            body.clone(),
            400,
            "timestamp_out_of_tolerance",
        ),
        (
            "future timestamp",
            vec![("stripe-signature", sig(STRIPE_SECRET, &body, t + 400))],
            body.clone(),
            400,
            "timestamp_out_of_tolerance",
        ),
        (
            "malformed JSON",
            vec![("stripe-signature", sig(STRIPE_SECRET, "{\"id\":", t))],
            "{\"id\":".into(),
            400,
            "invalid_json",
        ),
        (
            "oversize body",
            vec![("stripe-signature", sig(STRIPE_SECRET, &"x".repeat(4096), t))],
            "x".repeat(4096),
            413,
            "body_too_large",
        ),
    ];
    for (name, headers, body, status, code) in cases {
        let r = server.post("stripe", &headers, body).await;
        assert_eq!(r.status().as_u16(), status, "{name}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"], code, "{name}: {v}");
        assert!(v["message"].is_string(), "{name}: {v}");
    }
    let r = server.post("nosuch", &[], body.clone()).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "unknown_provider"
    );
    // GitHub has no secret in this server: it must accept nothing and say what to set.
    let r = server
        .post(
            "github",
            &[("x-hub-signature-256", github_signature("x", &body))],
            body.clone(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"], "provider_not_configured");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("GITHUB_WEBHOOK_SECRET"),
        "{v}"
    );
    assert_eq!(server.total_events().await, 0);
    server.stop().await;
}

async fn failing_target_is_retried_with_growing_delays(b: Backend) {
    let db = TestDb::new(b).await;
    let target = Target::start(Behaviour {
        fail_first: 2,
        ..Default::default()
    })
    .await;
    let server = TestServer::start(&db, &forward_route(&target.url), &[]).await;
    let (_, body) = stripe_event("invoice.paid");
    let id = id_of(server.post_stripe(&body).await).await;
    let e = server.wait_status(id, EventStatus::Completed, WAIT).await;
    assert_eq!(e.attempts, 3);
    let got = target.received();
    assert_eq!(got.len(), 3);
    // Base 100 ms: 200 ms after the first failure, 400 ms after the second.
    let gap1 = got[1].at - got[0].at;
    let gap2 = got[2].at - got[1].at;
    assert!(gap1 >= Duration::from_millis(200), "{gap1:?}");
    assert!(gap2 >= Duration::from_millis(400), "{gap2:?}");
    assert!(gap2 > gap1, "{gap1:?} {gap2:?}");
    let outcomes: Vec<_> = e
        .steps
        .iter()
        .map(|s| (s.attempt, s.outcome.as_str()))
        .collect();
    assert_eq!(outcomes, [(1, "failed"), (2, "failed"), (3, "succeeded")]);
    assert!(
        e.steps[0].error.as_deref().unwrap().contains("500"),
        "{:?}",
        e.steps[0]
    );
    let retries = e
        .transitions
        .iter()
        .filter(|t| t.to == EventStatus::RetryScheduled)
        .count();
    assert_eq!(retries, 2);
    server.stop().await;
}

async fn always_failing_target_dead_letters(b: Backend) {
    let db = TestDb::new(b).await;
    let target = Target::start(Behaviour {
        always_fail: true,
        ..Default::default()
    })
    .await;
    let server = TestServer::start(&db, &forward_route(&target.url), &[]).await;
    let (_, body) = stripe_event("invoice.paid");
    let id = id_of(server.post_stripe(&body).await).await;
    let e = server.wait_status(id, EventStatus::DeadLetter, WAIT).await;
    assert_eq!(e.attempts, 3);
    assert!(
        e.last_error.as_deref().unwrap().contains("HTTP 500"),
        "{e:?}"
    );
    assert_eq!(e.transitions.last().unwrap().to, EventStatus::DeadLetter);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(target.hits(), 3, "no attempt after the dead letter");
    server.stop().await;
}

async fn succeeded_steps_are_not_repeated_on_retry(b: Backend) {
    let db = TestDb::new(b).await;
    let first = Target::start(Behaviour::default()).await;
    let second = Target::start(Behaviour {
        fail_first: 2,
        ..Default::default()
    })
    .await;
    let routes = format!(
        r#"[[routes]]
provider = "stripe"
steps = [{{ action = "forward", url = "{}" }}, {{ action = "log" }}, {{ action = "forward", url = "{}" }}]
"#,
        first.url, second.url
    );
    let server = TestServer::start(&db, &routes, &[]).await;
    let (_, body) = stripe_event("invoice.paid");
    let id = id_of(server.post_stripe(&body).await).await;
    let e = server.wait_status(id, EventStatus::Completed, WAIT).await;
    assert_eq!(first.hits(), 1);
    assert_eq!(second.hits(), 3);
    assert_eq!(e.attempts, 3);
    let second_step: Vec<(u32, &str)> = e
        .steps
        .iter()
        .filter(|s| s.step == "route0/2:forward")
        .map(|s| (s.attempt, s.outcome.as_str()))
        .collect();
    assert_eq!(
        second_step,
        [(1, "failed"), (2, "failed"), (3, "succeeded")],
        "{:?}",
        e.steps
    );
    let first_step_runs = e
        .steps
        .iter()
        .filter(|s| s.step == "route0/0:forward")
        .count();
    assert_eq!(first_step_runs, 1, "{:?}", e.steps);
    server.stop().await;
}

async fn unrouted_event_completes(b: Backend) {
    let db = TestDb::new(b).await;
    let server = TestServer::start(&db, "", &[]).await;
    let (_, body) = stripe_event("customer.created");
    let id = id_of(server.post_stripe(&body).await).await;
    let e = server.wait_status(id, EventStatus::Completed, WAIT).await;
    assert!(e.steps.is_empty());
    assert_eq!(
        e.transitions.last().unwrap().detail.as_deref(),
        Some("no route matched")
    );
    server.stop().await;
}

async fn github_event_is_accepted(b: Backend) {
    let db = TestDb::new(b).await;
    let target = Target::start(Behaviour::default()).await;
    let routes = format!(
        "[[routes]]\nprovider = \"github\"\nevents = [\"push\"]\nsteps = [{{ action = \"forward\", url = \"{}\" }}]\n",
        target.url
    );
    let server = TestServer::start(
        &db,
        &routes,
        &[(
            "GITHUB_WEBHOOK_SECRET",
            &format!("old-secret,{GITHUB_SECRET}"),
        )],
    )
    .await;
    let body = r#"{"ref":"refs/heads/main","repository":{"full_name":"acme/app"}}"#;
    let headers = |delivery: &str| {
        vec![
            ("x-hub-signature-256", github_signature(GITHUB_SECRET, body)),
            ("x-github-event", "push".to_owned()),
            ("x-github-delivery", delivery.to_owned()),
            ("content-type", "application/json".to_owned()),
        ]
    };
    let r = server.post("github", &headers("d-1"), body).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = id_of(r).await;
    let e = server.wait_status(id, EventStatus::Completed, WAIT).await;
    assert_eq!(e.idempotency_key, "d-1");
    assert_eq!(e.event_type, "push");
    // Same delivery id again: a redelivery.
    assert_eq!(
        server.post("github", &headers("d-1"), body).await.status(),
        StatusCode::OK
    );
    // GitHub signs only the body: the same body under a new delivery id is a replay, a
    // duplicate within the replay window (tests/probe.rs).
    assert_eq!(
        server.post("github", &headers("d-2"), body).await.status(),
        StatusCode::OK
    );
    let mut bad = headers("d-3");
    bad[0].1 = github_signature("wrong", body);
    let r = server.post("github", &bad, body).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_signature"
    );
    assert_eq!(server.total_events().await, 1);
    server.stop().await;
}

async fn admin_api_shows_history_and_checks_token(b: Backend) {
    let db = TestDb::new(b).await;
    let server = TestServer::start(&db, "[[routes]]\nsteps = [{ action = \"log\" }]\n", &[]).await;
    let (_, body) = stripe_event("charge.succeeded");
    let id = id_of(server.post_stripe(&body).await).await;
    server.wait_status(id, EventStatus::Completed, WAIT).await;
    let url = format!("{}/admin/events/{id}", server.url);
    let r = server
        .http
        .get(&url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["id"], id.to_string());
    assert_eq!(v["provider"], "stripe");
    assert_eq!(v["event_type"], "charge.succeeded");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["attempts"], 1);
    assert!(v["received_at"].is_string());
    assert_eq!(v["transitions"][0]["to"], "pending");
    assert_eq!(v["transitions"][2]["from"], "processing");
    assert_eq!(v["steps"][0]["outcome"], "succeeded");
    let r = server
        .http
        .get(&url)
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = server.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let missing = format!(
        "{}/admin/events/{}",
        server.url,
        hookd::event::EventId::new()
    );
    let r = server
        .http
        .get(&missing)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    server.stop().await;

    // Without a token configured the admin API does not exist.
    let server = TestServer::start(&db, "", &[("HOOKD_ADMIN_TOKEN", "")]).await;
    let r = server
        .http
        .get(format!("{}/admin/events/{id}", server.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    server.stop().await;
}

async fn store_down_means_503_and_recovery(b: Backend) {
    let db = TestDb::new(b).await;
    let server = TestServer::start(&db, "", &[("HOOKD_STORE_TIMEOUT_MS", "1000")]).await;
    let health = format!("{}/health", server.url);
    let r = server.http.get(&health).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["store"]["status"], "up");
    assert!(v["memory"]["rss_bytes"].as_u64().unwrap() > 0);

    let outage = db.take_down().await;
    let (_, body) = stripe_event("charge.succeeded");
    let r = server.post_stripe(&body).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "store_unavailable"
    );
    let r = server.http.get(&health).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["store"]["status"],
        "down"
    );
    outage.end().await;

    // The provider retries; hookd has recovered on its own.
    eventually(
        "the provider's retry to be accepted (202)",
        WAIT,
        || async { server.post_stripe(&body).await.status() },
        |&status| status == StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(
        server.http.get(&health).send().await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(server.total_events().await, 1);
    server.stop().await;
}

async fn shutdown_finishes_in_flight_steps(b: Backend) {
    let db = TestDb::new(b).await;
    let target = Target::start(Behaviour {
        delay: Duration::from_millis(800),
        ..Default::default()
    })
    .await;
    let server = TestServer::start(&db, &forward_route(&target.url), &[]).await;
    let (_, body) = stripe_event("charge.succeeded");
    let id = id_of(server.post_stripe(&body).await).await;
    target.wait_hits(1, WAIT).await;
    let store = server.store.clone();
    server.stop().await;
    let e = store.event(id).await.unwrap().unwrap();
    assert_eq!(e.status, EventStatus::Completed, "{e:#?}");
    assert_eq!(target.received().len(), 1);
}

async fn shutdown_past_the_grace_period_hands_leases_back(b: Backend) {
    let db = TestDb::new(b).await;
    let target = Target::start(Behaviour {
        hang_first: true,
        ..Default::default()
    })
    .await;
    let server = TestServer::start(
        &db,
        &forward_route(&target.url),
        &[
            ("HOOKD_SHUTDOWN_TIMEOUT_SECS", "1"),
            ("HOOKD_LEASE_SECS", "30"),
        ],
    )
    .await;
    let (_, body) = stripe_event("charge.succeeded");
    let id = id_of(server.post_stripe(&body).await).await;
    target.wait_hits(1, WAIT).await;
    server.stop().await;
    // The interrupted attempt is handed back at once, not after the 30 s lease.
    let restarted = TestServer::start(&db, &forward_route(&target.url), &[]).await;
    let e = restarted
        .wait_status(id, EventStatus::Completed, Duration::from_secs(10))
        .await;
    assert_eq!(
        e.attempts, 1,
        "the interrupted attempt does not count: {e:#?}"
    );
    assert!(
        e.transitions
            .iter()
            .any(|t| t.detail.as_deref().unwrap_or("").contains("released"))
    );
    restarted.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_provider_cap_limits_events_in_flight() {
    let db = TestDb::new(Backend::Sqlite).await;
    let target = Target::start(Behaviour {
        delay: Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    let server = TestServer::start(
        &db,
        &forward_route(&target.url),
        &[
            ("HOOKD_WORKERS", "8"),
            ("HOOKD_PROVIDER_CONCURRENCY", "stripe=1"),
            ("HOOKD_DESTINATION_CONCURRENCY", "8"),
        ],
    )
    .await;
    for _ in 0..4 {
        let (_, body) = stripe_event("charge.succeeded");
        assert_eq!(
            server.post_stripe(&body).await.status(),
            StatusCode::ACCEPTED
        );
    }
    server.wait_all(4, EventStatus::Completed, WAIT).await;
    assert_eq!(
        target.max_in_flight(),
        1,
        "stripe=1: one Stripe event at a time"
    );
    server.stop().await;
}

/// `finish_many`: one transaction ends several attempts, each with its last step. An item whose
/// worker lost the lease ends nothing, but the step it ran is still recorded, so the new holder
/// does not run it again; its neighbour in the batch is not affected.
async fn outcomes_are_written_together_and_steps_kept_without_the_lease(b: Backend) {
    use hookd::event::{ClaimedEvent, Outcome, StepOutcome, StepRecord};
    use hookd::store::{Claim, Finish, Inserted};
    let db = TestDb::new(b).await;
    let store = hookd::store::connect(&db.url, 4, Duration::from_secs(2))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    for t in ["charge.succeeded", "charge.refunded", "charge.captured"] {
        let (_, body) = stripe_event(t);
        let inserted = store
            .insert(&verified_stripe(&body).await, None)
            .await
            .unwrap();
        assert!(matches!(inserted, Inserted::New(_)));
    }
    let claimed = store
        .claim("w1", Duration::from_secs(30), Claim::Due { limit: 3 })
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    let end = |e: &ClaimedEvent, owner: &str, outcome: Outcome, step: bool| Finish {
        id: e.id,
        owner: owner.into(),
        outcome,
        step: step.then(|| StepRecord {
            event_id: e.id,
            step: "r/0:log".into(),
            attempt: e.attempt,
            outcome: StepOutcome::Succeeded,
            error: None,
            duration_ms: 1,
            generation: e.generation,
        }),
        ordered: e.ordered,
    };
    let done = || Outcome::Completed {
        detail: "1 step(s) run".into(),
    };
    let retry = Outcome::RetryAt {
        at: chrono::Utc::now() + chrono::Duration::seconds(60),
        error: "boom".into(),
    };
    let written = store
        .finish_many(&[
            end(&claimed[0], "w1", done(), true),
            end(&claimed[1], "w2", done(), true),
            end(&claimed[2], "w1", retry, false),
        ])
        .await
        .unwrap();
    assert_eq!(
        written.written,
        [true, false, true],
        "w2 never held a lease"
    );
    assert!(written.released.is_empty(), "no event was in an order line");
    let event = |i: usize| {
        let store = store.clone();
        let id = claimed[i].id;
        async move { store.event(id).await.unwrap().unwrap() }
    };
    let (held, lost, retried) = (event(0).await, event(1).await, event(2).await);
    assert_eq!(held.status, EventStatus::Completed);
    assert_eq!(held.steps.len(), 1);
    assert_eq!(lost.status, EventStatus::Processing);
    assert_eq!(
        store.succeeded_steps(lost.id).await.unwrap(),
        vec!["r/0:log".to_owned()]
    );
    assert_eq!(retried.status, EventStatus::RetryScheduled);
    assert_eq!(retried.last_error.as_deref(), Some("boom"));
    assert!(retried.steps.is_empty());
    assert!(retried.next_attempt_at.unwrap() > chrono::Utc::now() + chrono::Duration::seconds(50));
}

//! The admin API end to end over real HTTP: listing and filtering events, pages, one event with
//! its stored request, scopes, the audit log, replays and redrives (one, and in bulk as
//! background jobs with progress and cancel), and what they do to the actions. Storage-dependent
//! tests run against SQLite and PostgreSQL.

use std::time::Duration;

use crate::support::*;
use hookd::event::{EventId, EventStatus};
use reqwest::StatusCode;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);
const READ_TOKEN: &str = "read-only-token-for-tests";

both_backends!(
    events_are_filtered_and_paged_newest_first,
    one_event_shows_its_request_and_history,
    read_tokens_cannot_operate_and_every_attempt_is_audited,
    replay_runs_every_step_again_and_is_recorded,
    redrive_runs_a_compensated_dead_letter_again,
    bulk_redrive_is_a_job_with_progress,
    bulk_replay_can_be_cancelled,
);

/// `GET {server}/admin{path}` with `token`: status and JSON body.
async fn get(server: &TestServer, token: &str, path: &str) -> (StatusCode, Value) {
    let r = server
        .http
        .get(format!("{}/admin{path}", server.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// `POST {server}/admin{path}` with `token` and an optional JSON body.
async fn post(
    server: &TestServer,
    token: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = server
        .http
        .post(format!("{}/admin{path}", server.url))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn ids(page: &Value) -> Vec<String> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn start(db: &TestDb, routes: &str, extra: &[(&str, &str)]) -> TestServer {
    let mut vars = vec![
        ("HOOKD_ADMIN_READ_TOKEN", READ_TOKEN),
        ("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET),
    ];
    vars.extend_from_slice(extra);
    TestServer::start(db, routes, &vars).await
}

async fn post_github(server: &TestServer, body: &str) -> EventId {
    let headers = [
        ("x-hub-signature-256", github_signature(GITHUB_SECRET, body)),
        ("x-github-event", "push".to_owned()),
        ("x-github-delivery", uuid::Uuid::new_v4().to_string()),
        ("content-type", "application/json".to_owned()),
    ];
    id_of(server.post("github", &headers, body.to_owned()).await).await
}

async fn events_are_filtered_and_paged_newest_first(b: Backend) {
    let db = TestDb::new(b).await;
    let server = start(&db, "", &[]).await;
    let mut posted = Vec::new();
    let mut keys = Vec::new();
    for t in [
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "charge.refunded",
        "customer.created",
        "invoice.paid",
    ] {
        let (key, body) = stripe_event(t);
        let body = if t == "charge.refunded" {
            body.replace("\"usd\"", "\"usd\",\"memo\":\"needle-42\"")
        } else {
            body
        };
        posted.push(id_of(server.post_stripe(&body).await).await.to_string());
        keys.push(key);
    }
    posted.push(
        post_github(&server, r#"{"ref":"refs/heads/main"}"#)
            .await
            .to_string(),
    );
    server.wait_all(6, EventStatus::Completed, WAIT).await;
    let newest_first: Vec<String> = posted.iter().rev().cloned().collect();

    let (s, all) = get(&server, ADMIN_TOKEN, "/events").await;
    assert_eq!(s, StatusCode::OK, "{all}");
    assert_eq!(ids(&all), newest_first);
    assert!(all["next_cursor"].is_null());
    let e = &all["events"][0];
    assert_eq!(e["provider"], "github");
    assert_eq!(e["event_type"], "push");
    assert_eq!(e["status"], "completed");
    assert_eq!(e["replays"], 0);

    let count = |v: &Value| v["events"].as_array().unwrap().len();
    let q = |path: &'static str| get(&server, READ_TOKEN, path);
    assert_eq!(count(&q("/events?provider=github").await.1), 1);
    assert_eq!(count(&q("/events?provider=stripe").await.1), 5);
    let (_, pi) = q("/events?event_type=payment_intent.*").await;
    assert_eq!(ids(&pi), [posted[1].clone(), posted[0].clone()]);
    assert_eq!(count(&q("/events?event_type=charge.refunded").await.1), 1);
    assert_eq!(count(&q("/events?event_type=*.created").await.1), 1);
    assert_eq!(count(&q("/events?event_type=Charge.*").await.1), 0);
    assert_eq!(count(&q("/events?status=completed").await.1), 6);
    assert_eq!(
        count(&q("/events?status=dead_letter,retry_scheduled").await.1),
        0
    );
    let (_, by_key) = get(
        &server,
        READ_TOKEN,
        &format!("/events?idempotency_key={}", keys[3]),
    )
    .await;
    assert_eq!(ids(&by_key), [posted[3].clone()]);
    let (_, text) = q("/events?q=needle-42").await;
    assert_eq!(ids(&text), [posted[2].clone()]);
    assert_eq!(
        count(&q("/events?q=refs/heads/main&provider=github").await.1),
        1
    );
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let earlier = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let enc = |s: &str| s.replace('+', "%2B");
    let (_, none) = get(
        &server,
        READ_TOKEN,
        &format!("/events?received_after={}", enc(&later)),
    )
    .await;
    assert_eq!(count(&none), 0);
    let (_, window) = get(
        &server,
        READ_TOKEN,
        &format!(
            "/events?received_after={}&received_before={}",
            enc(&earlier),
            enc(&later)
        ),
    )
    .await;
    assert_eq!(count(&window), 6);

    // NUL is in no provider name (PostgreSQL text cannot even hold one): nothing matches.
    assert_eq!(count(&q("/events?provider=str%00ipe").await.1), 0);
    assert_eq!(count(&q("/events?q=%00").await.1), 0);

    // Pages: newest first, each event once, a cursor until the last page.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/events?limit=4&cursor={c}"),
            None => "/events?limit=4".to_owned(),
        };
        let (s, page) = get(&server, READ_TOKEN, &path).await;
        assert_eq!(s, StatusCode::OK);
        seen.extend(ids(&page));
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!((pages, seen), (2, newest_first));

    // Mistakes are 400 with the parameter named.
    for bad in [
        "/events?status=finished",
        "/events?received_after=yesterday",
        "/events?limit=0",
        "/events?limit=501",
        "/events?cursor=not-a-cursor",
        "/events?limit=many",
    ] {
        let (s, v) = get(&server, READ_TOKEN, bad).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert_eq!(v["error"], "invalid_parameter", "{bad}: {v}");
    }
    server.stop().await;
}

async fn one_event_shows_its_request_and_history(b: Backend) {
    let db = TestDb::new(b).await;
    let server = start(&db, "[[routes]]\nsteps = [{ action = \"log\" }]\n", &[]).await;
    let (key, body) = stripe_event("charge.succeeded");
    let id = id_of(server.post_stripe(&body).await).await;
    server.wait_status(id, EventStatus::Completed, WAIT).await;

    let (s, v) = get(&server, READ_TOKEN, &format!("/events/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["id"], id.to_string());
    assert_eq!(v["idempotency_key"], key);
    assert_eq!(v["body"], body);
    assert_eq!(v["body_encoding"], "utf8");
    assert_eq!(v["body_bytes"], body.len());
    assert!(v["body_purged_at"].is_null());
    // Headers kept for audit, the signature redacted.
    assert_eq!(v["headers"]["stripe-signature"], "[redacted]");
    assert_eq!(v["headers"]["content-type"], "application/json");
    let transitions: Vec<&str> = v["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["to"].as_str().unwrap())
        .collect();
    assert_eq!(transitions, ["pending", "processing", "completed"]);
    assert_eq!(v["steps"][0]["outcome"], "succeeded");
    assert_eq!(v["steps"][0]["generation"], 0);

    // The raw body, byte for byte, as a download a browser will not render.
    let r = server
        .http
        .get(format!("{}/admin/events/{id}/raw", server.url))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    assert_eq!(r.bytes().await.unwrap(), body.as_bytes());

    let missing = EventId::new();
    for path in [
        format!("/events/{missing}"),
        format!("/events/{missing}/raw"),
        "/events/nonsense".to_owned(),
    ] {
        assert_eq!(
            get(&server, READ_TOKEN, &path).await.0,
            StatusCode::NOT_FOUND
        );
    }

    // Providers: configured, paused, counts; stats: the chart's buckets.
    let (_, p) = get(&server, READ_TOKEN, "/providers").await;
    let stripe = p["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "stripe")
        .unwrap();
    assert_eq!(stripe["accepting"], true);
    assert_eq!(stripe["paused"], false);
    assert!(stripe["counts"].is_object());
    let (s, stats) = get(&server, READ_TOKEN, "/stats?window=1h").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(stats["bucket_secs"], 60);
    let buckets = stats["buckets"].as_array().unwrap();
    assert!((60..=61).contains(&buckets.len()), "{}", buckets.len());
    let sum = |k: &str| buckets.iter().map(|b| b[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!((sum("received"), sum("completed")), (1, 1));
    assert_eq!(
        get(&server, READ_TOKEN, "/stats?window=1y").await.0,
        StatusCode::BAD_REQUEST
    );
    server.stop().await;
}

async fn read_tokens_cannot_operate_and_every_attempt_is_audited(b: Backend) {
    let db = TestDb::new(b).await;
    let server = start(&db, "", &[]).await;
    let (_, body) = stripe_event("charge.succeeded");
    let id = id_of(server.post_stripe(&body).await).await;
    server.wait_status(id, EventStatus::Completed, WAIT).await;

    let (s, me) = get(&server, READ_TOKEN, "/whoami").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me, json!({"name": "read", "scope": "read"}));
    assert_eq!(
        get(&server, ADMIN_TOKEN, "/whoami").await.1,
        json!({"name": "admin", "scope": "operate"})
    );
    assert_eq!(
        get(&server, "not-a-token", "/events").await.0,
        StatusCode::UNAUTHORIZED
    );

    // Every state-changing endpoint refuses the read scope, and says why.
    let job = uuid::Uuid::now_v7();
    for (path, body) in [
        (format!("/events/{id}/replay"), None),
        ("/replays".to_owned(), Some(json!({"provider": "stripe"}))),
        (format!("/dlq/{id}/redrive"), None),
        ("/dlq/redrive".to_owned(), None),
        (format!("/jobs/{job}/cancel"), None),
        ("/providers/stripe/pause".to_owned(), None),
        ("/providers/stripe/resume".to_owned(), None),
    ] {
        let (s, v) = post(&server, READ_TOKEN, &path, body).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}: {v}");
        assert_eq!(v["error"], "forbidden");
    }
    // Nothing happened.
    let e = server.event(id).await;
    assert_eq!((e.status, e.replays), (EventStatus::Completed, 0));
    assert_eq!(
        get(&server, READ_TOKEN, "/providers").await.1["providers"][0]["paused"],
        false
    );

    // An operate token may; a pause with a reason.
    let (s, v) = post(
        &server,
        ADMIN_TOKEN,
        "/providers/stripe/pause",
        Some(json!({"reason": "ledger migration"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["paused"], true);
    let (s, _) = post(&server, ADMIN_TOKEN, "/providers/stripe/resume", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = post(&server, ADMIN_TOKEN, "/providers/nosuch/pause", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The audit log: newest first, who, what, target, outcome; filters and pages.
    let (s, log) = get(&server, READ_TOKEN, "/audit").await;
    assert_eq!(s, StatusCode::OK);
    let entries = log["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 10, "{log:#}");
    let first = &entries[0];
    assert_eq!(first["actor"], "admin");
    assert_eq!(first["action"], "provider.pause");
    assert_eq!(first["target"], "nosuch");
    assert_eq!(first["status"], 404);
    assert!(first["at"].is_string());
    assert_eq!(entries[1]["action"], "provider.resume");
    assert_eq!(entries[2]["action"], "provider.pause");
    assert_eq!(entries[2]["status"], 200);
    assert_eq!(entries[2]["target"], "stripe");
    let refused: Vec<&Value> = entries.iter().filter(|e| e["actor"] == "read").collect();
    assert_eq!(refused.len(), 7);
    assert!(refused.iter().all(|e| e["status"] == 403));
    let replay = refused
        .iter()
        .find(|e| e["action"] == "event.replay")
        .unwrap();
    assert_eq!(replay["target"], id.to_string());

    let (_, mine) = get(&server, READ_TOKEN, "/audit?actor=admin").await;
    assert_eq!(mine["entries"].as_array().unwrap().len(), 3);
    let (_, pauses) = get(&server, READ_TOKEN, "/audit?action=provider.pause").await;
    assert_eq!(pauses["entries"].as_array().unwrap().len(), 3);
    let (_, p1) = get(&server, READ_TOKEN, "/audit?limit=6").await;
    let cursor = p1["next_cursor"].as_str().unwrap();
    let (_, p2) = get(
        &server,
        READ_TOKEN,
        &format!("/audit?limit=6&cursor={cursor}"),
    )
    .await;
    assert_eq!(p2["entries"].as_array().unwrap().len(), 4);
    assert!(p2["next_cursor"].is_null());
    assert_eq!(p2["entries"][3]["id"], entries[9]["id"]);
    server.stop().await;
}

async fn replay_runs_every_step_again_and_is_recorded(b: Backend) {
    let db = TestDb::new(b).await;
    let target = Target::start(Behaviour::default()).await;
    let routes = format!(
        "[[routes]]\nname = \"fwd\"\nprovider = \"stripe\"\nsigning_secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\nsteps = [{{ action = \"forward\", url = \"{}\" }}, {{ action = \"log\" }}]\n",
        target.url
    );
    let server = start(&db, &routes, &[]).await;
    let (_, body) = stripe_event("charge.succeeded");
    let id = id_of(server.post_stripe(&body).await).await;
    server.wait_status(id, EventStatus::Completed, WAIT).await;
    assert_eq!(target.hits(), 1);

    let (s, v) = post(&server, ADMIN_TOKEN, &format!("/events/{id}/replay"), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["replays"], 1);
    let e = server.wait_status(id, EventStatus::Completed, WAIT).await;
    // Every step ran again, although each had succeeded before.
    assert_eq!(target.hits(), 2);
    let got = target.received();
    assert_eq!(got[1].body, body.as_bytes());
    assert!(got[0].headers.get("x-hookd-replay").is_none());
    assert_eq!(got[1].headers["x-hookd-replay"], "1");
    // A new message id, so a receiver that drops duplicates takes the replay.
    assert_ne!(got[0].headers["webhook-id"], got[1].headers["webhook-id"]);
    assert_eq!(
        got[0].headers["x-hookd-event-id"],
        got[1].headers["x-hookd-event-id"]
    );
    assert_eq!(e.replays, 1);
    assert_eq!(e.attempts, 1);
    let replayed = e
        .transitions
        .iter()
        .find(|t| t.from == Some(EventStatus::Completed))
        .expect("the replay is a transition");
    assert_eq!(replayed.to, EventStatus::Pending);
    assert_eq!(replayed.detail.as_deref(), Some("replay 1 by admin"));
    let generations: Vec<(String, u32)> = e
        .steps
        .iter()
        .map(|s| (s.step.clone(), s.generation))
        .collect();
    assert_eq!(
        generations,
        [
            ("fwd/0:forward".to_owned(), 0),
            ("fwd/1:log".to_owned(), 0),
            ("fwd/0:forward".to_owned(), 1),
            ("fwd/1:log".to_owned(), 1),
        ]
    );

    // Only finished events: one still waiting is refused, as are unknown ones and redrives
    // of events that are not dead letters.
    let (s, _) = post(&server, ADMIN_TOKEN, "/providers/stripe/pause", None).await;
    assert_eq!(s, StatusCode::OK);
    let (_, body2) = stripe_event("charge.succeeded");
    let waiting = id_of(server.post_stripe(&body2).await).await;
    let (s, v) = post(
        &server,
        ADMIN_TOKEN,
        &format!("/events/{waiting}/replay"),
        None,
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("in_progress"))
    );
    let (s, v) = post(&server, ADMIN_TOKEN, &format!("/dlq/{id}/redrive"), None).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("not_dead_lettered"))
    );
    let (s, _) = post(
        &server,
        ADMIN_TOKEN,
        &format!("/events/{}/replay", EventId::new()),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(target.hits(), 2);

    let (_, log) = get(&server, ADMIN_TOKEN, "/audit?action=event.replay").await;
    let statuses: Vec<u64> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [404, 409, 200]);
    server.stop().await;
}

async fn redrive_runs_a_compensated_dead_letter_again(b: Backend) {
    let db = TestDb::new(b).await;
    let first = Target::start(Behaviour::default()).await;
    let undo = Target::start(Behaviour::default()).await;
    // Fails both attempts of the first cycle, then works.
    let second = Target::start(Behaviour {
        fail_first: 2,
        ..Default::default()
    })
    .await;
    let routes = format!(
        "[[routes]]\nname = \"saga\"\nprovider = \"stripe\"\nsteps = [{{ action = \"forward\", url = \"{}\", compensate = {{ action = \"forward\", url = \"{}\" }} }}, {{ action = \"forward\", url = \"{}\" }}]\n",
        first.url, undo.url, second.url
    );
    let server = start(&db, &routes, &[("HOOKD_MAX_ATTEMPTS", "2")]).await;
    let (_, body) = stripe_event("payment_intent.succeeded");
    let id = id_of(server.post_stripe(&body).await).await;
    let dead = server.wait_status(id, EventStatus::DeadLetter, WAIT).await;
    assert_eq!((first.hits(), second.hits(), undo.hits()), (1, 2, 1));
    assert!(dead.last_error.unwrap().contains("compensations:"));

    let (s, dlq) = get(&server, READ_TOKEN, "/dlq").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ids(&dlq), [id.to_string()]);
    assert!(dlq["events"][0]["last_error"].is_string());
    assert_eq!(
        ids(&get(&server, READ_TOKEN, "/dlq?provider=github").await.1).len(),
        0
    );

    let (s, v) = post(&server, ADMIN_TOKEN, &format!("/dlq/{id}/redrive"), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let e = server.wait_status(id, EventStatus::Completed, WAIT).await;
    // The new cycle starts from the first step and is not taken for a compensation phase.
    assert_eq!((first.hits(), second.hits(), undo.hits()), (2, 3, 1));
    assert_eq!(e.replays, 1);
    assert!(e.last_error.is_none());
    let redriven = e
        .transitions
        .iter()
        .find(|t| t.from == Some(EventStatus::DeadLetter))
        .unwrap();
    assert_eq!(redriven.detail.as_deref(), Some("redrive 1 by admin"));
    assert_eq!(ids(&get(&server, READ_TOKEN, "/dlq").await.1).len(), 0);
    let (_, log) = get(&server, READ_TOKEN, "/audit").await;
    assert_eq!(log["entries"][0]["action"], "event.redrive");
    assert_eq!(log["entries"][0]["target"], id.to_string());
    server.stop().await;
}

/// Wait until the job has left `running`; its final state.
async fn wait_job(server: &TestServer, id: &str) -> Value {
    let path = format!("/jobs/{id}");
    let (s, job) = eventually(
        format!("job {id} to leave running"),
        WAIT,
        || get(server, READ_TOKEN, &path),
        |(s, job)| *s != StatusCode::OK || job["status"] != "running",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    job
}

async fn bulk_redrive_is_a_job_with_progress(b: Backend) {
    let db = TestDb::new(b).await;
    let target = Target::start(Behaviour::default()).await;
    target.set_down(true);
    let server = start(
        &db,
        &forward_route(&target.url),
        &[
            ("HOOKD_MAX_ATTEMPTS", "1"),
            ("HOOKD_BREAKER_FAILURES", "100"),
        ],
    )
    .await;
    for _ in 0..5 {
        let (_, body) = stripe_event("invoice.payment_failed");
        server.post_stripe(&body).await;
    }
    server.wait_all(5, EventStatus::DeadLetter, WAIT).await;
    target.set_down(false);

    // A filter that matches nothing makes an empty job; a bad body is refused.
    let (s, v) = post(
        &server,
        ADMIN_TOKEN,
        "/dlq/redrive",
        Some(json!({"provider": "github"})),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["total"], 0);
    let (s, _) = post(
        &server,
        ADMIN_TOKEN,
        "/dlq/redrive",
        Some(json!({"colour": "red"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, v) = post(&server, ADMIN_TOKEN, "/replays", Some(json!({}))).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_parameter"))
    );
    let (s, _) = post(
        &server,
        ADMIN_TOKEN,
        "/replays",
        Some(json!({"statuses": ["pending"]})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let (s, job) = post(&server, ADMIN_TOKEN, "/dlq/redrive", None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["kind"], "redrive");
    assert_eq!(job["total"], 5);
    assert_eq!(job["created_by"], "admin");
    let id = job["id"].as_str().unwrap();
    let done = wait_job(&server, id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        (
            done["processed"].as_u64(),
            done["replayed"].as_u64(),
            done["skipped"].as_u64()
        ),
        (Some(5), Some(5), Some(0))
    );
    assert!(done["finished_at"].is_string());
    server.wait_all(5, EventStatus::Completed, WAIT).await;
    assert_eq!(target.succeeded().len(), 5);

    let (_, jobs) = get(&server, READ_TOKEN, "/jobs").await;
    assert_eq!(jobs["jobs"][0]["id"], id);
    let (_, log) = get(&server, READ_TOKEN, "/audit?action=dlq.redrive").await;
    let last = &log["entries"][0];
    assert_eq!(last["status"], 202);
    assert!(last["detail"].as_str().unwrap().contains(id), "{last}");
    // A finished job cannot be cancelled.
    let (s, v) = post(&server, ADMIN_TOKEN, &format!("/jobs/{id}/cancel"), None).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("job_not_running"))
    );
    assert_eq!(
        post(
            &server,
            ADMIN_TOKEN,
            &format!("/jobs/{}/cancel", uuid::Uuid::now_v7()),
            None
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    server.stop().await;
}

async fn bulk_replay_can_be_cancelled(b: Backend) {
    let db = TestDb::new(b).await;
    let server = start(&db, "", &[]).await;
    // Many completed events, written straight to the store (no route: they complete at once).
    for _ in 0..250 {
        let (_, body) = stripe_event("charge.succeeded");
        server
            .store
            .insert(&verified_stripe(&body).await, None)
            .await
            .unwrap();
    }
    server.wait_all(250, EventStatus::Completed, WAIT).await;

    let (s, job) = post(
        &server,
        ADMIN_TOKEN,
        "/replays",
        Some(json!({"provider": "stripe"})),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["total"], 250);
    let id = job["id"].as_str().unwrap();
    let (s, v) = post(&server, ADMIN_TOKEN, &format!("/jobs/{id}/cancel"), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["cancel_requested"], true);
    let done = wait_job(&server, id).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    let replayed = done["replayed"].as_u64().unwrap();
    assert!(replayed < 250, "{done}");
    // Exactly the events the job got to were replayed, and they ran again.
    let tally = || async {
        let (_, page) = get(&server, READ_TOKEN, "/events?limit=500").await;
        let events = page["events"].as_array().unwrap();
        let again = events.iter().filter(|e| e["replays"] == 1).count() as u64;
        let completed = events.iter().filter(|e| e["status"] == "completed").count();
        (again, completed)
    };
    eventually(
        format!("(replayed again, completed) to be ({replayed}, 250)"),
        WAIT,
        tally,
        |&seen| seen == (replayed, 250),
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reads_go_to_the_read_replica() {
    // Two databases stand for a primary and its replica; each gets an event of its own, so
    // what the admin API lists shows where it read.
    let replica = TestDb::new(Backend::Postgres).await;
    let on_replica = {
        let server = start(&replica, "", &[]).await;
        let (_, body) = stripe_event("charge.succeeded");
        let id = id_of(server.post_stripe(&body).await).await;
        server.wait_status(id, EventStatus::Completed, WAIT).await;
        server.stop().await;
        id
    };
    let primary = TestDb::new(Backend::Postgres).await;
    let server = start(&primary, "", &[("DATABASE_READ_URL", &replica.url)]).await;
    let (_, body) = stripe_event("charge.succeeded");
    let on_primary = id_of(server.post_stripe(&body).await).await;
    server
        .wait_status(on_primary, EventStatus::Completed, WAIT)
        .await;
    let (_, page) = get(&server, READ_TOKEN, "/events").await;
    assert_eq!(ids(&page), [on_replica.to_string()]);
    let (s, _) = get(&server, READ_TOKEN, &format!("/events/{on_primary}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = get(&server, READ_TOKEN, &format!("/events/{on_replica}")).await;
    assert_eq!(s, StatusCode::OK);
    // Writes (and the audit log's writes) go to the primary.
    let (s, _) = post(&server, ADMIN_TOKEN, "/providers/stripe/pause", None).await;
    assert_eq!(s, StatusCode::OK);
    let paused = server.store.provider_pauses().await.unwrap();
    assert_eq!(paused.len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_and_redrives_reach_redis_workers() {
    // With the Redis queue, workers learn of work from the stream only (the sweeper is made too
    // slow to matter here): a replay that was not enqueued would never run in time.
    let db = TestDb::new(Backend::Postgres).await;
    let target = Target::start(Behaviour {
        fail_first: 1,
        ..Default::default()
    })
    .await;
    let prefix = unique_prefix();
    let redis = redis_url();
    let server = start(
        &db,
        &forward_route(&target.url),
        &[
            ("REDIS_URL", &redis),
            ("HOOKD_REDIS_PREFIX", &prefix),
            ("HOOKD_SWEEP_GRACE_SECS", "3600"),
            ("HOOKD_MAX_ATTEMPTS", "1"),
        ],
    )
    .await;
    let (_, body) = stripe_event("invoice.payment_failed");
    let id = id_of(server.post_stripe(&body).await).await;
    server.wait_status(id, EventStatus::DeadLetter, WAIT).await;
    let (s, _) = post(&server, ADMIN_TOKEN, &format!("/dlq/{id}/redrive"), None).await;
    assert_eq!(s, StatusCode::OK);
    let wait = Duration::from_secs(10);
    server.wait_status(id, EventStatus::Completed, wait).await;
    let (s, _) = post(&server, ADMIN_TOKEN, &format!("/events/{id}/replay"), None).await;
    assert_eq!(s, StatusCode::OK);
    eventually(
        "the replay to reach a worker (2 forwards answered 2xx)",
        wait,
        || async { target.succeeded().len() },
        |&n| n >= 2,
    )
    .await;
    let e = server.wait_status(id, EventStatus::Completed, wait).await;
    assert_eq!(e.replays, 2);
    server.stop().await;
}

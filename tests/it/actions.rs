//! Actions end to end: compensation, circuit breakers and pauses, signed forwards, email,
//! filters, `Retry-After` and per-destination limits. Real HTTP targets, a real SMTP server
//! (aiosmtpd), the official Standard Webhooks library; storage-dependent tests run against
//! SQLite and PostgreSQL.

use std::time::{Duration, Instant};

use crate::support::*;
use hookd::event::EventStatus;
use reqwest::StatusCode;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);

both_backends!(
    compensations_run_in_reverse_once_each_after_the_last_attempt,
    breaker_holds_events_through_an_outage_and_recovers,
    retry_after_is_honoured,
    operator_pause_is_stored_and_resumable,
    migration_keeps_events_written_before_it,
    an_older_release_starts_on_a_schema_a_newer_one_migrated,
    without_auto_migration_processes_wait_for_hookd_migrate,
);

/// A `[[routes]]` forward step with a compensation forward.
fn forward_with_compensation(url: &str, undo: &str) -> String {
    format!(
        r#"{{ action = "forward", url = "{url}", compensate = {{ action = "forward", url = "{undo}" }} }}"#
    )
}

async fn compensations_run_in_reverse_once_each_after_the_last_attempt(b: Backend) {
    let db = TestDb::new(b).await;
    let ok = || Target::start(Behaviour::default());
    let (s0, undo0, s1, undo1, s2) = (ok().await, ok().await, ok().await, ok().await, ok().await);
    // The compensation of the third step fails once: it is retried on its own.
    let undo2 = Target::start(Behaviour {
        fail_first: 1,
        ..Default::default()
    })
    .await;
    let last = Target::start(Behaviour {
        always_fail: true,
        ..Default::default()
    })
    .await;
    let routes = format!(
        "[[routes]]\nname = \"saga\"\nprovider = \"stripe\"\nsteps = [{}, {}, {{ action = \"log\" }}, {}, {{ action = \"forward\", url = \"{}\" }}]\n",
        forward_with_compensation(&s0.url, &undo0.url),
        forward_with_compensation(&s1.url, &undo1.url),
        forward_with_compensation(&s2.url, &undo2.url),
        last.url
    );
    let server = TestServer::start(&db, &routes, &[]).await;
    let (_, body) = stripe_event("payment_intent.succeeded");
    let id = id_of(server.post_stripe(&body).await).await;
    let e = server.wait_status(id, EventStatus::DeadLetter, WAIT).await;

    assert_eq!(
        (s0.hits(), s1.hits(), s2.hits(), last.hits()),
        (1, 1, 1, 3),
        "steps once each, the failing one three times"
    );
    assert_eq!(
        (undo0.hits(), undo1.hits()),
        (1, 1),
        "compensations exactly once each"
    );
    assert_eq!(undo0.succeeded().len() + undo1.succeeded().len(), 2);
    assert_eq!(undo2.hits(), 2, "one failure, then its own retry");
    assert_eq!(undo2.succeeded().len(), 1);
    // Reverse order: each compensation starts after the later step's compensation succeeded.
    assert!(undo2.succeeded()[0].at <= undo1.received()[0].at);
    assert!(undo1.received()[0].at <= undo0.received()[0].at);
    assert_eq!(
        undo0.received()[0].headers["x-hookd-event-id"],
        id.to_string().as_str()
    );

    let results: Vec<(&str, &str)> = e
        .steps
        .iter()
        .map(|s| (s.step.as_str(), s.outcome.as_str()))
        .collect();
    let comp: Vec<_> = results
        .iter()
        .filter(|(k, _)| k.contains(":compensate:"))
        .copied()
        .collect();
    assert_eq!(
        comp,
        [
            ("saga/3:compensate:forward", "failed"),
            ("saga/3:compensate:forward", "succeeded"),
            ("saga/1:compensate:forward", "succeeded"),
            ("saga/0:compensate:forward", "succeeded"),
        ],
        "{results:?}"
    );
    let statuses: Vec<EventStatus> = e.transitions.iter().map(|t| t.to).collect();
    assert!(
        statuses.contains(&EventStatus::Compensating),
        "{statuses:?}"
    );
    assert_eq!(*statuses.last().unwrap(), EventStatus::DeadLetter);
    let last_error = e.last_error.as_deref().unwrap();
    assert!(
        last_error.contains("HTTP 500") && last_error.contains("compensations:"),
        "{last_error}"
    );

    // The admin API shows the same history.
    let v = server.admin_get(&format!("/events/{id}")).await;
    assert_eq!(v["status"], "dead_letter");
    let to: Vec<&str> = v["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["to"].as_str().unwrap())
        .collect();
    assert!(to.contains(&"compensating"), "{to:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        (undo0.hits(), undo1.hits(), undo2.hits(), last.hits()),
        (1, 1, 2, 3),
        "nothing runs after the dead letter"
    );
    server.stop().await;
}

async fn breaker_holds_events_through_an_outage_and_recovers(b: Backend) {
    let db = TestDb::new(b).await;
    let down = Target::start(Behaviour::default()).await;
    let healthy = Target::start(Behaviour::default()).await;
    let routes = format!(
        "[[routes]]\nprovider = \"stripe\"\nsteps = [{{ action = \"forward\", url = \"{}\" }}]\n\
         [[routes]]\nprovider = \"github\"\nsteps = [{{ action = \"forward\", url = \"{}\" }}]\n",
        down.url, healthy.url
    );
    let server = TestServer::start(
        &db,
        &routes,
        &[
            ("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET),
            ("HOOKD_BREAKER_FAILURES", "3"),
            ("HOOKD_BREAKER_COOLDOWN_MS", "400"),
        ],
    )
    .await;
    down.set_down(true);
    let outage_started = Instant::now();

    // 200 events for the broken destination, sent 20 at a time.
    let mut bodies: Vec<String> = (0..200)
        .map(|_| stripe_event("charge.succeeded").1)
        .collect();
    while !bodies.is_empty() {
        let batch: Vec<String> = bodies.drain(..bodies.len().min(20)).collect();
        let sends = batch.into_iter().map(|body| {
            let (http, url) = (server.http.clone(), server.url.clone());
            tokio::spawn(async move {
                stripe_request(&http, &url, &body)
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        });
        for s in sends.collect::<Vec<_>>() {
            assert_eq!(s.await.unwrap(), StatusCode::ACCEPTED);
        }
    }

    // Other destinations keep flowing during the outage.
    for i in 0..3 {
        let body = format!(r#"{{"ref":"refs/heads/main","n":{i}}}"#);
        let headers = vec![
            (
                "x-hub-signature-256",
                github_signature(GITHUB_SECRET, &body),
            ),
            ("x-github-event", "push".to_owned()),
            ("x-github-delivery", format!("delivery-{i}")),
        ];
        let id = id_of(server.post("github", &headers, body).await).await;
        server.wait_status(id, EventStatus::Completed, WAIT).await;
    }

    // The breaker opened, and with every destination of its routes open, Stripe is paused
    // automatically (GitHub, whose destination is fine, is not).
    eventually(
        "stripe to be paused automatically (and github never)",
        Duration::from_secs(5),
        || server.admin_get("/providers"),
        |providers| {
            let by_name = |n: &str| {
                providers["providers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["name"] == n)
                    .cloned()
                    .unwrap()
            };
            assert_eq!(by_name("github")["auto_paused"], false, "{providers:#}");
            by_name("stripe")["auto_paused"] == true
        },
    )
    .await;
    let dests = server.admin_get("/destinations").await;
    let broken = dests["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| down.url.starts_with(d["destination"].as_str().unwrap()))
        .cloned()
        .unwrap_or_else(|| panic!("{dests:#}"));
    assert_ne!(broken["state"], "closed", "{broken:#}");

    // Let the outage last a little while: probes only, one per cool-down.
    let outage = Duration::from_millis(2500);
    tokio::time::sleep(outage.saturating_sub(outage_started.elapsed())).await;
    let hits_while_down = down.hits();
    down.set_down(false);
    assert!(
        hits_while_down <= 30,
        "{hits_while_down} requests reached the destination while it was down"
    );
    let counts = server.store.counts().await.unwrap();
    assert!(!counts.contains_key(&EventStatus::DeadLetter), "{counts:?}");

    // It recovers on its own: every event completes, none dead-letters.
    server
        .wait_all(203, EventStatus::Completed, Duration::from_secs(40))
        .await;
    let delivered: std::collections::BTreeSet<String> = down
        .succeeded()
        .iter()
        .map(|r| r.headers["x-hookd-event-id"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(delivered.len(), 200);
    let dests = server.admin_get("/destinations").await;
    let broken = dests["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| down.url.starts_with(d["destination"].as_str().unwrap()))
        .unwrap();
    assert_eq!(broken["state"], "closed", "{broken:#}");
    assert!(
        broken["counters"]["opened"].as_u64().unwrap() >= 1,
        "{broken:#}"
    );
    assert!(
        broken["counters"]["deferred"].as_u64().unwrap() >= 1,
        "{broken:#}"
    );
    assert!(
        down.max_in_flight() <= 4,
        "destination limit is 4 by default"
    );
    server.stop().await;
}

async fn retry_after_is_honoured(b: Backend) {
    let db = TestDb::new(b).await;
    let target = Target::start(Behaviour {
        script: vec![(429, Some("1")), (503, Some("1"))],
        ..Default::default()
    })
    .await;
    // Without Retry-After the retries would come after 200 and 400 ms.
    let server = TestServer::start(&db, &forward_route(&target.url), &[]).await;
    let (_, body) = stripe_event("invoice.paid");
    let id = id_of(server.post_stripe(&body).await).await;
    let e = server.wait_status(id, EventStatus::Completed, WAIT).await;
    assert_eq!(e.attempts, 3);
    let got = target.received();
    assert_eq!(
        got.iter().map(|r| r.status).collect::<Vec<_>>(),
        [429, 503, 200]
    );
    for w in got.windows(2) {
        let gap = w[1].at - w[0].at;
        assert!(gap >= Duration::from_millis(1000), "retried after {gap:?}");
    }
    assert!(
        e.steps[0]
            .error
            .as_deref()
            .unwrap()
            .contains("Retry-After 1 s"),
        "{:?}",
        e.steps[0]
    );
    server.stop().await;
}

async fn operator_pause_is_stored_and_resumable(b: Backend) {
    let db = TestDb::new(b).await;
    let target = Target::start(Behaviour::default()).await;
    let routes = forward_route(&target.url);
    let server = TestServer::start(&db, &routes, &[]).await;
    let r = server
        .admin_post(
            "/providers/stripe/pause",
            Some(json!({"reason": "ledger migration"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["paused"].clone(), v["reason"].clone()),
        (json!(true), json!("ledger migration"))
    );
    let (_, body) = stripe_event("charge.succeeded");
    let resp = server.post_stripe(&body).await;
    assert_eq!(
        resp.status(),
        StatusCode::ACCEPTED,
        "a paused provider's events are still accepted"
    );
    let id = id_of(resp).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(server.event(id).await.status, EventStatus::Pending);
    assert_eq!(target.hits(), 0);
    // Unknown providers and missing tokens are refused.
    assert_eq!(
        server
            .admin_post("/providers/nosuch/pause", None)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let anon = server
        .http
        .post(format!("{}/admin/providers/stripe/resume", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
    server.stop().await;

    // The pause is stored: it survives a restart.
    let server = TestServer::start(&db, &routes, &[]).await;
    let providers = server.admin_get("/providers").await;
    assert_eq!(providers["providers"][0]["name"], "stripe");
    assert_eq!(providers["providers"][0]["paused"], true, "{providers:#}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(target.hits(), 0);
    let r = server.admin_post("/providers/stripe/resume", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["paused"], false);
    let e = server.wait_status(id, EventStatus::Completed, WAIT).await;
    assert_eq!(e.attempts, 1);
    assert_eq!(target.hits(), 1);
    server.stop().await;
}

/// During a rolling upgrade the previous release keeps running, restarts and may be rolled back
/// to after the new release's migrations ran: it must start on a schema with migrations it does
/// not know (docs/operations.md, Upgrades).
async fn an_older_release_starts_on_a_schema_a_newer_one_migrated(b: Backend) {
    let db = TestDb::new(b).await;
    let timeout = Duration::from_secs(10);
    let store = hookd::store::connect(&db.url, 2, timeout).await.unwrap();
    store.migrate().await.unwrap();
    // What a later release's migration leaves behind: a version this binary has no file for.
    let later =
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
                 VALUES (99999, 'a later release', true, $1, 0)";
    match b {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            let later = later.replace("$1", "?1");
            sqlx::query(sqlx::AssertSqlSafe(later))
                .bind(vec![0u8; 48])
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query(later)
                .bind(vec![0u8; 48])
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
    }
    drop(store);
    let store = hookd::store::connect(&db.url, 2, timeout).await.unwrap();
    store
        .migrate()
        .await
        .expect("an older release starts on a newer schema");
    store.ping().await.unwrap();
}

/// With `HOOKD_AUTO_MIGRATE=false` (the Kubernetes manifests' setting) only `hookd migrate`
/// changes the schema: a process finding migrations missing applies nothing, waits for them up
/// to `HOOKD_STORE_WAIT_SECS`, and starts once they are applied, or gives up naming the fix.
async fn without_auto_migration_processes_wait_for_hookd_migrate(b: Backend) {
    use hookd::app::{self, Roles, Schema};
    use hookd::config::Config;
    let db = TestDb::new(b).await;
    let config = |wait: &str| {
        let mut vars = base_vars(&db, "");
        vars.push(("HOOKD_AUTO_MIGRATE".into(), "false".into()));
        vars.push(("HOOKD_STORE_WAIT_SECS".into(), wait.into()));
        Config::from_vars(vars).expect("valid test config")
    };
    let err = match app::start(&config("0"), Roles::SERVE).await {
        Ok(_) => panic!("started on a database without migrations"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("HOOKD_AUTO_MIGRATE") && err.contains("hookd migrate"),
        "{err}"
    );
    let store = hookd::store::connect(&db.url, 2, Duration::from_secs(10))
        .await
        .unwrap();
    let missing = store.missing_migrations().await.unwrap();
    assert_eq!(
        missing.first(),
        Some(&1),
        "nothing was applied: {missing:?}"
    );

    let waiting = config("120");
    let starting = tokio::spawn(async move { app::start(&waiting, Roles::SERVE).await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!starting.is_finished(), "started before the migrations ran");
    // What the migration Job does.
    app::open_store(&config("0"), Schema::Migrate)
        .await
        .expect("hookd migrate");
    let running = tokio::time::timeout(Duration::from_secs(60), starting)
        .await
        .expect("starts within a minute of the migrations")
        .unwrap()
        .expect("starts once migrated");
    assert!(store.missing_migrations().await.unwrap().is_empty());
    running.shutdown();
    running.wait().await;
}

async fn migration_keeps_events_written_before_it(b: Backend) {
    let db = TestDb::new(b).await;
    let id = uuid::Uuid::now_v7();
    // The schema as the first release left it, with one finished event in it.
    match b {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&format!("{}?mode=rwc", db.url))
                .await
                .unwrap();
            let mut m = sqlx::migrate!("migrations/sqlite");
            m.migrations = m
                .migrations
                .iter()
                .filter(|x| x.version == 1)
                .cloned()
                .collect();
            m.run(&pool).await.unwrap();
            sqlx::query(
                "INSERT INTO events (id, provider, idempotency_key, event_type, body, received_at, status, attempts, next_attempt_at, updated_at)
                 VALUES (?1, 'stripe', 'evt_old', 'charge.succeeded', X'7B7D', 1, 'completed', 1, 1, 1)",
            )
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
            sqlx::query("INSERT INTO event_transitions (event_id, from_status, to_status, at, detail) VALUES (?1, NULL, 'pending', 1, 'received')")
                .bind(id)
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            let mut m = sqlx::migrate!("migrations/postgres");
            m.migrations = m
                .migrations
                .iter()
                .filter(|x| x.version == 1)
                .cloned()
                .collect();
            m.run(&pool).await.unwrap();
            sqlx::query(
                "INSERT INTO events (id, provider, idempotency_key, event_type, body, status, attempts)
                 VALUES ($1, 'stripe', 'evt_old', 'charge.succeeded', '\\x7b7d', 'completed', 1)",
            )
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
            sqlx::query("INSERT INTO event_transitions (event_id, from_status, to_status, detail) VALUES ($1, NULL, 'pending', 'received')")
                .bind(id)
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
    }
    // Starting hookd applies the new migration.
    let server = TestServer::start(&db, "", &[]).await;
    let e = server.event(hookd::event::EventId(id)).await;
    assert_eq!(e.status, EventStatus::Completed);
    assert_eq!(e.idempotency_key, "evt_old");
    assert_eq!(e.transitions.len(), 1);
    assert_eq!(e.body_bytes, 2);
    // Indexes, triggers and foreign keys came through the rebuild (SQLite) intact.
    let (_, body) = stripe_event("charge.succeeded");
    let new = id_of(server.post_stripe(&body).await).await;
    server.wait_status(new, EventStatus::Completed, WAIT).await;
    match b {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            let err = sqlx::query("UPDATE events SET body = X'00' WHERE id = ?1")
                .bind(id)
                .execute(&pool)
                .await
                .unwrap_err();
            assert!(err.to_string().contains("immutable"), "{err}");
            let fk: Vec<(String,)> =
                sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check")
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            assert!(fk.is_empty(), "{fk:?}");
            let idx: String =
                sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE name = 'deliveries_due'")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            assert!(idx.contains("compensating"), "{idx}");
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            let err = sqlx::query("UPDATE events SET body = '\\x00' WHERE id = $1")
                .bind(id)
                .execute(&pool)
                .await
                .unwrap_err();
            assert!(err.to_string().contains("immutable"), "{err}");
            pool.close().await;
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_forward_verifies_with_the_standard_webhooks_library() {
    let db = TestDb::new(Backend::Sqlite).await;
    let target = Target::start(Behaviour::default()).await;
    // Two secrets, as during a rotation: each alone must verify.
    let (old, new) = (
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "whsec_dGhpcyBpcyBhIG5ldyBzZWNyZXQgZm9yIGhvb2tk",
    );
    let routes = format!(
        "[[routes]]\nname = \"signed\"\nprovider = \"stripe\"\nsigning_secret = [\"{old}\", \"{new}\"]\n\
         steps = [{{ action = \"forward\", url = \"{}\", headers = {{ \"X-Env\" = \"test\" }} }}]\n",
        target.url
    );
    let server = TestServer::start(&db, &routes, &[]).await;
    let (_, body) = stripe_event("payment_intent.succeeded");
    let id = id_of(server.post_stripe(&body).await).await;
    server.wait_status(id, EventStatus::Completed, WAIT).await;
    let got = &target.received()[0];
    assert_eq!(
        got.headers["webhook-id"],
        format!("{id}:signed/0:forward").as_str()
    );
    assert_eq!(got.headers["x-env"], "test");
    let headers: serde_json::Map<String, Value> =
        ["webhook-id", "webhook-timestamp", "webhook-signature"]
            .iter()
            .map(|h| (h.to_string(), json!(got.headers[*h].to_str().unwrap())))
            .collect();
    let received = String::from_utf8(got.body.to_vec()).unwrap();
    assert_eq!(received, body);
    let tampered = received.replace("2000", "2001");
    let cases = json!([
        { "secret": old, "headers": headers, "body": received },
        { "secret": new, "headers": headers, "body": received },
        { "secret": old, "headers": headers, "body": tampered },
        { "secret": "whsec_b3RoZXIgc2VjcmV0IG9mIGVub3VnaCBsZW5ndGg=", "headers": headers, "body": received },
    ]);
    let file = db.dir.path().join("cases.json");
    std::fs::write(&file, cases.to_string()).unwrap();
    let out = std::process::Command::new(python())
        .arg(py_script("verify_standard_webhooks.py"))
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdicts: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdicts[0], true, "{verdicts:?}");
    assert_eq!(verdicts[1], true, "{verdicts:?}");
    assert_eq!(
        verdicts[2], "No matching signature found",
        "tampered body: {verdicts:?}"
    );
    assert_eq!(
        verdicts[3], "No matching signature found",
        "wrong secret: {verdicts:?}"
    );
    server.stop().await;
}

fn email_route() -> String {
    r#"[[routes]]
name = "notify"
provider = "stripe"
events = ["charge.*"]
steps = [{ action = "email", to = ["ops@example.com", "Finance <finance@example.com>"], subject = "Charge {{/data/object/amount}} {{/data/object/currency}} ({{type}})", body = "Event {{id}} from {{provider}}\nkey={{key}}\nnote={{/data/object/note}}\n" }]
"#
    .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_over_starttls_with_credentials_arrives_with_its_content() {
    let certs = TestCerts::new();
    let sink = SmtpSink::start("starttls", Some(&certs), Some(("hookd", "s3cr:t"))).await;
    let db = TestDb::new(Backend::Sqlite).await;
    let smtp_url = format!("smtp://hookd:s3cr%3At@127.0.0.1:{}", sink.port);
    let ca = certs.path("ca.pem");
    let server = TestServer::start(
        &db,
        &email_route(),
        &[
            ("SMTP_URL", &smtp_url),
            ("SMTP_FROM", "hookd <hookd@example.com>"),
            ("HOOKD_SMTP_CA_FILE", &ca),
        ],
    )
    .await;
    let (evt, body) = stripe_event("charge.succeeded");
    let id = id_of(server.post_stripe(&body).await).await;
    server.wait_status(id, EventStatus::Completed, WAIT).await;
    let m = &sink.wait_messages(1, WAIT).await[0];
    assert_eq!(m["tls"], true, "STARTTLS was used: {m:#}");
    assert_eq!(m["auth_user"], "hookd", "{m:#}");
    assert_eq!(m["mail_from"], "hookd@example.com");
    assert_eq!(
        m["rcpt_tos"],
        json!(["ops@example.com", "finance@example.com"])
    );
    assert_eq!(m["subject"], "Charge 2000 usd (charge.succeeded)");
    assert_eq!(m["content_type"], "text/plain");
    assert_eq!(
        // SMTP lines end in CRLF; the transfer encoding may add a final line break.
        m["body"].as_str().unwrap().replace("\r\n", "\n").trim_end(),
        format!("Event {id} from stripe\nkey={evt}\nnote=café ☕")
    );
    assert_eq!(m["event_id_header"], id.to_string());
    assert_eq!(m["message_id"], format!("<{id}.notify.0.email@hookd>"));
    server.stop().await;
    // Events that do not match the route's event globs send nothing.
    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_over_tls_checks_the_server_certificate() {
    let certs = TestCerts::new();
    let sink = SmtpSink::start("tls", Some(&certs), None).await;
    let db = TestDb::new(Backend::Sqlite).await;
    let smtp_url = format!("smtps://127.0.0.1:{}", sink.port);
    let vars = |ca: Option<&str>| {
        let mut v = vec![
            ("SMTP_URL", smtp_url.clone()),
            ("SMTP_FROM", "hookd@example.com".to_owned()),
            ("HOOKD_MAX_ATTEMPTS", "1".to_owned()),
        ];
        if let Some(ca) = ca {
            v.push(("HOOKD_SMTP_CA_FILE", ca.to_owned()));
        }
        v
    };
    // Without the test CA the server's certificate is not trusted: nothing is sent.
    let untrusted = vars(None);
    let untrusted: Vec<(&str, &str)> = untrusted.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = TestServer::start(&db, &email_route(), &untrusted).await;
    let (_, body) = stripe_event("charge.refunded");
    let id = id_of(server.post_stripe(&body).await).await;
    let e = server.wait_status(id, EventStatus::DeadLetter, WAIT).await;
    let err = e.last_error.unwrap();
    assert!(
        err.contains("smtps://127.0.0.1") && err.to_lowercase().contains("certificate"),
        "{err}"
    );
    assert!(sink.messages().is_empty());
    server.stop().await;

    let trusted = vars(Some(&certs.path("ca.pem")));
    let trusted: Vec<(&str, &str)> = trusted.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = TestServer::start(&db, &email_route(), &trusted).await;
    let (_, body) = stripe_event("charge.captured");
    let id = id_of(server.post_stripe(&body).await).await;
    server.wait_status(id, EventStatus::Completed, WAIT).await;
    let m = &sink.wait_messages(1, WAIT).await[0];
    assert_eq!(m["tls"], true);
    assert_eq!(m["subject"], "Charge 2000 usd (charge.captured)");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_choose_routes_by_payload() {
    let db = TestDb::new(Backend::Sqlite).await;
    let usd = Target::start(Behaviour::default()).await;
    let big = Target::start(Behaviour::default()).await;
    let routes = format!(
        r#"[[routes]]
name = "usd"
provider = "stripe"
filters = [{{ pointer = "/data/object/currency", equals = "usd" }}]
steps = [{{ action = "forward", url = "{}" }}]

[[routes]]
name = "big"
provider = "stripe"
filters = [{{ pointer = "/data/object/amount", in = [5000, 9000] }}, {{ pointer = "/data/object/refunded", exists = false }}]
steps = [{{ action = "forward", url = "{}" }}]
"#,
        usd.url, big.url
    );
    let server = TestServer::start(&db, &routes, &[]).await;
    let send = |n: u32, currency: &str, amount: u32, extra: &str| {
        format!(
            r#"{{"id":"evt_f{n}","type":"charge.succeeded","data":{{"object":{{"currency":"{currency}","amount":{amount}{extra}}}}}}}"#
        )
    };
    let cases = [
        (send(1, "usd", 2000, ""), (1, 0)),
        (send(2, "eur", 5000, ""), (0, 1)),
        (send(3, "eur", 5000, r#","refunded":true"#), (0, 0)),
        (send(4, "usd", 9000, ""), (1, 1)),
    ];
    for (body, (to_usd, to_big)) in cases {
        let (before_usd, before_big) = (usd.hits(), big.hits());
        let id = id_of(server.post_stripe(&body).await).await;
        let e = server.wait_status(id, EventStatus::Completed, WAIT).await;
        assert_eq!(
            (usd.hits() - before_usd, big.hits() - before_big),
            (to_usd, to_big),
            "{body}"
        );
        if to_usd + to_big == 0 {
            assert_eq!(
                e.transitions.last().unwrap().detail.as_deref(),
                Some("no route matched")
            );
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_destination_cannot_take_every_worker() {
    let db = TestDb::new(Backend::Sqlite).await;
    let slow = Target::start(Behaviour {
        delay: Duration::from_millis(600),
        ..Default::default()
    })
    .await;
    let fast = Target::start(Behaviour::default()).await;
    let routes = format!(
        "[[routes]]\nprovider = \"stripe\"\nevents = [\"slow.*\"]\nsteps = [{{ action = \"forward\", url = \"{}\" }}]\n\
         [[routes]]\nprovider = \"stripe\"\nevents = [\"fast.*\"]\nsteps = [{{ action = \"forward\", url = \"{}\" }}]\n",
        slow.url, fast.url
    );
    let server = TestServer::start(
        &db,
        &routes,
        &[
            ("HOOKD_WORKERS", "4"),
            ("HOOKD_DESTINATION_CONCURRENCY", "2"),
        ],
    )
    .await;
    // Without a limit, 4 workers would take the 8 older slow events first, and the fast ones
    // would wait at least two rounds of 600 ms.
    let mut slow_ids = Vec::new();
    for _ in 0..8 {
        let (_, body) = stripe_event("slow.thing");
        slow_ids.push(id_of(server.post_stripe(&body).await).await);
    }
    let started = Instant::now();
    let mut fast_ids = Vec::new();
    for _ in 0..3 {
        let (_, body) = stripe_event("fast.thing");
        fast_ids.push(id_of(server.post_stripe(&body).await).await);
    }
    for id in &fast_ids {
        server.wait_status(*id, EventStatus::Completed, WAIT).await;
    }
    let fast_done = started.elapsed();
    assert!(
        fast_done < Duration::from_millis(600),
        "fast events waited {fast_done:?}"
    );
    for id in &slow_ids {
        let e = server.wait_status(*id, EventStatus::Completed, WAIT).await;
        assert_eq!(
            e.attempts, 1,
            "waiting for a slot is not an attempt: {e:#?}"
        );
    }
    assert_eq!(slow.succeeded().len(), 8);
    assert!(
        slow.max_in_flight() <= 2,
        "{} at once",
        slow.max_in_flight()
    );
    server.stop().await;
}

#[test]
fn invalid_action_settings_name_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[[routes]]\nsteps = [{ action = \"email\", to = [\"a@example.com\"], subject = \"s\", body = \"b\" }]\n",
            vec![],
            "SMTP_URL",
        ),
        (
            "[[routes]]\nsteps = [{ action = \"email\", to = [\"a@example.com\"], subject = \"s\", body = \"b\" }]\n",
            vec![("SMTP_URL", "smtp://mail.example.com")],
            "SMTP_FROM",
        ),
        (
            "[[routes]]\nsteps = [{ action = \"email\", to = [\"not an address\"], subject = \"s\", body = \"b\" }]\n",
            vec![],
            "not an email address",
        ),
        (
            "[[routes]]\nsteps = [{ action = \"email\", to = [\"a@example.com\"], subject = \"{{nope}}\", body = \"b\" }]\n",
            vec![],
            "unknown placeholder",
        ),
        ("", vec![("SMTP_URL", "http://u:pw@mail")], "SMTP_URL"),
        (
            "",
            vec![
                ("SMTP_URL", "smtp://mail"),
                ("HOOKD_SMTP_CA_FILE", "/nonexistent.pem"),
            ],
            "HOOKD_SMTP_CA_FILE",
        ),
        (
            "",
            vec![("HOOKD_BREAKER_FAILURES", "0")],
            "HOOKD_BREAKER_FAILURES",
        ),
        (
            "[[routes]]\nsigning_secret = \"secret\"\nsteps = [{ action = \"log\" }]\n",
            vec![],
            "whsec_",
        ),
        (
            "[[routes]]\nfilters = [{ pointer = \"/a\" }]\nsteps = [{ action = \"log\" }]\n",
            vec![],
            "exactly one",
        ),
        (
            "[[routes]]\nsteps = [{ action = \"log\", compensate = { action = \"log\", compensate = { action = \"log\" } } }]\n",
            vec![],
            "cannot have its own",
        ),
    ];
    for (i, (toml, env, expect)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("c{i}.toml"));
        std::fs::write(&path, toml).unwrap();
        let mut vars = vec![("HOOKD_CONFIG".to_owned(), path.display().to_string())];
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let err = hookd::config::Config::from_vars(vars)
            .unwrap_err()
            .to_string();
        assert!(err.contains(expect), "case {i}: {err}");
        assert!(!err.contains(":pw@"), "password in message: {err}");
    }
}

/// The route example in the README's configuration reference is a working configuration.
#[test]
fn readme_route_example_is_valid() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme.find("### Routes and steps").unwrap()..];
    let start = section.find("```toml\n").unwrap() + "```toml\n".len();
    let example = &section[start..start + section[start..].find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookd.toml");
    std::fs::write(&path, example).unwrap();
    let c = hookd::config::Config::from_vars([
        ("HOOKD_CONFIG".to_owned(), path.display().to_string()),
        ("SMTP_URL".to_owned(), "smtp://mail.example.com".to_owned()),
        ("SMTP_FROM".to_owned(), "hookd@example.com".to_owned()),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.actions.routes.len(), 1);
    assert_eq!(c.actions.routes[0].steps.len(), 3);
    let err =
        hookd::config::Config::from_vars([("HOOKD_CONFIG".to_owned(), path.display().to_string())])
            .unwrap_err()
            .to_string();
    assert!(err.contains("SMTP_URL"), "{err}");
}

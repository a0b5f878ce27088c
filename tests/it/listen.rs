//! The developer loop: the event stream (`/admin/events/stream`), the real `hookd listen` binary
//! following it and forwarding to a local target (live, filtered, across a server restart and a
//! fleet of api processes), and `hookd trigger` sending every sample to a real hookd.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;

use crate::support::*;

const WAIT: Duration = Duration::from_secs(30);
const READ_TOKEN: &str = "read-only-token-for-listen-tests";

/// `hookd listen` running as a child process, its output in a file; killed when dropped.
struct Listen {
    child: Child,
    log: PathBuf,
}

impl Listen {
    /// Start `hookd listen --url <url> --forward-to <to> <args>` with the read token, and wait
    /// until it is connected.
    async fn start(dir: &Path, url: &str, to: &str, args: &[&str]) -> Self {
        let log = dir.join(format!("listen-{}.log", uuid::Uuid::new_v4().simple()));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_hookd"))
            .env_clear()
            .env("HOOKD_ADMIN_TOKEN", READ_TOKEN)
            .args(["listen", "--url", url, "--forward-to", to])
            .args(args)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn hookd listen");
        let l = Self { child, log };
        l.wait_output("Ready:", 1).await;
        l
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until `text` occurs at least `n` times in the output; returns the output.
    async fn wait_output(&self, text: &str, n: usize) -> String {
        eventually(
            format!("hookd listen to print {text:?} {n} times"),
            WAIT,
            || async { self.output() },
            |out| out.matches(text).count() >= n,
        )
        .await
    }
}

impl Drop for Listen {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POST a GitHub event signed with the test secret.
async fn post_github(server: &TestServer, event: &str, body: &str) -> reqwest::Response {
    let headers = [
        ("x-hub-signature-256", github_signature(GITHUB_SECRET, body)),
        ("x-github-event", event.to_owned()),
        ("x-github-delivery", uuid::Uuid::new_v4().to_string()),
        ("content-type", "application/json".to_owned()),
    ];
    server.post("github", &headers, body.to_owned()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_forwards_events_live_with_their_body_and_headers_filtered() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(
        &db,
        "",
        &[
            ("HOOKD_ADMIN_READ_TOKEN", READ_TOKEN),
            ("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET),
            // The shortest allowed (the store timeout), so the first events' ranges settle, and
            // are read again, while the test runs.
            ("HOOKD_STREAM_SETTLE_MS", "5000"),
        ],
    )
    .await;
    let all = Target::start(Behaviour::default()).await;
    let invoices = Target::start(Behaviour::default()).await;
    let github = Target::start(Behaviour::default()).await;
    let dir = db.dir.path();
    let l_all = Listen::start(dir, &server.url, &all.url, &[]).await;
    let l_inv = Listen::start(
        dir,
        &server.url,
        &invoices.url,
        &["--provider", "stripe", "--events", "invoice.*"],
    )
    .await;
    let l_gh = Listen::start(
        dir,
        &server.url,
        &github.url,
        &["--provider", "github", "--json"],
    )
    .await;
    // The local target is down: said so, and the stream goes on.
    let down = format!("http://127.0.0.1:{}/hook", free_port());
    let l_down = Listen::start(dir, &server.url, &down, &[]).await;

    let (_, charge) = stripe_event("charge.succeeded");
    let (_, invoice) = stripe_event("invoice.paid");
    let push = r#"{"ref":"refs/heads/main","after":"listen-test"}"#;
    let first_posted = tokio::time::Instant::now();
    let charge_id = id_of(server.post_stripe(&charge).await).await;
    let invoice_id = id_of(server.post_stripe(&invoice).await).await;
    let push_r = post_github(&server, "push", push).await;
    assert_eq!(push_r.status(), StatusCode::ACCEPTED);

    let got = all.wait_received(3, WAIT).await;
    let bodies: Vec<&[u8]> = got.iter().map(|r| r.body.as_ref()).collect();
    assert_eq!(
        bodies,
        [charge.as_bytes(), invoice.as_bytes(), push.as_bytes()],
        "in order, byte for byte"
    );
    let first = &got[0].headers;
    assert_eq!(first["content-type"], "application/json");
    assert_eq!(first["x-hookd-event-id"], charge_id.to_string().as_str());
    assert_eq!(first["x-hookd-provider"], "stripe");
    assert_eq!(first["x-hookd-event-type"], "charge.succeeded");
    // The signature is stored redacted: not forwarded as "[redacted]".
    assert!(!first.contains_key("stripe-signature"), "{first:?}");
    assert_eq!(got[2].headers["x-github-event"], "push");
    // It prints a line once the local target has answered, which may be after the target
    // counted the request.
    l_all
        .wait_output(&format!("stripe  invoice.paid  {invoice_id}  -> 200 OK"), 1)
        .await;
    l_all.wait_output("github  push", 1).await;

    let inv = invoices.wait_received(1, WAIT).await;
    assert_eq!(inv[0].body.as_ref(), invoice.as_bytes());
    let gh = github.wait_received(1, WAIT).await;
    assert_eq!(gh[0].body.as_ref(), push.as_bytes());
    let out = l_gh.wait_output("\"duration_ms\"", 1).await;
    let line: serde_json::Value = out
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("a JSON line");
    assert_eq!(line["provider"], "github");
    assert_eq!(line["event_type"], "push");
    assert_eq!(line["status"], 200);
    l_down.wait_output("failed:", 3).await;
    // Later events still reach every listener; the filtered ones still get only theirs.
    let (_, later) = stripe_event("invoice.finalized");
    server.post_stripe(&later).await;
    all.wait_received(4, WAIT).await;
    let inv = invoices.wait_received(2, WAIT).await;
    assert_eq!(inv[1].body.as_ref(), later.as_bytes());
    l_down.wait_output("failed:", 4).await;
    assert_eq!(github.received().len(), 1);
    assert_eq!(all.received().len(), 4, "each event once");

    // How long from the 202 to the local target's answer, one event at a time (printed: the
    // stream polls every 250 ms, so about half that on average).
    let mut lags = Vec::new();
    for i in 0..20 {
        let (_, body) = stripe_event("invoice.paid");
        let posted = std::time::Instant::now();
        server.post_stripe(&body).await;
        let got = invoices.wait_received(3 + i, WAIT).await;
        lags.push(got[2 + i].at.duration_since(posted));
    }
    lags.sort();
    println!(
        "listen: accepted -> forwarded, median {:?}, max {:?} (20 events)",
        lags[10], lags[19]
    );
    // Once the first events' range has settled and was read again: still each event once.
    // (The loop above waited for the filtered listener only.)
    all.wait_received(24, WAIT).await;
    let settled = first_posted + Duration::from_secs(7);
    tokio::time::sleep_until(settled.max(tokio::time::Instant::now() + Duration::from_secs(1)))
        .await;
    assert_eq!(all.received().len(), 24, "{}", l_all.output());
    assert_eq!(invoices.received().len(), 22);

    // Ctrl-C ends it cleanly.
    for l in [&l_all, &l_inv, &l_gh] {
        let sent = Command::new("kill")
            .args(["-INT", &l.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }
    for mut l in [l_all, l_inv, l_gh] {
        let status = eventually(
            "hookd listen to exit on SIGINT",
            WAIT,
            || std::future::ready(l.child.try_wait().unwrap()),
            Option::is_some,
        )
        .await;
        assert!(status.is_some_and(|s| s.success()), "{}", l.output());
    }
    // What retrying cannot change ends it with the reason: a bad token, a URL that is not one.
    let refused = |token: &str, to: &str| {
        Command::new(env!("CARGO_BIN_EXE_hookd"))
            .env_clear()
            .args(["listen", "--url", &server.url, "--token", token])
            .args(["--forward-to", to])
            .output()
            .unwrap()
    };
    let o = refused("not-the-token-of-anyone-at-all", &all.url);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("401"), "{err}");
    let o = refused(READ_TOKEN, "localhost:3000/hook");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--forward-to"), "{err}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_outlasts_a_store_outage() {
    let db = TestDb::new(Backend::Postgres).await;
    let server = TestServer::start(
        &db,
        "",
        &[
            ("HOOKD_ADMIN_READ_TOKEN", READ_TOKEN),
            ("HOOKD_STORE_TIMEOUT_MS", "1000"),
            ("HOOKD_STREAM_SETTLE_MS", "1000"),
        ],
    )
    .await;
    let target = Target::start(Behaviour::default()).await;
    let listen = Listen::start(db.dir.path(), &server.url, &target.url, &[]).await;
    let (_, e1) = stripe_event("invoice.paid");
    server.post_stripe(&e1).await;
    target.wait_received(1, WAIT).await;
    // The store fails under the stream: hookd ends it with an error message (no details), and
    // listen keeps trying.
    let outage = db.take_down().await;
    let out = listen.wait_output("hookd ended the stream", 1).await;
    assert!(out.contains("the event store failed"), "{out}");
    outage.end().await;
    let (_, e2) = stripe_event("invoice.paid");
    let r = eventually(
        "hookd to accept webhooks again",
        WAIT,
        || server.post_stripe(&e2),
        |r| r.status() == StatusCode::ACCEPTED,
    )
    .await;
    drop(r);
    let got = target.wait_received(2, WAIT).await;
    assert_eq!(got[1].body.as_ref(), e2.as_bytes());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(target.received().len(), 2, "{}", listen.output());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_survives_a_server_restart_and_follows_the_fleet() {
    let db = TestDb::new(Backend::Postgres).await;
    let extra = [("HOOKD_ADMIN_READ_TOKEN", READ_TOKEN.to_owned())];
    let mut a = Hookd::spawn_with(&db, "", "api", &extra, "a.log").await;
    let b = Hookd::spawn_with(&db, "", "api", &extra, "b.log").await;
    let target = Target::start(Behaviour::default()).await;
    let listen = Listen::start(db.dir.path(), &a.url, &target.url, &[]).await;
    let http = reqwest::Client::new();
    let post = |url: &str, body: &str| stripe_request(&http, url, body).send();
    // Accepted by the other process of the fleet: streamed from the store.
    let (_, e1) = stripe_event("invoice.paid");
    assert_eq!(
        post(&b.url, &e1).await.unwrap().status(),
        StatusCode::ACCEPTED
    );
    target.wait_received(1, WAIT).await;

    // The process it follows stops: the stream ends cleanly (not cut), and it keeps trying.
    a.signal("TERM");
    assert!(a.wait_exit(WAIT).await.success());
    listen.wait_output("the stream ended", 1).await;
    let (_, e2) = stripe_event("invoice.paid");
    let (_, e3) = stripe_event("charge.refunded");
    for e in [&e2, &e3] {
        assert_eq!(
            post(&b.url, e).await.unwrap().status(),
            StatusCode::ACCEPTED
        );
    }
    // Back on the same port: it resumes where it stopped.
    let port = a.url.rsplit(':').next().unwrap().to_owned();
    let mut restart = extra.to_vec();
    restart.push(("PORT", port));
    let _a = Hookd::spawn_with(&db, "", "api", &restart, "a2.log").await;
    let got = target.wait_received(3, WAIT).await;
    let bodies: Vec<&[u8]> = got.iter().map(|r| r.body.as_ref()).collect();
    assert_eq!(bodies, [e1.as_bytes(), e2.as_bytes(), e3.as_bytes()]);
    listen.wait_output("Ready:", 2).await;
    // Resuming sends again what arrived within the settle delay: none of it forwarded twice.
    let (_, e4) = stripe_event("invoice.paid");
    post(&b.url, &e4).await.unwrap();
    target.wait_received(4, WAIT).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(target.received().len(), 4, "{}", listen.output());
}

/// Read a server-sent-events answer until `done` holds for the messages so far (each its
/// `id:` and `data:`), or fail after [`WAIT`].
async fn read_messages(
    resp: &mut reqwest::Response,
    done: impl Fn(&[(String, String)]) -> bool,
) -> Vec<(String, String)> {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let messages: Vec<(String, String)> = text
            .split("\n\n")
            .filter(|m| m.contains("data:"))
            .map(|m| {
                let field = |name: &str| {
                    m.lines()
                        .find_map(|l| l.strip_prefix(name))
                        .unwrap_or_default()
                        .trim()
                        .to_owned()
                };
                (field("id:"), field("data:"))
            })
            .collect();
        if done(&messages) {
            return messages;
        }
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .unwrap_or_else(|_| panic!("waited {WAIT:?} for messages; got {text}"))
            .expect("the stream reads")
            .expect("the stream goes on");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_needs_a_token_has_a_cap_and_sends_events_that_commit_late() {
    let db = TestDb::new(Backend::Postgres).await;
    let server = TestServer::start(
        &db,
        "",
        &[
            ("HOOKD_ADMIN_READ_TOKEN", READ_TOKEN),
            ("HOOKD_STREAM_MAX", "1"),
            // The store timeout of the test servers (5 s): the shortest allowed.
            ("HOOKD_STREAM_SETTLE_MS", "5000"),
        ],
    )
    .await;
    let url = format!("{}/admin/events/stream", server.url);
    let http = reqwest::Client::new();
    let open = |token: Option<&str>, last: Option<&str>| {
        let mut req = http.get(&url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(l) = last {
            req = req.header("last-event-id", l);
        }
        req.send()
    };
    // Once a stream is closed, its place under the cap (of one) is free again.
    let reopen = |last: String| {
        eventually(
            "the closed stream's place under the cap to be free",
            WAIT,
            move || open(Some(READ_TOKEN), Some(&last)),
            |r| r.as_ref().is_ok_and(|r| r.status() == 200),
        )
    };
    assert_eq!(open(None, None).await.unwrap().status(), 401);
    assert_eq!(
        open(Some("not-a-token-at-all-not-one"), None)
            .await
            .unwrap()
            .status(),
        401
    );
    let long = http
        .get(format!("{url}?events={}", "x".repeat(2000)))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(long.status(), 400);
    let bad = open(Some(READ_TOKEN), Some("yesterday")).await.unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("Last-Event-ID"));

    let mut stream = open(Some(READ_TOKEN), None).await.unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    // The cap: a second stream is refused while the first is open.
    let busy = open(Some(READ_TOKEN), None).await.unwrap();
    assert_eq!(busy.status(), 503);
    assert_eq!(
        busy.json::<serde_json::Value>().await.unwrap()["error"],
        "busy"
    );

    // Past its start, so an event minted a second ago is after the stream's first position.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, body) = stripe_event("invoice.paid");
    let fresh = id_of(server.post_stripe(&body).await).await;
    let first = read_messages(&mut stream, |m| !m.is_empty()).await;
    let data: serde_json::Value = serde_json::from_str(&first[0].1).unwrap();
    assert_eq!(data["id"], fresh.to_string().as_str());
    assert_eq!(data["body"], body.as_str());
    assert_eq!(data["body_encoding"], "utf8");
    assert_eq!(data["headers"]["stripe-signature"], "[redacted]");
    // Now an event whose id is older than the one just sent commits, as an insert that was slow
    // to commit on another process would: it is sent once its range settles.
    let late = {
        let ms = (fresh.0.as_u128() >> 80) - 500;
        uuid::Uuid::from_u128((ms << 80) | (7 << 76) | (1 << 63))
    };
    assert!(late < fresh.0, "the late event sorts before the one sent");
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO events (id, provider, idempotency_key, event_type, headers, body)
         VALUES ($1, 'stripe', 'evt_late', 'invoice.late', '{}', $2)",
    )
    .bind(late)
    .bind(br#"{"late":true}"#.as_slice())
    .execute(&mut conn)
    .await
    .unwrap();
    let second = read_messages(&mut stream, |m| !m.is_empty()).await;
    let data: serde_json::Value = serde_json::from_str(&second[0].1).unwrap();
    assert_eq!(data["id"], late.to_string().as_str());
    assert_eq!(data["event_type"], "invoice.late");

    // Resuming from the first message's cursor sends both again (at least once), from a
    // cursor no later than either.
    drop(stream);
    let mut again = reopen(first[0].0.clone()).await.unwrap();
    let resent = read_messages(&mut again, |m| m.len() >= 2).await;
    let ids: Vec<String> = resent
        .iter()
        .map(|(_, d)| serde_json::from_str::<serde_json::Value>(d).unwrap()["id"].to_string())
        .collect();
    assert!(ids.contains(&format!("\"{fresh}\"")) && ids.contains(&format!("\"{late}\"")));
    drop(again);
    // A cursor from the future (none was ever sent) starts now, rather than hide what comes.
    let future = "ffffffff-ffff-7fff-bfff-ffffffffffff";
    let mut from_future = reopen(future.into()).await.unwrap();
    let (_, body) = stripe_event("invoice.created");
    let next = id_of(server.post_stripe(&body).await).await;
    let got = read_messages(&mut from_future, |m| !m.is_empty()).await;
    let data: serde_json::Value = serde_json::from_str(&got[0].1).unwrap();
    assert_eq!(data["id"], next.to_string().as_str());
    drop(from_future);
    server.stop().await;

    // A settle delay shorter than the store timeout could skip an insert: refused at start.
    let mut vars = base_vars(&db, "");
    vars.push(("HOOKD_STREAM_SETTLE_MS".into(), "1000".into()));
    let err = hookd::config::Config::from_vars(vars)
        .unwrap_err()
        .to_string();
    assert!(err.contains("HOOKD_STREAM_SETTLE_MS"), "{err}");
    assert!(err.contains("HOOKD_STORE_TIMEOUT_MS"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_sends_every_sample_signed_as_its_provider_signs() {
    let db = TestDb::new(Backend::Sqlite).await;
    let secrets: &[(&str, &str)] = &[
        ("STRIPE_WEBHOOK_SECRET", STRIPE_SECRET),
        ("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET),
        (
            "STANDARD_WEBHOOK_SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ),
        ("SHOPIFY_WEBHOOK_SECRET", "shpss_trigger_secret"),
        ("SLACK_WEBHOOK_SECRET", "slack-signing-secret"),
        ("GITLAB_WEBHOOK_SECRET", "gitlab-secret-token"),
        ("TWILIO_WEBHOOK_SECRET", "twilio-auth-token"),
        ("PADDLE_WEBHOOK_SECRET", "pdl_ntfset_trigger_secret"),
        ("SQUARE_WEBHOOK_SECRET", "square-signature-key"),
        ("LINEAR_WEBHOOK_SECRET", "lin_wh_trigger_secret"),
        ("PAYPAL_WEBHOOK_ID", "WH-TRIGGER-TEST"),
    ];
    let server = TestServer::start(&db, "", secrets).await;
    let trigger = |env: &[(&str, &str)], args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_hookd"))
            .env_clear()
            .envs(env.iter().copied())
            .env("HOOKD_URL", &server.url)
            .env("HOOKD_LOG_DIR", "")
            .arg("trigger")
            .args(args)
            .output()
            .expect("run hookd trigger")
    };
    let list = trigger(&[], &["--list"]);
    assert!(list.status.success());
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    let samples: Vec<(&str, &str)> = list
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(p, n)| (p, n.trim()))
        .collect();
    assert_eq!(
        samples.len(),
        hookd::testevent::samples::SAMPLES.len(),
        "{list}"
    );
    let mut sent = 0;
    for (provider, name) in &samples {
        let o = trigger(secrets, &[provider, name]);
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
        );
        if *provider == "paypal" {
            assert!(
                !o.status.success() && err.contains("Webhooks Simulator"),
                "{err}"
            );
            continue;
        }
        assert!(
            o.status.success() && out.starts_with("202"),
            "hookd trigger {provider} {name}: {out}{err}"
        );
        sent += 1;
    }
    let events = server
        .store
        .list_events(&Default::default(), None, 500)
        .await
        .unwrap();
    assert_eq!(events.len(), sent, "every sample stored once");
    let types: Vec<String> = events
        .iter()
        .map(|e| format!("{} {}", e.provider, e.event_type))
        .collect();
    for t in [
        "stripe invoice.paid",
        "github push",
        "shopify orders/create",
        "slack app_mention",
        "gitlab Push Hook",
        "twilio com.twilio.messaging.message.delivered",
        "paddle transaction.completed",
        "square payment.updated",
        "linear Issue.create",
        "standard invoice.paid",
    ] {
        assert!(types.iter().any(|x| x == t), "{t} not in {types:?}");
    }

    // The same sample twice is two events (fresh ids), and --secret stands in for the variable.
    let o = trigger(&[], &["stripe", "invoice.paid", "--secret", STRIPE_SECRET]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = trigger(&[], &["stripe", "invoice.paid", "--secret", "whsec_wrong"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("400"));
    // Unknown providers and types: a clear error that lists what there is; nothing sent.
    let o = trigger(secrets, &["nosuch", "x"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("no samples for provider \"nosuch\""),
        "{err}"
    );
    let o = trigger(secrets, &["stripe", "invoice.nope"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("invoice.paid") && err.contains("--list"),
        "{err}"
    );
    let o = trigger(&[], &["stripe"]);
    assert!(!o.status.success());
    assert_eq!(server.total_events().await, sent as u64 + 1);
    server.stop().await;
}

//! The attacks of the outside probe (issue #20), each reproduced against a real hookd over real
//! sockets: every test here failed before its fix. SECURITY.md names the test of each attack
//! class.

use std::time::{Duration, Instant};

use crate::support::*;
use reqwest::StatusCode;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Open a connection and send `head` (request line and headers) and nothing more.
async fn send_head(server: &TestServer, head: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr(server)).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

/// Finding 1: clients that send the headers of a login or an admin POST and then stay silent
/// (more of them than the connection cap) cannot stop webhook intake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_login_and_admin_bodies_cannot_starve_webhooks() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(
        &db,
        "",
        &[
            ("HOOKD_MAX_CONNECTIONS", "20"),
            ("HOOKD_BODY_TIMEOUT_MS", "4000"),
        ],
    )
    .await;
    let login = "POST /ui/login HTTP/1.1\r\nhost: x\r\ncontent-type: \
                 application/x-www-form-urlencoded\r\ncontent-length: 1000\r\n\r\ntoken=";
    let admin = format!(
        "POST /admin/replays HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ADMIN_TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: 1000\r\n\r\n{{"
    );
    let mut silent = Vec::new();
    for i in 0..30 {
        silent.push(send_head(&server, if i % 2 == 0 { login } else { &admin }).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    for _ in 0..5 {
        let (_, body) = stripe_event("charge.succeeded");
        let r = tokio::time::timeout(Duration::from_secs(2), server.post_stripe(&body))
            .await
            .expect("a webhook is answered while silent clients hold connections");
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "webhooks answered promptly: {:?}",
        started.elapsed()
    );
    // Each silent client was refused at once (its share was full) or cut off at the deadline.
    let (mut refused, mut timed_out) = (0, 0);
    for mut s in silent {
        let answer = read_until_closed(&mut s, Duration::from_secs(8))
            .await
            .expect("closed by the body deadline");
        if answer.starts_with("HTTP/1.1 503") && answer.contains("overloaded") {
            refused += 1;
        } else {
            assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
            timed_out += 1;
        }
    }
    assert_eq!(
        timed_out, 10,
        "half of the 20 connections are kept for webhooks"
    );
    assert_eq!(refused, 20);
    assert_eq!(server.total_events().await, 5);
    server.stop().await;
}

/// Finding 1: console and admin bodies have small limits, checked before the body is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_admin_bodies_have_small_limits() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db, "", &[]).await;
    let started = Instant::now();
    let mut s = send_head(
        &server,
        "POST /ui/login HTTP/1.1\r\nhost: x\r\ncontent-length: 2000000\r\n\r\n",
    )
    .await;
    let answer = read_until_closed(&mut s, Duration::from_secs(3))
        .await
        .expect("answered and closed at once");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(1));
    let mut s = send_head(
        &server,
        &format!(
            "POST /admin/replays HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ADMIN_TOKEN}\r\n\
             content-type: application/json\r\ncontent-length: 100000\r\n\r\n"
        ),
    )
    .await;
    let answer = read_until_closed(&mut s, Duration::from_secs(3))
        .await
        .expect("answered and closed at once");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // A normal login form still works (refused for its CSRF value, not its size).
    let r = server
        .http
        .post(format!("{}/ui/login", server.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=x&csrf=y")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    server.stop().await;
}

/// Finding 3: a name on the forward allow-list may resolve only to public addresses or to ranges
/// listed themselves; `localhost` alone does not open loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_name_does_not_open_loopback() {
    let db = TestDb::new(Backend::Sqlite).await;
    let target = Target::start(Behaviour::default()).await;
    let by_name = forward_route(&target.url.replace("127.0.0.1", "localhost"));
    let dead = hookd::event::EventStatus::DeadLetter;
    let detail = crate::security::forward_under_allow_list(&db, &by_name, "localhost", dead).await;
    assert_eq!(target.hits(), 0, "nothing reached loopback");
    assert!(detail.contains("forward policy"), "{detail}");
    // With the loopback range listed as well, the same forward is delivered.
    let done = hookd::event::EventStatus::Completed;
    crate::security::forward_under_allow_list(&db, &by_name, "localhost,127.0.0.0/8", done).await;
    assert_eq!(target.hits(), 1);
}

/// Finding 2: an `HTTP_PROXY` in hookd's environment does not carry forwards past the egress
/// policy. The "proxy" is a recording server on loopback: before the fix it received the
/// forward (as `POST http://hookd-probe.invalid/in`) although the policy refuses that name's
/// addresses (it has none) and loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_proxies_do_not_bypass_the_forward_policy() {
    let db = TestDb::new(Backend::Sqlite).await;
    let proxy = Target::start(Behaviour::default()).await;
    let proxy_url = proxy.url.trim_end_matches("/in").to_owned();
    let hookd = Hookd::spawn_with(
        &db,
        &forward_route("http://hookd-probe.invalid/in"),
        "serve",
        &[
            ("HOOKD_FORWARD_ALLOW_PRIVATE", "false".into()),
            ("HOOKD_MAX_ATTEMPTS", "1".into()),
            ("HTTP_PROXY", proxy_url.clone()),
            ("http_proxy", proxy_url.clone()),
            ("ALL_PROXY", proxy_url),
        ],
        "proxy.log",
    )
    .await;
    let (_, body) = stripe_event("charge.succeeded");
    let r = post_stripe(&hookd.url, &body).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = id_of(r).await;
    hookd
        .wait_status(
            id,
            hookd::event::EventStatus::DeadLetter,
            Duration::from_secs(15),
        )
        .await;
    assert_eq!(proxy.hits(), 0, "the forward went through the proxy");
}

/// A Stripe event whose `data` nests `depth` arrays.
fn deep_stripe_event(depth: usize) -> String {
    format!(
        r#"{{"id":"evt_{}","object":"event","type":"charge.succeeded","data":{}{}}}"#,
        uuid::Uuid::new_v4().simple(),
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

/// Finding 5: nesting is limited at accept (400, nothing stored), however deep the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_bodies_are_refused_at_accept() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db, "", &[]).await;
    for depth in [127, 129, 30_000] {
        let r = server.post_stripe(&deep_stripe_event(depth)).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "depth {depth}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"], "too_deeply_nested", "depth {depth}");
    }
    assert_eq!(server.total_events().await, 0);
    // 126 levels inside the outer object: 127 in all, the most serde_json parses.
    let r = server.post_stripe(&deep_stripe_event(126)).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    server.stop().await;
}

/// Finding 5: an event whose body cannot be parsed for its route filters (stored before the
/// limit existed) is dead-lettered with the reason, never completed as if no route matched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_cannot_be_evaluated_is_dead_lettered() {
    let db = TestDb::new(Backend::Sqlite).await;
    let target = Target::start(Behaviour::default()).await;
    let server = TestServer::start(&db, &forward_route(&target.url), &[]).await;
    let verified = verified_stripe(&deep_stripe_event(500)).await;
    let id = match server.store.insert(&verified, None).await.unwrap() {
        hookd::store::Inserted::New(id) => id,
        other => panic!("{other:?}"),
    };
    let e = server
        .wait_status(
            id,
            hookd::event::EventStatus::DeadLetter,
            Duration::from_secs(15),
        )
        .await;
    let detail = format!("{e:?}");
    assert!(
        detail.contains("cannot be parsed to evaluate the route filters"),
        "{detail}"
    );
    assert_eq!(target.hits(), 0);
    server.stop().await;
}

/// POST a GitHub `push` with `body`, signed, with this delivery id (or none).
async fn post_github(server: &TestServer, body: &str, delivery: Option<&str>) -> reqwest::Response {
    let mut headers = vec![
        ("x-hub-signature-256", github_signature(GITHUB_SECRET, body)),
        ("x-github-event", "push".to_owned()),
        ("content-type", "application/json".to_owned()),
    ];
    if let Some(d) = delivery {
        headers.push(("x-github-delivery", d.to_owned()));
    }
    server.post("github", &headers, body.to_owned()).await
}

async fn status_and_id(r: reqwest::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let v: serde_json::Value = r.json().await.unwrap();
    let field = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    (status, field("status"), field("id"))
}

/// Finding 8: a captured GitHub request replayed with a new (or no) delivery id is not stored
/// again: no id is a 400, and a byte-identical body within the replay window is a duplicate,
/// also when the copies arrive together (one group-commit batch). After the window it is new.
async fn body_only_replays_are_duplicates(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db, "", &[("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET)]).await;
    let body = format!(
        r#"{{"ref":"refs/heads/main","after":"{}"}}"#,
        uuid::Uuid::new_v4()
    );
    let r = post_github(&server, &body, None).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"], "missing_header");
    let first = status_and_id(post_github(&server, &body, Some("d-1")).await).await;
    assert_eq!((first.0, first.1.as_str()), (202, "queued"));
    let again = status_and_id(post_github(&server, &body, Some("d-2")).await).await;
    assert_eq!((again.0, again.1.as_str()), (200, "duplicate"));
    assert_eq!(again.2, first.2, "the duplicate names the first event");
    // Eight copies of a new body at once, each with its own delivery id: one event.
    let body2 = format!(
        r#"{{"ref":"refs/heads/dev","after":"{}"}}"#,
        uuid::Uuid::new_v4()
    );
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let (http, url, body2) = (server.http.clone(), server.url.clone(), body2.clone());
        tasks.spawn(async move {
            let r = http
                .post(format!("{url}/webhooks/github"))
                .header(
                    "x-hub-signature-256",
                    github_signature(GITHUB_SECRET, &body2),
                )
                .header("x-github-event", "push")
                .header("x-github-delivery", format!("c-{i}"))
                .header("content-type", "application/json")
                .body(body2)
                .send()
                .await
                .unwrap();
            status_and_id(r).await
        });
    }
    let answers = tasks.join_all().await;
    let new: Vec<_> = answers.iter().filter(|a| a.0 == 202).collect();
    assert_eq!(new.len(), 1, "{answers:?}");
    assert!(answers.iter().all(|a| a.2 == new[0].2), "{answers:?}");
    assert_eq!(server.total_events().await, 2);
    // Once the first copy is older than the window (24 h by default), the body is new again.
    age_events(&db, Duration::from_secs(25 * 3600)).await;
    let late = status_and_id(post_github(&server, &body, Some("d-3")).await).await;
    assert_eq!((late.0, late.1.as_str()), (202, "queued"));
    assert_eq!(server.total_events().await, 3);
    server.stop().await;
}
both_backends!(body_only_replays_are_duplicates);

/// Move every stored event's arrival back by `by`, as if it had arrived that long ago.
async fn age_events(db: &TestDb, by: Duration) {
    use sqlx::Connection;
    match db.backend {
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
            sqlx::query("UPDATE events SET received_at = received_at - make_interval(secs => $1)")
                .bind(by.as_secs_f64())
                .execute(&mut c)
                .await
                .unwrap();
        }
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            sqlx::query("UPDATE events SET received_at = received_at - ?1")
                .bind(i64::try_from(by.as_millis()).unwrap())
                .execute(&mut c)
                .await
                .unwrap();
        }
    }
}

/// Finding 4: an admin token shorter than 24 bytes stops start-up, naming the setting (the
/// failed-login table's eviction and IPv6 /64 keys are unit tests in `src/http/access.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_admin_tokens_are_refused_at_start() {
    let db = TestDb::new(Backend::Sqlite).await;
    for (var, short) in [
        ("HOOKD_ADMIN_TOKEN", "secret"),
        ("HOOKD_ADMIN_READ_TOKEN", "23-bytes-are-not-enough"),
    ] {
        let mut vars = base_vars(&db, "");
        vars.push((var.into(), short.into()));
        let err = hookd::config::Config::from_vars(vars)
            .unwrap_err()
            .to_string();
        assert!(err.contains(var) && err.contains("24 bytes"), "{err}");
        assert!(!err.contains(short), "the token is not echoed: {err}");
    }
    let mut vars = base_vars(&db, "");
    vars.push(("HOOKD_ADMIN_READ_TOKEN".into(), "x".repeat(24)));
    assert!(hookd::config::Config::from_vars(vars).is_ok());
}

/// Finding 7: credential-like headers (and the operator's own list) are redacted in the stored
/// audit headers, and a header sent twice is recorded with the value the verifier read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_headers_are_redacted_and_duplicates_agree() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server =
        TestServer::start(&db, "", &[("HOOKD_AUDIT_REDACT_HEADERS", "X-Tenant-Key")]).await;
    let (_, body) = stripe_event("charge.succeeded");
    let good = stripe_header(STRIPE_SECRET, &body, now());
    let mut headers = axum::http::HeaderMap::new();
    let mut add = |k: &'static str, v: &str| headers.append(k, v.parse().unwrap());
    // The verifier reads the first signature; the second is garbage an attacker appended.
    add("stripe-signature", &good);
    add("stripe-signature", "t=1,v1=00");
    add("x-note", "first");
    add("x-note", "second");
    for name in [
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "x-auth-token",
        "cookie",
        "x-tenant-key",
    ] {
        add(name, "credential-value-that-must-not-be-stored");
    }
    add("content-type", "application/json");
    let r = server
        .http
        .post(format!("{}/webhooks/stripe", server.url))
        .headers(headers)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = id_of(r).await;
    let v = server.admin_get(&format!("/events/{id}")).await;
    let stored = &v["headers"];
    assert!(!stored.to_string().contains("credential-value"), "{stored}");
    for name in [
        "proxy-authorization",
        "x-api-key",
        "x-auth-token",
        "x-tenant-key",
    ] {
        assert_eq!(stored[name], "[redacted]", "{name}: {stored}");
    }
    assert_eq!(stored["x-note"], "first", "the value the verifier saw");
    assert_eq!(stored["stripe-signature"], "[redacted]");
    server.stop().await;
}

/// Finding 6: IPv6 addresses that wrap a private IPv4 address (IPv4-compatible, -translated,
/// 6to4) or tunnel (Teredo) are not public destinations: a forward to one stops start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_wrappers_of_private_addresses_are_not_public() {
    let db = TestDb::new(Backend::Sqlite).await;
    for host in [
        "[::127.0.0.1]",
        "[::ffff:0:169.254.169.254]",
        "[2002:a9fe:a9fe::1]",
        "[2001:0:4136:e378:8000:63bf:3fff:fdd2]",
    ] {
        let mut vars = base_vars(&db, &forward_route(&format!("http://{host}:9/in")));
        vars.push(("HOOKD_FORWARD_ALLOW_PRIVATE".into(), "false".into()));
        let err = hookd::config::Config::from_vars(vars)
            .map(|_| ())
            .expect_err(host)
            .to_string();
        assert!(err.contains("HOOKD_FORWARD_ALLOW"), "{host}: {err}");
    }
}

/// Finding 9: a body declared over the limit with `Expect: 100-continue` gets 413 at once,
/// without `100 Continue` (it used to get 100 and then, the body never coming, 408).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_over_the_limit_gets_413_at_once() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db, "", &[("HOOKD_BODY_TIMEOUT_MS", "3000")]).await;
    for path in ["/webhooks/stripe", "/ui/login", "/admin/replays"] {
        let started = Instant::now();
        let mut s = send_head(
            &server,
            &format!(
                "POST {path} HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\n\
                 content-length: 5000000\r\n\r\n"
            ),
        )
        .await;
        let answer = read_until_closed(&mut s, Duration::from_secs(2))
            .await
            .expect("answered and closed at once");
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
        assert!(!answer.contains("100 Continue"), "{path}: {answer}");
        assert!(started.elapsed() < Duration::from_secs(1), "{path}");
    }
    assert_eq!(server.total_events().await, 0);
    server.stop().await;
}

/// Finding 9: with `HOOKD_INTERNAL_ADDR`, `/health` and `/metrics` are served there and not on
/// the public listener, which keeps only the status probes for load balancers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_can_move_to_an_internal_listener() {
    let db = TestDb::new(Backend::Sqlite).await;
    let internal = format!("127.0.0.1:{}", free_port());
    let server = TestServer::start(&db, "", &[("HOOKD_INTERNAL_ADDR", &internal)]).await;
    let get = |url: String| {
        let http = server.http.clone();
        async move { http.get(url).send().await.unwrap() }
    };
    for path in ["/health", "/metrics"] {
        let r = get(format!("{}{path}", server.url)).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "public {path}");
        let r = get(format!("http://{internal}{path}")).await;
        assert_eq!(r.status(), StatusCode::OK, "internal {path}");
    }
    for path in ["/health/live", "/health/ready"] {
        let r = get(format!("{}{path}", server.url)).await;
        assert_eq!(r.status(), StatusCode::OK, "public {path}");
    }
    // Nothing of the public surface is on the internal listener.
    let r = get(format!("http://{internal}/admin/events")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let (_, body) = stripe_event("charge.succeeded");
    assert_eq!(server.post_stripe(&body).await.status(), 202);
    let metrics = get(format!("http://{internal}/metrics"))
        .await
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("webhooks"), "{metrics}");
    server.stop().await;
}

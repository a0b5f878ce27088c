//! Admin access and TLS over real sockets: the allow-list, the failed-login limit, tokens kept
//! out of the logs, and a listener certificate replaced on disk being served without a restart.

use std::time::Duration;

use crate::support::*;
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_allow_list_refuses_other_addresses() {
    let db = TestDb::new(Backend::Sqlite).await;
    // The tests connect from 127.0.0.1: a list without it refuses them, before any token check.
    let server = TestServer::start(&db, "", &[("HOOKD_ADMIN_ALLOW", "10.0.0.0/8, ::1")]).await;
    let r = server
        .http
        .get(format!("{}/admin/providers", server.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = server
        .http
        .get(format!("{}/ui/", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "/ui is guarded too");
    // Webhooks and health are not.
    let (_, body) = stripe_event("charge.succeeded");
    assert_eq!(server.post_stripe(&body).await.status(), 202);
    server.stop().await;
    let server = TestServer::start(&db, "", &[("HOOKD_ADMIN_ALLOW", "127.0.0.0/8")]).await;
    server.admin_get("/providers").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_limited_per_address() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db, "", &[("HOOKD_ADMIN_MAX_FAILURES", "3")]).await;
    let get = |token: &'static str| {
        server
            .http
            .get(format!("{}/admin/providers", server.url))
            .bearer_auth(token)
            .send()
    };
    for _ in 0..3 {
        assert_eq!(
            get("guess").await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // Now even the right token waits: guessing cannot go on at speed.
    for token in ["guess", ADMIN_TOKEN] {
        let r = get(token).await.unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let secs: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&secs));
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"], "too_many_failures");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_secrets_never_reach_the_logs() {
    let db = TestDb::new(Backend::Sqlite).await;
    let hookd = Hookd::spawn_with(
        &db,
        "",
        "serve",
        &[("HOOKD_LOG", "debug".to_owned())],
        "secrets.log",
    )
    .await;
    let http = reqwest::Client::new();
    for token in [ADMIN_TOKEN, "wrong-token-also-secret"] {
        http.get(format!("{}/admin/providers", hookd.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
    }
    let (_, body) = stripe_event("charge.succeeded");
    stripe_request(&http, &hookd.url, &body)
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = std::fs::read_to_string(db.dir.path().join("secrets.log")).unwrap();
    assert!(log.contains("failed admin login"), "{log}");
    for secret in [ADMIN_TOKEN, "wrong-token-also-secret", STRIPE_SECRET] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
}

fn tls_client(certs: &[&TestCerts]) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_info(true)
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5));
    for c in certs {
        let pem = std::fs::read(c.path("ca.pem")).unwrap();
        b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

/// The certificate a new client (no TLS session to resume) is shown.
async fn peer_certificate(certs: &[&TestCerts], url: &str) -> Vec<u8> {
    let r = tls_client(certs).get(url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("a TLS peer certificate")
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_reloads_a_replaced_certificate() {
    let db = TestDb::new(Backend::Sqlite).await;
    let first = TestCerts::new();
    let live = tempfile::tempdir().unwrap();
    let (cert, key) = (live.path().join("tls.pem"), live.path().join("tls.key"));
    std::fs::copy(first.path("server.pem"), &cert).unwrap();
    std::fs::copy(first.path("server.key"), &key).unwrap();
    let server = TestServer::start(
        &db,
        "",
        &[
            ("HOOKD_TLS_CERT", cert.to_str().unwrap()),
            ("HOOKD_TLS_KEY", key.to_str().unwrap()),
            ("HOOKD_TLS_RELOAD_SECS", "1"),
        ],
    )
    .await;
    let https = server.url.replace("http://", "https://") + "/health/live";
    let second = TestCerts::new();
    let both = [&first, &second];
    let before = peer_certificate(&both, &https).await;
    // Plain HTTP on a TLS port gets nowhere.
    assert!(
        server
            .http
            .get(format!("{}/health/live", server.url))
            .send()
            .await
            .map(|r| r.status() != StatusCode::OK)
            .unwrap_or(true)
    );
    // A broken file never replaces a working certificate...
    std::fs::write(&cert, "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(peer_certificate(&both, &https).await, before);
    // ...a renewed pair does, without a restart.
    std::fs::copy(second.path("server.key"), &key).unwrap();
    std::fs::copy(second.path("server.pem"), &cert).unwrap();
    eventually(
        "the replaced certificate to be served (true: reloaded)",
        Duration::from_secs(10),
        || async { peer_certificate(&both, &https).await != before },
        |&reloaded| reloaded,
    )
    .await;
    // A client that trusts only the old CA is now refused.
    assert!(tls_client(&[&first]).get(&https).send().await.is_err());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_to_private_addresses_must_be_allowed() {
    let db = TestDb::new(Backend::Sqlite).await;
    let target = Target::start(Behaviour::default()).await;
    // A literal loopback address stops start-up, naming what to set.
    let mut vars = base_vars(&db, &forward_route(&target.url));
    vars.push(("HOOKD_FORWARD_ALLOW_PRIVATE".into(), "false".into()));
    let err = hookd::config::Config::from_vars(vars)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("127.0.0.1") && err.contains("HOOKD_FORWARD_ALLOW"),
        "{err}"
    );
    // A name is checked address by address when it is resolved: `localhost` is not on a list
    // that names only 10.0.0.0/8, so nothing is sent.
    let by_name = forward_route(&target.url.replace("127.0.0.1", "localhost"));
    let dead = hookd::event::EventStatus::DeadLetter;
    let detail = forward_under_allow_list(&db, &by_name, "10.0.0.0/8", dead).await;
    assert_eq!(target.hits(), 0, "nothing reached the refused address");
    assert!(detail.contains("forward policy"), "{detail}");
    // Listed by name and its loopback range listed too, it is allowed (a name alone reaches only
    // public addresses: tests/it/probe.rs).
    let done = hookd::event::EventStatus::Completed;
    forward_under_allow_list(&db, &by_name, "localhost,127.0.0.0/8", done).await;
    assert_eq!(target.hits(), 1);
}

/// Start hookd with private destinations refused and `HOOKD_FORWARD_ALLOW=allow`, send one
/// Stripe event forwarded by `route`, wait until it reaches `status` (one attempt only, so a
/// refusal dead-letters at once) and stop; returns the event as debug text.
pub(crate) async fn forward_under_allow_list(
    db: &TestDb,
    route: &str,
    allow: &str,
    status: hookd::event::EventStatus,
) -> String {
    let server = TestServer::start(
        db,
        route,
        &[
            ("HOOKD_FORWARD_ALLOW_PRIVATE", "false"),
            ("HOOKD_FORWARD_ALLOW", allow),
            ("HOOKD_MAX_ATTEMPTS", "1"),
        ],
    )
    .await;
    let (_, body) = stripe_event("charge.succeeded");
    let id = id_of(server.post_stripe(&body).await).await;
    let e = server
        .wait_status(id, status, Duration::from_secs(15))
        .await;
    server.stop().await;
    format!("{e:?}")
}

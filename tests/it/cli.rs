//! The `hookd` binary's operator commands, run as a separate process against a running hookd:
//! `send` and `sign` make test webhooks every provider's verifier accepts, and `events`, `dlq`,
//! `providers`, `jobs` and `audit` drive the admin API.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::support::*;
use hookd::event::EventStatus;

const WAIT: Duration = Duration::from_secs(20);
const READ_TOKEN: &str = "read-only-token-for-cli-tests";

/// Secrets for every signable provider, as both the server and the CLI read them.
const SECRETS: &[(&str, &str)] = &[
    ("STRIPE_WEBHOOK_SECRET", STRIPE_SECRET),
    ("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET),
    (
        "STANDARD_WEBHOOK_SECRET",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ),
    ("SHOPIFY_WEBHOOK_SECRET", "shpss_cli_secret"),
    ("SLACK_WEBHOOK_SECRET", "slack-signing-secret"),
    ("GITLAB_WEBHOOK_SECRET", "gitlab-secret-token"),
    ("TWILIO_WEBHOOK_SECRET", "twilio-auth-token"),
    ("PADDLE_WEBHOOK_SECRET", "pdl_ntfset_cli_secret"),
    ("SQUARE_WEBHOOK_SECRET", "square-signature-key"),
    ("LINEAR_WEBHOOK_SECRET", "lin_wh_cli_secret"),
    ("ACME_WEBHOOK_SECRET", "acme-secret"),
    ("PAYPAL_WEBHOOK_ID", "WH-CLI-TEST"),
];

const ACME: &str = r#"
[providers.acme]
scheme = "hmac"
header = "X-Acme-Signature"
prefix = "sha512="
algorithm = "sha512"
encoding = "base64"
signed = "{timestamp}:{body}"
timestamp_header = "X-Acme-Timestamp"
idempotency_header = "X-Acme-Delivery"
event_type_header = "X-Acme-Event"
"#;

/// `hookd <args>` with only the given environment.
fn hookd(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hookd"))
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().copied())
        .env("HOOKD_LOG_DIR", "")
        .args(args)
        .output()
        .expect("run hookd")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_and_sign_make_webhooks_every_verifier_accepts() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db, ACME, SECRETS).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookd.toml");
    std::fs::write(&config, ACME).unwrap();
    let config = config.display().to_string();
    let mut env: Vec<(&str, &str)> = SECRETS.to_vec();
    env.push(("HOOKD_URL", &server.url));
    env.push(("HOOKD_CONFIG", &config));

    let payloads = [
        (
            "stripe",
            r#"{"id":"evt_cli_1","object":"event","type":"charge.succeeded"}"#,
        ),
        ("github", r#"{"zen":"Keep it logically awesome."}"#),
        ("standard", r#"{"type":"invoice.paid","data":{}}"#),
        ("shopify", r#"{"id":820982911946154508}"#),
        (
            "slack",
            r#"{"type":"event_callback","event_id":"Ev_CLI","event":{"type":"app_mention"}}"#,
        ),
        ("gitlab", r#"{"object_kind":"push"}"#),
        (
            "twilio",
            r#"{"type":"com.twilio.messaging.message.delivered"}"#,
        ),
        (
            "paddle",
            r#"{"event_id":"evt_cli_paddle","event_type":"transaction.completed","data":{}}"#,
        ),
        (
            "square",
            r#"{"type":"payment.updated","event_id":"sq-cli-1","data":{}}"#,
        ),
        ("linear", r#"{"type":"Issue","action":"create","data":{}}"#),
        ("acme", r#"{"hello":"acme"}"#),
    ];
    for (provider, body) in payloads {
        let file = dir.path().join(format!("{provider}.json"));
        std::fs::write(&file, body).unwrap();
        let o = hookd(
            dir.path(),
            &env,
            &[
                "send",
                provider,
                file.to_str().unwrap(),
                "--type",
                "cli.test",
            ],
        );
        assert!(
            o.status.success() && stdout(&o).starts_with("202"),
            "hookd send {provider}: {}{}",
            stdout(&o),
            stderr(&o)
        );
    }
    // A Twilio form body (parameters signed sorted).
    let form = dir.path().join("twilio.form");
    std::fs::write(
        &form,
        "MessageSid=SM1&MessageStatus=delivered&To=%2B15550001",
    )
    .unwrap();
    let o = hookd(
        dir.path(),
        &env,
        &["send", "twilio", form.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));

    let counts = server
        .store
        .list_events(&Default::default(), None, 100)
        .await
        .unwrap();
    let mut providers: Vec<String> = counts.iter().map(|e| e.provider.clone()).collect();
    providers.sort();
    providers.dedup();
    assert_eq!(providers.len(), payloads.len(), "{providers:?}");
    let gh = counts.iter().find(|e| e.provider == "github").unwrap();
    assert_eq!(gh.event_type, "cli.test");

    // PayPal cannot be signed by anyone but PayPal: said so, nothing sent.
    let o = hookd(
        dir.path(),
        &env,
        &[
            "send",
            "paypal",
            dir.path().join("stripe.json").to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("Webhooks Simulator"), "{}", stderr(&o));
    let o = hookd(dir.path(), &env, &["send", "nosuch", "x.json"]);
    assert!(stderr(&o).contains("unknown provider"), "{}", stderr(&o));

    // `sign` prints headers that verify when sent by anyone else.
    let body = r#"{"id":"evt_cli_signed","object":"event","type":"charge.succeeded"}"#;
    let file = dir.path().join("signed.json");
    std::fs::write(&file, body).unwrap();
    let o = hookd(
        dir.path(),
        &env,
        &["sign", "stripe", file.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let headers: Vec<(String, String)> = stdout(&o)
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "stripe-signature" && v.starts_with("t="))
    );
    let hs: Vec<(&str, String)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let r = server.post("stripe", &hs, body.to_owned()).await;
    assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
    // ...and a curl command line that runs.
    let o = hookd(
        dir.path(),
        &env,
        &["sign", "github", file.to_str().unwrap(), "--curl"],
    );
    let curl = stdout(&o);
    assert!(curl.starts_with("curl -i -X POST '"), "{curl}");
    let ran = Command::new("sh")
        .arg("-c")
        .arg(&curl)
        .output()
        .expect("sh");
    assert!(
        String::from_utf8_lossy(&ran.stdout).contains("202 Accepted"),
        "{}{}",
        String::from_utf8_lossy(&ran.stdout),
        String::from_utf8_lossy(&ran.stderr)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_drive_the_admin_api() {
    let db = TestDb::new(Backend::Sqlite).await;
    let target = Target::start(Behaviour {
        fail_first: 1,
        ..Default::default()
    })
    .await;
    let server = TestServer::start(
        &db,
        &forward_route(&target.url),
        &[
            ("HOOKD_MAX_ATTEMPTS", "1"),
            ("HOOKD_ADMIN_READ_TOKEN", READ_TOKEN),
        ],
    )
    .await;
    let (key, body) = stripe_event("invoice.payment_failed");
    let id = id_of(server.post_stripe(&body).await).await;
    server.wait_status(id, EventStatus::DeadLetter, WAIT).await;
    let id = id.to_string();
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("HOOKD_URL", server.url.as_str()),
        ("HOOKD_ADMIN_TOKEN", ADMIN_TOKEN),
    ];
    let run = |args: &[&str]| {
        let o = hookd(dir.path(), &env, args);
        assert!(
            o.status.success(),
            "hookd {args:?}: {}{}",
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    };

    let list = run(&["events", "list"]);
    assert!(list.starts_with("ID "), "{list}");
    assert!(list.contains(&id) && list.contains("dead_letter"), "{list}");
    let json: serde_json::Value =
        serde_json::from_str(&run(&["events", "list", "--json"])).unwrap();
    assert_eq!(json["events"][0]["id"], id);
    assert!(!run(&["events", "list", "--provider", "github"]).contains(&id));
    assert!(run(&["events", "list", "--key", &key]).contains(&id));
    assert!(
        run(&["events", "list", "--status", "completed"])
            .lines()
            .count()
            == 1
    );

    let show = run(&["events", "show", &id]);
    for part in [
        "timeline",
        "dead_letter",
        "steps",
        "fwd/0:forward",
        "stripe-signature: [redacted]",
        "\"currency\": \"usd\"",
    ] {
        assert!(show.contains(part), "{part} missing from:\n{show}");
    }
    let raw = hookd(dir.path(), &env, &["events", "show", &id, "--raw"]);
    assert_eq!(raw.stdout, body.as_bytes());

    let dlq = run(&["dlq", "list"]);
    assert!(dlq.contains(&id) && dlq.contains("LAST ERROR"), "{dlq}");

    // A read token looks but cannot change anything.
    let read_env = [
        ("HOOKD_URL", server.url.as_str()),
        ("HOOKD_ADMIN_TOKEN", READ_TOKEN),
    ];
    let o = hookd(dir.path(), &read_env, &["dlq", "redrive", &id]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("403"), "{}", stderr(&o));
    let o = hookd(
        dir.path(),
        &[("HOOKD_URL", server.url.as_str())],
        &["events", "list"],
    );
    assert!(stderr(&o).contains("HOOKD_ADMIN_TOKEN"), "{}", stderr(&o));

    assert!(run(&["dlq", "redrive", &id]).contains("redriven (replay 1)"));
    server
        .wait_status(id.parse().unwrap(), EventStatus::Completed, WAIT)
        .await;
    assert!(run(&["events", "replay", &id]).contains("replayed (replay 2)"));
    server
        .wait_status(id.parse().unwrap(), EventStatus::Completed, WAIT)
        .await;
    let job = run(&[
        "events",
        "replay",
        "--matching",
        "--provider",
        "stripe",
        "--wait",
    ]);
    assert!(
        job.contains("completed") && job.contains("1 replayed"),
        "{job}"
    );
    assert!(run(&["jobs", "list"]).contains("replay"));

    let providers = run(&["providers", "list"]);
    assert!(
        providers.contains("stripe") && providers.contains("running"),
        "{providers}"
    );
    assert!(run(&["providers", "pause", "stripe", "--reason", "cli test"]).contains("paused"));
    assert!(run(&["providers", "list"]).contains("paused (cli test)"));
    assert!(run(&["providers", "resume", "stripe"]).contains("resumed"));

    let audit = run(&["audit"]);
    for action in [
        "provider.pause",
        "provider.resume",
        "events.replay",
        "event.replay",
        "event.redrive",
    ] {
        assert!(audit.contains(action), "{action} missing from:\n{audit}");
    }
    assert!(audit.contains("admin"));
    assert!(run(&["audit", "--actor", "read"]).contains("403"));
    server.stop().await;
}

//! The configuration's unit tests: defaults, file then environment, and that every mistake
//! names the setting to fix.

use std::time::Duration;

use super::*;
use crate::ops::Scope;
use crate::queue::RedisTarget;
use crate::verify::paypal_certs::TrustRoots;
use crate::verify::{
    Algorithm, HmacEncoding, HmacSource, Lookup, Providers, VerifierConfig, registry,
};

fn vars(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The secrets a provider was configured with, exposed for the test.
fn secrets_of(c: &Config, name: &str) -> Vec<String> {
    let secrets = match &c.provider(name).unwrap().verifier {
        Some(VerifierConfig::Stripe { secrets, .. })
        | Some(VerifierConfig::Github { secrets })
        | Some(VerifierConfig::Shopify { secrets })
        | Some(VerifierConfig::Hmac { secrets, .. })
        | Some(VerifierConfig::Twilio {
            auth_tokens: secrets,
            ..
        }) => secrets,
        Some(VerifierConfig::Paypal(p)) => &p.webhook_ids,
        other => panic!("{name}: {other:?}"),
    };
    secrets.iter().map(|s| s.expose().to_owned()).collect()
}

/// Load with this TOML file and these variables.
fn with_file(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookd.toml");
    std::fs::write(&path, toml).unwrap();
    let mut v = vars(env);
    v.push(("HOOKD_CONFIG".into(), path.to_str().unwrap().into()));
    Config::from_vars(v)
}

#[test]
fn defaults() {
    let c = Config::from_vars(vars(&[("HOOKD_CONFIG", "/dev/null")])).unwrap();
    assert_eq!(c.http.port, 3001);
    assert_eq!(c.store.database_url, "sqlite://data/hookd.db");
    assert_eq!(c.worker.concurrency, 32);
    assert_eq!(c.worker.retry.max_attempts, 3);
    assert_eq!(c.worker.lease, Duration::from_secs(30));
    assert_eq!(c.store.batch_window, Duration::from_micros(200));
    assert_eq!(c.store.batch_max, 256);
    assert!(c.operator.tokens.is_empty() && c.public_url.is_none());
    // Every built-in is known, and off until its setting is set.
    for scheme in registry::SCHEMES.iter().filter(|s| s.built_in) {
        let p = c.provider(scheme.name).unwrap();
        assert!(p.verifier.is_none(), "{}", p.name);
    }
    assert_eq!(c.provider("paypal").unwrap().setting, "PAYPAL_WEBHOOK_ID");
    assert_eq!(
        c.provider("standard").unwrap().setting,
        "STANDARD_WEBHOOK_SECRET"
    );
}

#[test]
fn invalid_value_names_the_setting() {
    let err = Config::from_vars(vars(&[
        ("HOOKD_CONFIG", "/dev/null"),
        ("HOOKD_WORKERS", "lots"),
    ]))
    .unwrap_err()
    .to_string();
    assert!(err.contains("HOOKD_WORKERS"), "{err}");
    let err = Config::from_vars(vars(&[
        ("HOOKD_CONFIG", "/dev/null"),
        ("HOOKD_WORKERS", "0"),
    ]))
    .unwrap_err()
    .to_string();
    assert!(err.contains("HOOKD_WORKERS"), "{err}");
    let err = Config::from_vars(vars(&[
        ("HOOKD_CONFIG", "/dev/null"),
        ("DATABASE_URL", "mysql://u:pw@h/db"),
    ]))
    .unwrap_err()
    .to_string();
    assert!(err.contains("DATABASE_URL") && !err.contains("pw"), "{err}");
    let err = Config::from_vars(vars(&[
        ("HOOKD_CONFIG", "/dev/null"),
        ("HOOKD_BATCH_MAX", "0"),
    ]))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("HOOKD_BATCH_MAX") && err.contains("1 to 10000"),
        "{err}"
    );
    let err = Config::from_vars(vars(&[
        ("HOOKD_CONFIG", "/dev/null"),
        ("HOOKD_BATCH_WINDOW_US", "2000000"),
    ]))
    .unwrap_err()
    .to_string();
    assert!(err.contains("HOOKD_BATCH_WINDOW_US"), "{err}");
    let err = Config::from_vars(vars(&[
        ("HOOKD_CONFIG", "/dev/null"),
        ("HOOKD_SHUTDOWN_READY_DELAY_MS", "301000"),
    ]))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("HOOKD_SHUTDOWN_READY_DELAY_MS") && err.contains("0 to 300000"),
        "{err}"
    );
}

#[test]
fn shutdown_ready_delay_has_a_default_and_may_be_zero() {
    let d = Config::from_vars(vars(&[("HOOKD_CONFIG", "/dev/null")])).unwrap();
    assert_eq!(d.http.shutdown_ready_delay, Duration::from_secs(5));
    let c = with_file("[server]\nshutdown_ready_delay_ms = 0\n", &[]).unwrap();
    assert_eq!(c.http.shutdown_ready_delay, Duration::ZERO);
}

#[test]
fn secrets_list_and_numeric_secret() {
    let c = Config::from_vars(vars(&[
        ("HOOKD_CONFIG", "/dev/null"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_old, whsec_new"),
        ("GITHUB_WEBHOOK_SECRET", "123456"),
    ]))
    .unwrap();
    assert_eq!(secrets_of(&c, "stripe"), ["whsec_old", "whsec_new"]);
    assert_eq!(secrets_of(&c, "github"), ["123456"]);
}

#[test]
fn file_then_env() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookd.toml");
    std::fs::write(
        &path,
        r#"
        [store]
        batch_window_us = 0
        batch_max = 32
        [worker]
        workers = 2
        max_attempts = 5
        [providers.stripe]
        secret = ["whsec_a", "whsec,with,commas"]
        tolerance_secs = 60
        [[routes]]
        provider = "stripe"
        events = ["payment_intent.*"]
        steps = [{ action = "forward", url = "http://127.0.0.1:9000/in" }, { action = "log" }]
        "#,
    )
    .unwrap();
    let c = Config::from_vars(vars(&[
        ("HOOKD_CONFIG", path.to_str().unwrap()),
        ("HOOKD_WORKERS", "4"),
        ("HOOKD_FORWARD_ALLOW_PRIVATE", "true"),
    ]))
    .unwrap();
    assert_eq!(c.worker.concurrency, 4);
    assert_eq!(c.worker.retry.max_attempts, 5);
    assert_eq!(
        (c.store.batch_window, c.store.batch_max),
        (Duration::ZERO, 32)
    );
    let Some(VerifierConfig::Stripe { tolerance_secs, .. }) =
        &c.provider("stripe").unwrap().verifier
    else {
        panic!("stripe is on")
    };
    assert_eq!(*tolerance_secs, 60);
    assert_eq!(secrets_of(&c, "stripe"), ["whsec_a", "whsec,with,commas"]);
    assert_eq!(c.actions.routes.len(), 1);
}

#[test]
fn smtp_and_destination_settings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookd.toml");
    std::fs::write(
        &path,
        r#"
        [smtp]
        url = "smtps://mailer:p%40ss@mail.example.com"
        from = "hookd <hookd@example.com>"
        timeout_ms = 2000
        [destinations]
        concurrency = 2
        breaker_failures = 3
        breaker_cooldown_ms = 1000
        "#,
    )
    .unwrap();
    let c = Config::from_vars(vars(&[
        ("HOOKD_CONFIG", path.to_str().unwrap()),
        ("HOOKD_BREAKER_COOLDOWN_MS", "500"),
    ]))
    .unwrap();
    let smtp = c.actions.smtp.unwrap();
    assert_eq!(
        smtp.destination().to_string(),
        "smtps://mail.example.com:465"
    );
    assert_eq!(smtp.timeout, Duration::from_secs(2));
    assert!(smtp.from.is_some());
    assert!(!format!("{smtp:?}").contains("p@ss"));
    assert_eq!(c.actions.destination_concurrency, 2);
    assert_eq!(c.actions.breaker.failure_threshold, 3);
    assert_eq!(c.actions.breaker.cooldown, Duration::from_millis(500));
    let d = Config::from_vars(vars(&[("HOOKD_CONFIG", "/dev/null")])).unwrap();
    assert!(d.actions.smtp.is_none());
    assert_eq!(
        (
            d.actions.breaker.failure_threshold,
            d.actions.destination_concurrency
        ),
        (5, 4)
    );
}

#[test]
fn bad_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookd.toml");
    std::fs::write(&path, "[worker]\nworkerz = 2\n").unwrap();
    let err = Config::from_vars(vars(&[("HOOKD_CONFIG", path.to_str().unwrap())]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("workerz"), "{err}");
    // The message lists what the table does hold.
    assert!(
        err.contains("workers") && err.contains("lease_secs"),
        "{err}"
    );
    std::fs::write(
        &path,
        "[[routes]]\nsteps = [{ action = \"forward\", url = \"ftp://x\" }]\n",
    )
    .unwrap();
    let err = Config::from_vars(vars(&[("HOOKD_CONFIG", path.to_str().unwrap())]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("route") && err.contains("ftp"), "{err}");
}

#[test]
fn redis_settings() {
    let c = Config::from_vars(vars(&[
        ("HOOKD_CONFIG", "/dev/null"),
        ("DATABASE_URL", "postgres://u@h/db"),
        ("REDIS_HOST", "10.0.0.5"),
        ("REDIS_PORT", "6380"),
        ("HOOKD_PROVIDER_CONCURRENCY", "stripe=4, github=2"),
    ]))
    .unwrap();
    let r = c.redis.unwrap();
    assert_eq!(
        r.target,
        RedisTarget::Single("redis://10.0.0.5:6380".into())
    );
    assert_eq!(
        (r.keep_completed, r.keep_failed, r.prefix.as_str()),
        (10, 5, "hookd")
    );
    assert_eq!(c.worker.provider_concurrency["github"], 2);
    let c = Config::from_vars(vars(&[
        ("HOOKD_CONFIG", "/dev/null"),
        ("DATABASE_URL", "postgres://u@h/db"),
        (
            "REDIS_CLUSTER_NODES",
            "redis://127.0.0.1:7001,redis://127.0.0.1:7002",
        ),
    ]))
    .unwrap();
    assert!(matches!(c.redis.unwrap().target, RedisTarget::Cluster(n) if n.len() == 2));
    let partitions = |n: &str| {
        Config::from_vars(vars(&[
            ("HOOKD_CONFIG", "/dev/null"),
            ("DATABASE_URL", "postgres://u@h/db"),
            ("REDIS_URL", "redis://h"),
            ("HOOKD_REDIS_PARTITIONS", n),
        ]))
        .map(|c| c.redis.unwrap().partitions)
        .map_err(|e| e.to_string())
    };
    assert_eq!(partitions("32"), Ok(32));
    let err = partitions("1000").unwrap_err();
    assert!(
        err.contains("HOOKD_REDIS_PARTITIONS") && err.contains("1 to 256"),
        "{err}"
    );
    assert_eq!(r.partitions, 16);
    let err = Config::from_vars(vars(&[
        ("HOOKD_CONFIG", "/dev/null"),
        ("REDIS_URL", "redis://x"),
    ]))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("SQLite") && err.contains("DATABASE_URL"),
        "{err}"
    );
    let err = Config::from_vars(vars(&[
        ("HOOKD_CONFIG", "/dev/null"),
        ("HOOKD_PROVIDER_CONCURRENCY", "stripe"),
    ]))
    .unwrap_err()
    .to_string();
    assert!(err.contains("HOOKD_PROVIDER_CONCURRENCY"), "{err}");
}

#[test]
fn built_ins_can_be_instanced_again_under_another_name() {
    let c = with_file(
        "[providers.stripe-eu]\nscheme = \"stripe\"\ntolerance_secs = 120\n",
        &[
            ("STRIPE_EU_WEBHOOK_SECRET", "whsec_eu"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_us"),
        ],
    )
    .unwrap();
    assert_eq!(secrets_of(&c, "stripe-eu"), ["whsec_eu"]);
    assert_eq!(secrets_of(&c, "stripe"), ["whsec_us"]);
    assert!(matches!(
        c.provider("stripe-eu").unwrap().verifier,
        Some(VerifierConfig::Stripe {
            tolerance_secs: 120,
            ..
        })
    ));
    let p = Providers::from_config(&c.providers).unwrap();
    assert!(matches!(p.lookup("stripe-eu"), Lookup::Ready(_)));
    // Without its secret the instance is known, and names its own variable.
    let c = with_file("[providers.stripe-eu]\nscheme = \"stripe\"\n", &[]).unwrap();
    let p = Providers::from_config(&c.providers).unwrap();
    assert!(matches!(
        p.lookup("stripe-eu"),
        Lookup::NotConfigured {
            setting: "STRIPE_EU_WEBHOOK_SECRET"
        }
    ));
    assert!(matches!(p.lookup("nosuch"), Lookup::Unknown));
}

#[test]
fn generic_hmac_provider() {
    let toml = r#"
        [providers.acme]
        scheme = "hmac"
        secret = ["old", "new"]
        header = "X-Acme-Signature"
        prefix = "sha512="
        algorithm = "sha512"
        encoding = "base64"
        signed = "{timestamp}.{body}"
        timestamp_header = "X-Acme-Timestamp"
        tolerance_secs = 60
        idempotency_pointer = "/id"
        event_type_header = "X-Acme-Event"
    "#;
    let c = with_file(toml, &[]).unwrap();
    let Some(VerifierConfig::Hmac { spec, .. }) = &c.provider("acme").unwrap().verifier else {
        panic!("acme is on");
    };
    assert_eq!(spec.header, "x-acme-signature");
    assert_eq!(spec.algorithm, Algorithm::Sha512);
    assert_eq!(spec.encoding, HmacEncoding::Base64);
    assert_eq!(spec.tolerance_secs, 60);
    assert_eq!(spec.idempotency, Some(HmacSource::Pointer("/id".into())));
    assert_eq!(
        spec.event_type,
        Some(HmacSource::Header("x-acme-event".into()))
    );
    assert_eq!(secrets_of(&c, "acme"), ["old", "new"]);
    // The environment wins, under the provider's own name.
    let c = with_file(toml, &[("ACME_WEBHOOK_SECRET", "from-env")]).unwrap();
    assert_eq!(secrets_of(&c, "acme"), ["from-env"]);
}

#[test]
fn provider_mistakes_name_the_setting() {
    let cases: &[(&str, &str)] = &[
        ("[providers.acme]\nsecret = \"s\"\n", "set scheme"),
        (
            "[providers.acme]\nscheme = \"nope\"\n",
            "\"nope\" is unknown",
        ),
        ("[providers.Acme]\nscheme = \"stripe\"\n", "lower-case"),
        (
            "[providers.stripe]\nheader = \"x\"\n",
            "providers.stripe.header does not apply",
        ),
        (
            "[providers.paypal]\nsecret = \"x\"\n",
            "providers.paypal.secret does not apply",
        ),
        (
            "[providers.acme]\nscheme = \"hmac\"\n",
            "providers.acme.header is required",
        ),
        (
            "[providers.acme]\nscheme = \"hmac\"\nheader = \"x-sig\"\nalgorithm = \"md5\"\n",
            "providers.acme.algorithm",
        ),
        (
            "[providers.acme]\nscheme = \"hmac\"\nheader = \"x-sig\"\nsigned = \"{timestamp}\"\n",
            "providers.acme.signed",
        ),
        (
            "[providers.acme]\nscheme = \"hmac\"\nheader = \"x-sig\"\ntimestamp_header = \"x-t\"\n",
            "no {timestamp}",
        ),
        (
            "[providers.acme]\nscheme = \"hmac\"\nheader = \"x-sig\"\nidempotency_header = \"a\"\nidempotency_pointer = \"/id\"\n",
            "not both",
        ),
        (
            "[providers.acme]\nscheme = \"hmac\"\nheader = \"x-sig\"\nevent_type_pointer = \"type\"\n",
            "providers.acme.event_type_pointer",
        ),
        (
            "[providers.a-b]\nscheme = \"github\"\n[providers.a_b]\nscheme = \"github\"\n",
            "same environment variables",
        ),
    ];
    for (toml, expected) in cases {
        let err = with_file(toml, &[]).unwrap_err().to_string();
        assert!(err.contains(expected), "{toml}\n=> {err}");
    }
}

#[test]
fn bad_secrets_are_reported_without_their_value() {
    let err = with_file("", &[("STANDARD_WEBHOOK_SECRET", "whsec_%%topsecret%%")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("STANDARD_WEBHOOK_SECRET"), "{err}");
    assert!(!err.contains("topsecret"), "{err}");
}

#[test]
fn paypal_settings() {
    let c = with_file(
        "",
        &[("PAYPAL_WEBHOOK_ID", "8PT597110X687430LKGECATA,WEBHOOK_ID")],
    )
    .unwrap();
    let Some(VerifierConfig::Paypal(p)) = &c.provider("paypal").unwrap().verifier else {
        panic!("paypal is on");
    };
    assert_eq!(p.tolerance_secs, 300);
    assert_eq!(p.cert_url_prefixes.len(), 4);
    assert!(matches!(p.trust_roots, TrustRoots::PublicWeb));
    assert_eq!(p.webhook_ids.iter().count(), 2);
    Providers::from_config(&c.providers).unwrap();
    for (var, value) in [
        ("PAYPAL_CERT_URL_PREFIXES", "ftp://certs.example/"),
        ("PAYPAL_TRUST_ROOTS", "/nonexistent/roots.pem"),
        ("PAYPAL_TOLERANCE_SECS", "0"),
    ] {
        let err = with_file("", &[("PAYPAL_WEBHOOK_ID", "W"), (var, value)])
            .unwrap_err()
            .to_string();
        assert!(err.contains(var), "{var}: {err}");
    }
}

#[test]
fn public_url() {
    let c = with_file(
        "",
        &[
            ("HOOKD_PUBLIC_URL", "https://hooks.example.com/"),
            ("TWILIO_WEBHOOK_SECRET", "t"),
        ],
    )
    .unwrap();
    assert_eq!(c.public_url.as_deref(), Some("https://hooks.example.com"));
    assert!(matches!(
        &c.provider("twilio").unwrap().verifier,
        Some(VerifierConfig::Twilio { public_url: Some(u), .. }) if u == "https://hooks.example.com"
    ));
    for bad in [
        "hooks.example.com",
        "ftp://x",
        "https://x/?a=1",
        "https://u:pw@x/",
    ] {
        let err = with_file("", &[("HOOKD_PUBLIC_URL", bad)])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("HOOKD_PUBLIC_URL") && !err.contains("pw"),
            "{err}"
        );
    }
}

/// Load with these variables and this TOML file.
fn config(vars: &[(&str, &str)], toml: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookd.toml");
    std::fs::write(&path, toml).unwrap();
    let mut all: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    all.push(("HOOKD_CONFIG".into(), path.display().to_string()));
    Config::from_vars(all)
}

#[test]
fn tokens_come_from_env_and_file() {
    let c = config(
        &[
            ("HOOKD_ADMIN_TOKEN", "op-token-0123456789abcdefgh"),
            ("HOOKD_ADMIN_READ_TOKEN", "read-token-0123456789abcdefgh"),
            ("ONCALL", "oncall-token-0123456789abcdefgh"),
        ],
        r#"
[[admin.tokens]]
name = "ci"
token = "ci-token-0123456789abcdefgh"
scope = "operate"
[[admin.tokens]]
name = "oncall"
token_env = "ONCALL"
scope = "read"
"#,
    )
    .unwrap();
    let t: Vec<(&str, &str, Scope)> = c
        .operator
        .tokens
        .iter()
        .map(|t| (t.name.as_str(), t.token.expose(), t.scope))
        .collect();
    assert_eq!(
        t,
        [
            ("admin", "op-token-0123456789abcdefgh", Scope::Operate),
            ("read", "read-token-0123456789abcdefgh", Scope::Read),
            ("ci", "ci-token-0123456789abcdefgh", Scope::Operate),
            ("oncall", "oncall-token-0123456789abcdefgh", Scope::Read),
        ]
    );
}

#[test]
fn token_mistakes_name_the_setting() {
    let err = |vars: &[(&str, &str)], toml: &str| config(vars, toml).unwrap_err().to_string();
    let e = err(
        &[],
        "[[admin.tokens]]\nname = \"x\"\ntoken = \"t\"\nscope = \"write\"\n",
    );
    assert!(e.contains("admin.tokens[0].scope"), "{e}");
    let e = err(
        &[("HOOKD_ADMIN_TOKEN", "same-token-0123456789abcdefgh")],
        "[[admin.tokens]]\nname = \"x\"\ntoken = \"same-token-0123456789abcdefgh\"\nscope = \"read\"\n",
    );
    assert!(e.contains("different token value"), "{e}");
    let e = err(
        &[],
        "[[admin.tokens]]\nname = \"x\"\ntoken_env = \"NOPE\"\nscope = \"read\"\n",
    );
    assert!(e.contains("NOPE"), "{e}");
    // Short tokens are refused, naming where they were set and never echoing them.
    let e = err(&[("HOOKD_ADMIN_TOKEN", "short-secret")], "");
    assert!(
        e.contains("HOOKD_ADMIN_TOKEN") && e.contains("24 bytes") && !e.contains("short-secret"),
        "{e}"
    );
    let e = err(&[("HOOKD_ADMIN_READ_TOKEN", "short")], "");
    assert!(e.contains("HOOKD_ADMIN_READ_TOKEN"), "{e}");
    let e = err(
        &[],
        "[[admin.tokens]]\nname = \"ci\"\ntoken = \"tiny\"\nscope = \"read\"\n",
    );
    assert!(e.contains("admin.tokens[0].token"), "{e}");
    let e = err(
        &[("CI_TOKEN", "tiny")],
        "[[admin.tokens]]\nname = \"ci\"\ntoken_env = \"CI_TOKEN\"\nscope = \"read\"\n",
    );
    assert!(e.contains("CI_TOKEN"), "{e}");
    let e = err(&[("HOOKD_RETENTION_DAYS", "0")], "");
    assert!(e.contains("HOOKD_RETENTION_DAYS"), "{e}");
    let e = err(&[("DATABASE_READ_URL", "postgres://r/db")], "");
    assert!(e.contains("DATABASE_READ_URL"), "{e}");
}

#[test]
fn retention_and_replica() {
    let c = config(
        &[
            ("DATABASE_URL", "postgres://p@h/db"),
            ("DATABASE_READ_URL", "postgres://p@replica/db"),
        ],
        "[retention]\ndays = 30\n",
    )
    .unwrap();
    assert_eq!(c.operator.retention, Some(Duration::from_secs(30 * 86_400)));
    assert_eq!(
        c.operator.read_database_url.as_deref(),
        Some("postgres://p@replica/db")
    );
    assert!(config(&[], "").unwrap().operator.retention.is_none());
}

#[test]
fn file_mistakes_name_the_file_key() {
    // A value of the wrong kind names the key it came from, not the variable.
    let err = with_file("[worker]\nworkers = \"lots\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("worker.workers"), "{err}");
    let err = with_file("[store]\nbatch_max = 0\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("store.batch_max") && err.contains("1 to 10000"),
        "{err}"
    );
    // The environment wins, and the file's key is still known.
    let c = with_file("[worker]\nworkers = 2\n", &[("HOOKD_WORKERS", "3")]).unwrap();
    assert_eq!(c.worker.concurrency, 3);
    // A section or key nobody reads is refused, named.
    for (toml, key) in [
        ("[nonsense]\nx = 1\n", "nonsense is not a setting"),
        ("[limits]\nrate = 5\n", "limits.rate"),
        (
            "[providers.acme]\nscheme = \"hmac\"\nheader = \"x\"\nheadr = \"y\"\n",
            "providers.acme.headr",
        ),
    ] {
        let err = with_file(toml, &[]).unwrap_err().to_string();
        assert!(err.contains(key), "{toml}\n=> {err}");
    }
    // Sections of settings that are off are still known.
    with_file("[smtp]\ntimeout_ms = 5\n[redis]\nprefix = \"x\"\n", &[]).unwrap();
}

#[test]
fn mistakes_in_structured_sections_say_where() {
    let toml =
        "[server]\nport = 1\n[[admin.tokens]]\nname = \"x\"\ntokn = \"y\"\nscope = \"read\"\n";
    let err = with_file(toml, &[]).unwrap_err().to_string();
    assert!(
        err.contains("admin.tokens") && err.contains("line 5") && err.contains("tokn"),
        "{err}"
    );
    let toml = "[[routes]]\nsteps = [{ action = \"email\", to = [\"nope\"], subject = \"s\", body = \"b\" }]\n";
    let err = with_file(toml, &[]).unwrap_err().to_string();
    assert!(
        err.contains("line 2") && err.contains("not an email address"),
        "{err}"
    );
}

#[test]
fn settings_of_issue_20_are_checked() {
    let err = |v: &[(&str, &str)]| {
        let mut all = vec![("HOOKD_CONFIG", "/dev/null")];
        all.extend_from_slice(v);
        Config::from_vars(vars(&all)).unwrap_err().to_string()
    };
    for (setting, value) in [
        ("HOOKD_WEBHOOK_RESERVED_CONNECTIONS", "4096"),
        ("HOOKD_WEBHOOK_RESERVED_CONNECTIONS", "many"),
        ("HOOKD_REPLAY_WINDOW_HOURS", "0"),
        ("HOOKD_INTERNAL_ADDR", "9090"),
        ("HOOKD_AUDIT_REDACT_HEADERS", "x-ok,bad header"),
    ] {
        let e = err(&[(setting, value)]);
        assert!(e.contains(setting), "{setting}={value}: {e}");
    }
    let c = Config::from_vars(vars(&[
        ("HOOKD_CONFIG", "/dev/null"),
        ("HOOKD_MAX_CONNECTIONS", "50"),
        ("HOOKD_INTERNAL_ADDR", "127.0.0.1:9090"),
        ("HOOKD_AUDIT_REDACT_HEADERS", "X-Tenant-Key, x-other"),
    ]))
    .unwrap();
    assert_eq!(
        c.http.limits.webhook_reserved_connections, 25,
        "half by default"
    );
    assert_eq!(c.store.replay_window, Duration::from_secs(24 * 3600));
    assert_eq!(c.http.internal_addr, Some(([127, 0, 0, 1], 9090).into()));
    assert_eq!(
        c.http.limits.audit_redact_headers,
        ["x-tenant-key", "x-other"]
    );
}

const LIMITED_ROUTES: &str = r#"
[[routes]]
name = "ledger"
steps = [{ action = "forward", url = "https://api.example.com/hooks" },
         { action = "forward", url = "http://hooks.example.net:8080/in" }]
"#;

/// Each rate limit, as `<destination> <limit>`.
fn limits_of(c: &Config) -> Vec<String> {
    let limits = c.actions.rate_limits.iter();
    limits.map(|(d, l)| format!("{d} {l}")).collect()
}

#[test]
fn rate_limits_from_file_and_variable() {
    let file = format!(
        "{LIMITED_ROUTES}\n[destinations.rate_limits]\n\"https://api.example.com\" = \"50/s\"\n"
    );
    let c = with_file(&file, &[]).unwrap();
    assert_eq!(limits_of(&c), ["https://api.example.com:443 50/s"]);
    // The variable replaces the table; an explicit default port is the same destination.
    let c = with_file(
        &file,
        &[(
            "HOOKD_RATE_LIMITS",
            "http://hooks.example.net:8080=10/m, https://api.example.com:443/x=2/h",
        )],
    )
    .unwrap();
    assert_eq!(
        limits_of(&c),
        [
            "http://hooks.example.net:8080 10/m",
            "https://api.example.com:443 2/h"
        ]
    );
    let d = Config::from_vars(vars(&[("HOOKD_CONFIG", "/dev/null")])).unwrap();
    assert!(d.actions.rate_limits.is_empty());
}

#[test]
fn rate_limits_take_broker_destinations() {
    let file = r#"
[[routes]]
name = "bus"
steps = [{ action = "rabbitmq", url = "amqp://hookd:secret@rabbit.internal/%2f", exchange = "webhooks", routing_key = "{{type}}" },
         { action = "nats", url = "nats://nats.internal:4222", subject = "webhooks.{{type}}" },
         { action = "redis_stream", url = "redis://:secret@redis.internal:6380/0", stream = "webhooks" }]
[destinations.rate_limits]
"amqp://rabbit.internal" = "50/s"
"nats://nats.internal:4222" = "10/s"
"redis://redis.internal:6380" = "5/s"
"#;
    // A broker's key is its `scheme://host:port`, the default port filled in as its steps' is.
    let c = with_file(file, &[]).unwrap();
    assert_eq!(
        limits_of(&c),
        [
            "amqp://rabbit.internal:5672 50/s",
            "nats://nats.internal:4222 10/s",
            "redis://redis.internal:6380 5/s"
        ]
    );
    let c = with_file(
        file,
        &[("HOOKD_RATE_LIMITS", "amqp://rabbit.internal:5672/%2f=20/m")],
    )
    .unwrap();
    assert_eq!(limits_of(&c), ["amqp://rabbit.internal:5672 20/m"]);
    // A broker no step publishes to protects nothing.
    let e = with_file(
        file,
        &[(
            "HOOKD_RATE_LIMITS",
            "nats://nats.internal=1/s,nats://nats.internal:4223=1/s",
        )],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("rate limit for nats://nats.internal:4223: no step sends there"),
        "{e}"
    );
}

#[test]
fn bad_rate_limits_name_the_setting() {
    let table = |body: &str| format!("{LIMITED_ROUTES}\n[destinations.rate_limits]\n{body}\n");
    let env = Some;
    let cases: Vec<(String, Option<&str>, &[&str])> = vec![
        (
            table(r#""https://api.example.com" = "50/d""#),
            None,
            &["destinations.rate_limits", "<count>/s"],
        ),
        (
            table(r#""api.example.com" = "50/s""#),
            None,
            &["destinations.rate_limits", "a destination URL"],
        ),
        (
            LIMITED_ROUTES.into(),
            env("https://api.example.com"),
            &["HOOKD_RATE_LIMITS", "url=limit"],
        ),
        (
            LIMITED_ROUTES.into(),
            env("https://api.example.com=0/s"),
            &["HOOKD_RATE_LIMITS", "<count>/s"],
        ),
        // One destination, two limits.
        (
            LIMITED_ROUTES.into(),
            env("https://api.example.com=5/s,https://api.example.com:443=6/s"),
            &[
                "5/s and 6/s",
                "one rate limit for https://api.example.com:443",
            ],
        ),
        // A destination no step sends to (a misspelt host) would protect nothing.
        (
            table(r#""https://api.example.org" = "50/s""#),
            None,
            &[
                "rate limit for https://api.example.org:443: no step sends there",
                "https://api.example.com:443",
            ],
        ),
    ];
    for (file, var, expected) in cases {
        let env: Vec<_> = var.map(|v| ("HOOKD_RATE_LIMITS", v)).into_iter().collect();
        let e = with_file(&file, &env).unwrap_err().to_string();
        for part in expected {
            assert!(e.contains(part), "{part:?} not in {e}");
        }
    }
}

#[test]
fn retry_window() {
    let d = Config::from_vars(vars(&[("HOOKD_CONFIG", "/dev/null")])).unwrap();
    assert_eq!(d.worker.retry.window, Duration::from_secs(3 * 24 * 3600));
    let c = with_file("[worker]\nretry_window = \"12h\"\n", &[]).unwrap();
    assert_eq!(c.worker.retry.window, Duration::from_secs(12 * 3600));
    let c = with_file("[worker]\nretry_window = 3600\n", &[]).unwrap();
    assert_eq!(c.worker.retry.window, Duration::from_secs(3600));
    let c = with_file("", &[("HOOKD_RETRY_WINDOW", "3s")]).unwrap();
    assert_eq!(c.worker.retry.window, Duration::from_secs(3));
    for bad in ["0", "0s", "3 days", "soon"] {
        let e = with_file("", &[("HOOKD_RETRY_WINDOW", bad)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("HOOKD_RETRY_WINDOW") && e.contains("12h"), "{e}");
    }
    let e = with_file("[worker]\nretry_window = \"2 weeks\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("worker.retry_window"), "{e}");
}

#[test]
fn transform_caps_from_the_file_then_the_environment() {
    let c = with_file(
        "[transform]\ntimeout_ms = 250\nmemory_mb = 8\nthreads = 3\n",
        &[("HOOKD_TRANSFORM_TIMEOUT_MS", "400")],
    )
    .unwrap();
    let t = &c.actions.transform;
    assert_eq!(t.timeout, Duration::from_millis(400));
    assert_eq!(t.memory_limit_bytes, 8 << 20);
    assert_eq!(t.threads, 3);
    let d = Config::from_vars(vars(&[("HOOKD_CONFIG", "/dev/null")])).unwrap();
    assert_eq!(
        d.actions.transform,
        crate::transform::TransformSettings::default()
    );
    for var in [
        "HOOKD_TRANSFORM_TIMEOUT_MS",
        "HOOKD_TRANSFORM_MEMORY_MB",
        "HOOKD_TRANSFORM_THREADS",
    ] {
        let err = Config::from_vars(vars(&[("HOOKD_CONFIG", "/dev/null"), (var, "0")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains(var) && err.contains("positive"), "{err}");
    }
}

//! Broker destinations end to end: `rabbitmq`, `nats` (JetStream) and `redis_stream` steps
//! against the real RabbitMQ, NATS and Redis, a consumer in the test reading back the exact
//! bytes and headers; unroutable messages, refused credentials, brokers down when hookd starts
//! and restarted (or cut) mid-run, and JetStream's deduplication absorbing a redelivery.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::*;
use hookd::event::{EventDetail, EventId, EventStatus};
use reqwest::StatusCode;

const WAIT: Duration = Duration::from_secs(40);

/// Outages here are seconds long: retry often, never give an event up, and let a breaker that
/// opened probe again soon.
const OUTAGE_VARS: [(&str, &str); 4] = [
    ("HOOKD_MAX_ATTEMPTS", "1000"),
    ("HOOKD_RETRY_MAX_MS", "300"),
    ("HOOKD_BREAKER_COOLDOWN_MS", "300"),
    ("HOOKD_FORWARD_TIMEOUT_MS", "2000"),
];

fn route(steps: &str) -> String {
    format!("[[routes]]\nname = \"bus\"\nprovider = \"stripe\"\nsteps = [{steps}]\n")
}

fn rabbit_step(url: &str, exchange: &str) -> String {
    format!(
        r#"{{ action = "rabbitmq", url = "{url}", exchange = "{exchange}", routing_key = "{{{{provider}}}}.{{{{type}}}}" }}"#
    )
}

fn nats_step(url: &str, prefix: &str, timeout_ms: u64) -> String {
    format!(
        r#"{{ action = "nats", url = "{url}", subject = "{prefix}.{{{{provider}}}}.{{{{type}}}}", timeout_ms = {timeout_ms} }}"#
    )
}

fn redis_step(url: &str, key: &str) -> String {
    format!(
        r#"{{ action = "redis_stream", url = "{url}", stream = "{key}:{{{{provider}}}}", maxlen = 1000 }}"#
    )
}

/// Wait until the event has at least `n` failed results of its step, and return them.
async fn failures(server: &TestServer, id: EventId, n: usize) -> Vec<String> {
    let e: EventDetail = eventually(
        format!("{n} failed step results of event {id}"),
        WAIT,
        || server.event(id),
        |e| e.steps.iter().filter(|s| s.outcome == "failed").count() >= n,
    )
    .await;
    e.steps
        .into_iter()
        .filter(|s| s.outcome == "failed")
        .map(|s| s.error.unwrap_or_default())
        .collect()
}

/// How often the breaker of `destination` opened in this process.
async fn breaker_opened(server: &TestServer, destination: &str) -> u64 {
    let list = server.admin_get("/destinations").await;
    let d = list["destinations"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["destination"] == destination))
        .unwrap_or_else(|| panic!("{destination} in {list:#}"));
    d["counters"]["opened"].as_u64().unwrap()
}

/// The headers every broker message carries, checked against the event.
fn assert_hookd_headers(m: &BrokerMessage, id: EventId, trace_id: &str, caller_span: &str) {
    assert_eq!(m.headers["x-hookd-event-id"], id.to_string(), "{m:?}");
    assert_eq!(m.headers["x-hookd-provider"], "stripe");
    assert_eq!(m.headers["x-hookd-event-type"], "payment_intent.succeeded");
    let tp = &m.headers["traceparent"];
    assert!(
        tp.starts_with(&format!("00-{trace_id}-")) && !tp.contains(caller_span),
        "the message continues the provider's trace as a child of hookd's span: {tp}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_broker_gets_the_exact_body_and_headers_with_the_trace() {
    let db = TestDb::new(Backend::Sqlite).await;
    let rq = RabbitQueue::new(Some("stripe.payment_intent.succeeded")).await;
    let ns = NatsStream::create(NATS_URL).await;
    let key = unique_prefix();
    let routes = route(&format!(
        "{}, {}, {}",
        rabbit_step(RABBITMQ_URL, &rq.exchange),
        nats_step(NATS_URL, &ns.prefix, 5000),
        redis_step(&redis_url(), &key)
    ));
    // Spans need the binary's tracing pipeline; nothing has to receive them.
    let vars = vec![
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{}", free_port()),
        ),
        ("OTEL_SERVICE_NAME", "hookd-test".to_owned()),
    ];
    let hookd = Hookd::spawn_with(&db, &routes, "serve", &vars, "serve.log").await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let (_, body) = stripe_event("payment_intent.succeeded");
    let r = stripe_request(&reqwest::Client::new(), &hookd.url, &body)
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = id_of(r).await;
    hookd.wait_status(id, EventStatus::Completed, WAIT).await;

    let amqp = rq.wait(1, WAIT).await;
    assert_eq!(amqp.len(), 1, "confirmed once, delivered once");
    assert_eq!(amqp[0].body, body.as_bytes(), "the body, byte for byte");
    assert_hookd_headers(&amqp[0], id, trace_id, caller_span);
    assert_eq!(amqp[0].headers["amqp.delivery_mode"], "2", "persistent");
    assert_eq!(
        amqp[0].headers["amqp.message_id"],
        format!("{id}:bus/0:rabbitmq")
    );

    assert_eq!(ns.count().await, 1);
    let (subject, js) = ns.message(1).await;
    assert_eq!(
        subject,
        format!("{}.stripe.payment_intent.succeeded", ns.prefix)
    );
    assert_eq!(js.body, body.as_bytes());
    assert_hookd_headers(&js, id, trace_id, caller_span);
    assert_eq!(js.headers["Nats-Msg-Id"], format!("{id}:bus/1:nats"));
    assert_eq!(js.headers["content-type"], "application/json");

    let entries = redis_stream_entries(&redis_url(), &format!("{key}:stripe")).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].body, body.as_bytes());
    assert_hookd_headers(&entries[0], id, trace_id, caller_span);
    assert_eq!(entries[0].headers["content-type"], "application/json");
    ns.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_unroutable_message_fails_the_step_and_is_retried() {
    let db = TestDb::new(Backend::Sqlite).await;
    // The exchange exists, but no queue is bound to it yet: every publish comes back.
    let rq = RabbitQueue::new(None).await;
    let routes = route(&rabbit_step(RABBITMQ_URL, &rq.exchange));
    let server = TestServer::start(&db, &routes, &OUTAGE_VARS).await;
    let (_, body) = stripe_event("payment_intent.succeeded");
    let id = id_of(server.post_stripe(&body).await).await;
    let errors = failures(&server, id, 2).await;
    assert!(
        errors[0].starts_with("rabbitmq to amqp://127.0.0.1:5672: unroutable")
            && errors[0].contains("NO_ROUTE")
            && errors[0].contains(&rq.exchange),
        "a returned message is a failure naming the exchange: {errors:?}"
    );
    assert!(!errors[0].contains("guest:guest"), "{errors:?}");

    rq.bind("stripe.payment_intent.succeeded").await;
    server.wait_status(id, EventStatus::Completed, WAIT).await;
    let got = rq.wait(1, WAIT).await;
    assert_eq!(got.len(), 1, "the returned attempts left nothing behind");
    assert_eq!(got[0].body, body.as_bytes());
    // No breaker opened: an unroutable message is about the message, not a broker outage.
    assert_eq!(breaker_opened(&server, "amqp://127.0.0.1:5672").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_wrong_credentials_fail_with_a_clear_error_and_no_password() {
    let db = TestDb::new(Backend::Sqlite).await;
    let rq = RabbitQueue::new(Some("stripe.payment_intent.succeeded")).await;
    let url = "amqp://guest:not-the-password-42@127.0.0.1:5672/%2f";
    let server =
        TestServer::start(&db, &route(&rabbit_step(url, &rq.exchange)), &OUTAGE_VARS).await;
    let (_, body) = stripe_event("payment_intent.succeeded");
    let id = id_of(server.post_stripe(&body).await).await;
    let errors = failures(&server, id, 2).await;
    for e in &errors {
        assert!(
            e.starts_with("rabbitmq to amqp://127.0.0.1:5672: the broker refused the credentials"),
            "{errors:?}"
        );
        assert!(!e.contains("not-the-password-42"), "{e}");
    }
    assert!(rq.drain().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_down_at_start_and_cut_mid_run_loses_nothing() {
    let db = TestDb::new(Backend::Sqlite).await;
    let rq = RabbitQueue::new(Some("stripe.payment_intent.succeeded")).await;
    let gate = Gate::start("127.0.0.1:5672").await;
    gate.close();
    let url = format!("amqp://guest:guest@{}/%2f", gate.addr);
    let server =
        TestServer::start(&db, &route(&rabbit_step(&url, &rq.exchange)), &OUTAGE_VARS).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (_, body) = stripe_event("payment_intent.succeeded");
        ids.push(id_of(server.post_stripe(&body).await).await);
    }
    let errors = failures(&server, ids[0], 1).await;
    assert!(errors[0].contains("cannot connect"), "{errors:?}");
    gate.open();
    server.wait_all(3, EventStatus::Completed, WAIT).await;

    // The broker goes away mid-run (every connection cut), with events in flight.
    gate.close();
    for _ in 0..3 {
        let (_, body) = stripe_event("payment_intent.succeeded");
        ids.push(id_of(server.post_stripe(&body).await).await);
    }
    failures(&server, ids[3], 1).await;
    gate.open();
    server.wait_all(6, EventStatus::Completed, WAIT).await;

    let got = rq.wait(6, WAIT).await;
    let mut per_event = BTreeMap::new();
    for m in &got {
        *per_event
            .entry(m.headers["x-hookd-event-id"].clone())
            .or_insert(0) += 1;
    }
    for id in &ids {
        assert!(
            per_event.contains_key(&id.to_string()),
            "event {id} was confirmed, so it is in the queue: {per_event:?}"
        );
    }
    // At-least-once: a publish whose confirm was lost with the connection may be there twice;
    // no event is there more than once per attempt it made.
    for id in &ids {
        let e = server.event(*id).await;
        assert!(
            per_event[&id.to_string()] <= e.attempts as usize,
            "{per_event:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_per_broker_per_process_closed_on_shutdown() {
    let db = TestDb::new(Backend::Sqlite).await;
    let rq = RabbitQueue::new(Some("stripe.payment_intent.succeeded")).await;
    let ns = NatsStream::create(NATS_URL).await;
    let key = unique_prefix();
    let (amqp, nats, redis) = (
        Gate::start("127.0.0.1:5672").await,
        Gate::start("127.0.0.1:4222").await,
        Gate::start(redis_url().trim_start_matches("redis://")).await,
    );
    let routes = route(&format!(
        "{}, {}, {}",
        rabbit_step(
            &format!("amqp://guest:guest@{}/%2f", amqp.addr),
            &rq.exchange
        ),
        nats_step(&format!("nats://{}", nats.addr), &ns.prefix, 5000),
        redis_step(&format!("redis://{}", redis.addr), &key)
    ));
    let server = TestServer::start(&db, &routes, &[]).await;
    for _ in 0..8 {
        let (_, body) = stripe_event("payment_intent.succeeded");
        server.post_stripe(&body).await;
    }
    server.wait_all(8, EventStatus::Completed, WAIT).await;
    assert_eq!(rq.wait(8, WAIT).await.len(), 8);
    assert_eq!(ns.count().await, 8);
    assert_eq!(
        (amqp.connections(), nats.connections(), redis.connections()),
        (1, 1, 1),
        "every step of the process shares one connection per broker"
    );
    server.stop().await;
    let _ = eventually(
        "every broker connection to close after the shutdown",
        WAIT,
        || async { (amqp.connections(), nats.connections(), redis.connections()) },
        |open| *open == (0, 0, 0),
    )
    .await;
    ns.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_redelivery_is_absorbed_by_the_stream_dedup() {
    let db = TestDb::new(Backend::Sqlite).await;
    let ns = NatsStream::create(NATS_URL).await;
    let gate = Gate::start("127.0.0.1:4222").await;
    let url = format!("nats://{}", gate.addr);
    let server = TestServer::start(
        &db,
        &route(&nats_step(&url, &ns.prefix, 1000)),
        &OUTAGE_VARS,
    )
    .await;
    let (_, first) = stripe_event("payment_intent.succeeded");
    let a = id_of(server.post_stripe(&first).await).await;
    server.wait_status(a, EventStatus::Completed, WAIT).await;

    // The stream stores the next message, but its ack never reaches hookd: the step times out
    // and is retried with the same Nats-Msg-Id.
    gate.deafen();
    let (_, body) = stripe_event("payment_intent.succeeded");
    let b = id_of(server.post_stripe(&body).await).await;
    let _ = eventually(
        "the stream to store the second event",
        WAIT,
        || ns.count(),
        |n| *n == 2,
    )
    .await;
    let errors = failures(&server, b, 1).await;
    assert!(errors[0].contains("timed out"), "{errors:?}");
    gate.open();
    let e = server.wait_status(b, EventStatus::Completed, WAIT).await;
    assert!(e.attempts >= 2, "published at least twice: {e:#?}");
    assert_eq!(
        ns.count().await,
        2,
        "the redelivery was a duplicate within the window"
    );
    let (_, stored) = ns.message(2).await;
    assert_eq!(stored.headers["x-hookd-event-id"], b.to_string());
    assert_eq!(stored.body, body.as_bytes());
    ns.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_at_start_and_restarted_mid_run_stores_each_event_once() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut nats = PrivateNats::reserve();
    // The stream's name and subjects are set up once the server is up; the route names them now.
    let prefix = unique_prefix();
    let server = TestServer::start(
        &db,
        &route(&nats_step(&nats.url(), &prefix, 2000)),
        &OUTAGE_VARS,
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (_, body) = stripe_event("payment_intent.succeeded");
        ids.push(id_of(server.post_stripe(&body).await).await);
    }
    let errors = failures(&server, ids[0], 1).await;
    assert!(
        errors[0].starts_with(&format!("nats to {}: cannot connect", nats.url())),
        "{errors:?}"
    );
    nats.up().await;
    // Up, but no stream takes the subject yet: the stream's refusal, retried.
    let _ = eventually(
        "a step to fail for want of a stream",
        WAIT,
        || server.event(ids[0]),
        |e| {
            e.steps.iter().any(|s| {
                s.error
                    .as_deref()
                    .is_some_and(|e| e.contains("no JetStream stream takes subject"))
            })
        },
    )
    .await;
    let ns = NatsStream::create_as(&nats.url(), prefix.clone()).await;
    server.wait_all(2, EventStatus::Completed, WAIT).await;

    nats.kill();
    for _ in 0..2 {
        let (_, body) = stripe_event("payment_intent.succeeded");
        ids.push(id_of(server.post_stripe(&body).await).await);
    }
    failures(&server, ids[2], 1).await;
    nats.up().await;
    server.wait_all(4, EventStatus::Completed, WAIT).await;

    // A new connection: the first one may still be waiting to reconnect.
    let ns = NatsStream::open(&nats.url(), ns.name.clone()).await;
    let stored = ns.count().await;
    assert_eq!(stored, 4, "each event once, across the restart");
    let mut seen = Vec::new();
    for seq in 1..=stored {
        seen.push(ns.message(seq).await.1.headers["x-hookd-event-id"].clone());
    }
    seen.sort();
    let mut want: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    want.sort();
    assert_eq!(seen, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stream_down_at_start_and_restarted_mid_run_then_every_event_is_added() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut redis = PrivateRedis::reserve();
    let key = unique_prefix();
    let server =
        TestServer::start(&db, &route(&redis_step(&redis.url(), &key)), &OUTAGE_VARS).await;
    let (_, body) = stripe_event("payment_intent.succeeded");
    let id = id_of(server.post_stripe(&body).await).await;
    let errors = failures(&server, id, 1).await;
    assert!(
        errors[0].starts_with(&format!(
            "redis_stream to redis://127.0.0.1:{}: ",
            redis.port
        )),
        "{errors:?}"
    );
    redis.up().await;
    server.wait_status(id, EventStatus::Completed, WAIT).await;
    let entries = redis_stream_entries(&redis.url(), &format!("{key}:stripe")).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].body, body.as_bytes());
    assert_eq!(entries[0].headers["x-hookd-event-id"], id.to_string());
    assert_eq!(entries[0].headers["x-hookd-provider"], "stripe");
    assert_eq!(
        entries[0].headers["x-hookd-event-type"],
        "payment_intent.succeeded"
    );

    // Restarted mid-run (empty: it keeps nothing on disk): the shared connection is dead; the
    // next event's publish fails, and its retry connects anew.
    redis.kill();
    redis.up().await;
    let (_, second) = stripe_event("payment_intent.succeeded");
    let id2 = id_of(server.post_stripe(&second).await).await;
    server.wait_status(id2, EventStatus::Completed, WAIT).await;
    let entries = redis_stream_entries(&redis.url(), &format!("{key}:stripe")).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].body, second.as_bytes());
    assert_eq!(entries[0].headers["x-hookd-event-id"], id2.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stream_refusing_the_key_fails_the_step_without_opening_the_breaker() {
    let db = TestDb::new(Backend::Sqlite).await;
    let key = unique_prefix();
    // The key holds a plain string: XADD answers WRONGTYPE.
    let mut conn = redis_conn(&redis_url()).await;
    let _: () = redis::cmd("SET")
        .arg(format!("{key}:stripe"))
        .arg("not a stream")
        .query_async(&mut conn)
        .await
        .unwrap();
    let server =
        TestServer::start(&db, &route(&redis_step(&redis_url(), &key)), &OUTAGE_VARS).await;
    let (_, body) = stripe_event("payment_intent.succeeded");
    let id = id_of(server.post_stripe(&body).await).await;
    let errors = failures(&server, id, 6).await;
    assert!(
        errors[0].contains("the broker refused the message") && errors[0].contains("WRONGTYPE"),
        "{errors:?}"
    );
    // A refusal of one entry is not an outage.
    assert_eq!(breaker_opened(&server, "redis://127.0.0.1:6379").await, 0);
    let _: () = redis::cmd("DEL")
        .arg(format!("{key}:stripe"))
        .query_async(&mut conn)
        .await
        .unwrap();
    server.wait_status(id, EventStatus::Completed, WAIT).await;
    let _: () = redis::cmd("DEL")
        .arg(format!("{key}:stripe"))
        .query_async(&mut conn)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_broker_steps_stop_start_up_naming_route_and_field() {
    let db = TestDb::new(Backend::Sqlite).await;
    let cases = [
        (
            r#"{ action = "rabbitmq", url = "amqps://u:hunter2@mq.example.com/v", exchange = "x", routing_key = "k" }"#,
            "route bus: rabbitmq step: url must start with amqp:// for a rabbitmq step (got amqps://; TLS to brokers is not supported yet)",
        ),
        (
            r#"{ action = "rabbitmq", url = "amqp://u:hunter2@mq.example.com/v", exchange = "", routing_key = "k" }"#,
            "route bus: rabbitmq step: `exchange` is empty",
        ),
        (
            &format!(
                r#"{{ action = "rabbitmq", url = "amqp://mq.example.com", exchange = "{}", routing_key = "k" }}"#,
                "x".repeat(256)
            ),
            "route bus: rabbitmq step: `exchange` is longer than 255 bytes",
        ),
        (
            r#"{ action = "nats", url = "nats://127.0.0.1:4222", subject = "" }"#,
            "route bus: nats step: `subject` is empty",
        ),
        (
            r#"{ action = "redis_stream", url = "redis://127.0.0.1:6379", stream = "s", maxlen = 0 }"#,
            "route bus: redis_stream step: `maxlen` must be at least 1",
        ),
        (
            r#"{ action = "nats", url = "not a url", subject = "s" }"#,
            "route bus: nats step: url is not a valid URL",
        ),
        (
            r#"{ action = "nats", url = "nats://127.0.0.1:4222", subject = "a.{{nope}}" }"#,
            "unknown placeholder {{nope}}",
        ),
    ];
    for (step, want) in cases {
        let vars = base_vars(&db, &route(step));
        let err = match hookd::config::Config::from_vars(vars) {
            Ok(_) => panic!("{step} must not load"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(want), "{step}:\n{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
    // Without HOOKD_FORWARD_ALLOW_PRIVATE, a broker on a private address is refused like a
    // forward would be.
    let mut vars = base_vars(&db, &route(&nats_step(NATS_URL, "p", 1000)));
    vars.retain(|(k, _)| k != "HOOKD_FORWARD_ALLOW_PRIVATE");
    let err = match hookd::config::Config::from_vars(vars) {
        Ok(_) => panic!("a private broker address must be refused"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("route bus") && err.contains("nats to 127.0.0.1 is refused"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_steps_publish_what_their_transform_makes_and_skip_on_null() {
    let db = TestDb::new(Backend::Sqlite).await;
    let ledger = RabbitQueue::new(Some("stripe.payment_intent.succeeded")).await;
    let skipped = RabbitQueue::new(Some("stripe.payment_intent.succeeded")).await;
    let ns = NatsStream::create(NATS_URL).await;
    let key = unique_prefix();
    // A step's own script: plain text, its own content type and a header of the team's.
    let chat = db.dir.path().join("chat.js");
    std::fs::write(
        &chat,
        r#"function transform(e) {
  return { body: "paid " + e.body.data.object.amount,
           headers: { "content-type": "text/x-chat", "x-team": "billing" } };
}"#,
    )
    .unwrap();
    let never = db.dir.path().join("never.js");
    std::fs::write(&never, "function transform(e) { return null; }").unwrap();
    // The route's transform (the ledger example) applies to the steps without their own.
    let skip_step = format!(
        r#"{{ action = "rabbitmq", url = "{RABBITMQ_URL}", exchange = "{}", routing_key = "{{{{provider}}}}.{{{{type}}}}", transform = "{}" }}"#,
        skipped.exchange,
        never.display()
    );
    let nats_own = format!(
        r#"{{ action = "nats", url = "{NATS_URL}", subject = "{}.{{{{type}}}}", transform = "{}" }}"#,
        ns.prefix,
        chat.display()
    );
    let routes = format!(
        "[[routes]]\nname = \"bus\"\nprovider = \"stripe\"\ntransform = \"{}\"\nsteps = [{}, {}, {}, {}]\n",
        example_transform("stripe-ledger.js"),
        rabbit_step(RABBITMQ_URL, &ledger.exchange),
        nats_own,
        redis_step(&redis_url(), &key),
        skip_step,
    );
    // With the tracing pipeline on, hookd adds `traceparent` beside the script's headers.
    let vars = [(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        format!("http://127.0.0.1:{}", free_port()),
    )];
    let hookd = Hookd::spawn_with(&db, &routes, "serve", &vars, "serve.log").await;
    let payment = LIVE_PAYMENT;
    let r = post_stripe(&hookd.url, payment).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = id_of(r).await;
    let e = hookd.wait_status(id, EventStatus::Completed, WAIT).await;
    let want = |step: &str, outcome: &str| (step.to_owned(), outcome.to_owned());
    assert_eq!(
        step_outcomes(&e),
        [
            want("bus/0:rabbitmq", "succeeded"),
            want("bus/1:nats", "succeeded"),
            want("bus/2:redis_stream", "succeeded"),
            want("bus/3:rabbitmq", "skipped"),
        ]
    );
    let entry = live_payment_ledger_entry(&id.to_string());
    let json = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).unwrap();

    let amqp = ledger.wait(1, WAIT).await;
    assert_eq!(amqp.len(), 1);
    assert_eq!(json(&amqp[0].body), entry, "the route's transform made it");
    assert_eq!(amqp[0].headers["amqp.content_type"], "application/json");
    assert_eq!(amqp[0].headers["idempotency-key"], "stripe:evt_live_1");
    assert_eq!(amqp[0].headers["x-hookd-event-id"], id.to_string());
    assert!(amqp[0].headers.contains_key("traceparent"), "{amqp:?}");

    assert_eq!(ns.count().await, 1);
    let (subject, js) = ns.message(1).await;
    assert_eq!(subject, format!("{}.payment_intent.succeeded", ns.prefix));
    assert_eq!(
        js.body, b"paid 4999",
        "the step's own transform wins over the route's"
    );
    assert_eq!(js.headers["content-type"], "text/x-chat");
    assert_eq!(js.headers["x-team"], "billing");
    assert!(!js.headers.contains_key("idempotency-key"), "{js:?}");
    assert_eq!(js.headers["x-hookd-provider"], "stripe");
    assert_eq!(js.headers["Nats-Msg-Id"], format!("{id}:bus/1:nats"));
    assert!(js.headers.contains_key("traceparent"), "{js:?}");

    let entries = redis_stream_entries(&redis_url(), &format!("{key}:stripe")).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(json(&entries[0].body), entry);
    assert_eq!(entries[0].headers["content-type"], "application/json");
    assert_eq!(entries[0].headers["idempotency-key"], "stripe:evt_live_1");
    assert_eq!(
        entries[0].headers["x-hookd-event-type"],
        "payment_intent.succeeded"
    );
    assert!(entries[0].headers.contains_key("traceparent"));

    // The skipped step published nothing, though a queue is bound for it.
    assert!(skipped.drain().await.is_empty());
    ns.delete().await;
}

/// The ledger-on-RabbitMQ example of README.md and docs/transforms.md loads as written, the
/// route's script (the tested `stripe-ledger.js`) applies to its broker step, and it compiles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_broker_transform_example_loads() {
    for doc in ["README.md", "docs/transforms.md"] {
        let text =
            std::fs::read_to_string(format!("{}/{doc}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let at = text
            .find("name = \"ledger-bus\"")
            .unwrap_or_else(|| panic!("{doc} has the example"));
        let start = text[..at].rfind("```toml\n").unwrap() + "```toml\n".len();
        let example = &text[start..at + text[at..].find("```").unwrap()];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hookd.toml");
        std::fs::write(&path, example).unwrap();
        let c = hookd::config::Config::from_vars([(
            "HOOKD_CONFIG".to_owned(),
            path.display().to_string(),
        )])
        .unwrap_or_else(|e| panic!("{doc}: {e}"));
        let route = &c.actions.routes[0];
        assert_eq!(
            route.transforms(),
            ["examples/transforms/stripe-ledger.js"],
            "{doc}"
        );
        assert_eq!(route.steps[0].action(), "rabbitmq", "{doc}");
        hookd::actions::Actions::new(&c.actions)
            .unwrap_or_else(|e| panic!("{doc}: the example's script compiles: {e}"));
    }
}

//! Per-call time of a JavaScript transform on a 1.5 KB Stripe event: the committed
//! `examples/transforms/stripe-ledger.js` run many times, on one engine (what one transform
//! thread does per call) and through hookd's transform pool from async code (what a worker
//! waits for: the hand-off to a transform thread and back included). Prints p50, p99 and max.
//!
//! ```sh
//! cargo run --release -p hookd-bench --example transform [-- <calls>]
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use hdrhistogram::Histogram;
use hookd::transform::{
    Engine, Script, TransformInput, TransformSettings, Transformed, Transforms,
};

/// A `payment_intent.succeeded` as Stripe sends it, trimmed to about 1.5 KB.
fn stripe_event() -> String {
    let body = serde_json::json!({
        "id": "evt_3QbLx2EfGh7aB1cD0e9FgH2i",
        "object": "event",
        "api_version": "2024-06-20",
        "created": 1765130531,
        "livemode": true,
        "pending_webhooks": 1,
        "request": { "id": "req_Xk2mP9qLs8vTnB", "idempotency_key": "6f1c7c2e-0b9d-4f7e-9a3e-2d8c5b1a0f44" },
        "type": "payment_intent.succeeded",
        "data": { "object": {
            "id": "pi_3QbLx2EfGh7aB1cD0vQ8Wxyz",
            "object": "payment_intent",
            "amount": 4999,
            "amount_capturable": 0,
            "amount_received": 4999,
            "application": null,
            "capture_method": "automatic_async",
            "client_secret": "pi_3QbLx2EfGh7aB1cD0vQ8Wxyz_secret_Hn5kQ2wP8rT1vX9zB3mC7dF4g",
            "confirmation_method": "automatic",
            "created": 1765130520,
            "currency": "eur",
            "customer": "cus_RkT9aBcDeF0123",
            "description": "Order #100234: 2 × annual plan",
            "latest_charge": "ch_3QbLx2EfGh7aB1cD0aB3cD4e",
            "metadata": { "order_id": "100234", "plan": "annual", "seats": "2", "region": "eu-west" },
            "payment_method": "pm_1QbLwzEfGh7aB1cDqW5eR6tY",
            "payment_method_types": ["card", "sepa_debit"],
            "receipt_email": "billing@example.com",
            "shipping": { "name": "Example GmbH", "address": { "city": "Berlin", "country": "DE", "line1": "Friedrichstraße 123", "postal_code": "10117" } },
            "payment_method_options": { "card": { "installments": null, "mandate_options": null, "network": null, "request_three_d_secure": "automatic" }, "sepa_debit": {} },
            "processing": null,
            "review": null,
            "setup_future_usage": "off_session",
            "source": null,
            "statement_descriptor": "EXAMPLE ANNUAL",
            "statement_descriptor_suffix": "ANNUAL",
            "transfer_data": null,
            "transfer_group": "group_pi_3QbLx2EfGh7aB1cD0vQ8Wxyz",
            "status": "succeeded"
        } }
    });
    body.to_string()
}

fn input(text: &str) -> TransformInput {
    TransformInput {
        id: "0193a5b0-7c1e-7d4a-9a51-6c2f0e4b8d11".into(),
        provider: "stripe".into(),
        event_type: "payment_intent.succeeded".into(),
        idempotency_key: "evt_3QbLx2EfGh7aB1cD0e9FgH2i".into(),
        attempt: 1,
        received_at: "2026-12-07T18:02:11.482Z".into(),
        headers: [
            ("content-type", "application/json; charset=utf-8"),
            ("stripe-signature", "[redacted]"),
            (
                "user-agent",
                "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        text: text.to_owned(),
        ..TransformInput::default()
    }
    .complete()
}

fn report(what: &str, h: &Histogram<u64>) {
    let us = |ns: u64| ns as f64 / 1000.0;
    println!(
        "{what}: {} calls, p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        h.len(),
        us(h.value_at_quantile(0.5)),
        us(h.value_at_quantile(0.99)),
        us(h.max())
    );
}

fn main() {
    let calls: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("the number of calls"))
        .unwrap_or(20_000);
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/transforms/stripe-ledger.js");
    let script = Script::read(&path).expect("the example script");
    let name = script.name.clone();
    let text = stripe_event();
    let event = input(&text);
    assert!((1400..1600).contains(&text.len()), "{} bytes", text.len());
    println!("event body: {} bytes; script: {}", text.len(), name);
    let settings = TransformSettings {
        threads: 1,
        ..TransformSettings::default()
    };

    let engine = Engine::new(&settings, std::slice::from_ref(&script)).expect("it loads");
    let mut direct = Histogram::<u64>::new(3).unwrap();
    for i in 0..calls + 1000 {
        let started = Instant::now();
        let out = engine.run(&name, &event).expect("it transforms");
        let took = started.elapsed();
        assert!(matches!(out, Transformed::Deliver(_)));
        if i >= 1000 {
            direct.record(took.as_nanos() as u64).unwrap();
        }
    }
    report("engine call (one transform thread)", &direct);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let pooled = runtime.block_on(async {
        let pool = Transforms::start(&settings, &[script]).expect("it loads");
        let name: Arc<str> = name.clone();
        let mut h = Histogram::<u64>::new(3).unwrap();
        for i in 0..calls + 1000 {
            let started = Instant::now();
            pool.run(&name, event.clone()).await.expect("it transforms");
            if i >= 1000 {
                h.record(started.elapsed().as_nanos() as u64).unwrap();
            }
        }
        h
    });
    report("through the pool (as a worker waits for it)", &pooled);
}

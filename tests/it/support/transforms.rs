//! What tests of JavaScript transforms share: the committed example scripts, a live Stripe
//! payment with the ledger entry `stripe-ledger.js` makes of it, and an event's step outcomes as
//! the admin API shows them (a skip is an outcome of its own).

use std::path::Path;

/// The path of a committed example transform (`examples/transforms/<name>`).
pub fn example_transform(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/transforms")
        .join(name)
        .display()
        .to_string()
}

/// The step results of an event as the admin API shows them: (step, outcome), sorted.
pub fn step_outcomes(e: &serde_json::Value) -> Vec<(String, String)> {
    let mut s: Vec<(String, String)> = e["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_owned(),
                s["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    s.sort();
    s
}

/// A live Stripe payment of 49.99 EUR (`evt_live_1`), as Stripe sends it.
pub const LIVE_PAYMENT: &str = r#"{"id":"evt_live_1","object":"event","type":"payment_intent.succeeded","created":1765130531,"livemode":true,"data":{"object":{"id":"pi_1","amount":4999,"amount_received":4999,"currency":"eur","customer":"cus_1"}}}"#;

/// The entry `examples/transforms/stripe-ledger.js` makes of [`LIVE_PAYMENT`], accepted by
/// hookd as `hookd_event`.
pub fn live_payment_ledger_entry(hookd_event: &str) -> serde_json::Value {
    serde_json::json!({
        "entry_id": "stripe:evt_live_1",
        "direction": "credit",
        "amount_minor": 4999,
        "currency": "EUR",
        "reference": "pi_1",
        "customer": "cus_1",
        "booked_at": "2025-12-07T18:02:11.000Z",
        "source": { "provider": "stripe", "hookd_event": hookd_event },
    })
}

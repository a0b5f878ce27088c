//! A correctly signed Stripe request with an arbitrary body, through everything after the
//! signature: JSON parsing, id and event-type limits, JSON Schema validation. Never a panic.
#![no_main]

mod common;

use bytes::Bytes;
use hmac::{KeyInit, Mac};
use hookd::verify::{Lookup, RawRequest};
use http::{HeaderMap, HeaderValue, Uri};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let world = common::world();
    let now = 1_700_000_000;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(common::STRIPE_SECRET.as_bytes()).unwrap();
    mac.update(format!("{now}.").as_bytes());
    mac.update(body);
    let signature = format!("t={now},v1={}", hex::encode(mac.finalize().into_bytes()));
    let mut headers = HeaderMap::new();
    headers.insert("stripe-signature", HeaderValue::from_str(&signature).unwrap());
    let body = Bytes::copy_from_slice(body);
    let uri = Uri::from_static("/webhooks/stripe");
    let Lookup::Ready(verifier) = world.providers.lookup("stripe") else {
        panic!("stripe is configured");
    };
    let request = RawRequest {
        headers: &headers,
        body: &body,
        uri: &uri,
        now_unix: now,
    };
    if let Ok(webhook) = world.runtime.block_on(verifier.verify("stripe", &request)) {
        let _ = hookd::http::validate::check(&world.config.http.limits, &webhook);
        let _ = hookd::http::validate::check_schemas(&world.config.http.schemas, &webhook);
    }
});

//! Every provider's verifier on arbitrary headers, body, URL and clock: never a panic.
#![no_main]

mod common;

use arbitrary::Arbitrary;
use bytes::Bytes;
use hookd::verify::{Lookup, RawRequest};
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    provider: u8,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    uri: String,
    now: i64,
}

fuzz_target!(|input: Input| {
    let world = common::world();
    let name = common::NAMES[input.provider as usize % common::NAMES.len()];
    let mut headers = HeaderMap::new();
    for (k, v) in &input.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_bytes(v)) {
            headers.append(k, v);
        }
    }
    let uri: Uri = input
        .uri
        .parse()
        .unwrap_or_else(|_| Uri::from_static("/webhooks/x"));
    let body = Bytes::from(input.body);
    if let Lookup::Ready(verifier) = world.providers.lookup(name) {
        let request = RawRequest {
            headers: &headers,
            body: &body,
            uri: &uri,
            now_unix: input.now,
        };
        let _ = world.runtime.block_on(verifier.verify(name, &request));
    }
});

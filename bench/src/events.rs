//! The events a run sends: realistic Stripe bodies (~1.5 KB), signed exactly as Stripe signs
//! them, turned into complete HTTP/1.1 requests before the clock starts, and the order in which
//! they are sent (with a share of redeliveries of earlier events).
//!
//! Owns everything that happens before the first request. Must never sign or format anything
//! inside the timed loop: the point is to measure hookd, not the load generator.

use hmac::{KeyInit, Mac};
use sha2::Sha256;

/// `Stripe-Signature` for `body` at Unix time `t`: `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
/// The whole `whsec_...` string is the key, as Stripe's SDKs use it.
pub fn stripe_signature(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// splitmix64's finaliser: a bijection on `u64`, so distinct inputs give distinct outputs.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn base62(mut v: u64, len: usize) -> String {
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..len)
        .map(|_| {
            let d = DIGITS[(v % 62) as usize] as char;
            v /= 62;
            d
        })
        .collect()
}

/// The event id of unique event `seq` in run `run`. Stripe's ids look random
/// (`evt_1PqR...`, 28 characters), and so do these: in the database they land all over the
/// unique index, as real ones do, rather than at its end. Unique within a run (the mix is a
/// bijection of `seq`); the run tag's hash keeps runs against one database apart.
pub fn event_id(run: &str, seq: usize) -> String {
    let run_hash = run.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let a = mix(seq as u64 ^ run_hash);
    let b = mix(a ^ 0x5851_F42D_4C95_7F2D);
    format!("evt_1{}{}", base62(a, 11), base62(b, 12))
}

/// The headers hookd keeps for audit from [`http_request`]'s request, as the JSON it stores.
pub fn stored_headers_json() -> &'static str {
    r#"{"accept":"*/*; q=0.5, application/xml","cache-control":"no-cache","content-type":"application/json; charset=utf-8","stripe-signature":"[redacted]","user-agent":"Stripe/1.0 (+https://stripe.com/docs/webhooks)"}"#
}

/// A `pgbench` script inserting one row per transaction into hookd's own `events` table, shaped
/// like the rows hookd writes for [`stripe_body`] events: a time-ordered id (hookd uses
/// UUIDv7), a random Stripe-like key, the same headers and a body of the same size and content.
pub fn pgbench_script(body_len: usize) -> String {
    let body = stripe_body("pgbench", 1, 1_700_000_000, body_len).replace('\'', "''");
    format!(
        "INSERT INTO events (id, provider, idempotency_key, event_type, content_type, headers, body) \
         VALUES ((lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0') \
         || substr(md5(random()::text), 1, 20))::uuid, 'stripe', \
         'evt_1' || substr(md5(random()::text), 1, 23), 'payment_intent.succeeded', \
         'application/json; charset=utf-8', '{}', convert_to('{}', 'UTF8')) \
         ON CONFLICT (provider, idempotency_key) DO NOTHING;\n",
        stored_headers_json(),
        // pgbench reads one command per line.
        body.replace('\n', " ")
    )
}

/// A `payment_intent.succeeded` event as Stripe sends it (pretty-printed, the same fields),
/// padded with metadata to at least `target_len` bytes.
pub fn stripe_body(run: &str, seq: usize, created: i64, target_len: usize) -> String {
    let id = event_id(run, seq);
    let pi = format!("pi_{run}{seq:08}");
    let amount = 1000 + (seq % 9000) * 7;
    let mut body = format!(
        r#"{{
  "id": "{id}",
  "object": "event",
  "api_version": "2024-06-20",
  "created": {created},
  "data": {{
    "object": {{
      "id": "{pi}",
      "object": "payment_intent",
      "amount": {amount},
      "amount_capturable": 0,
      "amount_received": {amount},
      "application": null,
      "automatic_payment_methods": {{
        "allow_redirects": "always",
        "enabled": true
      }},
      "canceled_at": null,
      "capture_method": "automatic_async",
      "client_secret": "{pi}_secret_Q9xU2mH4aZ",
      "confirmation_method": "automatic",
      "created": {created},
      "currency": "eur",
      "customer": "cus_Q{seq:08}",
      "description": "Order {seq} (caf\u00e9 \u2615)",
      "last_payment_error": null,
      "latest_charge": "ch_{run}{seq:08}",
      "livemode": false,
      "metadata": {{
        "order_id": "{seq}"@PAD@
      }},
      "payment_method": "pm_1Q{seq:08}",
      "payment_method_options": {{
        "card": {{
          "installments": null,
          "mandate_options": null,
          "network": null,
          "request_three_d_secure": "automatic"
        }}
      }},
      "payment_method_types": [
        "card"
      ],
      "receipt_email": "jenny.rosen@example.com",
      "setup_future_usage": null,
      "shipping": null,
      "statement_descriptor": null,
      "status": "succeeded",
      "transfer_group": null
    }}
  }},
  "livemode": false,
  "pending_webhooks": 1,
  "request": {{
    "id": "req_{seq:08}",
    "idempotency_key": "{pi}-confirm"
  }},
  "type": "payment_intent.succeeded"
}}"#
    );
    let pad = const { ",\n        \"note\": \"\"".len() };
    // `@` occurs nowhere else in the body (ids are base62), so the marker is unambiguous.
    let missing = target_len.saturating_sub(body.len() - "@PAD@".len());
    let padding = if missing > pad {
        format!(",\n        \"note\": \"{}\"", "x".repeat(missing - pad))
    } else {
        String::new()
    };
    body = body.replacen("@PAD@", &padding, 1);
    body
}

/// A complete HTTP/1.1 request for `/webhooks/stripe`, ready to be written to a socket.
pub fn http_request(host: &str, path: &str, signature: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Stripe/1.0 (+https://stripe.com/docs/webhooks)\r\n\
         Accept: */*; q=0.5, application/xml\r\nCache-Control: no-cache\r\n\
         Content-Type: application/json; charset=utf-8\r\nStripe-Signature: {signature}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// splitmix64: small, fast and deterministic, so a plan is reproducible from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How many recent events a redelivery picks from: providers redeliver recent events, and
/// some of those are still in flight, which exercises concurrent duplicates too.
const REDELIVERY_WINDOW: usize = 1000;

/// Which unique event each request sends: `plan[i]` is the unique event of request `i`.
/// About `duplicate_share` of the requests (never the first) resend an earlier event.
pub fn plan(requests: usize, duplicate_share: f64, seed: u64) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    let mut next_unique = 0usize;
    (0..requests)
        .map(|_| {
            if next_unique > 0 && rng.next_f64() < duplicate_share {
                let window = next_unique.min(REDELIVERY_WINDOW);
                let back = (rng.next_u64() % window as u64) as usize;
                (next_unique - 1 - back) as u32
            } else {
                next_unique += 1;
                (next_unique - 1) as u32
            }
        })
        .collect()
}

/// Everything a run sends, prepared up front.
pub struct Prepared {
    /// One complete request per unique event.
    pub requests: Vec<Vec<u8>>,
    /// Unique event sent by each request, in sending order.
    pub plan: Vec<u32>,
    pub body_bytes: usize,
}

impl Prepared {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        host: &str,
        path: &str,
        secret: &str,
        run: &str,
        now: i64,
        requests: usize,
        duplicate_share: f64,
        body_len: usize,
        seed: u64,
    ) -> Self {
        let plan = plan(requests, duplicate_share, seed);
        let unique = plan.iter().max().map_or(0, |m| *m as usize + 1);
        let mut body_bytes = 0;
        let requests = (0..unique)
            .map(|seq| {
                let body = stripe_body(run, seq, now, body_len);
                body_bytes += body.len();
                let sig = stripe_signature(secret, now, body.as_bytes());
                http_request(host, path, &sig, body.as_bytes())
            })
            .collect::<Vec<_>>();
        let body_bytes = body_bytes / requests.len().max(1);
        Self {
            requests,
            plan,
            body_bytes,
        }
    }

    pub fn unique(&self) -> usize {
        self.requests.len()
    }

    /// The bytes of request number `i`.
    pub fn request(&self, i: usize) -> &[u8] {
        &self.requests[self.plan[i] as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_json_of_the_asked_size_with_a_unique_id() {
        let a = stripe_body("r1", 7, 1_700_000_000, 1500);
        let v: serde_json::Value = serde_json::from_str(&a).unwrap();
        assert_eq!(v["id"], event_id("r1", 7));
        assert!(v["id"].as_str().unwrap().starts_with("evt_1"));
        assert_eq!(v["id"].as_str().unwrap().len(), 28);
        assert_eq!(v["type"], "payment_intent.succeeded");
        assert_eq!(v["data"]["object"]["description"], "Order 7 (café ☕)");
        assert!((1500..1700).contains(&a.len()), "{}", a.len());
        let padded = stripe_body("r1", 7, 1_700_000_000, 2000);
        assert!((2000..2020).contains(&padded.len()), "{}", padded.len());
        assert!(serde_json::from_str::<serde_json::Value>(&padded).is_ok());
        let b = stripe_body("r1", 8, 1_700_000_000, 1500);
        assert_ne!(a, b);
        // A smaller target never truncates.
        let small = stripe_body("r1", 7, 1_700_000_000, 10);
        assert!(serde_json::from_str::<serde_json::Value>(&small).is_ok());
    }

    #[test]
    fn every_body_of_a_large_run_is_valid_json() {
        for seq in 0..20_000 {
            let b = stripe_body("sqlite-max-12345", seq, 1_700_000_000, 1500);
            assert!(
                serde_json::from_str::<serde_json::Value>(&b).is_ok(),
                "{seq}: {b}"
            );
        }
    }

    #[test]
    fn event_ids_are_unique_per_run_and_differ_between_runs() {
        let ids: std::collections::HashSet<String> =
            (0..100_000).map(|i| event_id("run-a", i)).collect();
        assert_eq!(ids.len(), 100_000);
        assert_ne!(event_id("run-a", 0), event_id("run-b", 0));
    }

    #[test]
    fn pgbench_script_is_one_insert_with_a_body_of_the_asked_size() {
        let sql = pgbench_script(1500);
        assert_eq!(sql.lines().count(), 1);
        assert!(sql.starts_with("INSERT INTO events"));
        assert!(sql.contains(stored_headers_json()));
        let body_start = sql.find("convert_to('").unwrap() + "convert_to('".len();
        let body_end = sql.rfind("', 'UTF8')").unwrap();
        let body = &sql[body_start..body_end];
        assert!(body.len() >= 1500, "{}", body.len());
        assert!(serde_json::from_str::<serde_json::Value>(body).is_ok());
    }

    #[test]
    fn signature_matches_stripes_documented_example_shape() {
        // Independent check: HMAC over "<t>.<body>" keyed with the whole whsec string.
        let sig = stripe_signature("whsec_test", 1_614_556_800, b"{}");
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(b"whsec_test").unwrap();
        mac.update(b"1614556800.{}");
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(sig, format!("t=1614556800,v1={expected}"));
    }

    #[test]
    fn plan_has_the_asked_share_of_earlier_events() {
        let p = plan(10_000, 0.2, 42);
        assert_eq!(p.len(), 10_000);
        assert_eq!(p[0], 0);
        let mut seen = std::collections::HashSet::new();
        let mut dups = 0;
        let mut next = 0;
        for &e in &p {
            if seen.insert(e) {
                // New events are numbered in order of first use.
                assert_eq!(e, next);
                next += 1;
            } else {
                dups += 1;
            }
        }
        assert!((1700..2300).contains(&dups), "{dups}");
        assert_eq!(p, plan(10_000, 0.2, 42), "deterministic for a seed");
        assert!(
            plan(100, 0.0, 1)
                .iter()
                .enumerate()
                .all(|(i, e)| *e as usize == i)
        );
    }

    #[test]
    fn request_is_well_formed_http() {
        let req = http_request("127.0.0.1:3001", "/webhooks/stripe", "t=1,v1=ab", b"{}");
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut r = httparse::Request::new(&mut headers);
        let httparse::Status::Complete(n) = r.parse(&req).unwrap() else {
            panic!("incomplete")
        };
        assert_eq!(r.method, Some("POST"));
        assert_eq!(r.path, Some("/webhooks/stripe"));
        assert_eq!(&req[n..], b"{}");
        let sig = r
            .headers
            .iter()
            .find(|h| h.name == "Stripe-Signature")
            .unwrap();
        assert_eq!(sig.value, b"t=1,v1=ab");
    }

    #[test]
    fn prepared_requests_share_bytes_for_duplicates() {
        let p = Prepared::new(
            "h",
            "/webhooks/stripe",
            "whsec_x",
            "run",
            1,
            500,
            0.3,
            1500,
            7,
        );
        assert_eq!(p.plan.len(), 500);
        assert!(p.unique() < 500 && p.unique() > 250);
        assert!(p.body_bytes >= 1500);
        let first_dup = (1..500)
            .find(|&i| p.plan[..i].contains(&p.plan[i]))
            .unwrap();
        let original = p.plan.iter().position(|e| *e == p.plan[first_dup]).unwrap();
        assert_eq!(p.request(first_dup), p.request(original));
    }
}

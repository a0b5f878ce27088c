//! A real HTTP server that stands in for a forward destination: it answers as a test tells it
//! (failures, delays, hangs, scripted statuses, outages) and records every request it gets.
//! It only records; what the requests must look like is for each test to assert.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;

use super::eventually;

/// One request a target received.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When it was answered.
    pub at: Instant,
    /// The status the target answered with.
    pub status: u16,
}

/// How a target answers.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// Answer 500 to this many requests first.
    pub fail_first: usize,
    /// Answer 500 to every request.
    pub always_fail: bool,
    /// Wait this long before answering (every request).
    pub delay: Duration,
    /// Never answer the first request.
    pub hang_first: bool,
    /// Answers for the first requests, in order: (status, `Retry-After` value).
    pub script: Vec<(u16, Option<&'static str>)>,
    /// Answer 500 to the first request of this percentage of events (chosen by a hash of the
    /// `x-hookd-event-id` header, so the same events whatever the order they come in).
    pub fail_first_percent: u8,
    /// Answer 500 to every request whose body contains this text.
    pub fail_bodies_with: Option<&'static str>,
}

struct TargetState {
    behaviour: Behaviour,
    /// Events whose first request has been answered (for `fail_first_percent`).
    seen: Mutex<std::collections::HashSet<String>>,
    received: Mutex<Vec<Received>>,
    count: AtomicUsize,
    /// While set, every request is answered 503 at once (an outage).
    down: AtomicBool,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// A real HTTP server that records what it receives.
pub struct Target {
    /// Where to forward to: `http://127.0.0.1:<port>/in`.
    pub url: String,
    state: Arc<TargetState>,
}

impl Target {
    /// Start a target on a free port that answers as `behaviour` says.
    pub async fn start(behaviour: Behaviour) -> Self {
        Self::start_on("127.0.0.1", behaviour).await
    }

    /// [`Target::start`] listening on `ip` (a test network's gateway, to be reached from its
    /// hosts).
    pub async fn start_on(ip: &str, behaviour: Behaviour) -> Self {
        let state = Arc::new(TargetState {
            behaviour,
            seen: Mutex::new(Default::default()),
            received: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            down: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .route("/in", axum::routing::post(target_handler))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url: format!("http://{addr}/in"),
            state,
        }
    }

    /// Requests answered (and recorded) so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Requests seen so far, including ones still being answered.
    pub fn hits(&self) -> usize {
        self.state.count.load(Ordering::SeqCst)
    }

    /// Start (true) or end (false) an outage: every request answered 503 at once.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Most requests this target was answering at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// Requests answered with a 2xx.
    pub fn succeeded(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }

    /// Wait until `n` requests have been answered (and recorded).
    pub async fn wait_received(&self, n: usize, within: Duration) -> Vec<Received> {
        eventually(
            format!("the target to answer {n} requests"),
            within,
            || async { self.received() },
            |got| got.len() >= n,
        )
        .await
    }

    /// Wait until `n` requests have arrived (answered or not).
    pub async fn wait_hits(&self, n: usize, within: Duration) {
        eventually(
            format!("the target to get {n} requests"),
            within,
            || async { self.hits() },
            |&hits| hits >= n,
        )
        .await;
    }
}

async fn target_handler(
    State(s): State<Arc<TargetState>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let n = s.count.fetch_add(1, Ordering::SeqCst);
    let b = &s.behaviour;
    let record = |status: u16| {
        s.received.lock().unwrap().push(Received {
            headers: headers.clone(),
            body: body.clone(),
            at: Instant::now(),
            status,
        })
    };
    if s.down.load(Ordering::SeqCst) {
        record(503);
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if b.hang_first && n == 0 {
        std::future::pending::<()>().await;
    }
    let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    s.max_in_flight.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(b.delay).await;
    s.in_flight.fetch_sub(1, Ordering::SeqCst);
    if let Some((status, retry_after)) = b.script.get(n) {
        record(*status);
        let mut resp = StatusCode::from_u16(*status).unwrap().into_response();
        if let Some(ra) = retry_after {
            resp.headers_mut()
                .insert("retry-after", ra.parse().unwrap());
        }
        return resp;
    }
    let status = if b.always_fail || n < b.fail_first || fails_first(&s, &headers, &body) {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    record(status.as_u16());
    status.into_response()
}

/// Whether this request fails because of `fail_first_percent` or `fail_bodies_with`.
fn fails_first(s: &TargetState, headers: &HeaderMap, body: &[u8]) -> bool {
    let b = &s.behaviour;
    if let Some(text) = b.fail_bodies_with
        && String::from_utf8_lossy(body).contains(text)
    {
        return true;
    }
    if b.fail_first_percent == 0 {
        return false;
    }
    let Some(id) = headers
        .get("x-hookd-event-id")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    let chosen = h.finish() % 100 < u64::from(b.fail_first_percent);
    chosen && s.seen.lock().unwrap().insert(id.to_owned())
}

/// A config file with one Stripe route forwarding everything to `url`.
pub fn forward_route(url: &str) -> String {
    format!(
        r#"[[routes]]
name = "fwd"
provider = "stripe"
events = ["*"]
steps = [{{ action = "forward", url = "{url}" }}]
"#
    )
}

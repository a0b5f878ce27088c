//! hookd started in this process on a free port, with fast polls and retries, against a test's
//! own store: the harness most tests use. Also the settings every hookd a test starts begins
//! with, in this process or as a child process. Never changes the process environment.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hookd::app::{self, Roles, Running};
use hookd::config::Config;
use hookd::event::{EventDetail, EventId, EventStatus};
use hookd::store::EventStore;

use super::{ReadEvents, STRIPE_SECRET, TestDb, eventually, now, stripe_header};

/// The admin token every test server accepts (all scopes).
pub const ADMIN_TOKEN: &str = "admin-token-for-integration-tests";

/// Settings every test server starts with: fast polls and retries, a free port.
pub fn base_vars(db: &TestDb, routes_toml: &str) -> Vec<(String, String)> {
    let config_path = db
        .dir
        .path()
        .join(format!("hookd-{}.toml", uuid::Uuid::new_v4().simple()));
    std::fs::write(&config_path, routes_toml).unwrap();
    [
        ("DATABASE_URL", db.url.as_str()),
        ("HOOKD_CONFIG", config_path.to_str().unwrap()),
        ("HOOKD_BIND", "127.0.0.1"),
        ("PORT", "0"),
        ("STRIPE_WEBHOOK_SECRET", STRIPE_SECRET),
        ("HOOKD_ADMIN_TOKEN", ADMIN_TOKEN),
        ("HOOKD_POLL_MS", "50"),
        ("HOOKD_RETRY_BASE_MS", "100"),
        ("HOOKD_LEASE_SECS", "2"),
        // Generous: the suite runs many servers on two cores. Outage tests set it lower.
        ("HOOKD_STORE_TIMEOUT_MS", "5000"),
        // Many servers run at once against one PostgreSQL (100 connections by default).
        ("HOOKD_DB_POOL_SIZE", "4"),
        // Subprocess logs go to the test's log file, not to ./logs in the repository.
        ("HOOKD_LOG_DIR", ""),
        ("HOOKD_SHUTDOWN_TIMEOUT_SECS", "5"),
        // No load balancer to drain from: stop at once. The drain has tests of its own.
        ("HOOKD_SHUTDOWN_READY_DELAY_MS", "0"),
        ("HOOKD_FORWARD_TIMEOUT_MS", "3000"),
        // Targets run on loopback.
        ("HOOKD_FORWARD_ALLOW_PRIVATE", "true"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// hookd running in this process on a real TCP port.
pub struct TestServer {
    /// Its base URL, `http://127.0.0.1:<port>`.
    pub url: String,
    /// The store it runs on, for reading events back directly.
    pub store: Arc<dyn EventStore>,
    /// A client for requests to it.
    pub http: reqwest::Client,
    running: Option<Running>,
}

impl TestServer {
    /// Start hookd on `db` with the route file `routes_toml` and `extra` settings on top of
    /// [`base_vars`]; returns once it listens.
    pub async fn start(db: &TestDb, routes_toml: &str, extra: &[(&str, &str)]) -> Self {
        let mut vars = base_vars(db, routes_toml);
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = Config::from_vars(vars).expect("valid test config");
        let running = app::start(&config, Roles::SERVE)
            .await
            .expect("hookd starts");
        Self {
            url: format!("http://{}", running.addr.unwrap()),
            store: running.store.clone(),
            http: reqwest::Client::new(),
            running: Some(running),
        }
    }

    /// Graceful shutdown, as on SIGTERM.
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
            r.wait().await;
        }
    }

    /// POST `body` to `/webhooks/{provider}` with `headers`.
    pub async fn post(
        &self,
        provider: &str,
        headers: &[(&str, String)],
        body: impl Into<Bytes>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}/webhooks/{provider}", self.url))
            .body(body.into());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        req.send().await.expect("request sent")
    }

    /// POST a Stripe event signed now with the test secret.
    pub async fn post_stripe(&self, body: &str) -> reqwest::Response {
        let headers = [
            (
                "stripe-signature",
                stripe_header(STRIPE_SECRET, body, now()),
            ),
            ("content-type", "application/json".to_owned()),
        ];
        self.post("stripe", &headers, body.to_owned()).await
    }

    /// Events stored, whatever their status.
    pub async fn total_events(&self) -> u64 {
        self.store.counts().await.unwrap().values().sum()
    }

    /// `GET /admin{path}` with the admin token; the JSON answer.
    pub async fn admin_get(&self, path: &str) -> serde_json::Value {
        let r = self
            .http
            .get(format!("{}/admin{path}", self.url))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::OK, "GET /admin{path}");
        r.json().await.unwrap()
    }

    /// `POST /admin{path}` with the admin token and an optional JSON body.
    pub async fn admin_post(
        &self,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}/admin{path}", self.url))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap()
    }

    /// Wait until `n` stored events are in `status`, or fail after `within`.
    pub async fn wait_all(&self, n: u64, status: EventStatus, within: Duration) {
        eventually(
            format!("{n} events to reach {status}"),
            within,
            || async { self.store.counts().await.unwrap() },
            |counts| counts.get(&status).copied().unwrap_or(0) == n,
        )
        .await;
    }
}

impl ReadEvents for TestServer {
    type Event = EventDetail;

    async fn event(&self, id: EventId) -> EventDetail {
        self.store.event(id).await.unwrap().expect("event exists")
    }

    fn status(event: &EventDetail) -> Option<EventStatus> {
        Some(event.status)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(r) = &self.running {
            r.shutdown();
        }
    }
}

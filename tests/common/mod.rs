//! Test harness: a fresh store per test (a temporary SQLite file, or a new PostgreSQL database),
//! hookd started in-process on a free port, and recording HTTP targets for `forward` steps.
//! Nothing here is a mock: every test talks to a real database over a real connection.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use hmac::{KeyInit, Mac};
use hookd::app::{self, Roles, Running};
use hookd::config::Config;
use hookd::event::{EventDetail, EventId, EventStatus};
use hookd::store::EventStore;
use reqwest::StatusCode as HttpStatus;
use sqlx::Connection;
use std::process::{Child, Command};

pub const STRIPE_SECRET: &str = "whsec_integration_secret";
pub const GITHUB_SECRET: &str = "github-integration-secret";
pub const ADMIN_TOKEN: &str = "admin-token-for-integration-tests";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs one test body against SQLite and against PostgreSQL, as two separate tests.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::common::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::common::Backend::Postgres).await
            }
        }
    )*};
}

/// The server PostgreSQL tests create their databases on.
pub fn pg_admin_url() -> String {
    std::env::var("HOOKD_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A store of its own for one test. PostgreSQL databases are dropped when it goes away.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    pub dir: tempfile::TempDir,
    pg_name: Option<String>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => Self {
                backend,
                url: format!("sqlite://{}", dir.path().join("hookd.db").display()),
                dir,
                pg_name: None,
            },
            Backend::Postgres => {
                let admin = pg_admin_url();
                let name = format!("hookd_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL is required for the integration tests and is not reachable at \
                         {admin} ({e}). Start it (scripts/test.sh does) or set HOOKD_TEST_PG_URL."
                    )
                });
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
                Self {
                    backend,
                    url: format!("{base}/{name}"),
                    dir,
                    pg_name: Some(name),
                }
            }
        }
    }

    /// A PostgreSQL database that something else owns (a private server): not dropped here.
    pub fn at(url: String) -> Self {
        Self {
            backend: Backend::Postgres,
            url,
            dir: tempfile::tempdir().expect("temp dir"),
            pg_name: None,
        }
    }

    /// Make the store refuse service (PostgreSQL: no new connections and existing ones cut;
    /// SQLite: another connection holds the write lock). Returns a guard that restores it.
    pub async fn take_down(&self) -> Outage {
        match &self.pg_name {
            Some(name) => {
                let mut conn = sqlx::PgConnection::connect(&pg_admin_url()).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "ALTER DATABASE {name} ALLOW_CONNECTIONS false"
                )))
                .execute(&mut conn)
                .await
                .unwrap();
                sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                )
                .bind(name)
                .execute(&mut conn)
                .await
                .unwrap();
                Outage::Postgres { name: name.clone() }
            }
            None => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::query("BEGIN EXCLUSIVE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                Outage::Sqlite(conn)
            }
        }
    }
}

pub enum Outage {
    Postgres { name: String },
    Sqlite(sqlx::SqliteConnection),
}

impl Outage {
    pub async fn end(self) {
        match self {
            Self::Postgres { name } => {
                let mut conn = sqlx::PgConnection::connect(&pg_admin_url()).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "ALTER DATABASE {name} ALLOW_CONNECTIONS true"
                )))
                .execute(&mut conn)
                .await
                .unwrap();
            }
            Self::Sqlite(mut conn) => {
                sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        // Drop runs outside async context: do the clean-up on a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&pg_admin_url()).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

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
    pub url: String,
    pub store: Arc<dyn EventStore>,
    pub http: reqwest::Client,
    running: Option<Running>,
}

impl TestServer {
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

    pub async fn event(&self, id: EventId) -> EventDetail {
        self.store.event(id).await.unwrap().expect("event exists")
    }

    /// Wait until the event reaches `status`, or fail after `timeout`.
    pub async fn wait_status(
        &self,
        id: EventId,
        status: EventStatus,
        timeout: Duration,
    ) -> EventDetail {
        let deadline = Instant::now() + timeout;
        loop {
            let e = self.event(id).await;
            if e.status == status {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "event {id} did not reach {status} in {timeout:?}: {e:#?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn total_events(&self) -> u64 {
        self.store.counts().await.unwrap().values().sum()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(r) = &self.running {
            r.shutdown();
        }
    }
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// `Stripe-Signature` for `body` at time `t`, computed independently of hookd's verifier.
pub fn stripe_header(secret: &str, body: &str, t: i64) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

pub fn github_signature(secret: &str, body: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A Stripe event body with a unique id.
pub fn stripe_event(event_type: &str) -> (String, String) {
    let id = format!("evt_{}", uuid::Uuid::new_v4().simple());
    let body = format!(
        r#"{{"id":"{id}","object":"event","type":"{event_type}","data":{{"object":{{"amount":2000,"currency":"usd","note":"caf\u00e9 ☕"}}}}}}"#
    );
    (id, body)
}

pub async fn id_of(resp: reqwest::Response) -> EventId {
    let v: serde_json::Value = resp.json().await.unwrap();
    v["id"].as_str().expect("id in response").parse().unwrap()
}

/// One request a target received.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
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
}

struct TargetState {
    behaviour: Behaviour,
    received: Mutex<Vec<Received>>,
    count: AtomicUsize,
    /// While set, every request is answered 503 at once (an outage).
    down: std::sync::atomic::AtomicBool,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// A real HTTP server that records what it receives.
pub struct Target {
    pub url: String,
    state: Arc<TargetState>,
}

impl Target {
    pub async fn start(behaviour: Behaviour) -> Self {
        let state = Arc::new(TargetState {
            behaviour,
            received: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            down: Default::default(),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .route("/in", axum::routing::post(target_handler))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url: format!("http://{addr}/in"),
            state,
        }
    }

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
    pub async fn wait_received(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "target answered {} of {n} requests in {timeout:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn wait_hits(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.hits() < n {
            assert!(
                Instant::now() < deadline,
                "target got {} of {n} requests in {timeout:?}",
                self.hits()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
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
    let status = if b.always_fail || n < b.fail_first {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    record(status.as_u16());
    status.into_response()
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

/// The shared Redis the tests use (each test under its own key prefix).
pub fn redis_url() -> String {
    std::env::var("HOOKD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A key prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("t{}", uuid::Uuid::new_v4().simple())
}

pub async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).unwrap();
    client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Redis is required for these tests and is not reachable at {url} ({e}). \
             Start it (scripts/test.sh does) or set HOOKD_TEST_REDIS_URL."
            )
        })
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Redis server of a test's own, for tests that stop and restart it.
pub struct PrivateRedis {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    /// Reserve a port without starting the server.
    pub fn reserve() -> Self {
        Self {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        }
    }

    pub async fn start() -> Self {
        let mut r = Self::reserve();
        r.up().await;
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Start (or restart) the server and wait until it answers.
    pub async fn up(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is required (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(c) = redis::Client::open(self.url())
                && let Ok(mut conn) = c.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "private redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kill the server (it keeps nothing on disk: everything in it is lost).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `VerifiedWebhook` made the only way there is: a signed request through the verifier.
pub async fn verified_stripe(body: &str) -> hookd::verify::VerifiedWebhook {
    use hookd::verify::{RawRequest, Secrets, StripeVerifier, Verifier};
    let mut headers = HeaderMap::new();
    headers.insert(
        "stripe-signature",
        stripe_header(STRIPE_SECRET, body, now()).parse().unwrap(),
    );
    let body = Bytes::copy_from_slice(body.as_bytes());
    let uri: axum::http::Uri = "/webhooks/stripe".parse().unwrap();
    StripeVerifier::new(Secrets::new([STRIPE_SECRET]).unwrap(), 300)
        .verify(
            "stripe",
            &RawRequest {
                headers: &headers,
                body: &body,
                uri: &uri,
                now_unix: now(),
            },
        )
        .await
        .unwrap()
}

/// The real `hookd` binary running as a child process.
pub struct Hookd {
    pub child: Child,
    pub url: String,
}

impl Hookd {
    /// Start `hookd serve` on a free port and wait until it answers.
    pub async fn spawn(db: &TestDb, routes: &str, log_name: &str) -> Self {
        Self::spawn_with(db, routes, "serve", &[], log_name).await
    }

    /// Start `hookd <command>` with extra variables. For `worker` (no HTTP server) this returns
    /// once the process runs; otherwise once `/health` answers 200.
    pub async fn spawn_with(
        db: &TestDb,
        routes: &str,
        command: &str,
        extra: &[(&str, String)],
        log_name: &str,
    ) -> Self {
        let port = free_port();
        let log = std::fs::File::create(db.dir.path().join(log_name)).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookd"));
        cmd.arg(command)
            .env_clear()
            .envs(base_vars(db, routes))
            .env("PORT", port.to_string())
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = cmd.spawn().expect("spawn hookd");
        let url = format!("http://127.0.0.1:{port}");
        if command == "worker" {
            return Self { child, url };
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let http = reqwest::Client::new();
        loop {
            if let Ok(r) = http.get(format!("{url}/health")).send().await
                && r.status() == HttpStatus::OK
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "hookd did not start; see {log_name} in {:?}",
                db.dir.path()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, url }
    }

    pub async fn event(&self, id: &str) -> serde_json::Value {
        reqwest::Client::new()
            .get(format!("{}/admin/events/{id}", self.url))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn wait_status(
        &self,
        id: &str,
        status: &str,
        timeout: Duration,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let e = self.event(id).await;
            if e["status"] == status {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "event did not reach {status}: {e:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Hookd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestServer {
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

    /// Wait until every stored event is in `status`, or fail after `timeout`.
    pub async fn wait_all(&self, n: u64, status: EventStatus, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let counts = self.store.counts().await.unwrap();
            if counts.get(&status).copied().unwrap_or(0) == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not all {n} events reached {status} in {timeout:?}: {counts:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The Python interpreter of the test virtualenv (aiosmtpd, standardwebhooks), which
/// `scripts/test.sh` creates. Missing means the tests cannot run: fail, never skip.
pub fn python() -> std::path::PathBuf {
    let path = std::env::var_os("HOOKD_TEST_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python")
        });
    assert!(
        path.exists(),
        "the test virtualenv is missing ({}): run scripts/test.sh, which creates it from \
         tests/py/requirements.txt, or set HOOKD_TEST_PYTHON",
        path.display()
    );
    path
}

/// A script in `tests/py/`.
pub fn py_script(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(name)
}

/// A test CA and a server certificate it signed for 127.0.0.1, made with the `openssl` CLI.
pub struct TestCerts {
    pub dir: tempfile::TempDir,
}

impl TestCerts {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .expect("the openssl command is needed to make test certificates");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        run(&[
            &["req", "-x509"][..],
            &ec[..],
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=hookd test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ][..],
        ]
        .concat());
        run(&[
            &["req"][..],
            &ec[..],
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ][..],
        ]
        .concat());
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        Self { dir }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// A real SMTP server (aiosmtpd in a child process) that records the messages it accepts.
pub struct SmtpSink {
    pub port: u16,
    out: std::path::PathBuf,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl SmtpSink {
    /// `mode`: `plain`, `starttls` or `tls` (the latter two need `certs`).
    pub async fn start(
        mode: &str,
        certs: Option<&TestCerts>,
        credentials: Option<(&str, &str)>,
    ) -> Self {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("messages.jsonl");
        let mut cmd = std::process::Command::new(python());
        cmd.arg(py_script("smtp_sink.py"))
            .args(["--mode", mode, "--out"])
            .arg(&out)
            // The sink exits when its stdin closes, i.e. when this process lets go of it.
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        if let Some(c) = certs {
            cmd.args([
                "--cert",
                &c.path("server.pem"),
                "--key",
                &c.path("server.key"),
            ]);
        }
        if let Some((u, p)) = credentials {
            cmd.args(["--user", u, "--password", p]);
        }
        let mut child = cmd.spawn().expect("start the SMTP sink");
        let stdout = child.stdout.take().unwrap();
        let first_line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufReader::new(stdout)
                .read_line(&mut line)
                .map(|_| line)
        });
        let line = tokio::time::timeout(Duration::from_secs(20), first_line)
            .await
            .expect("the SMTP sink did not start in 20 s")
            .unwrap()
            .unwrap();
        let port = line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("the SMTP sink did not start: {line:?}"));
        Self {
            port,
            out,
            child,
            _dir: dir,
        }
    }

    /// Every message accepted so far.
    pub fn messages(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub async fn wait_messages(&self, n: usize, timeout: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "SMTP sink got {} of {n} messages in {timeout:?}",
                m.len()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PostgreSQL server of a test's own (initdb into a temporary folder), for tests that stop
/// and restart it. Run as the `postgres` user when the tests run as root.
pub struct PrivatePostgres {
    pub port: u16,
    dir: tempfile::TempDir,
}

impl PrivatePostgres {
    /// The server's programs: `HOOKD_TEST_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`.
    fn bin() -> std::path::PathBuf {
        if let Some(dir) = std::env::var_os("HOOKD_TEST_PG_BIN") {
            return dir.into();
        }
        let mut found: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let version = e.file_name().to_str()?.parse().ok()?;
                let bin = e.path().join("bin");
                bin.join("initdb").exists().then_some((version, bin))
            })
            .collect();
        found.sort();
        found.pop().map(|(_, b)| b).unwrap_or_else(|| {
            panic!(
                "the PostgreSQL server programs (initdb, pg_ctl) are required for the restart \
                 tests: apt-get install postgresql, or set HOOKD_TEST_PG_BIN"
            )
        })
    }

    fn as_owner(cmd: &str) -> Command {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let path = Self::bin().join(cmd);
        if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(path)
        }
    }

    fn run(mut cmd: Command, what: &str) {
        let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            out.status.success(),
            "{what}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("hookd-pg-")
            .tempdir()
            .unwrap();
        // The server runs as `postgres`: it must own its folder.
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status();
        let mut init = Self::as_owner("initdb");
        init.args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(dir.path().join("data"));
        Self::run(init, "initdb");
        let pg = Self {
            port: free_port(),
            dir,
        };
        pg.up();
        pg
    }

    fn ctl(&self, args: &[&str]) -> Command {
        let mut c = Self::as_owner("pg_ctl");
        c.arg("-D").arg(self.dir.path().join("data")).args(args);
        c
    }

    /// Start the server and wait until it takes connections.
    pub fn up(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        let mut c = self.ctl(&["-w", "-t", "30", "-o", &opts, "-l"]);
        c.arg(&log).arg("start");
        Self::run(c, "pg_ctl start");
    }

    /// Stop at once, as a crash would (`-m immediate`: no checkpoint, recovery on the next start).
    pub fn crash(&self) {
        Self::run(self.ctl(&["-w", "-m", "immediate", "stop"]), "pg_ctl stop");
    }

    /// A database URL on this server.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.ctl(&["-w", "-m", "immediate", "stop"]).output();
    }
}

//! The real `hookd` binary as a child process (`serve`, `api`, `worker`), for what only a
//! separate process shows: `kill -9`, SIGTERM, exit codes, fleets of processes sharing a store.
//! Each logs to a file in the test's folder. Never outlives its test: dropping it kills it.

use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use hookd::event::{EventId, EventStatus};
use reqwest::StatusCode;

use super::{ADMIN_TOKEN, Host, ReadEvents, TestDb, base_vars, eventually, free_port};

/// The real `hookd` binary running as a child process.
pub struct Hookd {
    /// The process, for signals and its exit status.
    pub child: Child,
    /// Its base URL, `http://127.0.0.1:<port>`: the public listener, or for a `worker` (which
    /// has none) its health and metrics listener.
    pub url: String,
}

impl Hookd {
    /// Start `hookd serve` on a free port and wait until it answers.
    pub async fn spawn(db: &TestDb, routes: &str, log_name: &str) -> Self {
        Self::spawn_with(db, routes, "serve", &[], log_name).await
    }

    /// Start `hookd <command>` with extra variables; returns once `/health` answers 200 (for a
    /// `worker`, on its own listener, `HOOKD_INTERNAL_ADDR` on a free port unless `extra` sets
    /// it: `/health/live`, so a worker can start while its queue is away). The public listener
    /// is on a free port unless `extra` sets `PORT`.
    pub async fn spawn_with(
        db: &TestDb,
        routes: &str,
        command: &str,
        extra: &[(&str, String)],
        log_name: &str,
    ) -> Self {
        let cmd = Command::new(env!("CARGO_BIN_EXE_hookd"));
        Self::spawn_as(cmd, "127.0.0.1", db, routes, command, extra, log_name).await
    }

    /// [`Hookd::spawn_with`] on a host of a test network: run in that host's namespace, listening
    /// on its address `ip`.
    pub async fn spawn_on(
        host: &Host,
        db: &TestDb,
        routes: &str,
        command: &str,
        extra: &[(&str, String)],
        log_name: &str,
    ) -> Self {
        let cmd = host.command(env!("CARGO_BIN_EXE_hookd"));
        Self::spawn_as(cmd, &host.ip, db, routes, command, extra, log_name).await
    }

    async fn spawn_as(
        mut cmd: Command,
        ip: &str,
        db: &TestDb,
        routes: &str,
        command: &str,
        extra: &[(&str, String)],
        log_name: &str,
    ) -> Self {
        let port = extra
            .iter()
            .find(|(k, _)| *k == "PORT")
            .map(|(_, v)| v.parse::<u16>().expect("PORT is a port"))
            .unwrap_or_else(free_port);
        let log = std::fs::File::create(db.dir.path().join(log_name)).unwrap();
        cmd.arg(command)
            .env_clear()
            .envs(base_vars(db, routes))
            .env("HOOKD_BIND", ip)
            .env("PORT", port.to_string());
        let worker = command == "worker";
        let mut url = format!("http://{ip}:{port}");
        if worker {
            let internal = extra
                .iter()
                .find(|(k, _)| *k == "HOOKD_INTERNAL_ADDR")
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| format!("{ip}:{}", free_port()));
            cmd.env("HOOKD_INTERNAL_ADDR", &internal);
            url = format!("http://{internal}");
        }
        cmd.envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = cmd.spawn().expect("spawn hookd");
        let http = reqwest::Client::new();
        let health = format!("{url}/health{}", if worker { "/live" } else { "" });
        let _ok = eventually(
            format!(
                "hookd to start (see {log_name} in {})",
                db.dir.path().display()
            ),
            Duration::from_secs(20),
            || async { http.get(&health).send().await.map(|r| r.status()) },
            |status| matches!(status, Ok(StatusCode::OK)),
        )
        .await;
        Self { child, url }
    }

    /// Send the process `signal` (`TERM`, `INT`, ...) with kill(1).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal} {pid}");
    }

    /// Wait for the process to exit, without blocking the runtime; fails after `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let child = &mut self.child;
        let mut exited = None;
        eventually(
            "hookd to exit",
            within,
            || {
                if exited.is_none() {
                    exited = child.try_wait().unwrap();
                }
                std::future::ready(exited)
            },
            Option::is_some,
        )
        .await
        .expect("exited")
    }
}

impl ReadEvents for Hookd {
    /// The admin API's JSON for the event.
    type Event = serde_json::Value;

    async fn event(&self, id: EventId) -> serde_json::Value {
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

    fn status(event: &serde_json::Value) -> Option<EventStatus> {
        event["status"].as_str().and_then(EventStatus::parse)
    }
}

impl Drop for Hookd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! PostgreSQL and Redis servers of a test's own, on free ports in temporary folders, for tests
//! that crash, stop or restart them (which the shared servers must never be). Never outlive
//! their test: dropping one stops it.

use std::process::Command;
use std::time::Duration;

use super::{eventually, free_port};

/// A PostgreSQL server of a test's own (initdb into a temporary folder), for tests that stop
/// and restart it. Run as the `postgres` user when the tests run as root.
pub struct PrivatePostgres {
    /// The port it listens on.
    pub port: u16,
    /// The address it listens on: 127.0.0.1, or its host's on a test network.
    listen: String,
    /// The network namespace (host) it runs in, if not this one.
    netns: Option<String>,
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

    fn as_owner(cmd: &str, netns: Option<&str>) -> Command {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let path = Self::bin().join(cmd);
        let mut c = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]);
                c
            }
            None => Command::new("env"),
        };
        if root {
            c.args(["runuser", "-u", "postgres", "--"]);
        }
        c.arg(&path);
        c
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

    /// Create a cluster (`initdb`) and start it.
    pub fn start() -> Self {
        Self::start_at("127.0.0.1", None)
    }

    /// Create a cluster and start it in network namespace `netns` (a test's host), listening
    /// on `listen`, the host's address, and taking connections from anywhere.
    pub fn start_in(netns: &str, listen: &str) -> Self {
        Self::start_at(listen, Some(netns))
    }

    fn start_at(listen: &str, netns: Option<&str>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("hookd-pg-")
            .tempdir()
            .unwrap();
        // The server runs as `postgres`: it must own its folder.
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status();
        let mut init = Self::as_owner("initdb", None);
        init.args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(dir.path().join("data"));
        Self::run(init, "initdb");
        if netns.is_some() {
            // Clients come from the other hosts of the test's network.
            let hba = dir.path().join("data/pg_hba.conf");
            let mut rules = std::fs::read_to_string(&hba).unwrap();
            rules.push_str("host all all 0.0.0.0/0 trust\n");
            std::fs::write(&hba, rules).unwrap();
        }
        let pg = Self {
            port: free_port(),
            listen: listen.to_owned(),
            netns: netns.map(str::to_owned),
            dir,
        };
        pg.up();
        pg
    }

    fn ctl(&self, args: &[&str]) -> Command {
        let mut c = Self::as_owner("pg_ctl", self.netns.as_deref());
        c.arg("-D").arg(self.dir.path().join("data")).args(args);
        c
    }

    /// Start the server and wait until it takes connections.
    pub fn up(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses={} -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display(),
            self.listen
        );
        let log = self.dir.path().join("server.log");
        let mut c = self.ctl(&["-w", "-t", "30", "-o", &opts, "-l"]);
        c.arg(&log).arg("start");
        let out = c.output().expect("pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stop at once, as a crash would (`-m immediate`: no checkpoint, recovery on the next start).
    pub fn crash(&self) {
        Self::run(self.ctl(&["-w", "-m", "immediate", "stop"]), "pg_ctl stop");
    }

    /// A database URL on this server.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@{}:{}/{db}", self.listen, self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.ctl(&["-w", "-m", "immediate", "stop"]).output();
    }
}

/// A Redis server of a test's own, for tests that stop and restart it.
pub struct PrivateRedis {
    /// The port it listens on (or will), on 127.0.0.1.
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

    /// Start a server on a free port and wait until it answers.
    pub async fn start() -> Self {
        let mut r = Self::reserve();
        r.up().await;
        r
    }

    /// Its `REDIS_URL`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Start (or restart) the server and wait until it answers.
    pub async fn up(&mut self) {
        let child = Command::new("redis-server")
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
        let url = self.url();
        let _pong = eventually(
            format!("the private redis-server at {url} to answer PING"),
            Duration::from_secs(10),
            || ping(&url),
            Result::is_ok,
        )
        .await;
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

/// PING the Redis at `url`.
async fn ping(url: &str) -> redis::RedisResult<String> {
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    redis::cmd("PING").query_async(&mut conn).await
}

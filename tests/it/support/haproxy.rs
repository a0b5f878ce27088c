//! A real HAProxy (Debian's `haproxy`, or `HOOKD_TEST_HAPROXY`) in front of hookd processes,
//! running the committed configuration (`deploy/haproxy/haproxy.cfg`) with only its addresses
//! changed to the test's ports, so the test proves the file that is deployed. Its log goes to a
//! file in the test's folder; its stats page tells what it thinks of each server. Never outlives
//! its test: dropping it kills it.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use super::{eventually, free_port};

/// The configuration as committed.
const CONFIG: &str = include_str!("../../../deploy/haproxy/haproxy.cfg");

/// A running HAProxy.
pub struct Haproxy {
    child: Child,
    /// Where clients send requests: the frontend, `http://127.0.0.1:<port>`.
    pub url: String,
    /// The stats page in CSV.
    stats: String,
    /// Its log (health checks and server state changes included).
    pub log: std::path::PathBuf,
}

/// One row of the stats page (a server, or the backend's totals), by column name.
#[derive(Debug, Clone)]
pub struct ProxyStat(pub HashMap<String, String>);

impl ProxyStat {
    /// The server's state as HAProxy sees it: `UP`, `DOWN`, `UP 1/2` (going down), ...
    pub fn status(&self) -> &str {
        self.0.get("status").map(String::as_str).unwrap_or("")
    }

    /// A counter (`wretr`: retries, `wredis`: redispatches, `hrsp_5xx`, `econ`, `eresp`, ...).
    pub fn count(&self, column: &str) -> u64 {
        self.0.get(column).and_then(|v| v.parse().ok()).unwrap_or(0)
    }
}

impl Haproxy {
    /// Start HAProxy in front of hookd processes listening on `servers` (127.0.0.1, in the
    /// order of the configuration's servers), logging to `log_name` in `dir`. Returns once its
    /// stats page answers.
    pub async fn start(dir: &Path, servers: &[u16], log_name: &str) -> Self {
        let (front, stats) = (free_port(), free_port());
        let mut config = CONFIG.to_owned();
        let mut swap = |from: &str, to: String| {
            assert_eq!(
                config.matches(from).count(),
                1,
                "deploy/haproxy/haproxy.cfg should name {from} once"
            );
            config = config.replace(from, &to);
        };
        swap("bind :3001", format!("bind 127.0.0.1:{front}"));
        swap("bind :8404", format!("bind 127.0.0.1:{stats}"));
        for (i, port) in servers.iter().enumerate() {
            swap(&format!("api-{}:3001", i + 1), format!("127.0.0.1:{port}"));
        }
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let log = dir.join(log_name);
        let out = std::fs::File::create(&log).unwrap();
        let binary = std::env::var("HOOKD_TEST_HAPROXY").unwrap_or_else(|_| "haproxy".into());
        // -db: in the foreground, one process, so killing it ends it.
        let child = Command::new(&binary)
            .args(["-db", "-f"])
            .arg(&path)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "HAProxy is required for this test and {binary:?} cannot be started ({e}). \
                     Install Debian's haproxy (scripts/test.sh does) or set HOOKD_TEST_HAPROXY."
                )
            });
        let proxy = Self {
            child,
            url: format!("http://127.0.0.1:{front}"),
            stats: format!("http://127.0.0.1:{stats}/stats;csv"),
            log,
        };
        let http = reqwest::Client::new();
        let _started = eventually(
            format!("HAProxy to start (see {})", proxy.log.display()),
            Duration::from_secs(20),
            || async { http.get(&proxy.stats).send().await.map(|r| r.status()) },
            |s| matches!(s, Ok(s) if s.is_success()),
        )
        .await;
        proxy
    }

    /// Each row of the stats page for the `hookd` backend, by server name (`api1`, `api2`,
    /// and `BACKEND` for the totals).
    pub async fn stats(&self) -> HashMap<String, ProxyStat> {
        let text = reqwest::get(&self.stats)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or("")
            .trim_start_matches("# ")
            .split(',')
            .collect();
        lines
            .map(|l| {
                let row: HashMap<String, String> = header
                    .iter()
                    .zip(l.split(','))
                    .map(|(k, v)| (k.to_string(), v.to_owned()))
                    .collect();
                ProxyStat(row)
            })
            .filter(|r| r.0.get("pxname").map(String::as_str) == Some("hookd"))
            .map(|r| (r.0.get("svname").cloned().unwrap_or_default(), r))
            .collect()
    }

    /// Wait until HAProxy sees `server` in `status` (`UP`, `DOWN`).
    pub async fn wait_server(&self, server: &str, status: &str, within: Duration) {
        eventually(
            format!("HAProxy to see {server} {status}"),
            within,
            || async {
                self.stats()
                    .await
                    .get(server)
                    .map(|s| s.status().to_owned())
            },
            |s| s.as_deref() == Some(status),
        )
        .await;
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! A real SMTP server (aiosmtpd in a child process) that records the messages it accepts, in
//! plain text, with STARTTLS or with TLS, with or without a login. It only records; what the
//! messages must say is for each test to assert.

use std::time::Duration;

use super::{TestCerts, eventually, py_script, python};

/// A real SMTP server (aiosmtpd in a child process) that records the messages it accepts.
pub struct SmtpSink {
    /// The port it listens on, on 127.0.0.1.
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

    /// Wait until at least `n` messages have been accepted; all accepted so far.
    pub async fn wait_messages(&self, n: usize, within: Duration) -> Vec<serde_json::Value> {
        eventually(
            format!("the SMTP sink to accept {n} messages"),
            within,
            || async { self.messages() },
            |m| m.len() >= n,
        )
        .await
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! `hookd listen`: the developer loop. Follows a hookd's event stream (`/admin/events/stream`,
//! server-sent events) and forwards each accepted event to a local URL with its original body
//! and headers, printing one line per event with the local answer and how long it took (with
//! `--json`, one JSON object) on standard output; how the connection goes, on standard error.
//!
//! It reconnects by itself, with backoff, from the last cursor it received, and forwards each
//! event once: a resumed stream sends again what arrived within its settle delay, and those
//! repeats are told apart by event id. The local target being down is printed and the stream
//! goes on. It must never stop on an error it can outlast, nor retry a refusal (a bad token).

use std::collections::{HashSet, VecDeque};
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use chrono::{SecondsFormat, Utc};
use clap::Args;

use super::Connection;
use super::client::{Client, Refused};
use crate::ops::StreamEvent;

/// What to follow and where to forward it.
#[derive(Debug, Clone, Args)]
pub struct ListenArgs {
    /// Where to forward each event, e.g. http://localhost:3000/hook.
    #[arg(long)]
    pub forward_to: String,
    /// Only this provider's events.
    #[arg(long)]
    pub provider: Option<String>,
    /// Glob on the event type, e.g. 'invoice.*'.
    #[arg(long)]
    pub events: Option<String>,
    /// How long to wait for the local target's answer, in seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

/// Headers never forwarded: hop-by-hop ones, and those the new request sets itself.
const NOT_FORWARDED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// Silence longer than this (three of the server's keep-alives) means the connection is dead.
const IDLE: Duration = Duration::from_secs(45);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Event ids remembered to tell a resumed stream's repeats apart (far more than a settle delay
/// holds).
const REMEMBERED: usize = 100_000;

/// Ids already forwarded, the oldest forgotten first.
#[derive(Default)]
struct Seen {
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl Seen {
    /// Whether `id` is new (and now remembered).
    fn first_time(&mut self, id: &str) -> bool {
        if !self.set.insert(id.to_owned()) {
            return false;
        }
        self.order.push_back(id.to_owned());
        if self.order.len() > REMEMBERED
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

/// One server-sent message as it is read: its fields so far.
#[derive(Default)]
struct Message {
    event: String,
    data: String,
}

/// The loop's state across connections.
struct Listener<'o> {
    client: Client,
    query: Vec<(&'static str, String)>,
    forward_to: String,
    http: reqwest::Client,
    cursor: Option<String>,
    seen: Seen,
    /// The last connection got a stream (hookd answered 200).
    connected: bool,
    /// One JSON object per event instead of a line of text (`--json`).
    json: bool,
    out: &'o mut dyn Write,
}

/// Follow the stream and forward until Ctrl-C (or a refusal that retrying cannot change).
pub async fn run(conn: &Connection, args: ListenArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let to = reqwest::Url::parse(&args.forward_to).ok();
    if !to.is_some_and(|u| matches!(u.scheme(), "http" | "https")) {
        anyhow::bail!(
            "--forward-to {:?} is not an http(s) URL, e.g. http://localhost:3000/hook",
            args.forward_to
        );
    }
    let mut query = Vec::new();
    if let Some(p) = args.provider {
        query.push(("provider", p));
    }
    if let Some(e) = args.events {
        query.push(("events", e));
    }
    let mut l = Listener {
        client: Client::new(conn)?,
        query,
        forward_to: args.forward_to,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(args.timeout))
            .build()?,
        cursor: None,
        seen: Seen::default(),
        connected: false,
        json: conn.json,
        out,
    };
    // One registration for the whole run, so a Ctrl-C between two waits is not lost.
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut backoff = FIRST_BACKOFF;
    loop {
        let result = tokio::select! {
            r = l.follow(&conn.url) => r,
            _ = &mut ctrl_c => return Ok(()),
        };
        if std::mem::take(&mut l.connected) {
            // It got through: the next failure starts the backoff again.
            backoff = FIRST_BACKOFF;
        }
        match result {
            Ok(()) => eprintln!("the stream ended (hookd stopping?); reconnecting"),
            Err(e) => {
                if let Some(r) = e.downcast_ref::<Refused>()
                    && r.status.is_client_error()
                {
                    return Err(e);
                }
                eprintln!("{e:#}; reconnecting in {} ms", backoff.as_millis());
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = &mut ctrl_c => return Ok(()),
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

impl Listener<'_> {
    /// One connection: read messages until the stream ends or fails.
    async fn follow(&mut self, url: &str) -> anyhow::Result<()> {
        let mut resp = self
            .client
            .stream("/events/stream", &self.query, self.cursor.as_deref(), IDLE)
            .await?;
        self.connected = true;
        eprintln!("Ready: forwarding events from {url} to {}", self.forward_to);
        let mut buf: Vec<u8> = Vec::new();
        let mut msg = Message::default();
        while let Some(chunk) = resp.chunk().await.context("the stream broke")? {
            buf.extend_from_slice(&chunk);
            while let Some(end) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line);
                let line = line.trim_end_matches(['\n', '\r']);
                if line.is_empty() {
                    let m = std::mem::take(&mut msg);
                    self.dispatch(m).await?;
                } else {
                    self.field(line, &mut msg);
                }
            }
        }
        Ok(())
    }

    /// One line of a message (SSE: `field: value`; a line starting with `:` is a comment).
    fn field(&mut self, line: &str, msg: &mut Message) {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match name {
            "id" => self.cursor = Some(value.to_owned()),
            "event" => msg.event = value.to_owned(),
            "data" => {
                if !msg.data.is_empty() {
                    msg.data.push('\n');
                }
                msg.data.push_str(value);
            }
            _ => {}
        }
    }

    async fn dispatch(&mut self, msg: Message) -> anyhow::Result<()> {
        if msg.event == "error" {
            anyhow::bail!("hookd ended the stream: {}", msg.data);
        }
        if msg.data.is_empty() {
            return Ok(());
        }
        let event: StreamEvent =
            serde_json::from_str(&msg.data).context("hookd sent an event this CLI cannot read")?;
        if !self.seen.first_time(&event.id.to_string()) {
            return Ok(());
        }
        let started = Instant::now();
        let result = self.forward(&event).await;
        let ms = started.elapsed().as_millis();
        let at = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
        if self.json {
            let (status, error) = match &result {
                Ok(s) => (Some(s.as_u16()), None),
                Err(e) => (None, Some(format!("{e:#}"))),
            };
            let line = serde_json::json!({
                "at": at, "provider": event.provider, "event_type": event.event_type,
                "id": event.id, "status": status, "error": error, "duration_ms": ms,
            });
            writeln!(self.out, "{line}")?;
        } else {
            let answer = match result {
                Ok(status) => status.to_string(),
                Err(e) => format!("failed: {e:#}"),
            };
            writeln!(
                self.out,
                "{at}  {}  {}  {}  -> {answer} ({ms} ms)",
                event.provider, event.event_type, event.id
            )?;
        }
        self.out.flush()?;
        Ok(())
    }

    /// POST the event to the local target as it was received: its body, its headers (without
    /// the hop-by-hop ones, and without those stored redacted), and hookd's event headers.
    async fn forward(&self, e: &StreamEvent) -> anyhow::Result<reqwest::StatusCode> {
        let body = if e.body_encoding == "base64" {
            base64::engine::general_purpose::STANDARD
                .decode(&e.body)
                .context("a base64 body that does not decode")?
        } else {
            e.body.clone().into_bytes()
        };
        let mut req = self.http.post(&self.forward_to).body(body);
        if let Some(headers) = e.headers.as_object() {
            for (k, v) in headers {
                let Some(v) = v.as_str() else { continue };
                if NOT_FORWARDED.contains(&k.as_str()) || v == crate::verify::REDACTED {
                    continue;
                }
                req = req.header(k, v);
            }
        }
        let resp = req
            .header("x-hookd-event-id", e.id.to_string())
            .header("x-hookd-provider", &e.provider)
            .header("x-hookd-event-type", &e.event_type)
            .send()
            .await?;
        Ok(resp.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_new_once_and_the_oldest_are_forgotten() {
        let mut seen = Seen::default();
        assert!(seen.first_time("a"));
        assert!(!seen.first_time("a"));
        for i in 0..REMEMBERED {
            assert!(seen.first_time(&i.to_string()));
        }
        assert!(seen.first_time("a"), "forgotten after {REMEMBERED} others");
        assert_eq!(seen.order.len(), REMEMBERED);
    }
}

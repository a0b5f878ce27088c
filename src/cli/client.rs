//! A small client of the admin API: bearer token, timeouts, and an error that says what hookd
//! answered. It hands back the answer's bytes (or, for a stream, the answer to read); the
//! commands read them as the operator layer's types (or print them as they came, with `--json`).
//!
//! It must never print the token, nor turn a refusal into success.

use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use super::Connection;

/// The error body every admin endpoint answers with (the parts shown to the operator).
#[derive(Debug, Default, Deserialize)]
struct ErrorAnswer {
    error: Option<String>,
    message: Option<String>,
}

/// hookd answered with an error status.
#[derive(Debug, thiserror::Error)]
#[error("hookd answered {status}: {message}")]
pub struct Refused {
    pub status: reqwest::StatusCode,
    pub message: String,
}

/// A client of one hookd's admin API.
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    /// A client for `conn`; an admin token is required.
    pub fn new(conn: &Connection) -> anyhow::Result<Self> {
        let token = conn
            .token
            .clone()
            .filter(|t| !t.is_empty())
            .context("no admin token: set HOOKD_ADMIN_TOKEN (or pass --token)")?;
        Ok(Self {
            base: conn.url.trim_end_matches('/').to_owned(),
            token,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Vec<u8>> {
        let resp = self.answer(req).await?;
        Ok(resp.bytes().await?.to_vec())
    }

    /// The answer to `req` with the token, or an error that says what hookd answered.
    async fn answer(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach hookd at {}", self.base))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body: ErrorAnswer = resp
            .bytes()
            .await
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let message = body
            .message
            .or(body.error)
            .unwrap_or_else(|| "no details".into());
        Err(Refused { status, message }.into())
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> String {
        let mut url = format!("{}/admin{path}", self.base);
        if !query.is_empty() {
            let mut q = form_urlencoded::Serializer::new(String::new());
            for (k, v) in query {
                q.append_pair(k, v);
            }
            url = format!("{url}?{}", q.finish());
        }
        url
    }

    /// `GET /admin{path}?{query}`: the answer's bytes.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Vec<u8>> {
        self.send(self.http.get(self.url(path, query))).await
    }

    /// `GET /admin{path}?{query}` of a stream (server-sent events), from `last_event_id` when
    /// given: the answer, to be read as it comes. No overall timeout; one silent for
    /// `idle` (longer than the server's keep-alive) is an error.
    pub async fn stream(
        &self,
        path: &str,
        query: &[(&str, String)],
        last_event_id: Option<&str>,
        idle: Duration,
    ) -> anyhow::Result<reqwest::Response> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(idle)
            .build()?;
        let mut req = http
            .get(self.url(path, query))
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        self.answer(req).await
    }

    /// `POST /admin{path}` with an optional JSON body: the answer's bytes.
    pub async fn post(&self, path: &str, body: Option<String>) -> anyhow::Result<Vec<u8>> {
        let mut req = self.http.post(format!("{}/admin{path}", self.base));
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        self.send(req).await
    }
}

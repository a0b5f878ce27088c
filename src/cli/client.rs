//! A small client of the admin API: bearer token, timeouts, and an error that says what hookd
//! answered. It hands back the answer's bytes; the commands read them as the operator layer's
//! types (or print them as they came, with `--json`).
//!
//! It must never print the token, nor turn a refusal into success.

use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use super::Connection;

/// The error body every admin endpoint answers with (the parts shown to the operator).
#[derive(Debug, Default, Deserialize)]
struct ErrorAnswer {
    error: Option<String>,
    message: Option<String>,
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
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach hookd at {}", self.base))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp.bytes().await?.to_vec());
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
        bail!("hookd answered {status}: {message}")
    }

    /// `GET /admin{path}?{query}`: the answer's bytes.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Vec<u8>> {
        let mut url = format!("{}/admin{path}", self.base);
        if !query.is_empty() {
            let mut q = form_urlencoded::Serializer::new(String::new());
            for (k, v) in query {
                q.append_pair(k, v);
            }
            url = format!("{url}?{}", q.finish());
        }
        self.send(self.http.get(url)).await
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

//! The operator commands of the `hookd` binary: a client of the admin API (`events`, `dlq`,
//! `providers`, `jobs`, `audit`), and `sign`/`send` for test webhooks. They talk to a running
//! hookd at `HOOKD_URL` with `HOOKD_ADMIN_TOKEN`; nothing here touches the database.

pub mod sign;

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// Where hookd is and the token to use.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// Base URL of a running hookd.
    #[arg(
        long,
        env = "HOOKD_URL",
        default_value = "http://127.0.0.1:3001",
        global = true
    )]
    pub url: String,
    /// Admin token (HOOKD_ADMIN_TOKEN, or a read token for looking only).
    #[arg(long, env = "HOOKD_ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Filters shared by listing and bulk replays.
#[derive(Debug, Clone, Default, Args)]
pub struct Filter {
    /// Provider name.
    #[arg(long)]
    pub provider: Option<String>,
    /// Glob on the event type, e.g. 'payment_intent.*'.
    #[arg(long = "type")]
    pub event_type: Option<String>,
    /// Received at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Received before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    /// The provider's idempotency key (e.g. Stripe's evt_...).
    #[arg(long)]
    pub key: Option<String>,
    /// Text that must occur in the payload.
    #[arg(long)]
    pub text: Option<String>,
}

/// The admin API commands, each with where hookd is.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Search, show and replay events.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
        #[command(flatten)]
        conn: Connection,
    },
    /// Dead letters: list and redrive.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
        #[command(flatten)]
        conn: Connection,
    },
    /// Providers: state, pause and resume.
    Providers {
        #[command(subcommand)]
        command: ProvidersCommand,
        #[command(flatten)]
        conn: Connection,
    },
    /// Bulk replay and redrive jobs.
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
        #[command(flatten)]
        conn: Connection,
    },
    /// The audit log of operator actions, newest first.
    Audit {
        /// Only this actor (token name).
        #[arg(long)]
        actor: Option<String>,
        /// Only this action, e.g. event.replay.
        #[arg(long)]
        action: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        conn: Connection,
    },
}

/// What one command asks the API for.
enum Request {
    Events(EventsCommand),
    Dlq(DlqCommand),
    Providers(ProvidersCommand),
    Jobs(JobsCommand),
    Audit {
        actor: Option<String>,
        action: Option<String>,
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Events, newest first.
    List {
        #[command(flatten)]
        filter: Filter,
        /// Comma-separated statuses, e.g. dead_letter,retry_scheduled.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// The cursor a previous page printed.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// One event: history, steps, headers and payload.
    Show {
        id: String,
        /// Print only the raw body, byte for byte.
        #[arg(long)]
        raw: bool,
    },
    /// Replay events: the given ids, or with --matching every finished event the filter
    /// matches (a background job).
    Replay {
        ids: Vec<String>,
        /// Replay every completed or dead-lettered event matching the filter.
        #[arg(long)]
        matching: bool,
        #[command(flatten)]
        filter: Filter,
        /// With --matching: wait for the job and print its progress.
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Dead letters, newest first, with their last error.
    List {
        #[arg(long)]
        provider: Option<String>,
        #[arg(long = "type")]
        event_type: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Redrive dead letters: the given ids, or with --all every one (a background job).
    Redrive {
        ids: Vec<String>,
        /// Redrive every dead letter (those matching the filter, if one is given).
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        filter: Filter,
        /// With --all: wait for the job and print its progress.
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProvidersCommand {
    /// Every provider: accepting, paused, breakers, waiting events.
    List,
    /// Pause a provider's processing everywhere (its webhooks are still accepted).
    Pause {
        name: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Resume a paused provider.
    Resume { name: String },
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Recent bulk jobs.
    List,
    /// One job's progress.
    Show { id: String },
    /// Stop a running job after its current batch.
    Cancel { id: String },
}

/// A small client of the admin API.
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
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

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach hookd at {}", self.base))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body: Value = resp
            .bytes()
            .await
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        let message = body["message"]
            .as_str()
            .or(body["error"].as_str())
            .unwrap_or("no details");
        bail!("hookd answered {status}: {message}")
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        let mut url = format!("{}/admin{path}", self.base);
        if !query.is_empty() {
            let mut q = form_urlencoded::Serializer::new(String::new());
            for (k, v) in query {
                q.append_pair(k, v);
            }
            url = format!("{url}?{}", q.finish());
        }
        let req = self.http.get(url);
        Ok(serde_json::from_slice(
            &self.send(req).await?.bytes().await?,
        )?)
    }

    pub async fn get_bytes(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let req = self.http.get(format!("{}/admin{path}", self.base));
        Ok(self.send(req).await?.bytes().await?.to_vec())
    }

    pub async fn post(&self, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut req = self.http.post(format!("{}/admin{path}", self.base));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        Ok(serde_json::from_slice(
            &self.send(req).await?.bytes().await?,
        )?)
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// A time as `2024-05-01 12:00:00` (UTC).
fn time(v: &Value) -> String {
    v.as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.naive_utc().format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| s(v))
}

/// Print rows as aligned columns.
fn table(out: &mut impl Write, head: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: Vec<String>| -> std::io::Result<()> {
        let last = cells.len() - 1;
        let mut text = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            if i == last {
                text.push_str(&c);
            } else {
                text.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(out, head.iter().map(|h| h.to_string()).collect())?;
    for row in rows {
        line(out, row.clone())?;
    }
    Ok(())
}

fn filter_query(f: &Filter) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    let mut add = |k: &'static str, v: &Option<String>| {
        if let Some(v) = v {
            q.push((k, v.clone()));
        }
    };
    add("provider", &f.provider);
    add("event_type", &f.event_type);
    add("received_after", &f.since);
    add("received_before", &f.until);
    add("idempotency_key", &f.key);
    add("q", &f.text);
    q
}

fn filter_body(f: &Filter) -> Value {
    let mut body = serde_json::Map::new();
    for (k, v) in [
        ("provider", &f.provider),
        ("event_type", &f.event_type),
        ("received_after", &f.since),
        ("received_before", &f.until),
        ("idempotency_key", &f.key),
        ("text", &f.text),
    ] {
        if let Some(v) = v {
            body.insert(k.into(), v.clone().into());
        }
    }
    Value::Object(body)
}

fn print_events(out: &mut impl Write, page: &Value, with_error: bool) -> anyhow::Result<()> {
    let events = page["events"].as_array().cloned().unwrap_or_default();
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let mut row = vec![
                s(&e["id"]),
                time(&e["received_at"]),
                s(&e["provider"]),
                s(&e["event_type"]),
                s(&e["status"]),
                s(&e["attempts"]),
            ];
            if with_error {
                row.push(s(&e["last_error"]));
            }
            row
        })
        .collect();
    let mut head = vec![
        "ID",
        "RECEIVED (UTC)",
        "PROVIDER",
        "TYPE",
        "STATUS",
        "ATTEMPTS",
    ];
    if with_error {
        head.push("LAST ERROR");
    }
    table(out, &head, &rows)?;
    if let Some(c) = page["next_cursor"].as_str() {
        writeln!(out, "\nmore: add --cursor {c}")?;
    }
    Ok(())
}

fn print_job(out: &mut impl Write, job: &Value) -> anyhow::Result<()> {
    writeln!(
        out,
        "job {} ({}, by {}): {} — {} of {} looked at, {} {}ed, {} skipped",
        s(&job["id"]),
        s(&job["kind"]),
        s(&job["created_by"]),
        s(&job["status"]),
        s(&job["processed"]),
        s(&job["total"]),
        s(&job["replayed"]),
        s(&job["kind"]).trim_end_matches('e'),
        s(&job["skipped"]),
    )?;
    Ok(())
}

async fn follow(client: &Client, out: &mut impl Write, job: Value) -> anyhow::Result<()> {
    let id = s(&job["id"]);
    let mut job = job;
    loop {
        print_job(out, &job)?;
        if job["status"] != "running" {
            return if job["status"] == "completed" {
                Ok(())
            } else {
                bail!("the job ended {}", s(&job["status"]))
            };
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        job = client.get(&format!("/jobs/{id}"), &[]).await?;
    }
}

fn print_event(out: &mut impl Write, e: &Value) -> anyhow::Result<()> {
    for (k, v) in [
        ("id", &e["id"]),
        ("provider", &e["provider"]),
        ("type", &e["event_type"]),
        ("idempotency key", &e["idempotency_key"]),
        ("status", &e["status"]),
        ("attempts", &e["attempts"]),
        ("replays", &e["replays"]),
        ("last error", &e["last_error"]),
    ] {
        writeln!(out, "{k:<16} {}", s(v))?;
    }
    writeln!(out, "{:<16} {}", "received", time(&e["received_at"]))?;
    writeln!(out, "\ntimeline")?;
    let rows: Vec<Vec<String>> = e["transitions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|t| {
            vec![
                time(&t["at"]),
                format!("{} → {}", s(&t["from"]), s(&t["to"])),
                s(&t["detail"]),
            ]
        })
        .collect();
    table(out, &["AT (UTC)", "TRANSITION", "DETAIL"], &rows)?;
    let steps = e["steps"].as_array().cloned().unwrap_or_default();
    if !steps.is_empty() {
        writeln!(out, "\nsteps")?;
        let rows: Vec<Vec<String>> = steps
            .iter()
            .map(|st| {
                vec![
                    time(&st["at"]),
                    s(&st["step"]),
                    format!("{}/{}", s(&st["generation"]), s(&st["attempt"])),
                    s(&st["outcome"]),
                    format!("{} ms", s(&st["duration_ms"])),
                    s(&st["error"]),
                ]
            })
            .collect();
        table(
            out,
            &["AT (UTC)", "STEP", "REPLAY/TRY", "OUTCOME", "TOOK", "ERROR"],
            &rows,
        )?;
    }
    if let Some(h) = e["headers"].as_object() {
        writeln!(out, "\nheaders")?;
        for (k, v) in h {
            writeln!(out, "  {k}: {}", s(v))?;
        }
    }
    writeln!(out, "\npayload")?;
    match (e["body"].as_str(), e["body_encoding"].as_str()) {
        (None, _) => writeln!(out, "  (purged {})", time(&e["body_purged_at"]))?,
        (Some(b), Some("base64")) => writeln!(out, "  (binary, base64) {b}")?,
        (Some(b), _) => match serde_json::from_str::<Value>(b) {
            Ok(v) => writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?,
            Err(_) => writeln!(out, "{b}")?,
        },
    }
    Ok(())
}

/// Run an admin API command, writing to `out`.
pub async fn run(command: Command, out: &mut impl Write) -> anyhow::Result<()> {
    let (request, conn) = match command {
        Command::Events { command, conn } => (Request::Events(command), conn),
        Command::Dlq { command, conn } => (Request::Dlq(command), conn),
        Command::Providers { command, conn } => (Request::Providers(command), conn),
        Command::Jobs { command, conn } => (Request::Jobs(command), conn),
        Command::Audit {
            actor,
            action,
            limit,
            conn,
        } => (
            Request::Audit {
                actor,
                action,
                limit,
            },
            conn,
        ),
    };
    let conn = &conn;
    let client = Client::new(conn)?;
    let json_out = |out: &mut dyn Write, v: &Value| -> anyhow::Result<()> {
        writeln!(out, "{}", serde_json::to_string_pretty(v)?)?;
        Ok(())
    };
    match request {
        Request::Events(EventsCommand::List {
            filter,
            status,
            limit,
            cursor,
        }) => {
            let mut q = filter_query(&filter);
            q.push(("limit", limit.to_string()));
            if let Some(st) = status {
                q.push(("status", st));
            }
            if let Some(c) = cursor {
                q.push(("cursor", c));
            }
            let page = client.get("/events", &q).await?;
            if conn.json {
                return json_out(out, &page);
            }
            print_events(out, &page, false)
        }
        Request::Events(EventsCommand::Show { id, raw }) => {
            if raw {
                out.write_all(&client.get_bytes(&format!("/events/{id}/raw")).await?)?;
                return Ok(());
            }
            let e = client.get(&format!("/events/{id}"), &[]).await?;
            if conn.json {
                return json_out(out, &e);
            }
            print_event(out, &e)
        }
        Request::Events(EventsCommand::Replay {
            ids,
            matching,
            filter,
            wait,
        }) => {
            if matching {
                if !ids.is_empty() {
                    bail!("give ids or --matching with a filter, not both");
                }
                let job = client.post("/replays", Some(filter_body(&filter))).await?;
                return finish_job(&client, conn, out, job, wait).await;
            }
            if ids.is_empty() {
                bail!("give the ids of the events to replay, or --matching with a filter");
            }
            for id in ids {
                let e = client.post(&format!("/events/{id}/replay"), None).await?;
                if conn.json {
                    json_out(out, &e)?;
                } else {
                    writeln!(out, "{id}: replayed (replay {})", s(&e["replays"]))?;
                }
            }
            Ok(())
        }
        Request::Dlq(DlqCommand::List {
            provider,
            event_type,
            limit,
            cursor,
        }) => {
            let mut q = filter_query(&Filter {
                provider,
                event_type,
                ..Default::default()
            });
            q.push(("limit", limit.to_string()));
            if let Some(c) = cursor {
                q.push(("cursor", c));
            }
            let page = client.get("/dlq", &q).await?;
            if conn.json {
                return json_out(out, &page);
            }
            print_events(out, &page, true)
        }
        Request::Dlq(DlqCommand::Redrive {
            ids,
            all,
            filter,
            wait,
        }) => {
            if all {
                if !ids.is_empty() {
                    bail!("give ids or --all, not both");
                }
                let job = client
                    .post("/dlq/redrive", Some(filter_body(&filter)))
                    .await?;
                return finish_job(&client, conn, out, job, wait).await;
            }
            if ids.is_empty() {
                bail!("give the ids of the dead letters to redrive, or --all");
            }
            for id in ids {
                let e = client.post(&format!("/dlq/{id}/redrive"), None).await?;
                if conn.json {
                    json_out(out, &e)?;
                } else {
                    writeln!(out, "{id}: redriven (replay {})", s(&e["replays"]))?;
                }
            }
            Ok(())
        }
        Request::Providers(ProvidersCommand::List) => {
            let v = client.get("/providers", &[]).await?;
            if conn.json {
                return json_out(out, &v);
            }
            let rows: Vec<Vec<String>> = v["providers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|p| {
                    let counts = p["counts"]
                        .as_object()
                        .map(|c| {
                            c.iter()
                                .map(|(k, n)| format!("{k}={n}"))
                                .collect::<Vec<_>>()
                                .join(" ")
                        })
                        .unwrap_or_default();
                    vec![
                        s(&p["name"]),
                        if p["accepting"] == true { "yes" } else { "no" }.into(),
                        match (&p["paused"], &p["auto_paused"]) {
                            (Value::Bool(true), _) => {
                                format!("paused ({})", s(&p["reason"]))
                            }
                            (_, Value::Bool(true)) => "auto-paused (breakers open)".into(),
                            _ => "running".into(),
                        },
                        counts,
                    ]
                })
                .collect();
            table(out, &["PROVIDER", "ACCEPTING", "STATE", "EVENTS"], &rows)?;
            Ok(())
        }
        Request::Providers(ProvidersCommand::Pause { name, reason }) => {
            let body = reason.map(|r| json!({ "reason": r }));
            let v = client
                .post(&format!("/providers/{name}/pause"), body)
                .await?;
            if conn.json {
                return json_out(out, &v);
            }
            writeln!(out, "{name}: paused")?;
            Ok(())
        }
        Request::Providers(ProvidersCommand::Resume { name }) => {
            let v = client
                .post(&format!("/providers/{name}/resume"), None)
                .await?;
            if conn.json {
                return json_out(out, &v);
            }
            writeln!(out, "{name}: resumed")?;
            Ok(())
        }
        Request::Jobs(JobsCommand::List) => {
            let v = client.get("/jobs", &[]).await?;
            if conn.json {
                return json_out(out, &v);
            }
            for job in v["jobs"].as_array().cloned().unwrap_or_default() {
                print_job(out, &job)?;
            }
            Ok(())
        }
        Request::Jobs(JobsCommand::Show { id }) => {
            let v = client.get(&format!("/jobs/{id}"), &[]).await?;
            if conn.json {
                return json_out(out, &v);
            }
            print_job(out, &v)
        }
        Request::Jobs(JobsCommand::Cancel { id }) => {
            let v = client.post(&format!("/jobs/{id}/cancel"), None).await?;
            if conn.json {
                return json_out(out, &v);
            }
            print_job(out, &v)
        }
        Request::Audit {
            actor,
            action,
            limit,
        } => {
            let mut q = vec![("limit", limit.to_string())];
            if let Some(a) = actor {
                q.push(("actor", a));
            }
            if let Some(a) = action {
                q.push(("action", a));
            }
            let v = client.get("/audit", &q).await?;
            if conn.json {
                return json_out(out, &v);
            }
            let rows: Vec<Vec<String>> = v["entries"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|e| {
                    vec![
                        time(&e["at"]),
                        s(&e["actor"]),
                        s(&e["action"]),
                        s(&e["target"]),
                        s(&e["status"]),
                        s(&e["detail"]),
                    ]
                })
                .collect();
            table(
                out,
                &["AT (UTC)", "ACTOR", "ACTION", "TARGET", "STATUS", "DETAIL"],
                &rows,
            )?;
            Ok(())
        }
    }
}

async fn finish_job(
    client: &Client,
    conn: &Connection,
    out: &mut impl Write,
    job: Value,
    wait: bool,
) -> anyhow::Result<()> {
    if conn.json && !wait {
        writeln!(out, "{}", serde_json::to_string_pretty(&job)?)?;
        return Ok(());
    }
    if wait {
        return follow(client, out, job).await;
    }
    print_job(out, &job)?;
    writeln!(out, "follow it with: hookd jobs show {}", s(&job["id"]))?;
    Ok(())
}

//! What each operator command asks the admin API, and how it shows the answer: read as the
//! operator layer's types and printed by `print`, or with `--json` printed as it came.
//!
//! It must never change anything the command did not ask for: bulk actions need `--matching`
//! or `--all`, and ids and those flags are never mixed.

use std::io::Write;
use std::time::Duration;

use anyhow::bail;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::client::Client;
use super::{
    DlqCommand, EventsCommand, Filter, JobsCommand, OrderingCommand, ProvidersCommand, print,
};
use crate::event::EventDetail;
use crate::ops::{
    AuditPage, BlockedLines, EventPage, EventView, Job, JobList, JobStatus, PauseRequest,
    ProviderList, RedriveRequest, ReplayRequest,
};

/// One command's client, output format and output.
pub struct Session<'o> {
    pub client: Client,
    /// Print the API's JSON instead of a table.
    pub json: bool,
    pub out: &'o mut dyn Write,
}

impl Session<'_> {
    /// Show an answer: as it came with `--json`, else read as `T` and printed by `print`.
    pub(super) fn show<T: DeserializeOwned>(
        &mut self,
        answer: &[u8],
        print: impl FnOnce(&mut dyn Write, &T) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        if self.json {
            let v: Value = serde_json::from_slice(answer)?;
            writeln!(self.out, "{}", serde_json::to_string_pretty(&v)?)?;
            return Ok(());
        }
        print(self.out, &serde_json::from_slice(answer)?)
    }
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

fn replay_request(f: Filter) -> ReplayRequest {
    ReplayRequest {
        provider: f.provider,
        statuses: Vec::new(),
        event_type: f.event_type,
        received_after: f.since,
        received_before: f.until,
        idempotency_key: f.key,
        text: f.text,
    }
}

fn redrive_request(f: Filter) -> RedriveRequest {
    RedriveRequest {
        provider: f.provider,
        event_type: f.event_type,
        received_after: f.since,
        received_before: f.until,
        idempotency_key: f.key,
        text: f.text,
    }
}

/// `hookd events ...`
pub async fn events(s: &mut Session<'_>, command: EventsCommand) -> anyhow::Result<()> {
    match command {
        EventsCommand::List {
            filter,
            status,
            limit,
            cursor,
        } => {
            let mut q = filter_query(&filter);
            q.push(("limit", limit.to_string()));
            if let Some(st) = status {
                q.push(("status", st));
            }
            if let Some(c) = cursor {
                q.push(("cursor", c));
            }
            let page = s.client.get("/events", &q).await?;
            s.show(&page, |out, p: &EventPage| print::events(out, p, false))
        }
        EventsCommand::Show { id, raw } => {
            if raw {
                let body = s.client.get(&format!("/events/{id}/raw"), &[]).await?;
                s.out.write_all(&body)?;
                return Ok(());
            }
            let e = s.client.get(&format!("/events/{id}"), &[]).await?;
            s.show(&e, |out, e: &EventView| print::event(out, e))
        }
        EventsCommand::Replay {
            ids,
            matching,
            filter,
            wait,
        } => {
            if matching {
                if !ids.is_empty() {
                    bail!("give ids or --matching with a filter, not both");
                }
                let body = serde_json::to_string(&replay_request(filter))?;
                let job = s.client.post("/replays", Some(body)).await?;
                return finish_job(s, &job, wait).await;
            }
            if ids.is_empty() {
                bail!("give the ids of the events to replay, or --matching with a filter");
            }
            replay_each(s, &ids, "/events/{id}/replay", "replayed").await
        }
    }
}

/// Replay or redrive `ids` one by one at `path` (with `{id}` in it), saying `done` for each.
async fn replay_each(
    s: &mut Session<'_>,
    ids: &[String],
    path: &str,
    done: &str,
) -> anyhow::Result<()> {
    for id in ids {
        let e = s.client.post(&path.replace("{id}", id), None).await?;
        s.show(&e, |out, e: &EventDetail| {
            writeln!(out, "{id}: {done} (replay {})", e.replays)?;
            Ok(())
        })?;
    }
    Ok(())
}

/// `hookd dlq ...`
pub async fn dlq(s: &mut Session<'_>, command: DlqCommand) -> anyhow::Result<()> {
    match command {
        DlqCommand::List {
            provider,
            event_type,
            limit,
            cursor,
        } => {
            let mut q = filter_query(&Filter {
                provider,
                event_type,
                ..Default::default()
            });
            q.push(("limit", limit.to_string()));
            if let Some(c) = cursor {
                q.push(("cursor", c));
            }
            let page = s.client.get("/dlq", &q).await?;
            s.show(&page, |out, p: &EventPage| print::events(out, p, true))
        }
        DlqCommand::Redrive {
            ids,
            all,
            filter,
            wait,
        } => {
            if all {
                if !ids.is_empty() {
                    bail!("give ids or --all, not both");
                }
                let body = serde_json::to_string(&redrive_request(filter))?;
                let job = s.client.post("/dlq/redrive", Some(body)).await?;
                return finish_job(s, &job, wait).await;
            }
            if ids.is_empty() {
                bail!("give the ids of the dead letters to redrive, or --all");
            }
            replay_each(s, &ids, "/dlq/{id}/redrive", "redriven").await
        }
    }
}

/// `hookd providers ...`
pub async fn providers(s: &mut Session<'_>, command: ProvidersCommand) -> anyhow::Result<()> {
    let (name, answer, done) = match command {
        ProvidersCommand::List => {
            let list = s.client.get("/providers", &[]).await?;
            return s.show(&list, |out, l: &ProviderList| print::providers(out, l));
        }
        ProvidersCommand::Pause { name, reason } => {
            let body = reason
                .map(|r| serde_json::to_string(&PauseRequest { reason: Some(r) }))
                .transpose()?;
            let path = format!("/providers/{name}/pause");
            (name, s.client.post(&path, body).await?, "paused")
        }
        ProvidersCommand::Resume { name } => {
            let path = format!("/providers/{name}/resume");
            (name, s.client.post(&path, None).await?, "resumed")
        }
    };
    s.show(&answer, |out, _: &Value| {
        writeln!(out, "{name}: {done}")?;
        Ok(())
    })
}

/// `hookd ordering ...`
pub async fn ordering(s: &mut Session<'_>, command: OrderingCommand) -> anyhow::Result<()> {
    match command {
        OrderingCommand::Blocked { limit } => {
            let q = [("limit", limit.to_string())];
            let lines = s.client.get("/ordering/blocked", &q).await?;
            s.show(&lines, |out, l: &BlockedLines| print::blocked_lines(out, l))
        }
        OrderingCommand::Skip { ids } => {
            if ids.is_empty() {
                bail!("give the ids of the dead letters to skip");
            }
            for id in &ids {
                let e = s.client.post(&format!("/ordering/skip/{id}"), None).await?;
                s.show(&e, |out, _: &EventDetail| {
                    writeln!(out, "{id}: skipped; the events behind it start")?;
                    Ok(())
                })?;
            }
            Ok(())
        }
    }
}

/// `hookd jobs ...`
pub async fn jobs(s: &mut Session<'_>, command: JobsCommand) -> anyhow::Result<()> {
    match command {
        JobsCommand::List => {
            let list = s.client.get("/jobs", &[]).await?;
            s.show(&list, |out, l: &JobList| {
                l.jobs.iter().try_for_each(|j| print::job(out, j))
            })
        }
        JobsCommand::Show { id } => {
            let job = s.client.get(&format!("/jobs/{id}"), &[]).await?;
            s.show(&job, |out, j: &Job| print::job(out, j))
        }
        JobsCommand::Cancel { id } => {
            let job = s.client.post(&format!("/jobs/{id}/cancel"), None).await?;
            s.show(&job, |out, j: &Job| print::job(out, j))
        }
    }
}

/// `hookd audit`
pub async fn audit(
    s: &mut Session<'_>,
    actor: Option<String>,
    action: Option<String>,
    limit: u32,
) -> anyhow::Result<()> {
    let mut q = vec![("limit", limit.to_string())];
    if let Some(a) = actor {
        q.push(("actor", a));
    }
    if let Some(a) = action {
        q.push(("action", a));
    }
    let page = s.client.get("/audit", &q).await?;
    s.show(&page, |out, p: &AuditPage| print::audit(out, p))
}

/// A job just started: as JSON, followed to its end (`--wait`), or one line and how to follow.
async fn finish_job(s: &mut Session<'_>, answer: &[u8], wait: bool) -> anyhow::Result<()> {
    if s.json && !wait {
        return s.show(answer, |_, _: &Value| Ok(()));
    }
    let job: Job = serde_json::from_slice(answer)?;
    if wait {
        return follow(s, job).await;
    }
    print::job(s.out, &job)?;
    writeln!(s.out, "follow it with: hookd jobs show {}", job.id)?;
    Ok(())
}

/// Print a job's progress until it ends; an end other than `completed` is an error.
async fn follow(s: &mut Session<'_>, mut job: Job) -> anyhow::Result<()> {
    loop {
        print::job(s.out, &job)?;
        match job.status {
            JobStatus::Running => {}
            JobStatus::Completed => return Ok(()),
            other => bail!("the job ended {}", other.as_str()),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let answer = s.client.get(&format!("/jobs/{}", job.id), &[]).await?;
        job = serde_json::from_slice(&answer)?;
    }
}

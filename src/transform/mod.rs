//! JavaScript transformations: an operator's script reshapes an event's body and headers before
//! a step delivers it, or skips the step (`transform = "transforms/stripe.js"` on a route or a
//! step).
//!
//! Owns the sandboxed engine (QuickJS through `rquickjs`, see docs/design.md), the scripts'
//! compilation at start-up, the caps on each call (time, memory) and the threads the calls run
//! on, so a script never runs on the async runtime's threads and an endless loop never stalls a
//! worker. It must never give a script I/O of any kind (no module loader, no `std`/`os`
//! modules, no host functions), never read a file once started, and never decide about retries:
//! it says what the script returned, or why it failed.
//!
//! `engine` holds one QuickJS runtime and runs calls on the calling thread (the CLI, the
//! benchmark, and each pool thread); `pool` owns the threads the workers' calls run on;
//! `shape` turns the script's answer into a [`Payload`] or refuses it.

mod engine;
mod pool;
mod shape;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use engine::Engine;
pub use pool::Transforms;

/// The caps on every call and the threads calls run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformSettings {
    /// Longest one call may run before it is interrupted (`HOOKD_TRANSFORM_TIMEOUT_MS`).
    pub timeout: Duration,
    /// Most memory one engine may hold, its scripts included (`HOOKD_TRANSFORM_MEMORY_MB`).
    /// Each transform thread has its own engine and runs one call at a time.
    pub memory_limit_bytes: usize,
    /// Threads that run transforms, per process (`HOOKD_TRANSFORM_THREADS`).
    pub threads: usize,
}

impl Default for TransformSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(1000),
            memory_limit_bytes: 32 << 20,
            threads: 2,
        }
    }
}

/// One script: the name it is known by (its path as configured) and its source.
#[derive(Debug, Clone)]
pub struct Script {
    pub name: Arc<str>,
    pub source: String,
}

impl Script {
    /// Read a script file. A relative path is relative to the working directory, like
    /// `hookd.toml` itself.
    pub fn read(path: &Path) -> Result<Self, TransformError> {
        let source = std::fs::read_to_string(path).map_err(|source| TransformError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            name: path.display().to_string().into(),
            source,
        })
    }
}

/// What a script's `transform(event)` is called with; also the format of the event file of
/// `hookd transform test`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TransformInput {
    /// hookd's id of the event.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub provider: String,
    /// The event type (Stripe's `type`, GitHub's `X-GitHub-Event`, ...). An event file may
    /// call it `event_type`, as the admin API does.
    #[serde(default, rename = "type", alias = "event_type")]
    pub event_type: String,
    /// The provider's event or delivery id hookd deduplicates on.
    #[serde(default)]
    pub idempotency_key: String,
    /// The attempt this call belongs to (1 for the first).
    #[serde(default)]
    pub attempt: u32,
    /// When hookd accepted the event (RFC 3339).
    #[serde(default)]
    pub received_at: String,
    /// The webhook request's headers as stored (lower-case names; audit-redacted ones are
    /// `[redacted]`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The body parsed as JSON; `null` when it is not JSON.
    #[serde(default)]
    pub body: serde_json::Value,
    /// The body as text (invalid UTF-8 replaced by U+FFFD).
    #[serde(default)]
    pub text: String,
}

impl TransformInput {
    /// Fill `text` from `body` or `body` from `text`, whichever the event file left out. A
    /// `body` that is a string without a `text` is the raw body, as `hookd events show --json`
    /// prints it.
    pub fn complete(mut self) -> Self {
        let parse = |text: &str| serde_json::from_str(text).unwrap_or(serde_json::Value::Null);
        if !self.text.is_empty() {
            if self.body.is_null() {
                self.body = parse(&self.text);
            }
            return self;
        }
        match std::mem::take(&mut self.body) {
            serde_json::Value::String(raw) => {
                self.body = parse(&raw);
                self.text = raw;
            }
            serde_json::Value::Null => {}
            parsed => {
                self.text = parsed.to_string();
                self.body = parsed;
            }
        }
        self
    }
}

/// What a step delivers: the event's body and content type as received, or what a transform
/// made of them, with the extra headers the transform set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload {
    pub body: Vec<u8>,
    /// `None`: the event's own content type (or none).
    pub content_type: Option<String>,
    /// Headers to add, lower-case names, never one hookd sets itself.
    pub headers: BTreeMap<String, String>,
}

/// What a call decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transformed {
    /// Deliver this instead of the event's body.
    Deliver(Payload),
    /// The script returned `null`: the step is skipped, recorded as such.
    Skip,
}

/// Why a script cannot be loaded, or a call failed. Every variant names the script; those that
/// come from the script's code also name the line where QuickJS reports one.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    #[error("transform {}: cannot read: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("transform {}: {message}", at(file, *line))]
    Compile {
        file: Arc<str>,
        line: Option<u32>,
        message: String,
    },
    #[error("transform {file}: the script must define `function transform(event)`")]
    NoFunction { file: Arc<str> },
    #[error("transform {}: {message}", at(file, *line))]
    Thrown {
        file: Arc<str>,
        line: Option<u32>,
        message: String,
    },
    #[error(
        "transform {file}: stopped after {} ms (HOOKD_TRANSFORM_TIMEOUT_MS)",
        timeout.as_millis()
    )]
    Timeout { file: Arc<str>, timeout: Duration },
    #[error(
        "transform {file}: out of memory (the cap is {} MB, HOOKD_TRANSFORM_MEMORY_MB)",
        limit_bytes >> 20
    )]
    Memory { file: Arc<str>, limit_bytes: usize },
    #[error(
        "transform {file}: {problem}; expected null (skip) or {{ body, headers }} \
         (body: a string, sent as is, or a JSON value; headers: an object of strings)"
    )]
    Shape { file: Arc<str>, problem: String },
    #[error("transform {file}: no such script is loaded")]
    Unknown { file: Arc<str> },
    #[error("cannot start the JavaScript engine: {0}")]
    Engine(String),
}

fn at(file: &str, line: Option<u32>) -> String {
    match line {
        Some(l) => format!("{file}:{l}"),
        None => file.to_owned(),
    }
}

#[cfg(test)]
mod tests;

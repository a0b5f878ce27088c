//! `hookd transform test FILE EVENT.json`: run a transform script on one event, on this machine,
//! under the caps hookd runs it with, and print what the step would send.
//!
//! Owns the command's output and its exit status (0 sent, 3 skipped, 1 the script failed). It
//! needs no running hookd, no configuration and no database, and must never send anything.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;

use crate::transform::{
    Engine, Script, TransformError, TransformInput, TransformSettings, Transformed,
};

#[derive(Debug, Subcommand)]
pub enum TransformCommand {
    /// Run FILE's `transform(event)` on the event in EVENT (the JSON object the function
    /// receives: see docs/transforms.md) and print the content type, headers and body a step
    /// would send. Exit status: 0 sent, 3 skipped (the script returned null), 1 the script
    /// failed (syntax, throw, time or memory cap, wrong shape), 2 the command itself is wrong.
    Test {
        /// The script, e.g. transforms/stripe.js.
        file: PathBuf,
        /// The event, as JSON ('-': standard input).
        event: PathBuf,
        /// Longest the call may run.
        #[arg(long, env = "HOOKD_TRANSFORM_TIMEOUT_MS", default_value_t = TransformSettings::default().timeout.as_millis() as u64)]
        timeout_ms: u64,
        /// Most memory the engine may use.
        #[arg(long, env = "HOOKD_TRANSFORM_MEMORY_MB", default_value_t = TransformSettings::default().memory_limit_bytes >> 20)]
        memory_mb: usize,
    },
}

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Sent,
    Skipped,
    Failed,
}

impl Verdict {
    /// The process's exit status.
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Sent => 0,
            Self::Failed => 1,
            Self::Skipped => 3,
        }
    }
}

/// Run the command. `Err` when it cannot run at all (the event file is missing or not an
/// event); a script that fails is [`Verdict::Failed`], its error written to `err`.
pub fn run(
    command: TransformCommand,
    out: &mut impl Write,
    err: &mut impl Write,
) -> anyhow::Result<Verdict> {
    let TransformCommand::Test {
        file,
        event,
        timeout_ms,
        memory_mb,
    } = command;
    let text = if event.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
            .context("cannot read the event from standard input")?
    } else {
        std::fs::read_to_string(&event)
            .with_context(|| format!("cannot read the event file {}", event.display()))?
    };
    let input: TransformInput = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not an event: a JSON object with provider, type, headers, body and/or text \
             (docs/transforms.md)",
            event.display()
        )
    })?;
    let settings = TransformSettings {
        timeout: Duration::from_millis(timeout_ms),
        memory_limit_bytes: memory_mb.saturating_mul(1 << 20),
        threads: 1,
    };
    match call(&settings, Script::read(&file), &input.complete()) {
        Ok(Transformed::Deliver(p)) => {
            if let Some(ct) = &p.content_type {
                writeln!(out, "content-type: {ct}")?;
            }
            for (k, v) in &p.headers {
                writeln!(out, "{k}: {v}")?;
            }
            writeln!(out)?;
            out.write_all(&p.body)?;
            writeln!(out)?;
            Ok(Verdict::Sent)
        }
        Ok(Transformed::Skip) => {
            writeln!(out, "skipped: the transform returned null")?;
            Ok(Verdict::Skipped)
        }
        Err(e) => {
            writeln!(err, "{e}")?;
            Ok(Verdict::Failed)
        }
    }
}

fn call(
    settings: &TransformSettings,
    script: Result<Script, TransformError>,
    input: &TransformInput,
) -> Result<Transformed, TransformError> {
    let script = script?;
    let name = script.name.clone();
    Engine::new(settings, &[script])?.run(&name, input)
}

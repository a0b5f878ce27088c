//! The operator commands of the `hookd` binary: a client of the admin API (`events`, `dlq`,
//! `providers`, `jobs`, `audit`, and `listen`, which follows the event stream),
//! `sign`/`send`/`trigger` for test webhooks (made by `testevent`), and `transform test` (which
//! runs locally). The others talk to a running hookd at `HOOKD_URL` with `HOOKD_ADMIN_TOKEN` and read its answers as the operator layer's
//! types (`ops`), the ones the server writes; nothing here touches the database.
//!
//! This file holds the command line (clap) and the dispatch; `commands` what each command
//! asks, `print` how answers are shown, `client` the HTTP client.

mod client;
mod commands;
mod config;
mod listen;
mod print;
pub mod transform;

use std::io::Write;

use clap::{Args, Subcommand};

pub use client::Client;
use commands::Session;
pub use listen::ListenArgs;

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
    /// Forward every event hookd accepts, as it is accepted, to a local URL (the developer
    /// loop; needs a read token).
    Listen {
        #[command(flatten)]
        args: ListenArgs,
        #[command(flatten)]
        conn: Connection,
    },
    /// The configuration stored through the admin API, as a TOML file and back.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
        #[command(flatten)]
        conn: Connection,
    },
    /// Ordered routes: the keys held up, and skipping a dead letter that blocks its key.
    Ordering {
        #[command(subcommand)]
        command: OrderingCommand,
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
pub enum ConfigCommand {
    /// Print the stored providers, routes and destinations as TOML (secrets are referenced by
    /// the variable that holds them, never written).
    Export,
    /// Make FILE the stored configuration: print the difference, then apply it in one version.
    Apply {
        file: std::path::PathBuf,
        /// Print the difference only; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum OrderingCommand {
    /// Keys whose first event has not finished: by which event, why, how many wait behind.
    Blocked {
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Take dead letters that block their keys out of their lines (they stay dead letters).
    Skip { ids: Vec<String> },
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

/// Run an admin API command, writing to `out`.
pub async fn run(command: Command, out: &mut impl Write) -> anyhow::Result<()> {
    let conn = match &command {
        Command::Events { conn, .. }
        | Command::Dlq { conn, .. }
        | Command::Providers { conn, .. }
        | Command::Jobs { conn, .. }
        | Command::Config { conn, .. }
        | Command::Ordering { conn, .. }
        | Command::Audit { conn, .. } => conn,
        Command::Listen { args, conn } => return listen::run(conn, args.clone(), out).await,
    };
    let mut s = Session {
        client: Client::new(conn)?,
        json: conn.json,
        out,
    };
    match command {
        Command::Events { command, .. } => commands::events(&mut s, command).await,
        Command::Dlq { command, .. } => commands::dlq(&mut s, command).await,
        Command::Providers { command, .. } => commands::providers(&mut s, command).await,
        Command::Jobs { command, .. } => commands::jobs(&mut s, command).await,
        Command::Listen { .. } => unreachable!("answered above"),
        Command::Config { command, .. } => match command {
            ConfigCommand::Export => config::export(&mut s).await,
            ConfigCommand::Apply { file, dry_run } => config::apply(&mut s, &file, dry_run).await,
        },
        Command::Ordering { command, .. } => commands::ordering(&mut s, command).await,
        Command::Audit {
            actor,
            action,
            limit,
            ..
        } => commands::audit(&mut s, actor, action, limit).await,
    }
}

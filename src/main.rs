//! The `hookd` command.

use anyhow::Context;
use clap::{Parser, Subcommand};

use hookd::app::{self, Roles};
use hookd::config::Config;

#[derive(Parser)]
#[command(name = "hookd", version, about = "Webhook ingestion gateway")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Accept webhooks and process them (the default).
    Serve,
    /// Accept webhooks only; other processes run the workers.
    Api,
    /// Process stored events only.
    Worker,
    /// Apply database migrations and exit.
    Migrate,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::from_env().context("invalid configuration")?;
    hookd::telemetry::init(config.log_format, &config.log_filter);
    let roles = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => Roles::SERVE,
        Command::Api => Roles {
            api: true,
            workers: false,
        },
        Command::Worker => Roles {
            api: false,
            workers: true,
        },
        Command::Migrate => {
            app::open_store(&config).await?;
            tracing::info!("migrations applied");
            return Ok(());
        }
    };
    let running = app::start(&config, roles).await?;
    shutdown_signal().await;
    tracing::info!("shutdown requested");
    running.shutdown();
    running.wait().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

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
    /// Print the admin API's OpenAPI 3.1 document (as committed in docs/openapi.json).
    Openapi,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Openapi) = cli.command {
        print!("{}", hookd::http::admin_api::openapi_json());
        return Ok(());
    }
    let config = Config::from_env().context("invalid configuration")?;
    // Before the runtime: the OTLP HTTP exporter runs a blocking client on its own thread.
    let telemetry = hookd::telemetry::init(&config.telemetry)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(run(cli, config));
    runtime.block_on(telemetry.shutdown());
    if let Err(e) = &result {
        tracing::error!(error = format!("{e:#}"), "hookd stopped with an error");
    }
    result
}

async fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
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
        Command::Openapi => unreachable!("answered before the configuration is read"),
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

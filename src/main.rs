//! The `hookd` command.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use hookd::app::{self, Roles};
use hookd::config::Config;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Provider secrets stored through the admin API.
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    #[command(flatten)]
    Operator(hookd::cli::Command),
    /// Print the headers (or a curl command) of a test webhook signed as <provider> signs it,
    /// with the secret hookd is configured with.
    Sign {
        /// Provider name, e.g. stripe.
        provider: String,
        /// Payload file ('-' or nothing: standard input).
        file: Option<PathBuf>,
        /// Print a complete curl command instead of the headers.
        #[arg(long)]
        curl: bool,
        #[command(flatten)]
        test: TestEvent,
    },
    /// Post a test webhook, signed as <provider> signs it, to a running hookd.
    Send {
        /// Provider name, e.g. stripe.
        provider: String,
        /// Payload file ('-': standard input).
        file: PathBuf,
        #[command(flatten)]
        test: TestEvent,
    },
    /// Post a realistic sample event, signed as <provider> signs it, to a running hookd
    /// (`hookd trigger stripe invoice.paid`; `--list` shows the samples).
    Trigger {
        /// Provider name, e.g. stripe.
        #[arg(required_unless_present = "list")]
        provider: Option<String>,
        /// The sample's event type, e.g. invoice.paid.
        #[arg(required_unless_present = "list")]
        event: Option<String>,
        /// List the samples and exit.
        #[arg(long)]
        list: bool,
        /// The provider's secret, instead of the variable `serve` reads (e.g.
        /// STRIPE_WEBHOOK_SECRET).
        #[arg(long, env = "HOOKD_TRIGGER_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// Where hookd is.
        #[arg(long, env = "HOOKD_URL", default_value = "http://127.0.0.1:3001")]
        url: String,
    },
    /// JavaScript transforms: run one on an event locally.
    Transform {
        #[command(subcommand)]
        command: hookd::cli::transform::TransformCommand,
    },
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Re-encrypt every stored secret under the first key of HOOKD_SECRET_KEY (the new one);
    /// the old key must still be listed after it. Then the old key can be removed.
    RotateKey,
}

#[derive(clap::Args)]
struct TestEvent {
    /// Event type, for providers that send it in a header (GitHub, GitLab, Shopify, generic).
    #[arg(long = "type")]
    event_type: Option<String>,
    /// Where hookd is.
    #[arg(long, env = "HOOKD_URL", default_value = "http://127.0.0.1:3001")]
    url: String,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Openapi) => {
            print!("{}", hookd::http::admin::openapi_json());
            return Ok(());
        }
        // Clients of a running hookd: no configuration, no telemetry.
        Some(Command::Operator(command)) => {
            return client_runtime()?.block_on(hookd::cli::run(command, &mut std::io::stdout()));
        }
        Some(Command::Sign {
            provider,
            file,
            curl,
            test,
        }) => return sign(&provider, file, curl, &test),
        Some(Command::Send {
            provider,
            file,
            test,
        }) => {
            let s = signed(&provider, || read_payload(Some(file)), &test, None)?;
            return client_runtime()?.block_on(send(s, &test.url));
        }
        Some(Command::Trigger {
            provider,
            event,
            list,
            secret,
            url,
        }) => return trigger(provider, event, list, secret, url),
        Some(Command::Transform { command }) => transform(command),
        _ => {}
    }
    let config = Config::from_env().context("invalid configuration")?;
    // Before the runtime: the OTLP HTTP exporter runs a blocking client on its own thread.
    let telemetry = hookd::telemetry::init(&config.telemetry)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(run(cli, config));
    if let Err(e) = &result {
        tracing::error!(error = format!("{e:#}"), "hookd stopped with an error");
    }
    // Last: this flushes the log lines still buffered, the one above included.
    runtime.block_on(telemetry.shutdown());
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
            app::open_store(&config, app::Schema::Migrate).await?;
            tracing::info!("migrations applied");
            return Ok(());
        }
        Command::Secrets {
            command: SecretsCommand::RotateKey,
        } => return rotate_key(&config).await,
        Command::Openapi
        | Command::Operator(_)
        | Command::Sign { .. }
        | Command::Send { .. }
        | Command::Trigger { .. }
        | Command::Transform { .. } => {
            unreachable!("answered before the configuration is read")
        }
    };
    let running = app::start(&config, roles).await?;
    shutdown_signal().await;
    drain(&running).await;
    tracing::info!("stopping: no new connections; finishing in-flight requests and steps");
    running.shutdown();
    // The stop is bounded by HOOKD_SHUTDOWN_TIMEOUT_SECS; another signal ends it at once
    // (requests in flight get no answer, leases held expire: nothing acknowledged is lost).
    tokio::select! {
        _ = running.wait() => tracing::info!("stopped"),
        _ = shutdown_signal() => tracing::warn!("another signal; stopping without waiting for work in flight"),
    }
    Ok(())
}

/// The first step of a shutdown: readiness fails while everything is still served, for
/// `HOOKD_SHUTDOWN_READY_DELAY_MS`, so load balancers move their traffic away before the
/// listener closes. Another signal ends the wait early.
/// `hookd secrets rotate-key`.
async fn rotate_key(config: &Config) -> anyhow::Result<()> {
    let Some(keys) = &config.live.keys else {
        anyhow::bail!(
            "{}: set it to the new key then the old one, e.g. k2:<new>,k1:<old>",
            hookd::live::SECRET_KEY_VAR
        );
    };
    let store = app::open_store(config, app::Schema::at_start(&config.store)).await?;
    let (version, moved) =
        hookd::live::rotate_key(store.as_ref(), keys, "hookd secrets rotate-key").await?;
    println!(
        "{moved} secret(s) re-encrypted under key {:?} (configuration version {version}); \
         every secret is now under it: the other keys can be removed once every process runs \
         with the new key first",
        keys.current()
    );
    Ok(())
}

async fn drain(running: &app::Running) {
    running.drain();
    let delay = running.ready_delay();
    if delay.is_zero() {
        tracing::info!("shutdown requested");
        return;
    }
    tracing::info!(
        delay_ms = delay.as_millis() as u64,
        "shutdown requested; draining: /health/ready answers 503 and answers close their \
         connections until the listener closes (HOOKD_SHUTDOWN_READY_DELAY_MS; another signal \
         ends the wait)"
    );
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = shutdown_signal() => tracing::info!("another signal; ending the drain early"),
    }
}

fn client_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn read_payload(file: Option<PathBuf>) -> anyhow::Result<Vec<u8>> {
    match file {
        Some(path) if path.as_os_str() != "-" => {
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
        }
        _ => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("cannot read the payload from standard input")?;
            Ok(buf)
        }
    }
}

/// `hookd transform test`: its own exit status (0 sent, 3 skipped, 1 the script failed, 2 the
/// command cannot run).
fn transform(command: hookd::cli::transform::TransformCommand) -> ! {
    use std::io::Write;
    let code =
        match hookd::cli::transform::run(command, &mut std::io::stdout(), &mut std::io::stderr()) {
            Ok(verdict) => verdict.exit_code(),
            Err(e) => {
                eprintln!("error: {e:#}");
                2
            }
        };
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

/// `body` signed with the provider's configuration (secrets from the environment and hookd.toml,
/// as `serve` reads them), or with `secret` in place of its configured one. The body is read
/// once the provider is known.
fn signed(
    provider: &str,
    body: impl FnOnce() -> anyhow::Result<Vec<u8>>,
    test: &TestEvent,
    secret: Option<String>,
) -> anyhow::Result<hookd::testevent::sign::Signed> {
    let mut config = Config::from_env().context("invalid configuration")?;
    let unknown = |config: &Config| {
        let names: Vec<&str> = config.providers.iter().map(|p| p.name.as_str()).collect();
        format!(
            "unknown provider {provider:?}; hookd knows {}",
            names.join(", ")
        )
    };
    if let Some(secret) = secret {
        // The variable that turns the provider on, set to the given secret.
        let setting = config
            .provider(provider)
            .with_context(|| unknown(&config))?
            .setting
            .clone();
        let vars = std::env::vars().chain([(setting, secret)]);
        config = Config::from_vars(vars).context("invalid configuration with --secret")?;
    }
    let p = config
        .provider(provider)
        .with_context(|| unknown(&config))?;
    hookd::testevent::sign::sign(
        p,
        &test.url,
        config.public_url.as_deref(),
        body()?,
        test.event_type.as_deref(),
        chrono::Utc::now().timestamp(),
    )
    .map_err(anyhow::Error::msg)
}

fn sign(provider: &str, file: Option<PathBuf>, curl: bool, test: &TestEvent) -> anyhow::Result<()> {
    let s = signed(provider, || read_payload(file), test, None)?;
    if curl {
        println!("{}", s.curl());
        return Ok(());
    }
    for (k, v) in &s.headers {
        println!("{k}: {v}");
    }
    if s.body_changed {
        // The scheme signs a time inside the body: this body, not the file's, goes with them.
        println!("\n{}", String::from_utf8_lossy(&s.body));
    }
    Ok(())
}

/// `hookd trigger`: a sample signed as its provider signs it, posted to hookd (or the list).
fn trigger(
    provider: Option<String>,
    event: Option<String>,
    list: bool,
    secret: Option<String>,
    url: String,
) -> anyhow::Result<()> {
    if list {
        for s in hookd::testevent::samples::SAMPLES {
            println!("{:<10} {}", s.provider, s.name);
        }
        return Ok(());
    }
    let (Some(provider), Some(event)) = (provider, event) else {
        bail!("hookd trigger <provider> <event type> (or --list)");
    };
    let sample = hookd::testevent::samples::find(&provider, &event).map_err(anyhow::Error::msg)?;
    let test = TestEvent {
        event_type: sample.header_type.map(str::to_owned),
        url,
    };
    let s = signed(&provider, || Ok(sample.body()), &test, secret)?;
    client_runtime()?.block_on(send(s, &test.url))
}

async fn send(s: hookd::testevent::sign::Signed, url: &str) -> anyhow::Result<()> {
    let mut req = reqwest::Client::new().post(&s.url).body(s.body);
    for (k, v) in &s.headers {
        req = req.header(k, v);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach hookd at {url}"))?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    println!("{status} {body}");
    if !status.is_success() {
        bail!("hookd did not accept the event");
    }
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

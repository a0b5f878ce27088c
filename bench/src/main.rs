//! The `hookd-bench` command: `load` drives a hookd, `report` writes `BENCHMARKS.md`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};

use hookd_bench::events::Prepared;
use hookd_bench::load::{self, Mode, Settings};
use hookd_bench::processing;
use hookd_bench::report::{self, Results};

#[derive(Parser)]
#[command(
    name = "hookd-bench",
    about = "Load generator and benchmark report for hookd"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send signed Stripe webhooks to a hookd and report throughput and latency.
    Load(LoadArgs),
    /// Write BENCHMARKS.md and its chart from the output directory of bench/run.sh.
    Report(ReportArgs),
    /// Write the processing measurements of a bench/run.sh output directory as markdown and
    /// JSON, and print their targets.
    Processing(ProcessingArgs),
    /// Print a pgbench script that inserts rows shaped like the ones hookd stores for `load`.
    PgbenchScript {
        /// Minimum body size in bytes (as for `load`).
        #[arg(long, default_value_t = 1500)]
        body_bytes: usize,
    },
}

#[derive(Args)]
struct LoadArgs {
    /// Webhook endpoint.
    #[arg(long, default_value = "http://127.0.0.1:3001/webhooks/stripe")]
    url: String,
    /// Stripe signing secret hookd is configured with.
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET")]
    secret: String,
    /// Requests to prepare (unique events plus redeliveries); the run ends when all are sent
    /// or after --duration, whichever comes first.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Longest time to send for, in seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Closed loop: connections, each with one request in flight.
    #[arg(long, default_value_t = 64, conflicts_with = "rate")]
    concurrency: usize,
    /// Open loop: requests per second, latency measured from when each was due.
    #[arg(long)]
    rate: Option<f64>,
    /// Open loop: most connections to spread the rate over.
    #[arg(long, default_value_t = 256)]
    connections: usize,
    /// Share of requests that resend an earlier event (0 to 1).
    #[arg(long, default_value_t = 0.1)]
    duplicates: f64,
    /// Minimum body size in bytes.
    #[arg(long, default_value_t = 1500)]
    body_bytes: usize,
    /// Seconds without an answer before a request counts as a timeout.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Threads of the load generator (1 leaves the most CPU to the target).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Tag in event ids, so runs against one database never collide (default: the clock).
    #[arg(long)]
    run_id: Option<String>,
    /// Seed of the redelivery plan.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct ReportArgs {
    /// Output directory of bench/run.sh (facts.txt and the load generator's JSON files).
    #[arg(long)]
    dir: PathBuf,
    /// Markdown file to write.
    #[arg(long, default_value = "BENCHMARKS.md")]
    markdown: PathBuf,
    /// Chart to write (PNG), and the path the markdown links it by.
    #[arg(long, default_value = "bench/benchmarks.png")]
    chart: PathBuf,
    /// TrueType font for the chart (default: DejaVu Sans, or any font under /usr/share/fonts).
    #[arg(long)]
    font: Option<PathBuf>,
}

#[derive(Args)]
struct ProcessingArgs {
    /// Output directory of bench/run.sh (facts.txt).
    #[arg(long)]
    dir: PathBuf,
    /// Markdown file to write.
    #[arg(long)]
    markdown: PathBuf,
    /// JSON file to write.
    #[arg(long)]
    json: PathBuf,
}

/// `http://host:port/path` → (`host:port`, `/path`).
fn split_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--url {url:?}: only http:// is supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let authority = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, path.to_owned()))
}

fn load_cmd(a: LoadArgs) -> Result<(), String> {
    if !(0.0..1.0).contains(&a.duplicates) {
        return Err("--duplicates must be at least 0 and below 1".into());
    }
    if a.rate.is_some_and(|r| r <= 0.0) || a.concurrency == 0 || a.connections == 0 {
        return Err("--rate, --concurrency and --connections must be positive".into());
    }
    let (addr, path) = split_url(&a.url)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?;
    let run_id = a
        .run_id
        .unwrap_or_else(|| format!("{:x}", now.as_micros() & 0xff_ffff_ffff));
    let started = Instant::now();
    let prepared = Arc::new(Prepared::new(
        &addr,
        &path,
        &a.secret,
        &run_id,
        now.as_secs() as i64,
        a.requests,
        a.duplicates,
        a.body_bytes,
        a.seed,
    ));
    eprintln!(
        "prepared {} requests ({} unique events) in {:.2} s",
        a.requests,
        prepared.unique(),
        started.elapsed().as_secs_f64()
    );
    let mode = match a.rate {
        Some(rate) => Mode::Open {
            rate,
            connections: a.connections,
        },
        None => Mode::Closed {
            concurrency: a.concurrency,
        },
    };
    let settings = Settings {
        addr,
        mode,
        duration: Duration::from_secs_f64(a.duration),
        timeout: Duration::from_secs_f64(a.timeout),
    };
    let runtime = if a.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(a.threads)
            .enable_all()
            .build()
    }
    .map_err(|e| e.to_string())?;
    let summary = runtime.block_on(load::run(prepared, a.duplicates, settings));
    print!("{}", summary.text());
    if let Some(path) = a.json {
        let json = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
        std::fs::write(&path, json + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

fn report_cmd(a: ReportArgs) -> Result<(), String> {
    let results = Results::load(&a.dir)?;
    let font = report::find_font(a.font.as_deref())?;
    report::chart(&results, &a.chart, &font)?;
    let md = report::markdown(&results, &a.chart.to_string_lossy());
    std::fs::write(&a.markdown, md)
        .map_err(|e| format!("cannot write {}: {e}", a.markdown.display()))?;
    let runs = processing::runs(&results.facts)?;
    for c in report::checks(&results)
        .into_iter()
        .chain(processing::checks(&runs))
    {
        let verdict = match c.miss_pct {
            None => "met".to_owned(),
            Some(p) => format!("MISSED by {p:.0}%"),
        };
        println!("{:<60} {:>10}  {verdict}", c.target, c.measured);
    }
    Ok(())
}

fn processing_cmd(a: ProcessingArgs) -> Result<(), String> {
    let facts_path = a.dir.join("facts.txt");
    let facts = report::parse_facts(
        &std::fs::read_to_string(&facts_path)
            .map_err(|e| format!("cannot read {}: {e}", facts_path.display()))?,
    );
    let runs = processing::runs(&facts)?;
    let settings = facts.get("run.processing").map_or("", String::as_str);
    let md = processing::markdown(&runs, settings);
    std::fs::write(&a.markdown, &md)
        .map_err(|e| format!("cannot write {}: {e}", a.markdown.display()))?;
    let json = serde_json::json!({
        "machine": facts.iter().filter(|(k, _)| k.starts_with("machine.") || k.starts_with("run."))
            .collect::<BTreeMap<_, _>>(),
        "runs": runs,
        "checks": processing::checks(&runs).iter().map(|c| serde_json::json!({
            "target": c.target, "measured": c.measured, "pass": c.pass, "miss_pct": c.miss_pct,
        })).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
    std::fs::write(&a.json, text + "\n")
        .map_err(|e| format!("cannot write {}: {e}", a.json.display()))?;
    print!("{md}");
    Ok(())
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Load(a) => load_cmd(a),
        Command::Report(a) => report_cmd(a),
        Command::Processing(a) => processing_cmd(a),
        Command::PgbenchScript { body_bytes } => {
            print!("{}", hookd_bench::events::pgbench_script(body_bytes));
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hookd-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_address_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:3001/webhooks/stripe").unwrap(),
            ("127.0.0.1:3001".into(), "/webhooks/stripe".into())
        );
        assert_eq!(
            split_url("http://localhost").unwrap(),
            ("localhost:80".into(), "/".into())
        );
        assert!(split_url("https://x").is_err());
    }
}

//! Logging set-up. JSON lines on stdout by default (`HOOKD_LOG_FORMAT=pretty` for humans),
//! filtered by `HOOKD_LOG` (`RUST_LOG` syntax). Must never log secrets or signature headers:
//! verifiers hold secrets in a type whose `Debug` is redacted, and only reason codes are logged.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Install the global subscriber. Call once, from `main`.
pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|e| {
        eprintln!("HOOKD_LOG={filter:?} is not a valid filter ({e}); using \"info\"");
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Pretty => builder.init(),
    }
}

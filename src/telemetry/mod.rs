//! Observability: logs, traces and metrics.
//!
//! Owns the global `tracing` subscriber (flat JSON or pretty lines on stdout, optional rotated
//! `combined.log` / `error.log`), the OpenTelemetry tracer (OTLP export when an endpoint is
//! set), W3C trace-context propagation across the queue, the Prometheus metrics, and the
//! heartbeat `/health/live` reads of the worker loop (`liveness`).
//! It must never log a secret: secrets live in types whose `Debug` is redacted, signature
//! headers are redacted before they are stored, and only reason codes are logged.

pub mod liveness;
mod logs;
pub mod metrics;
mod settings;
pub mod trace;

pub use settings::{LogFormat, OtlpConfig, OtlpProtocol, TelemetryConfig};

use std::path::PathBuf;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(
        "cannot create the log directory {dir} (set HOOKD_LOG_DIR, or empty to turn files off): {source}"
    )]
    LogDir {
        dir: PathBuf,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot set up the OTLP exporter for {endpoint}: {source}")]
    Exporter {
        endpoint: String,
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

/// Keeps log writers and the tracer alive; flush them with [`Telemetry::shutdown`].
pub struct Telemetry {
    _guards: Vec<WorkerGuard>,
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Export the spans still buffered. The exporter blocks, so it runs off the async runtime.
    pub async fn shutdown(self) {
        let provider = self.provider;
        let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    }
}

/// Install the global subscriber and tracer. Call once, from `main`, before the async runtime
/// starts: the HTTP exporter owns a blocking client and its own thread.
pub fn init(config: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
    trace::install_propagator();
    let provider = tracer_provider(config)?;
    // No per-layer filter on this one: span contexts are looked up by downcasting to this
    // layer, which a filter wrapper would hide. The global `HOOKD_LOG` filter applies.
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("hookd"));
    let filter = EnvFilter::try_new(&config.log_filter).unwrap_or_else(|e| {
        eprintln!(
            "HOOKD_LOG={:?} is not a valid filter ({e}); using \"info\"",
            config.log_filter
        );
        EnvFilter::new("info")
    });
    let mut guards = Vec::new();
    // Lines are written by a background thread, so no request waits on a write to stdout.
    // Not lossy: when the buffer is full, logging waits rather than dropping lines.
    let (stdout, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stdout());
    guards.push(guard);
    let mut json = logs::JsonLines::default();
    let pretty = match config.log_format {
        LogFormat::Json => {
            json.add(stdout, LevelFilter::TRACE);
            None
        }
        LogFormat::Pretty => Some(tracing_subscriber::fmt::layer().with_writer(stdout)),
    };
    if let Some(dir) = &config.log_dir {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
        std::fs::create_dir_all(&dir).map_err(|e| TelemetryError::LogDir {
            dir: dir.clone(),
            source: Box::new(e),
        })?;
        for (name, errors_only) in [("combined", false), ("error", true)] {
            let appender = RollingFileAppender::builder()
                .rotation(Rotation::DAILY)
                .filename_prefix(name)
                .filename_suffix("log")
                .max_log_files(config.log_max_files)
                .latest_symlink(format!("{name}.log"))
                .build(&dir)
                .map_err(|e| TelemetryError::LogDir {
                    dir: dir.clone(),
                    source: Box::new(e),
                })?;
            // Error lines must not be dropped under load; the combined log may be.
            let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
                .lossy(!errors_only)
                .finish(appender);
            guards.push(guard);
            let level = if errors_only {
                LevelFilter::ERROR
            } else {
                LevelFilter::TRACE
            };
            json.add(writer, level);
        }
    }

    tracing_subscriber::registry()
        .with(filter)
        .with(otel)
        .with(pretty)
        // An empty Vec of sinks would still cost a formatted line; none means no layer at all.
        .with((!json.is_empty()).then_some(json))
        .init();
    if let Some(legacy) = &config.jaeger_endpoint {
        tracing::warn!(
            jaeger_endpoint = %legacy,
            "JAEGER_ENDPOINT (Jaeger's legacy collector, port 14268) is not supported: Jaeger ingests \
             OTLP natively. Set OTEL_EXPORTER_OTLP_ENDPOINT=http://<jaeger-host>:4318 instead \
             (or :4317 with OTEL_EXPORTER_OTLP_PROTOCOL=grpc)"
        );
    }
    Ok(Telemetry {
        _guards: guards,
        provider,
    })
}

/// Always a real tracer, so every log line inside a request or job has a trace id; an exporter
/// only when an endpoint is configured (otherwise finished spans are simply dropped).
fn tracer_provider(config: &TelemetryConfig) -> Result<SdkTracerProvider, TelemetryError> {
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(config.service_name.clone())
        .build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    let Some(otlp) = &config.otlp else {
        return Ok(builder.build());
    };
    let err = |source: opentelemetry_otlp::ExporterBuildError| TelemetryError::Exporter {
        endpoint: otlp.endpoint.clone(),
        source,
    };
    let exporter = match otlp.protocol {
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{}/v1/traces", otlp.endpoint.trim_end_matches('/')))
            .build()
            .map_err(err)?,
        OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(otlp.endpoint.clone())
            .build()
            .map_err(err)?,
    };
    Ok(builder.with_batch_exporter(exporter).build())
}

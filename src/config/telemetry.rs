//! Reads the settings of logs and traces (their variables only; the file has no section for
//! them). Fills [`TelemetryConfig`], whose defaults are the telemetry module's.

use std::path::PathBuf;

use super::ConfigError;
use super::reader::{Reader, invalid};
use crate::telemetry::{LogFormat, OtlpConfig, OtlpProtocol, TelemetryConfig};

pub(super) fn telemetry(r: &Reader<'_>) -> Result<TelemetryConfig, ConfigError> {
    let d = TelemetryConfig::default();
    let log_format = match r.raw("HOOKD_LOG_FORMAT") {
        None => d.log_format,
        Some(name) => LogFormat::from_name(name)
            .ok_or_else(|| invalid("HOOKD_LOG_FORMAT", name, "json or pretty"))?,
    };
    // Set but empty turns files off; unset means the default folder.
    let log_dir = match r.set("HOOKD_LOG_DIR") {
        Some("") => None,
        Some(dir) => Some(PathBuf::from(dir)),
        None => d.log_dir,
    };
    Ok(TelemetryConfig {
        log_format,
        log_filter: r.raw("HOOKD_LOG").map_or(d.log_filter, str::to_owned),
        log_dir,
        log_max_files: r.positive("HOOKD_LOG_MAX_FILES", None, d.log_max_files)?,
        service_name: r
            .raw("OTEL_SERVICE_NAME")
            .map_or(d.service_name, str::to_owned),
        otlp: otlp(r)?,
        jaeger_endpoint: r.raw("JAEGER_ENDPOINT").map(str::to_owned),
    })
}

fn otlp(r: &Reader<'_>) -> Result<Option<OtlpConfig>, ConfigError> {
    let Some(endpoint) = r.raw("OTEL_EXPORTER_OTLP_ENDPOINT") else {
        return Ok(None);
    };
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(invalid(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            endpoint,
            "an http:// or https:// URL, e.g. http://jaeger:4318",
        ));
    }
    let protocol = match r.raw("OTEL_EXPORTER_OTLP_PROTOCOL") {
        None => OtlpProtocol::HttpProtobuf,
        Some(name) => OtlpProtocol::from_name(name).ok_or_else(|| {
            invalid(
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                name,
                "http/protobuf (default, port 4318) or grpc (port 4317)",
            )
        })?,
    };
    Ok(Some(OtlpConfig {
        endpoint: endpoint.to_owned(),
        protocol,
    }))
}

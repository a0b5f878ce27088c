//! Settings of logs and traces: format and filter of the log lines, the log files, and the OTLP
//! exporter. Owns their defaults. It must never read the environment or a file: the
//! configuration reader fills [`TelemetryConfig`] and hands it over.

use std::path::PathBuf;

/// Logs and traces.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    pub log_filter: String,
    /// Where `combined.log` and `error.log` go; `None` turns log files off.
    pub log_dir: Option<PathBuf>,
    /// Daily log files kept per kind.
    pub log_max_files: usize,
    pub service_name: String,
    /// OTLP trace export; `None` means no exporter.
    pub otlp: Option<OtlpConfig>,
    /// The original service's `JAEGER_ENDPOINT`, reported at start as unsupported.
    pub jaeger_endpoint: Option<String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Json,
            log_filter: "info".into(),
            log_dir: Some(PathBuf::from("logs")),
            log_max_files: 14,
            service_name: "hookd".into(),
            otlp: None,
            jaeger_endpoint: None,
        }
    }
}

/// Where spans are exported, and how.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    pub endpoint: String,
    pub protocol: OtlpProtocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    HttpProtobuf,
    Grpc,
}

impl OtlpProtocol {
    /// `http/protobuf` or `grpc`, as `OTEL_EXPORTER_OTLP_PROTOCOL` names them.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "http/protobuf" => Some(Self::HttpProtobuf),
            "grpc" => Some(Self::Grpc),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

impl LogFormat {
    /// `json` or `pretty`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "json" => Some(Self::Json),
            "pretty" => Some(Self::Pretty),
            _ => None,
        }
    }
}

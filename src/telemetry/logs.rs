//! Flat JSON log lines: the event's fields and the fields of every span it happened in (request
//! or job: `event_id`, `provider`, `trace_id`, ...) side by side at the top level, so a log
//! query needs no knowledge of span nesting.
//!
//! One layer serves every JSON sink (stdout, `combined.log`, `error.log`): a line is formatted
//! once and written to each sink whose level admits it. Span fields are kept as JSON values
//! from the moment they are recorded, so a line never re-parses them. Both were measured: with
//! `tracing-subscriber`'s own JSON layer, one per sink, re-encoding span fields on every
//! `Span::record` was the largest single cost of the accept path (docs/performance.md).

use std::fmt;
use std::io::Write;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// Writes each event as one flat JSON line to every sink whose level admits it.
#[derive(Default)]
pub struct JsonLines {
    sinks: Vec<(BoxMakeWriter, LevelFilter)>,
}

impl JsonLines {
    /// Also write lines at `level` or more severe to `writer`.
    pub fn add<W>(&mut self, writer: W, level: LevelFilter)
    where
        W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    {
        self.sinks.push((BoxMakeWriter::new(writer), level));
    }

    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }
}

/// A span's fields as recorded so far.
struct SpanFields(Map<String, Value>);

impl<S> Layer<S> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Map::new();
        attrs.record(&mut Fields(&mut fields));
        span.extensions_mut().insert(SpanFields(fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if let Some(SpanFields(fields)) = span.extensions_mut().get_mut::<SpanFields>() {
            values.record(&mut Fields(fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let level = LevelFilter::from_level(*meta.level());
        if !self.sinks.iter().any(|(_, max)| level <= *max) {
            return;
        }
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>() {
                    // `otel.*` fields only steer the span exporter.
                    line.extend(
                        fields
                            .iter()
                            .filter(|(k, _)| !k.starts_with("otel."))
                            .map(|(k, v)| (k.clone(), v.clone())),
                    );
                }
            }
        }
        event.record(&mut Fields(&mut line));
        let mut bytes = serde_json::to_vec(&Value::Object(line)).unwrap_or_default();
        bytes.push(b'\n');
        for (writer, max) in &self.sinks {
            if level <= *max {
                // Nowhere to report a failed log write; the line is lost, the request is not.
                let _ = writer.make_writer_for(meta).write_all(&bytes);
            }
        }
    }
}

struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

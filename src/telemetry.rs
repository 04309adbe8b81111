//! Structured logs through `tracing`, one line per event on stderr.
//!
//! Log lines carry ids, topics, partitions and offsets; no code in this crate
//! logs a participant's fields.
//!
//! Outside Lambda (the CLI, the local pipeline): human-readable lines when
//! stderr is a terminal, JSON lines otherwise (a pipe, a file, CI); the
//! level is the CLI's `-v`/`-q` when given ([`init_with_level`]), else
//! `RUST_LOG`, else `info`.
//!
//! In Lambda (`AWS_LAMBDA_FUNCTION_NAME` is set) the functions follow
//! Lambda's conventions, as the Powertools logger shapes its lines, so a
//! CloudWatch Logs Insights query is one line (`filter function_request_id =
//! "…"`): `AWS_LAMBDA_LOG_FORMAT` (`LoggingConfig.LogFormat`: `JSON`, or
//! `Text` for plain lines) and `AWS_LAMBDA_LOG_LEVEL`
//! (`LoggingConfig.ApplicationLogLevel`; `RUST_LOG`, when set, wins) are
//! honoured, and every JSON line carries at its top level `function_name`,
//! `function_request_id`, `xray_trace_id` and `cold_start` (true for the lines
//! of the first invocation of an execution environment), with the event's
//! own fields beside them.

use std::fmt;
use std::sync::OnceLock;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// The span lambda_runtime opens around each invocation, and its fields.
const INVOKE_SPAN: &str = "Lambda runtime invoke";
const REQUEST_ID: &str = "requestId";
const XRAY_TRACE_ID: &str = "xrayTraceId";

/// Installs the subscriber for this process (once; later calls do nothing).
pub fn init() {
    init_with_level(None)
}

/// [`init`], with `level` (a `tracing` directive such as `debug`, from the
/// CLI's `-v`/`-q`) in place of `RUST_LOG` outside Lambda. In Lambda the
/// level and format are Lambda's (see the module docs) and `level` is not
/// used.
pub fn init_with_level(level: Option<&str>) {
    init_with(level, BoxMakeWriter::new(std::io::stderr))
}

/// [`init_with_level`], the human-readable lines (stderr is a terminal)
/// written through `terminal`: the CLI's writer hides its progress bar
/// while a line is written. `terminal` must write to stderr.
pub fn init_with(level: Option<&str>, terminal: BoxMakeWriter) {
    use std::io::IsTerminal as _;
    match std::env::var("AWS_LAMBDA_FUNCTION_NAME") {
        Ok(function) => init_lambda(function),
        Err(_) => {
            let filter = level.map_or_else(|| filter(None), EnvFilter::new);
            match LogFormat::for_stderr(std::io::stderr().is_terminal()) {
                LogFormat::Text => {
                    let _ = tracing_subscriber::fmt()
                        .with_env_filter(filter)
                        .with_target(false)
                        .with_writer(terminal)
                        .try_init();
                }
                LogFormat::Json => {
                    let _ = tracing_subscriber::fmt()
                        .json()
                        .with_env_filter(filter)
                        .with_current_span(false)
                        .with_writer(std::io::stderr)
                        .try_init();
                }
            }
        }
    }
}

/// The shape of log lines outside Lambda.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event (time, level, message, fields).
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`).
    Json,
}

impl LogFormat {
    /// Text for a person at a terminal, JSON for a program reading a pipe
    /// or a file.
    pub fn for_stderr(is_terminal: bool) -> LogFormat {
        match is_terminal {
            true => LogFormat::Text,
            false => LogFormat::Json,
        }
    }
}

/// `RUST_LOG` if set, else Lambda's level if given, else `info`.
fn filter(lambda_level: Option<&str>) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(lambda_level.map_or("info".to_string(), lambda_directive))
    })
}

/// Lambda's level names (`TRACE` … `FATAL`) as a tracing directive.
fn lambda_directive(level: &str) -> String {
    match level.to_ascii_uppercase().as_str() {
        "FATAL" => "error".to_string(),
        other => other.to_ascii_lowercase(),
    }
}

fn init_lambda(function: String) {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL").ok();
    let filter = filter(level.as_deref());
    let text = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("text"));
    if text {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .try_init();
    } else {
        let _ = tracing_subscriber::fmt()
            .fmt_fields(JsonFields::new())
            .event_format(LambdaJson {
                function,
                first_request: OnceLock::new(),
            })
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
}

/// One JSON object per event in the Powertools logger's shape (see the
/// module docs).
struct LambdaJson {
    function: String,
    /// The request id of the environment's first invocation: its lines are
    /// the cold start's.
    first_request: OnceLock<String>,
}

impl LambdaJson {
    /// The line's JSON object: Lambda's context, then the event's fields.
    fn line(&self, event: &Event<'_>, invocation: Option<Map<String, Value>>) -> Value {
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            crate::outbox::row::rfc3339(time::OffsetDateTime::now_utc()).into(),
        );
        line.insert("level".into(), event.metadata().level().as_str().into());
        line.insert("target".into(), event.metadata().target().into());
        line.insert("function_name".into(), self.function.clone().into());
        if let Some(invocation) = invocation {
            if let Some(Value::String(id)) = invocation.get(REQUEST_ID) {
                let first = self.first_request.get_or_init(|| id.clone());
                line.insert("function_request_id".into(), id.clone().into());
                line.insert("cold_start".into(), (first == id).into());
            }
            if let Some(trace) = invocation.get(XRAY_TRACE_ID) {
                line.insert("xray_trace_id".into(), trace.clone());
            }
        }
        let mut fields = Fields(Map::new());
        event.record(&mut fields);
        for (name, value) in fields.0 {
            line.entry(name).or_insert(value);
        }
        Value::Object(line)
    }
}

impl<S, N> FormatEvent<S, N> for LambdaJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // lambda_runtime records the invocation's ids on its span; JsonFields
        // keeps a span's fields as a JSON object in its extensions.
        let invocation = ctx.event_scope().and_then(|scope| {
            scope
                .filter(|span| span.name() == INVOKE_SPAN)
                .find_map(|span| {
                    let extensions = span.extensions();
                    let fields = extensions.get::<FormattedFields<N>>()?;
                    match serde_json::from_str::<Value>(fields) {
                        Ok(Value::Object(map)) => Some(map),
                        _ => None,
                    }
                })
        });
        writeln!(writer, "{}", self.line(event, invocation))
    }
}

/// An event's fields as JSON values.
struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_are_text_on_a_terminal_and_json_elsewhere() {
        assert_eq!(LogFormat::for_stderr(true), LogFormat::Text);
        assert_eq!(LogFormat::for_stderr(false), LogFormat::Json);
    }

    #[test]
    fn lambda_levels_map_to_tracing_directives() {
        assert_eq!(lambda_directive("DEBUG"), "debug");
        assert_eq!(lambda_directive("warn"), "warn");
        assert_eq!(lambda_directive("FATAL"), "error");
    }
}

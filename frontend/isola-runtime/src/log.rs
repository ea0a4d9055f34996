//! Logging in the format runc's callers parse.
//!
//! containerd's shim and podman read the `--log` file of a failed command
//! and show the last `"level":"error"` line's `msg`, so JSON lines carry
//! logrus's keys (`level`, `msg`, `time`), not tracing-subscriber's.

use std::fmt;
use std::fs::OpenOptions;
use std::path::Path;

use anyhow::{Context, Result};
use clap::ValueEnum;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Sends log events at `level` and above to `file` (appending) or stderr.
pub fn init(file: Option<&Path>, format: LogFormat, level: Level) -> Result<()> {
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .event_format(Logrus(format));
    match file {
        Some(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open log file {}", path.display()))?;
            builder.with_writer(std::sync::Mutex::new(file)).init();
        }
        None => builder.with_writer(std::io::stderr).init(),
    }
    Ok(())
}

/// One line per event: `{"level":..,"msg":..,"time":..}` or logrus's text.
struct Logrus(LogFormat);

impl<S, N> FormatEvent<S, N> for Logrus
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = match *event.metadata().level() {
            Level::ERROR => "error",
            Level::WARN => "warning",
            Level::INFO => "info",
            Level::DEBUG => "debug",
            Level::TRACE => "trace",
        };
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let msg = fields.message();
        match self.0 {
            LogFormat::Json => {
                let line = serde_json::json!({ "level": level, "msg": msg, "time": time });
                writeln!(writer, "{line}")
            }
            LogFormat::Text => writeln!(writer, "time={time:?} level={level} msg={msg:?}"),
        }
    }
}

/// The event's message followed by its other fields as `key=value`.
#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<String>,
}

impl Fields {
    fn message(&self) -> String {
        let mut msg = self.message.clone();
        for f in &self.rest {
            if !msg.is_empty() {
                msg.push(' ');
            }
            msg.push_str(f);
        }
        msg
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.rest.push(format!("{}={value:?}", field.name()));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.rest.push(format!("{}={value:?}", field.name()));
        }
    }
}

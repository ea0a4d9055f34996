//! Logging via tracing to stderr, which for PID 1 is /dev/console (the
//! kernel opens it for init): the guest's serial console, where the host
//! keeps it. Quiet by default (`warn`) so the boot stays fast and clean.

use tracing_subscriber::EnvFilter;

pub const DEFAULT_LEVEL: &str = "warn";

/// Install the global subscriber. `directive` is an `EnvFilter` directive:
/// a level (`debug`) or per-target (`isola_agent::exec=trace`). Returns a
/// complaint when it could not be parsed and the default was used.
pub fn init(directive: Option<&str>) -> Option<String> {
    let (filter, complaint) = match directive.map(EnvFilter::try_new) {
        None => (EnvFilter::new(DEFAULT_LEVEL), None),
        Some(Ok(f)) => (f, None),
        Some(Err(e)) => (
            EnvFilter::new(DEFAULT_LEVEL),
            Some(format!(
                "bad log level {:?} ({e}); using {DEFAULT_LEVEL}",
                directive.unwrap_or_default()
            )),
        ),
    };
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A serial console shows escape codes as garbage.
        .with_ansi(false)
        // The guest has no meaningful wall clock this early; time since the
        // agent started is what boot timing needs.
        .with_timer(tracing_subscriber::fmt::time::uptime())
        .with_thread_names(true)
        // On a failed write (a stderr pipe whose reader died), the default
        // is to complain with eprintln!, which panics on that same broken
        // stderr, and a panic aborts: losing a log line is the lesser evil.
        .log_internal_errors(false)
        .try_init();
    match (installed, complaint) {
        (Err(e), _) => Some(format!("cannot install the logger: {e}")),
        (Ok(()), c) => c,
    }
}

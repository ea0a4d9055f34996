//! `isola-runtime`: the runc-compatible OCI runtime CLI over isola's runner,
//! for podman, containerd's runc shim and anything else that drives runc.

mod cli;
mod commands;
mod log;

use clap::Parser;

use crate::cli::Cli;

fn main() {
    let cli = Cli::parse();
    let level = if cli.debug {
        tracing::Level::DEBUG
    } else {
        cli.log_level
    };
    if let Err(e) = log::init(cli.log.as_deref(), cli.log_format, level) {
        eprintln!("isola-runtime: {e:#}");
        std::process::exit(1);
    }
    let logs_to_file = cli.log.is_some();
    tracing::debug!(args = ?std::env::args().collect::<Vec<_>>(), "started");
    match commands::dispatch(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            // Like runc: the error goes to the log (where containerd and
            // podman look for it) and to stderr.
            tracing::error!("{e:#}");
            if logs_to_file {
                eprintln!("isola-runtime: {e:#}");
            }
            std::process::exit(1);
        }
    }
}

//! `isola logs [-f] [--tail N] [-t]`: the supervisor's json-file log, stdout
//! lines to stdout and stderr lines to stderr.

use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use chrono::SecondsFormat;
use clap::Args;
use isola_host::logs::{read_all, LogEntry, Stream};
use isola_host::supervisor::LOG_KEEP;
use isola_host::{ContainerStatus, Host};

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Follow the output until the container stops
    #[arg(short = 'f', long)]
    follow: bool,
    /// Only the last N lines ("all" for every line)
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Prefix each line with its timestamp
    #[arg(short = 't', long)]
    timestamps: bool,
    container: String,
}

pub fn run(host: &Host, args: LogsArgs) -> Result<i32> {
    let id = match host.resolve(&args.container) {
        Ok(id) => id,
        Err(e) => return Ok(super::fail(&e.into())),
    };
    let tail: Option<usize> = match args.tail.as_str() {
        "all" => None,
        n => Some(
            n.parse()
                .map_err(|_| anyhow::anyhow!("invalid --tail {n:?}: a number or all"))?,
        ),
    };
    let path = host.paths(&id).log();
    let entries = read_all(&path, LOG_KEEP)?;
    let skip = tail.map_or(0, |n| entries.len().saturating_sub(n));
    let mut shown = entries.len();
    for entry in &entries[skip..] {
        print(entry, args.timestamps);
    }
    if !args.follow {
        return Ok(0);
    }
    loop {
        let stopped = !matches!(host.record(&id), Ok(r) if r.status != ContainerStatus::Stopped);
        let entries = read_all(&path, LOG_KEEP)?;
        // After a rotation the count can shrink; restart from what is there.
        let from = if entries.len() < shown { 0 } else { shown };
        for entry in &entries[from..] {
            print(entry, args.timestamps);
        }
        shown = entries.len();
        if stopped {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(0)
}

fn print(entry: &LogEntry, timestamps: bool) {
    let prefix = if timestamps {
        format!(
            "{} ",
            entry.time.to_rfc3339_opts(SecondsFormat::Nanos, true)
        )
    } else {
        String::new()
    };
    let line = format!("{prefix}{}", entry.log);
    let _ = match entry.stream {
        Stream::Stdout => std::io::stdout().write_all(line.as_bytes()),
        Stream::Stderr => std::io::stderr().write_all(line.as_bytes()),
    };
}

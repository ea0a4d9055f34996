//! `isola ps`.

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::Args;
use isola_host::{ContainerRecord, ContainerStatus, Host};

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show all containers (default: running only)
    #[arg(short = 'a', long)]
    all: bool,
    /// Print IDs only
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Print full IDs and commands
    #[arg(long)]
    no_trunc: bool,
}

pub fn run(host: &Host, args: PsArgs) -> Result<i32> {
    let records: Vec<ContainerRecord> = host
        .list()?
        .into_iter()
        .rev() // newest first, as docker
        .filter(|r| args.all || r.status == ContainerStatus::Running)
        .collect();
    let id_of = |r: &ContainerRecord| {
        if args.no_trunc {
            r.id.to_string()
        } else {
            r.id.short().to_string()
        }
    };
    if args.quiet {
        for r in &records {
            println!("{}", id_of(r));
        }
        return Ok(0);
    }
    println!(
        "{:<14}{:<24}{:<24}{:<18}{:<28}{:<10}NAMES",
        "CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "ISOLATION"
    );
    let now = Utc::now();
    for r in &records {
        let mut command = format!("\"{}\"", r.command.join(" "));
        if !args.no_trunc && command.chars().count() > 22 {
            command = format!("{}…\"", command.chars().take(20).collect::<String>());
        }
        println!(
            "{:<14}{:<24}{:<24}{:<18}{:<28}{:<10}{}",
            id_of(r),
            r.image,
            command,
            format!("{} ago", ago(now, r.created_at)),
            status(now, r),
            r.isolation,
            r.name
        );
    }
    Ok(0)
}

fn status(now: DateTime<Utc>, r: &ContainerRecord) -> String {
    match r.status {
        ContainerStatus::Created => "Created".into(),
        ContainerStatus::Running => {
            format!("Up {}", ago(now, r.started_at.unwrap_or(r.created_at)))
        }
        ContainerStatus::Stopped => format!(
            "Exited ({}) {} ago",
            r.exit_code.unwrap_or(0),
            ago(now, r.finished_at.unwrap_or(r.created_at))
        ),
    }
}

fn ago(now: DateTime<Utc>, then: DateTime<Utc>) -> String {
    let secs = (now - then).num_seconds().max(0);
    match secs {
        0..=1 => "1 second".into(),
        2..=59 => format!("{secs} seconds"),
        60..=3599 => format!("{} minutes", secs / 60),
        3600..=86399 => format!("{} hours", secs / 3600),
        _ => format!("{} days", secs / 86400),
    }
}

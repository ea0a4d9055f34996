//! `start`, `stop`, `restart`, `kill`, `rm`, `wait`: one lifecycle verb
//! each, over one or more containers (docker prints each name it handled
//! and exits 1 if any failed).

use std::time::Duration;

use anyhow::Result;
use clap::Args;
use isola_host::{ContainerId, Host};

use super::attach;

#[derive(Args, Debug)]
pub struct StartArgs {
    /// Attach to the container's output and wait for it
    #[arg(short = 'a', long)]
    attach: bool,
    /// Attach stdin
    #[arg(short = 'i', long)]
    interactive: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait after SIGTERM before SIGKILL
    #[arg(short = 't', long = "time", default_value_t = 10)]
    time: u64,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal to send
    #[arg(short = 's', long, default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Kill a running container first
    #[arg(short = 'f', long)]
    force: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct WaitArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Applies `verb` to each container, docker-style: the reference is echoed
/// on success, an error printed otherwise; exit 1 if any failed.
fn each(
    host: &Host,
    refs: &[String],
    mut verb: impl FnMut(&ContainerId) -> Result<Option<String>>,
) -> i32 {
    let mut status = 0;
    for reference in refs {
        match host
            .resolve(reference)
            .map_err(anyhow::Error::from)
            .and_then(|id| verb(&id))
        {
            Ok(Some(line)) => println!("{line}"),
            Ok(None) => println!("{reference}"),
            Err(e) => {
                eprintln!("isola: error: {reference}: {e:#}");
                status = 1;
            }
        }
    }
    status
}

pub fn start(host: &Host, args: StartArgs) -> Result<i32> {
    if args.attach && args.containers.len() == 1 {
        let id = match host.resolve(&args.containers[0]) {
            Ok(id) => id,
            Err(e) => return Ok(super::fail(&e.into())),
        };
        if let Err(e) = host.prepare_restart(&id) {
            return Ok(super::fail(&e.into()));
        }
        let tty = host.record(&id).map(|r| r.tty).unwrap_or(false);
        let mut supervisor = match host.start(&id, true) {
            Ok(s) => s,
            Err(e) => return Ok(super::fail(&e.into())),
        };
        let code = attach::attach(host, &id, args.interactive, tty);
        let _ = supervisor.child.wait();
        return code.or_else(|e| Ok(super::fail(&e)));
    }
    Ok(each(host, &args.containers, |id| {
        host.prepare_restart(id)?;
        host.start(id, false)?;
        Ok(None)
    }))
}

pub fn stop(host: &Host, args: StopArgs) -> Result<i32> {
    let grace = Duration::from_secs(args.time);
    Ok(each(host, &args.containers, |id| {
        host.stop(id, grace)?;
        Ok(None)
    }))
}

pub fn restart(host: &Host, args: StopArgs) -> Result<i32> {
    let grace = Duration::from_secs(args.time);
    Ok(each(host, &args.containers, |id| {
        host.stop(id, grace)?;
        host.prepare_restart(id)?;
        host.start(id, false)?;
        Ok(None)
    }))
}

pub fn kill(host: &Host, args: KillArgs) -> Result<i32> {
    Ok(each(host, &args.containers, |id| {
        host.kill(id, &args.signal)?;
        Ok(None)
    }))
}

pub fn rm(host: &Host, args: RmArgs) -> Result<i32> {
    Ok(each(host, &args.containers, |id| {
        host.remove(id, args.force)?;
        Ok(None)
    }))
}

pub fn wait(host: &Host, args: WaitArgs) -> Result<i32> {
    Ok(each(host, &args.containers, |id| {
        Ok(Some(host.wait(id)?.to_string()))
    }))
}

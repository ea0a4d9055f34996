//! Container commands: `run`, `create`, `start`, `ps`, `logs`, `exec`,
//! `stop`, `kill`, `rm`, `wait`, `inspect`, `stats`, `restart`. Each parses flags
//! and calls the host runtime, which holds the lifecycle.

mod attach;
mod exec;
mod flags;
mod inspect;
mod logs;
mod manage;
mod ps;
mod run;
mod stats;
mod supervise;
mod terminal;

use anyhow::Context;
use clap::Subcommand;
use isola_host::Host;

use crate::global::GlobalOpts;

#[derive(Subcommand)]
pub enum Command {
    /// Create and start a container from an image
    Run(run::RunArgs),
    /// Create a container without starting it
    Create(run::CreateArgs),
    /// Start created or stopped containers
    Start(manage::StartArgs),
    /// List containers
    Ps(ps::PsArgs),
    /// Print a container's logs
    Logs(logs::LogsArgs),
    /// Run a command in a running container
    Exec(exec::ExecArgs),
    /// Stop containers: SIGTERM, then SIGKILL after a grace period
    Stop(manage::StopArgs),
    /// Send a signal to containers
    Kill(manage::KillArgs),
    /// Remove containers
    Rm(manage::RmArgs),
    /// Block until containers stop, then print their exit codes
    Wait(manage::WaitArgs),
    /// Restart containers
    Restart(manage::StopArgs),
    /// Show containers' details as JSON
    Inspect(inspect::InspectArgs),
    /// Show running containers' CPU, memory and process count
    Stats(stats::StatsArgs),
    /// (internal) the per-container supervisor
    #[command(name = "__supervise", hide = true)]
    Supervise(supervise::SuperviseArgs),
}

/// Runs one container command; returns the process exit status.
pub fn run(global: &GlobalOpts, command: Command) -> anyhow::Result<i32> {
    if let Command::Supervise(args) = command {
        return supervise::run(global, args);
    }
    let host = open_host(global)?;
    match command {
        Command::Run(args) => run::run(&host, args),
        Command::Create(args) => run::create(&host, args),
        Command::Start(args) => manage::start(&host, args),
        Command::Ps(args) => ps::run(&host, args),
        Command::Logs(args) => logs::run(&host, args),
        Command::Exec(args) => exec::run(&host, args),
        Command::Stop(args) => manage::stop(&host, args),
        Command::Kill(args) => manage::kill(&host, args),
        Command::Rm(args) => manage::rm(&host, args),
        Command::Wait(args) => manage::wait(&host, args),
        Command::Restart(args) => manage::restart(&host, args),
        Command::Inspect(args) => inspect::run(&host, args),
        Command::Stats(args) => stats::run(&host, args),
        Command::Supervise(_) => unreachable!("handled above"),
    }
}

fn open_host(global: &GlobalOpts) -> anyhow::Result<Host> {
    let exe = std::env::current_exe().context("finding the isola binary")?;
    Host::open(&global.root, exe)
        .map(|h| h.with_supervisor_log_level(&global.log_level))
        .with_context(|| format!("opening {}", global.root.display()))
}

/// docker's convention: a failure of isola itself is 125 (126/127 when the
/// container's program cannot run), and the message goes to stderr.
pub fn fail(e: &anyhow::Error) -> i32 {
    eprintln!("isola: error: {e:#}");
    e.downcast_ref::<isola_host::Error>()
        .map_or(125, isola_host::Error::docker_exit_code)
}

//! `isola __supervise ID`: the per-container supervisor process, started by
//! `run`/`start` (see `isola_host::supervisor`). Its stdout at birth is the
//! report pipe to the starting CLI; its own log goes to the container's
//! `supervisor.log`.

use std::fs::File;
use std::os::fd::OwnedFd;

use anyhow::{Context, Result};
use clap::Args;
use isola_host::paths::ContainerPaths;
use isola_host::supervisor::{self, SupervisorOptions};
use isola_host::ContainerId;

use crate::global::GlobalOpts;

#[derive(Args, Debug)]
pub struct SuperviseArgs {
    id: String,
    /// Start the container once the first client attached
    #[arg(long)]
    wait_attach: bool,
}

pub fn run(global: &GlobalOpts, args: SuperviseArgs) -> Result<i32> {
    let id = ContainerId::try_from(args.id).context("container ID")?;
    let paths = ContainerPaths::new(&global.root, &id);
    if let Ok(log) = File::options()
        .create(true)
        .append(true)
        .open(paths.supervisor_log())
    {
        let filter =
            tracing_subscriber::EnvFilter::try_new(crate::global::quiet_runner(&global.log_level))
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(log))
            .try_init();
    }
    // The report pipe is our stdout at birth; keep it apart from fd 1,
    // which becomes the container's for the runner's create.
    let report: OwnedFd = rustix::io::dup(std::io::stdout()).context("report pipe")?;
    let options = SupervisorOptions {
        root: global.root.clone(),
        id,
        wait_attach: args.wait_attach,
    };
    match supervisor::run(&options, File::from(report)) {
        Ok(code) => Ok(code),
        Err(e) => {
            tracing::error!("{e}");
            Ok(125)
        }
    }
}

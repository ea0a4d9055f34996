//! One module per runc verb; each turns parsed flags into runner calls and
//! returns the process exit code.

mod create;
mod delete;
mod events;
mod exec;
mod features;
mod kill;
mod list;
mod ps;
mod run;
mod simple;
mod spec;
mod update;
#[cfg(feature = "vm")]
mod vm;
mod wait;

use anyhow::{bail, Context, Result};
use isola_container::Runner;

use crate::cli::{Cli, Command};

/// Runs the command and returns the exit code.
pub fn dispatch(cli: Cli) -> Result<i32> {
    if cli.systemd_cgroup {
        bail!("--systemd-cgroup is not supported: isola-runtime manages cgroups through cgroupfs");
    }
    if cli.rootless.as_deref().is_some_and(|r| r == "true") {
        bail!("rootless mode is not supported");
    }
    let runner = || {
        Runner::new(&cli.root)
            .with_context(|| format!("cannot use state root {}", cli.root.display()))
    };
    #[cfg(feature = "vm")]
    if !matches!(cli.command, Command::Spec(_) | Command::Features) {
        if let Some(code) = vm::dispatch(&cli, &runner()?)? {
            return Ok(code);
        }
    }
    match cli.command {
        Command::Spec(args) => spec::spec(args),
        Command::Features => features::features(),
        Command::Create(args) => create::create(&runner()?, &cli.config, args),
        Command::Run(args) => run::run(&runner()?, &cli.config, args),
        Command::Start(args) => simple::start(&runner()?, &args.id),
        Command::State(args) => simple::state(&runner()?, &args.id),
        Command::Pause(args) => simple::pause(&runner()?, &args.id),
        Command::Resume(args) => simple::resume(&runner()?, &args.id),
        Command::Kill(args) => kill::kill(&runner()?, args),
        Command::Delete(args) => delete::delete(&runner()?, args),
        Command::Exec(args) => exec::exec(&runner()?, args),
        Command::Ps(args) => ps::ps(&runner()?, args),
        Command::Update(args) => update::update(&runner()?, args),
        Command::Events(args) => events::events(&runner()?, args),
        Command::List(args) => list::list(&runner()?, args),
        #[cfg(feature = "vm")]
        Command::VmShim(_) | Command::VmExecShim(_) => {
            bail!("internal error: a shim command was not dispatched")
        }
    }
}

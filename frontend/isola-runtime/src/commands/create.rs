//! `create`: the container's init is set up and waits for `start`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use isola_container::{isolation, CreateOptions, Isolation, Runner};

use crate::cli::{Create, CreateArgs};
use isola_container::config::Config;

pub fn create(runner: &Runner, config: &Path, args: Create) -> Result<i32> {
    require_process_isolation(&args.id, &args.args, config)?;
    runner
        .create(&args.id, &args.args.bundle, &options(&args.args, true))
        .with_context(|| format!("cannot create container {}", args.id))?;
    Ok(0)
}

/// Runner options from the flags `create` and `run` share.
pub fn options(args: &CreateArgs, detach: bool) -> CreateOptions {
    CreateOptions {
        console_socket: args.console_socket.clone(),
        pid_file: args.pid_file.clone(),
        preserve_fds: args.preserve_fds,
        no_pivot: args.no_pivot,
        detach,
    }
}

/// The isolation level the container gets: its annotation, `--isolation`
/// and the host's default, resolved as the host owner set them.
pub fn level(id: &str, args: &CreateArgs, config: &Path) -> Result<Isolation> {
    let spec = isola_container::load_bundle_spec(&args.bundle)
        .with_context(|| format!("cannot create container {id}"))?;
    let annotation = isolation::from_spec(&spec)
        .with_context(|| format!("annotation {}", isolation::ANNOTATION))?;
    let default = Config::load(config)?.isolation;
    Ok(isolation::resolve(annotation, args.isolation, default))
}

/// Refuses, before anything is created, a vm-level container this build
/// cannot give (the vm-level ones are taken before, by `vm::dispatch`,
/// where the build has the vm level).
pub fn require_process_isolation(id: &str, args: &CreateArgs, config: &Path) -> Result<()> {
    match level(id, args, config)? {
        Isolation::Process => Ok(()),
        Isolation::Vm => bail!(
            "cannot create container {id}: this isola-runtime was built without the vm level \
             (it is the runner inside a guest)"
        ),
    }
}

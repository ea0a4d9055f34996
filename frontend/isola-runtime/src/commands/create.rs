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

/// Refuses, before anything is created, a container that asks for an
/// isolation level this runtime cannot give yet.
pub fn require_process_isolation(id: &str, args: &CreateArgs, config: &Path) -> Result<()> {
    let spec = isola_container::load_bundle_spec(&args.bundle)
        .with_context(|| format!("cannot create container {id}"))?;
    let annotation = isolation::from_spec(&spec)
        .with_context(|| format!("annotation {}", isolation::ANNOTATION))?;
    let default = Config::load(config)?.isolation;
    match isolation::resolve(annotation, args.isolation, default) {
        Isolation::Process => Ok(()),
        Isolation::Vm => bail!(
            "cannot create container {id}: vm isolation is not available in the OCI runtime \
             yet; `isola run --isolation=vm` has it \
             (asked for by annotation: {annotation:?}, --isolation: {:?}, config default: {default:?})",
            args.isolation
        ),
    }
}

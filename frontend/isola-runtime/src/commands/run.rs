//! `run`: `create` + `start`, then (unless `--detach`) wait for the
//! container, forward signals to it, delete it and exit with its status.

use std::path::Path;

use anyhow::{Context, Result};
use isola_container::Runner;

use super::create::{options, require_process_isolation};
use super::wait::Forwarder;
use crate::cli::Run;

pub fn run(runner: &Runner, config: &Path, args: Run) -> Result<i32> {
    let id = &args.id;
    require_process_isolation(id, &args.args, config)?;
    let state = runner
        .create(id, &args.args.bundle, &options(&args.args, args.detach))
        .with_context(|| format!("cannot create container {id}"))?;
    // The init process exists (and has our unblocked mask); from here on a
    // signal to us is queued for the container instead of killing us.
    let forwarder = if args.detach {
        None
    } else {
        Some(Forwarder::block()?)
    };
    if let Err(e) = runner.start(id) {
        if let Err(cleanup) = runner.delete(id, true) {
            tracing::warn!("cannot delete container {id} after a failed start: {cleanup}");
        }
        return Err(e).with_context(|| format!("cannot start container {id}"));
    }
    let Some(forwarder) = forwarder else {
        return Ok(0);
    };
    let code = forwarder.wait(state.pid)?;
    if !args.keep {
        runner
            .delete(id, true)
            .with_context(|| format!("cannot delete container {id} after it exited"))?;
    }
    Ok(code)
}

//! `run`: `create` + `start`, then (unless `--detach`) wait for the
//! container, forward signals to it, delete it and exit with its status.

use std::path::Path;

use anyhow::{Context, Result};
use isola_container::Runner;

use super::create::{options, require_process_isolation};
use super::wait::forward_signals_until_exit;
use crate::cli::Run;

pub fn run(runner: &Runner, config: &Path, args: Run) -> Result<i32> {
    let id = &args.id;
    require_process_isolation(id, &args.args, config)?;
    let state = runner
        .create(id, &args.args.bundle, &options(&args.args, args.detach))
        .with_context(|| format!("cannot create container {id}"))?;
    if let Err(e) = runner.start(id) {
        if let Err(cleanup) = runner.delete(id, true) {
            tracing::warn!("cannot delete container {id} after a failed start: {cleanup}");
        }
        return Err(e).with_context(|| format!("cannot start container {id}"));
    }
    if args.detach {
        return Ok(0);
    }
    let code = forward_signals_until_exit(state.pid)?;
    if !args.keep {
        runner
            .delete(id, true)
            .with_context(|| format!("cannot delete container {id} after it exited"))?;
    }
    Ok(code)
}

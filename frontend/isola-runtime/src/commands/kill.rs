//! `kill`: a signal to the init process, or with `--all` to all of them.

use anyhow::{Context, Result};
use isola_container::Runner;

use crate::cli::Kill;

pub fn kill(runner: &Runner, args: Kill) -> Result<i32> {
    runner
        .kill(&args.id, &args.signal, args.all)
        .with_context(|| format!("cannot signal container {}", args.id))?;
    Ok(0)
}

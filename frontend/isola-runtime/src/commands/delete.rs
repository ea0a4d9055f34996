//! `delete`: removes a container; `--force` also kills it, and succeeds when
//! it is already gone (what containerd and podman expect of runc).

use anyhow::{Context, Result};
use isola_container::{Error, Runner};

use crate::cli::Delete;

pub fn delete(runner: &Runner, args: Delete) -> Result<i32> {
    match runner.delete(&args.id, args.force) {
        Ok(()) => Ok(0),
        Err(Error::NotFound(_)) if args.force => Ok(0),
        Err(e) => Err(e).with_context(|| format!("cannot delete container {}", args.id)),
    }
}

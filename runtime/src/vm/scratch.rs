//! The writable layer of a vm container that may start again: a sparse
//! ext4 image in the container's directory, the guest's overlay upper
//! layer. It survives the VM (a stopped container that starts again keeps
//! its changes, as docker's do) and keeps large writes out of guest RAM.
//! A `--rm` container never starts again; its upper layer stays in guest
//! memory and costs no mkfs.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// Apparent size of the image; only what the container writes takes space.
pub const SCRATCH_BYTES: u64 = 8 << 30;

/// Makes the empty ext4 image at `path`.
pub fn make_scratch(path: &Path) -> Result<()> {
    let file = std::fs::File::create(path).map_err(Error::io(path))?;
    file.set_len(SCRATCH_BYTES).map_err(Error::io(path))?;
    drop(file);
    // No journal (the layer dies with a crash of the container anyway), no
    // reserved blocks, inode tables left for the guest not to zero either
    // (it mounts with noinit_itable).
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-O", "^has_journal", "-m", "0"])
        .args(["-E", "lazy_itable_init=1,lazy_journal_init=1"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Vm(format!("running mkfs.ext4 (e2fsprogs): {e}")))?;
    if !out.status.success() {
        return Err(Error::Vm(format!(
            "mkfs.ext4 of {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

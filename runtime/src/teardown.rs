//! Removing a container for good: its processes and cgroup (the runner),
//! its root filesystem mount, then its files and name. Every step tolerates
//! "already gone", so `rm` finishes whatever a crash left half done.

use std::path::Path;

use isola_container::Runner;
use rustix::mount::{unmount, UnmountFlags};

use crate::error::{Error, Result};
use crate::id::ContainerId;
use crate::paths::ContainerPaths;
use crate::state::StateStore;

/// Tears down container `id` under `root`.
pub fn teardown(root: &Path, store: &StateStore, runner: &Runner, id: &ContainerId) -> Result<()> {
    match runner.delete(id.as_str(), true) {
        Ok(()) | Err(isola_container::Error::NotFound(_)) => {}
        Err(e) => return Err(Error::Runner(e)),
    }
    let paths = ContainerPaths::new(root, id);
    unmount_if_mounted(&paths.rootfs())?;
    store.remove(id)
}

/// Detaches the mount at `path`, if one is there.
pub fn unmount_if_mounted(path: &Path) -> Result<()> {
    loop {
        match unmount(path, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW) {
            Ok(()) => continue, // stacked mounts: peel them all
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e) => return Err(Error::io(path)(e.into())),
        }
    }
}

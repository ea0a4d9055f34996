//! Where each container's files live under the `--root` directory.
//!
//! ```text
//! <root>/containers/<id>/state.json    the record (state::StateStore)
//! <root>/containers/<id>/bundle/       config.json + rootfs (the overlay mount)
//! <root>/containers/<id>/upper, work   the overlay's writable layer
//! <root>/containers/<id>/etc/          generated hostname, hosts, resolv.conf
//! <root>/containers/<id>/container.log json-file logs (+ .1, .2 rotated)
//! <root>/containers/<id>/attach.sock   the supervisor's attach socket
//! <root>/containers/<id>/console.sock  where the runner sends a tty master
//! <root>/containers/<id>/supervisor.log the supervisor's own log
//! <root>/runner/<id>/                  the runner's (libcontainer's) state
//! ```
//!
//! Unix socket paths are limited to 107 bytes, so a `--root` deeper than
//! about 20 characters beyond `/var/lib/isola` is refused up front.

use std::path::{Path, PathBuf};

use crate::id::ContainerId;

/// Paths of one container.
#[derive(Debug, Clone)]
pub struct ContainerPaths {
    pub dir: PathBuf,
}

impl ContainerPaths {
    pub fn new(root: &Path, id: &ContainerId) -> ContainerPaths {
        ContainerPaths {
            dir: root.join("containers").join(id.as_str()),
        }
    }
    pub fn bundle(&self) -> PathBuf {
        self.dir.join("bundle")
    }
    pub fn config(&self) -> PathBuf {
        self.bundle().join("config.json")
    }
    pub fn rootfs(&self) -> PathBuf {
        self.bundle().join("rootfs")
    }
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    pub fn etc(&self) -> PathBuf {
        self.dir.join("etc")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("container.log")
    }
    pub fn attach_socket(&self) -> PathBuf {
        self.dir.join("attach.sock")
    }
    pub fn console_socket(&self) -> PathBuf {
        self.dir.join("console.sock")
    }
    pub fn supervisor_log(&self) -> PathBuf {
        self.dir.join("supervisor.log")
    }
}

/// The runner's state root under `root`.
pub fn runner_root(root: &Path) -> PathBuf {
    root.join("runner")
}

/// The longest socket path a root leads to, checked against the kernel's
/// limit for `sun_path`.
pub fn check_root_length(root: &Path) -> Result<(), String> {
    let longest = root
        .join("containers")
        .join("0".repeat(64))
        .join("console.sock");
    let len = longest.as_os_str().len();
    if len > 107 {
        return Err(format!(
            "--root {} is too long: container sockets under it would be {len} bytes, the kernel allows 107",
            root.display()
        ));
    }
    Ok(())
}

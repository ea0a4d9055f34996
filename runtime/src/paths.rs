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
//! Unix socket paths are limited to 107 bytes, which a deep `--root`
//! exceeds; sockets are therefore bound and reached through a short
//! `/proc/self/fd/<dir fd>/<name>` path (see [`SocketDir`]).

use std::path::{Path, PathBuf};

use crate::id::ContainerId;

pub const ATTACH_SOCKET: &str = "attach.sock";
pub const CONSOLE_SOCKET: &str = "console.sock";

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
        self.dir.join(ATTACH_SOCKET)
    }
    pub fn console_socket(&self) -> PathBuf {
        self.dir.join(CONSOLE_SOCKET)
    }
    pub fn supervisor_log(&self) -> PathBuf {
        self.dir.join("supervisor.log")
    }
}

/// The runner's state root under `root`.
pub fn runner_root(root: &Path) -> PathBuf {
    root.join("runner")
}

/// A directory held open so that a socket inside it has a short name,
/// `/proc/self/fd/<fd>/<name>`, however long the directory's own path. The
/// name is valid only in this process, while this value lives.
#[derive(Debug)]
pub struct SocketDir {
    dir: std::fs::File,
}

impl SocketDir {
    pub fn open(dir: &Path) -> std::io::Result<SocketDir> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::DIRECTORY.bits() as i32)
            .open(dir)?;
        Ok(SocketDir { dir })
    }

    /// The short path of `name` inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!("/proc/self/fd/{}/{name}", self.dir.as_raw_fd()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::{UnixListener, UnixStream};

    #[test]
    fn sockets_work_under_a_very_deep_directory() {
        let deep = std::env::temp_dir()
            .join(format!("isola-deep-{}", std::process::id()))
            .join("d".repeat(100))
            .join("e".repeat(100));
        std::fs::create_dir_all(&deep).unwrap();
        let dir = SocketDir::open(&deep).unwrap();
        let listener = UnixListener::bind(dir.path("attach.sock")).unwrap();
        assert!(deep.join("attach.sock").exists());
        let _client = UnixStream::connect(dir.path("attach.sock")).unwrap();
        assert!(listener.accept().is_ok());
        std::fs::remove_dir_all(
            std::env::temp_dir().join(format!("isola-deep-{}", std::process::id())),
        )
        .unwrap();
    }
}

//! Advisory locks (flock) on state directories, so that concurrent runtime
//! invocations (a `state` poll racing a `kill` or `delete`) never observe a
//! half-done operation or a half-written state file.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::Error;

/// Held until dropped; the kernel releases it if the process dies.
pub(crate) struct Lock {
    file: File,
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Unlock explicitly rather than just closing: processes cloned while
        // the lock was held (a container's init, an exec'd process) share
        // this open file description, and would otherwise keep the lock
        // until they exec.
        // SAFETY: flock only reads the descriptor, which `self.file` keeps open.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

impl Lock {
    /// Exclusive lock, for operations that change a container.
    pub(crate) fn exclusive(dir: &Path) -> Result<Self, Error> {
        Self::take(dir, libc::LOCK_EX)
    }

    /// Shared lock, for operations that only read.
    pub(crate) fn shared(dir: &Path) -> Result<Self, Error> {
        Self::take(dir, libc::LOCK_SH)
    }

    fn take(dir: &Path, how: libc::c_int) -> Result<Self, Error> {
        let err = |source| Error::Lock {
            path: dir.to_owned(),
            source,
        };
        // A directory opened read-only is a valid flock target, so no
        // separate lock file is left behind once the container is gone.
        let file = File::open(dir).map_err(err)?;
        loop {
            // SAFETY: flock only reads the descriptor, which `file` keeps open.
            let rc = unsafe { libc::flock(file.as_raw_fd(), how) };
            if rc == 0 {
                return Ok(Self { file });
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(err(e));
            }
        }
    }
}

//! Starting a shim the way runc starts a container's init: the caller's
//! stdio is passed on, and the caller learns on a pipe of its own whether
//! the shim got as far as it must (`created`, `started`) or why not.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Child, Command};

use rustix::io::{fcntl_getfd, fcntl_setfd, FdFlags};
use rustix::pipe::{pipe_with, PipeFlags};

use crate::error::{Error, Result};

/// Spawns `shim` with `--report-fd N` appended and waits for its report,
/// which must be `expected`. On anything else the shim is reaped and its
/// reason returned.
pub fn spawn(mut shim: Command, expected: &str) -> Result<Child> {
    let (read, write) = pipe_with(PipeFlags::CLOEXEC).map_err(|e| Error::io("pipe")(e.into()))?;
    // Only the write end crosses the exec.
    fcntl_setfd(&write, FdFlags::empty()).map_err(|e| Error::io("pipe")(e.into()))?;
    shim.arg("--report-fd").arg(write.as_raw_fd().to_string());
    let spawned = shim.spawn();
    drop(write);
    let mut child = spawned.map_err(Error::io(shim.get_program()))?;
    let mut line = String::new();
    let _ = BufReader::new(File::from(read)).read_line(&mut line);
    match line.trim_end() {
        l if l == expected => Ok(child),
        other => {
            let _ = child.wait();
            Err(Error::Vm(
                other
                    .strip_prefix("error: ")
                    .unwrap_or("the shim died before it reported")
                    .to_owned(),
            ))
        }
    }
}

/// The report pipe a shim was given.
pub fn report_pipe(fd: RawFd) -> Result<File> {
    let bad = || Error::Invalid(format!("--report-fd {fd} is not an open descriptor"));
    if fd < 3 {
        return Err(bad());
    }
    // SAFETY: only checks that `fd` is open; the borrow ends with the call.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    fcntl_getfd(borrowed).map_err(|_| bad())?;
    // SAFETY: `fd` is open (checked above) and was made for this process
    // alone by its parent (see `spawn`); nothing else here owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    fcntl_setfd(&owned, FdFlags::CLOEXEC).map_err(|e| Error::io("report pipe")(e.into()))?;
    Ok(File::from(owned))
}

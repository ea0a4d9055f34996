//! The container's stdio as the supervisor holds it: pipes (stdin only with
//! `-i`), or, with `-t`, the master of a terminal the runner creates inside
//! the container and hands over through the console socket.

use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::Path;

use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use rustix::pipe::{pipe_with, PipeFlags};

/// The supervisor's ends of the container's stdio.
pub enum HostEnds {
    /// Pipes (process level) or the guest's stdio streams (vm level; a
    /// terminal there has no separate stderr).
    Pipes {
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: Option<OwnedFd>,
    },
    Terminal,
}

/// The container's ends, to be installed as the supervisor's fds 0-2 just
/// for the runner's `create` (its init inherits them).
pub struct ContainerEnds {
    pub stdin: Option<OwnedFd>,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// Makes the pipes for a container without a terminal.
pub fn pipes(interactive: bool) -> std::io::Result<(HostEnds, ContainerEnds)> {
    let (stdout_r, stdout_w) = pipe_with(PipeFlags::CLOEXEC)?;
    let (stderr_r, stderr_w) = pipe_with(PipeFlags::CLOEXEC)?;
    let (stdin_host, stdin_ctr) = if interactive {
        let (r, w) = pipe_with(PipeFlags::CLOEXEC)?;
        (Some(w), Some(r))
    } else {
        (None, None)
    };
    Ok((
        HostEnds::Pipes {
            stdin: stdin_host,
            stdout: stdout_r,
            stderr: Some(stderr_r),
        },
        ContainerEnds {
            stdin: stdin_ctr,
            stdout: stdout_w,
            stderr: stderr_w,
        },
    ))
}

/// Points fds 0-2 at the container's ends (or /dev/null where it has none).
pub fn install(ends: &ContainerEnds, devnull: &OwnedFd) -> std::io::Result<()> {
    rustix::stdio::dup2_stdin(ends.stdin.as_ref().unwrap_or(devnull))?;
    rustix::stdio::dup2_stdout(&ends.stdout)?;
    rustix::stdio::dup2_stderr(&ends.stderr)?;
    Ok(())
}

/// Points fds 0-2 at /dev/null, so that the container's processes are the
/// only writers left on its pipes (their end of file is the container's).
pub fn detach(devnull: &OwnedFd) -> std::io::Result<()> {
    rustix::stdio::dup2_stdin(devnull)?;
    rustix::stdio::dup2_stdout(devnull)?;
    rustix::stdio::dup2_stderr(devnull)?;
    Ok(())
}

/// Listens on the console socket; the runner connects during `create`.
pub fn console_listener(path: &Path) -> std::io::Result<UnixListener> {
    let _ = std::fs::remove_file(path);
    UnixListener::bind(path)
}

/// Accepts the runner's connection and receives the terminal master fd
/// (SCM_RIGHTS).
pub fn receive_master(listener: &UnixListener) -> std::io::Result<OwnedFd> {
    let (stream, _) = listener.accept()?;
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    recvmsg(&stream, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)?;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = message {
            if let Some(fd) = fds.next() {
                return Ok(fd);
            }
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "the console socket peer sent no terminal fd",
    ))
}

/// Sets a terminal's size (TIOCSWINSZ on its master).
pub fn resize(master: &impl std::os::fd::AsFd, rows: u16, cols: u16) {
    let size = rustix::termios::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    if let Err(e) = rustix::termios::tcsetwinsize(master, size) {
        tracing::debug!("resize: {e}");
    }
}

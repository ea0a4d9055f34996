//! Waiting in the foreground for a container process (`run`, `exec`),
//! forwarding the signals we get to it, as runc does.

use anyhow::{bail, Result};
use nix::errno::Errno;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Holds every signal for synchronous handling, from `block` on; signals
/// that arrive meanwhile stay pending and are forwarded by `wait`.
pub struct Forwarder(SigSet);

impl Forwarder {
    /// Blocks all signals of this (single-threaded) process. Processes
    /// cloned afterwards inherit the mask, so block only once the
    /// container's process exists.
    pub fn block() -> Result<Self> {
        let all = SigSet::all();
        all.thread_block()?;
        Ok(Self(all))
    }

    /// Waits for our child `pid` to end, forwarding the signals we get to
    /// it, and returns its status as a shell shows it (the exit code, or
    /// 128 + the signal that killed it).
    pub fn wait(&self, pid: i32) -> Result<i32> {
        let pid = Pid::from_raw(pid);
        loop {
            // Reap first: the child may have ended before the mask was set,
            // and that SIGCHLD is gone.
            if let Some(code) = reap(pid)? {
                return Ok(code);
            }
            match self.0.wait()? {
                Signal::SIGCHLD => {}
                // Go runtimes send SIGURG to themselves; runc does not forward
                // it. We have no terminal of our own to resize on SIGWINCH.
                Signal::SIGURG | Signal::SIGWINCH => {}
                sig => {
                    if let Err(e) = kill(pid, sig) {
                        tracing::warn!("cannot forward {sig} to {pid}: {e}");
                    }
                }
            }
        }
    }
}

fn reap(pid: Pid) -> Result<Option<i32>> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, code)) if p == pid => return Ok(Some(code)),
            Ok(WaitStatus::Signaled(p, sig, _)) if p == pid => return Ok(Some(128 + sig as i32)),
            Ok(WaitStatus::StillAlive) => return Ok(None),
            // Some other child of ours (a hook, a helper) ended.
            Ok(_) | Err(Errno::EINTR) => {}
            Err(Errno::ECHILD) => bail!("process {pid} is not a child of this runtime"),
            Err(e) => return Err(e.into()),
        }
    }
}

//! Child reaping without stealing anyone's exit status.
//!
//! As PID 1 the agent inherits every orphan in the guest and must reap them,
//! or they pile up as zombies. But [`crate::exec`] also waits for its own
//! children, and a `waitpid(-1)` reaper racing a `waitpid(pid)` caller would
//! steal statuses. So one thread owns *all* reaping, and an exec hands it its
//! child's pid to get the status back:
//!
//! - [`Children::spawn`] forks while holding the registry lock and registers
//!   the new pid before letting go, so the reaper can never look the pid up
//!   before it is registered, however fast the child exits.
//! - The reaper first *peeks* at a zombie with `waitid(P_ALL, WNOWAIT)`
//!   (which leaves it unreaped, so its pid cannot be reused), then takes the
//!   lock, reaps exactly that pid and either delivers the status to the
//!   registered waiter or drops it as an orphan's.
//!
//! Every process in the agent must therefore create children only through
//! [`Children::spawn`] (std's `Command` waits on its own and would race).

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use crate::sys;

/// How a child ended, as the protocol reports it: the exit code, or
/// 128 + the signal number when a signal killed it.
pub type ExitStatus = i32;

struct Slot {
    status: Option<ExitStatus>,
    /// Written (one byte) when the status arrives, so a caller that waits in
    /// poll(2) on other descriptors wakes up too.
    notify: OwnedFd,
}

#[derive(Default)]
struct Registry {
    slots: HashMap<libc::pid_t, Slot>,
    /// Statuses of recently reaped orphans, for an [`Children::adopt`] that
    /// comes after the orphan ended (a runner's detached process that
    /// exited at once). Bounded: the oldest are forgotten.
    orphans: HashMap<libc::pid_t, ExitStatus>,
    orphan_order: std::collections::VecDeque<libc::pid_t>,
    /// Bumped on every spawn: tells an idle reaper (no children) that it has
    /// something to wait for again.
    generation: u64,
}

pub struct Children {
    registry: Mutex<Registry>,
    changed: Condvar,
}

static CHILDREN: OnceLock<Children> = OnceLock::new();

/// How many orphans' statuses are remembered.
const MAX_ORPHANS: usize = 1024;

impl Children {
    /// The process-wide registry; starts the reaper thread on first use.
    pub fn global() -> &'static Children {
        CHILDREN.get_or_init(|| {
            let spawned = std::thread::Builder::new()
                .name("reaper".into())
                .spawn(|| Children::global().reap_forever());
            if let Err(e) = spawned {
                // Without a reaper, exec'd children's statuses never arrive;
                // this only happens when the process cannot create threads.
                tracing::error!("cannot start the reaper thread: {e}");
            }
            Children {
                registry: Mutex::new(Registry::default()),
                changed: Condvar::new(),
            }
        })
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A poisoned lock only means another thread panicked while holding
        // it; the map itself is still consistent (every update is one
        // insert/remove), so keep going rather than take the agent down.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `fork` (which must return the new child's pid, in the parent only)
    /// with the registry locked, and register the pid; `notify` gets a byte
    /// when the child's status is known.
    pub fn spawn<F>(&self, notify: OwnedFd, fork: F) -> io::Result<libc::pid_t>
    where
        F: FnOnce() -> io::Result<libc::pid_t>,
    {
        let mut reg = self.lock();
        let pid = fork()?;
        reg.slots.insert(
            pid,
            Slot {
                status: None,
                notify,
            },
        );
        reg.generation = reg.generation.wrapping_add(1);
        drop(reg);
        self.changed.notify_all();
        Ok(pid)
    }

    /// Registers `pid`, a process that became our child by reparenting (a
    /// runner's container init or detached exec), so [`Children::wait`]
    /// gets its status; one that already ended is found among the orphans.
    pub fn adopt(&self, pid: libc::pid_t, notify: OwnedFd) {
        let mut reg = self.lock();
        // The reaper takes this lock before it reaps, so whether `pid` is
        // still our child cannot change until we are done. If it is (running,
        // or a zombie not yet reaped), a remembered status for its pid is a
        // former holder's (pids are reused) and the reaper delivers the real
        // one; if it is not, it ended before this call and its status is the
        // one remembered.
        let remembered = reg.orphans.remove(&pid);
        let status = if is_our_child(pid) {
            None
        } else if remembered.is_some() {
            remembered
        } else {
            // Neither running nor remembered: a status we can never get.
            // Say so rather than leave the waiter blocked for ever.
            tracing::error!("adopted process {pid} is neither our child nor a reaped orphan");
            Some(128 + libc::SIGKILL)
        };
        if status.is_some() {
            let _ = sys::write(&notify, &[1]);
        }
        reg.slots.insert(pid, Slot { status, notify });
        reg.generation = reg.generation.wrapping_add(1);
        drop(reg);
        self.changed.notify_all();
    }

    /// Block until `pid` (registered through [`Children::spawn`]) has ended,
    /// and forget it.
    pub fn wait(&self, pid: libc::pid_t) -> ExitStatus {
        let mut reg = self.lock();
        loop {
            match reg.slots.get(&pid).map(|s| s.status) {
                Some(Some(status)) => {
                    reg.slots.remove(&pid);
                    return status;
                }
                Some(None) => {}
                None => {
                    // Not ours (a caller bug); a status we can never get.
                    tracing::error!("wait for unregistered child {pid}");
                    return 128 + libc::SIGKILL;
                }
            }
            reg = self.changed.wait(reg).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn reap_forever(&self) -> ! {
        loop {
            let generation = self.lock().generation;
            match peek_zombie() {
                Ok(pid) => self.reap(pid),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                    // No children at all. Orphans only reach us through a
                    // child of ours dying, so sleep until the next spawn (the
                    // timeout is a safety net, not the mechanism).
                    let reg = self.lock();
                    if reg.generation == generation {
                        let _unused = self
                            .changed
                            .wait_timeout(reg, Duration::from_secs(5))
                            .unwrap_or_else(|p| p.into_inner());
                    }
                }
                Err(e) => {
                    tracing::error!("waitid: {e}");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }

    fn reap(&self, pid: libc::pid_t) {
        let mut reg = self.lock();
        let mut raw = 0;
        // SAFETY: `raw` is a valid out-pointer; `pid` is a zombie child we
        // just peeked at and nobody else reaps, so this returns at once.
        let got = unsafe { libc::waitpid(pid, &mut raw, libc::__WALL) };
        if got != pid {
            tracing::error!(
                "waitpid({pid}) after peeking: {}",
                io::Error::last_os_error()
            );
            return;
        }
        let status = decode(raw);
        match reg.slots.get_mut(&pid) {
            Some(slot) => {
                slot.status = Some(status);
                if let Err(e) = sys::write(&slot.notify, &[1]) {
                    tracing::warn!("notify waiter of child {pid}: {e}");
                }
                drop(reg);
                self.changed.notify_all();
            }
            None => {
                tracing::debug!("reaped orphan {pid} (status {status})");
                if reg.orphans.len() >= MAX_ORPHANS {
                    if let Some(old) = reg.orphan_order.pop_front() {
                        reg.orphans.remove(&old);
                    }
                }
                reg.orphans.insert(pid, status);
                reg.orphan_order.push_back(pid);
            }
        }
    }
}

/// Wait for any child to become a zombie and return its pid, leaving it
/// unreaped.
fn peek_zombie() -> io::Result<libc::pid_t> {
    // SAFETY: an all-zero siginfo_t is a valid value for waitid to fill.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid out-pointer for the duration of the call.
    sys::cvt(unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WNOWAIT | libc::__WALL,
        )
    })?;
    // SAFETY: waitid succeeded for WEXITED, so the kernel filled the
    // SIGCHLD fields of the union, si_pid among them.
    Ok(unsafe { info.si_pid() })
}

/// Whether `pid` is a child of ours that has not been reaped (running, or
/// a zombie), without reaping it.
fn is_our_child(pid: libc::pid_t) -> bool {
    // SAFETY: an all-zero siginfo_t is a valid value for waitid to fill.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid out-pointer for the duration of the call;
    // WNOWAIT | WNOHANG neither reaps nor blocks.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT | libc::__WALL,
        )
    };
    rc == 0
}

fn decode(raw: libc::c_int) -> ExitStatus {
    if libc::WIFEXITED(raw) {
        libc::WEXITSTATUS(raw)
    } else if libc::WIFSIGNALED(raw) {
        128 + libc::WTERMSIG(raw)
    } else {
        // Only WEXITED was asked for; anything else is a kernel surprise.
        255
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child that is not registered (as a runner's reparented process
    /// is not): it waits for a signal, or exits at once with `code`.
    fn fork_unregistered(code: Option<i32>) -> libc::pid_t {
        // SAFETY: the child calls only async-signal-safe functions (pause,
        // _exit) before it ends.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            match code {
                // SAFETY: _exit ends the child without running any of the
                // parent's destructors.
                Some(code) => unsafe { libc::_exit(code) },
                None => loop {
                    // SAFETY: pause only waits for a signal.
                    unsafe { libc::pause() };
                },
            }
        }
        pid
    }

    #[test]
    fn a_live_process_is_not_given_a_former_holders_status_of_its_pid() {
        let children = Children::global();
        let pid = fork_unregistered(None);
        {
            // An earlier process with this pid ended as an orphan.
            let mut reg = children.lock();
            reg.orphans.insert(pid, 3);
            reg.orphan_order.push_back(pid);
        }
        let (_r, w) = sys::pipe().unwrap();
        children.adopt(pid, w);
        // SAFETY: kill(2) of the child forked above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        assert_eq!(children.wait(pid), 128 + libc::SIGKILL);
    }

    #[test]
    fn a_process_that_ended_before_its_adoption_has_its_own_status() {
        let children = Children::global();
        // Wake the reaper (it may be asleep with no children).
        children.lock().generation += 1;
        children.changed.notify_all();
        let pid = fork_unregistered(Some(7));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !children.lock().orphans.contains_key(&pid) {
            assert!(std::time::Instant::now() < deadline, "never reaped");
            std::thread::sleep(Duration::from_millis(10));
        }
        let (_r, w) = sys::pipe().unwrap();
        children.adopt(pid, w);
        assert_eq!(children.wait(pid), 7);
    }
}

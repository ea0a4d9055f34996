//! Run one program to completion: fork/exec with the given argv, env and
//! cwd; feed it stdin; collect stdout and stderr concurrently; return its
//! exit status.
//!
//! Contract (what the host can rely on):
//! - A program that could not be started at all (not found, not
//!   executable, bad cwd) is an [`ExecError`], which the service turns into
//!   `Response::Error` with the reason. `status` is only ever the status of a
//!   program that actually ran, so 127 from a shell is not confused with ours.
//! - `argv[0]` without a `/` is looked up in `PATH` from `env` (or a default
//!   path when `env` has none), like `execvp`.
//! - The child gets exactly `env` (nothing inherited from the agent), its
//!   own session (no controlling terminal), default signal dispositions and
//!   an empty signal mask.
//! - Each of stdout and stderr is kept up to [`OUTPUT_CAP`] bytes; anything
//!   beyond is read and dropped, so a chatty child never blocks on a full
//!   pipe.
//! - The call returns once the child has exited and its pipes are drained.
//!   A background process that keeps the pipes open does not hold it up;
//!   whatever it writes after the child's exit is lost.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use isola_protocol::ExecResult;

use crate::reaper::Children;
use crate::sys;

/// Per-stream output limit. Both streams travel base64-encoded (4/3 larger)
/// in one reply frame of at most `MAX_FRAME_LEN` (16 MiB): 2 × 4 MiB × 4/3
/// leaves room to spare.
pub const OUTPUT_CAP: usize = 4 << 20;

/// `PATH` used for the lookup when the request's env has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("argv is empty")]
    EmptyArgv,
    #[error("{what} contains a NUL byte")]
    Nul { what: &'static str },
    #[error("cannot create pipes for the child: {0}")]
    Pipe(#[source] io::Error),
    #[error("fork failed: {0}")]
    Fork(#[source] io::Error),
    #[error("cannot run {program:?}: {source}")]
    Exec {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot change directory to {cwd:?}: {source}")]
    Chdir {
        cwd: String,
        #[source]
        source: io::Error,
    },
    #[error("i/o error on the child's pipes: {0}")]
    Io(#[source] io::Error),
}

pub struct Command<'a> {
    pub argv: &'a [String],
    pub env: &'a [String],
    pub cwd: Option<&'a str>,
    pub stdin: &'a [u8],
}

/// Everything the child needs, built before fork: after fork the child may
/// only make async-signal-safe calls (the agent is multithreaded, another
/// thread may hold the allocator's lock), so it must not allocate.
struct Plan {
    /// Paths to try with execve, in order.
    candidates: Vec<CString>,
    _argv: Vec<CString>,
    _env: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    env_ptrs: Vec<*const libc::c_char>,
    cwd: Option<CString>,
}

/// What the child reports through the error pipe when it fails before exec.
const STAGE_CHDIR: u32 = 1;
const STAGE_EXEC: u32 = 2;

impl Plan {
    fn new(cmd: &Command<'_>) -> Result<Self, ExecError> {
        let program = cmd.argv.first().ok_or(ExecError::EmptyArgv)?;
        if program.is_empty() {
            return Err(ExecError::Exec {
                program: String::new(),
                source: io::ErrorKind::NotFound.into(),
            });
        }
        let argv = to_cstrings(cmd.argv, "argv")?;
        let env = to_cstrings(cmd.env, "env")?;
        let cwd = cmd
            .cwd
            .map(|c| CString::new(c).map_err(|_| ExecError::Nul { what: "cwd" }))
            .transpose()?;

        let candidates = if program.contains('/') {
            vec![argv[0].clone()]
        } else {
            let path = cmd
                .env
                .iter()
                .find_map(|e| e.strip_prefix("PATH="))
                .unwrap_or(DEFAULT_PATH);
            path.split(':')
                // An empty PATH entry means the current directory.
                .map(|dir| if dir.is_empty() { "." } else { dir })
                .filter_map(|dir| CString::new(format!("{dir}/{program}")).ok())
                .collect()
        };

        let mut argv_ptrs: Vec<_> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut env_ptrs: Vec<_> = env.iter().map(|e| e.as_ptr()).collect();
        env_ptrs.push(std::ptr::null());
        Ok(Plan {
            candidates,
            _argv: argv,
            _env: env,
            argv_ptrs,
            env_ptrs,
            cwd,
        })
    }
}

fn to_cstrings(items: &[String], what: &'static str) -> Result<Vec<CString>, ExecError> {
    items
        .iter()
        .map(|s| CString::new(s.as_str()).map_err(|_| ExecError::Nul { what }))
        .collect()
}

/// The parent's ends of the child's standard streams.
struct Pipes {
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
}

/// The child's ends, plus the close-on-exec error pipe.
struct ChildFds {
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
    error: OwnedFd,
}

pub fn run(cmd: &Command<'_>) -> Result<ExecResult, ExecError> {
    let plan = Plan::new(cmd)?;
    let (stdin_r, stdin_w) = sys::pipe().map_err(ExecError::Pipe)?;
    let (stdout_r, stdout_w) = sys::pipe().map_err(ExecError::Pipe)?;
    let (stderr_r, stderr_w) = sys::pipe().map_err(ExecError::Pipe)?;
    let (error_r, error_w) = sys::pipe().map_err(ExecError::Pipe)?;
    let (notify_r, notify_w) = sys::pipe().map_err(ExecError::Pipe)?;
    let child_fds = ChildFds {
        stdin: stdin_r,
        stdout: stdout_w,
        stderr: stderr_w,
        error: error_w,
    };

    let pid = start(cmd, &plan, child_fds, &error_r, notify_w)?;

    let mut pipes = Pipes {
        stdin: Some(stdin_w),
        stdout: Some(stdout_r),
        stderr: Some(stderr_r),
    };
    let collected = collect(&mut pipes, cmd.stdin, &notify_r);
    // Close our ends before waiting: a child still reading stdin gets EOF.
    drop(pipes);
    let status = Children::global().wait(pid);
    let (stdout, stderr) = collected.map_err(ExecError::Io)?;
    Ok(ExecResult {
        status,
        stdout,
        stderr,
    })
}

/// Starts `argv` with the given descriptors as its stdin, stdout and
/// stderr (they may be sockets to the host) and returns its pid; the
/// registry writes a byte to `notify` when it ends ([`Children::wait`]
/// collects the status). A program that cannot start is an error here.
pub fn spawn_with_stdio(
    argv: &[String],
    env: &[String],
    stdio: [OwnedFd; 3],
    notify: OwnedFd,
) -> Result<libc::pid_t, ExecError> {
    let cmd = Command {
        argv,
        env,
        cwd: None,
        stdin: &[],
    };
    let plan = Plan::new(&cmd)?;
    let (error_r, error_w) = sys::pipe().map_err(ExecError::Pipe)?;
    let [stdin, stdout, stderr] = stdio;
    let child_fds = ChildFds {
        stdin,
        stdout,
        stderr,
        error: error_w,
    };
    let pid = start(&cmd, &plan, child_fds, &error_r, notify)?;
    Ok(pid)
}

/// Forks the child that runs `plan` on `child_fds`, registered with the
/// reaper, and returns its pid once it has exec'd; a program that could not
/// start is reported (and its child collected) here.
fn start(
    cmd: &Command<'_>,
    plan: &Plan,
    child_fds: ChildFds,
    error_r: &OwnedFd,
    notify: OwnedFd,
) -> Result<libc::pid_t, ExecError> {
    let children = Children::global();
    let pid = children
        .spawn(notify, || {
            // SAFETY: fork(2) has no memory-safety preconditions; what
            // matters is what the child does next, see `child_after_fork`.
            match unsafe { libc::fork() } {
                -1 => Err(io::Error::last_os_error()),
                // We are the freshly forked child; this never returns.
                // SAFETY: only async-signal-safe calls follow, on data
                // prepared before the fork.
                0 => unsafe { child_after_fork(plan, &child_fds) },
                pid => Ok(pid),
            }
        })
        .map_err(ExecError::Fork)?;
    // The child holds its own copies now; closing ours is what lets us see
    // EOF on the error pipe at exec and on the child's outputs when it exits.
    drop(child_fds);
    if let Some(failure) = read_exec_failure(error_r) {
        // The child reports and _exits(127); collect that so the registry
        // forgets it.
        children.wait(pid);
        return Err(failure.into_error(cmd));
    }
    Ok(pid)
}

/// Runs in the forked child; never returns.
///
/// # Safety
/// Must only be called in a child right after fork(2). It calls only
/// async-signal-safe functions and touches no memory other than `plan` and
/// `fds`, which were fully built before the fork.
unsafe fn child_after_fork(plan: &Plan, fds: &ChildFds) -> ! {
    // SAFETY: the whole block makes plain system calls on descriptors and
    // NUL-terminated strings prepared by the parent; nothing allocates.
    unsafe {
        // Rust's runtime ignores SIGPIPE in the agent, and an ignored
        // disposition survives exec; programs expect the default.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        // A session of its own: no controlling terminal, and the host can
        // later signal the whole group.
        libc::setsid();

        for (src, dst) in [
            (fds.stdin.as_raw_fd(), 0),
            (fds.stdout.as_raw_fd(), 1),
            (fds.stderr.as_raw_fd(), 2),
        ] {
            if src == dst {
                // dup2 onto itself is a no-op that would keep O_CLOEXEC.
                libc::fcntl(dst, libc::F_SETFD, 0);
            } else if libc::dup2(src, dst) == -1 {
                report_and_exit(fds, STAGE_EXEC, errno());
            }
        }

        if let Some(cwd) = &plan.cwd {
            if libc::chdir(cwd.as_ptr()) == -1 {
                report_and_exit(fds, STAGE_CHDIR, errno());
            }
        }

        // Like execvp: try each candidate; a permission problem anywhere
        // wins over "not found" so the message points at the real issue.
        let mut err = libc::ENOENT;
        let mut saw_eacces = false;
        for path in &plan.candidates {
            libc::execve(
                path.as_ptr(),
                plan.argv_ptrs.as_ptr(),
                plan.env_ptrs.as_ptr(),
            );
            err = errno();
            if err == libc::EACCES {
                saw_eacces = true;
            } else if err != libc::ENOENT && err != libc::ENOTDIR {
                // A real failure of an existing file (ENOEXEC, E2BIG, ...).
                break;
            }
        }
        if saw_eacces && (err == libc::ENOENT || err == libc::ENOTDIR) {
            err = libc::EACCES;
        }
        report_and_exit(fds, STAGE_EXEC, err)
    }
}

/// # Safety
/// Only in the forked child (async-signal-safe calls only).
unsafe fn report_and_exit(fds: &ChildFds, stage: u32, errno: i32) -> ! {
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&stage.to_ne_bytes());
    msg[4..].copy_from_slice(&errno.to_ne_bytes());
    // SAFETY: write(2) of a stack buffer and _exit(2) are both
    // async-signal-safe; a short write only loses the reason, not safety.
    unsafe {
        libc::write(fds.error.as_raw_fd(), msg.as_ptr().cast(), msg.len());
        libc::_exit(127)
    }
}

fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot, always
    // valid; reading it is async-signal-safe.
    unsafe { *libc::__errno_location() }
}

struct ExecFailure {
    stage: u32,
    errno: i32,
}

impl ExecFailure {
    fn into_error(self, cmd: &Command<'_>) -> ExecError {
        let source = io::Error::from_raw_os_error(self.errno);
        match (self.stage, cmd.cwd) {
            (STAGE_CHDIR, Some(cwd)) => ExecError::Chdir {
                cwd: cwd.to_owned(),
                source,
            },
            _ => ExecError::Exec {
                program: cmd.argv.first().cloned().unwrap_or_default(),
                source,
            },
        }
    }
}

/// Block until exec succeeds (EOF: the pipe was closed on exec) or the child
/// reports why it failed.
fn read_exec_failure(error_r: &OwnedFd) -> Option<ExecFailure> {
    let mut msg = [0u8; 8];
    let mut got = 0;
    while got < msg.len() {
        match sys::read(error_r, &mut msg[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!("reading the exec error pipe: {e}");
                break;
            }
        }
    }
    if got < msg.len() {
        return None;
    }
    let (stage, errno) = msg.split_at(4);
    Some(ExecFailure {
        stage: u32::from_ne_bytes(stage.try_into().ok()?),
        errno: i32::from_ne_bytes(errno.try_into().ok()?),
    })
}

/// A bounded output buffer that keeps reading (and dropping) past the cap.
struct Capped {
    data: Vec<u8>,
}

impl Capped {
    fn push(&mut self, chunk: &[u8]) {
        let room = OUTPUT_CAP.saturating_sub(self.data.len());
        self.data.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
}

/// Feed stdin and drain stdout/stderr with one poll(2) loop, until both
/// outputs hit EOF or the child has exited (then drain what is buffered).
fn collect(pipes: &mut Pipes, stdin: &[u8], notify: &OwnedFd) -> io::Result<(Vec<u8>, Vec<u8>)> {
    for fd in [&pipes.stdin, &pipes.stdout, &pipes.stderr]
        .into_iter()
        .flatten()
    {
        sys::set_nonblocking(fd)?;
    }
    if stdin.is_empty() {
        pipes.stdin = None;
    }
    let mut out = Capped { data: Vec::new() };
    let mut err = Capped { data: Vec::new() };
    let mut written = 0;
    let mut buf = vec![0u8; 64 << 10];

    while pipes.stdout.is_some() || pipes.stderr.is_some() {
        let mut pfds = Vec::with_capacity(4);
        let mut push = |fd: &Option<OwnedFd>, events| {
            if let Some(fd) = fd {
                pfds.push(libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events,
                    revents: 0,
                });
            }
        };
        push(&pipes.stdin, libc::POLLOUT);
        push(&pipes.stdout, libc::POLLIN);
        push(&pipes.stderr, libc::POLLIN);
        pfds.push(libc::pollfd {
            fd: notify.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        // SAFETY: `pfds` is a valid array of `pfds.len()` pollfd structs.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, -1) };
        if n == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let ready = |fd: &Option<OwnedFd>| {
            fd.as_ref().is_some_and(|fd| {
                pfds.iter()
                    .any(|p| p.fd == fd.as_raw_fd() && p.revents != 0)
            })
        };
        let (stdin_ready, stdout_ready, stderr_ready) = (
            ready(&pipes.stdin),
            ready(&pipes.stdout),
            ready(&pipes.stderr),
        );
        let exited = pfds.last().is_some_and(|p| p.revents != 0);

        if stdin_ready {
            feed(&mut pipes.stdin, stdin, &mut written);
        }
        if stdout_ready {
            drain(&mut pipes.stdout, &mut out, &mut buf, false)?;
        }
        if stderr_ready {
            drain(&mut pipes.stderr, &mut err, &mut buf, false)?;
        }
        if exited {
            // Everything the child wrote before exiting is in the pipes
            // already; take it and stop, even if a background process
            // still holds the write ends.
            drain(&mut pipes.stdout, &mut out, &mut buf, true)?;
            drain(&mut pipes.stderr, &mut err, &mut buf, true)?;
            break;
        }
    }
    Ok((out.data, err.data))
}

/// Write as much of the remaining stdin as the pipe takes; close it when
/// done or when the child stopped reading.
fn feed(fd: &mut Option<OwnedFd>, data: &[u8], written: &mut usize) {
    let Some(pipe) = fd else { return };
    match sys::write(pipe, &data[*written..]) {
        Ok(n) => {
            *written += n;
            if *written >= data.len() {
                *fd = None;
            }
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) => {}
        // EPIPE: the child closed its stdin or exited; the rest is moot.
        Err(_) => *fd = None,
    }
}

/// Read what is available (up to a bound, so a writer faster than us cannot
/// keep us here); close on EOF. `until_empty`: the child is gone, read
/// until the pipe is empty, then close.
fn drain(
    fd: &mut Option<OwnedFd>,
    into: &mut Capped,
    buf: &mut [u8],
    until_empty: bool,
) -> io::Result<()> {
    let Some(pipe) = fd else { return Ok(()) };
    // 64 reads of 64 KiB: 4 MiB per wake-up at most.
    for _ in 0..64 {
        match sys::read(pipe, buf) {
            Ok(0) => {
                *fd = None;
                return Ok(());
            }
            Ok(n) => into.push(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    if until_empty {
        *fd = None;
    }
    Ok(())
}

//! The per-container supervisor, like podman's conmon: one small process
//! per running container that holds its stdio, writes its logs, reaps its
//! init, records the exit status and serves `attach`. It runs in its own
//! session, so it outlives the CLI that started it (`run -d`).
//!
//! Start-up talks to the spawning CLI over a report pipe (the supervisor's
//! stdout at birth): one line, `created` or `error: <why>`, after the
//! runner's `create`. The container then starts at once, or, when a CLI
//! will attach (`run` without `-d`), once that CLI has connected and said
//! `Ready`, so no early output is lost.

mod attach;
mod pump;
mod stdio;
mod vm;

use std::fs::File;
use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use isola_container::{CreateOptions, Runner};

pub use attach::{Frame, MAX_PAYLOAD};
pub(crate) use pump::Ended;
pub use stdio::{console_listener, receive_master};
pub(crate) use vm::exit_watch;

use crate::error::{Error, Result};
use crate::id::ContainerId;
use crate::paths::{runner_root, ContainerPaths, SocketDir, ATTACH_SOCKET, CONSOLE_SOCKET};
use crate::state::{ContainerStatus, StateStore};
use crate::{liveness, oom, teardown};

/// Log files are capped at this size, with this many rotated copies.
pub const LOG_MAX_SIZE: u64 = 10 * 1024 * 1024;
pub const LOG_KEEP: u32 = 2;

/// How long a container waits for its attaching CLI before giving up.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(30);

/// `waitpid` options that also see the runner's processes: it clones a
/// container's init and exec'd processes with `CLONE_PARENT` and no exit
/// signal, and the kernel hides such children from a plain `waitpid`
/// unless `__WALL` is given.
pub fn wait_all() -> rustix::process::WaitOptions {
    const WALL: u32 = 0x4000_0000;
    rustix::process::WaitOptions::from_bits_retain(WALL)
}

/// What the supervisor is told on its command line.
#[derive(Debug, Clone)]
pub struct SupervisorOptions {
    pub root: PathBuf,
    pub id: ContainerId,
    /// Start the container only after the first attach.
    pub wait_attach: bool,
}

/// Runs the supervisor to the container's end; returns its exit status.
/// `report` is the pipe to the CLI that spawned it.
pub fn run(opts: &SupervisorOptions, mut report: File) -> Result<i32> {
    // Own session: no terminal's hangup or the CLI's death reaches us.
    let _ = rustix::process::setsid();
    // Orphans of the container (without a pid namespace) are ours to reap.
    let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));

    let store = StateStore::open(&opts.root)?;
    let runner = Runner::new(runner_root(&opts.root))?;
    let paths = ContainerPaths::new(&opts.root, &opts.id);
    let record = store.load(&opts.id)?;
    if record.isolation == "vm" {
        return vm::run(opts, report, &store, &runner, &paths, &record);
    }

    let prepared = prepare(opts, &store, &runner, &paths, record.stdin_open, record.tty);
    let (mut session, listener) = match prepared {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(report, "error: {e}");
            let _ = teardown::teardown(&opts.root, &store, &runner, &opts.id);
            return Err(e);
        }
    };
    // A CLI that attaches learns of the creation now (it must attach before
    // the start); a detached run only once the container runs, so that an
    // `exec` right after `run -d` finds it running.
    let mut report = Some(report);
    if opts.wait_attach {
        if let Some(mut r) = report.take() {
            let _ = writeln!(r, "created");
        }
    }

    let first_client = if opts.wait_attach {
        let master = session.master.as_ref();
        let mut resize = |rows, cols| {
            if let Some(master) = master {
                stdio::resize(master, rows, cols);
            }
        };
        match wait_for_attach(&listener, &mut resize) {
            Ok(client) => Some(client),
            Err(e) => {
                tracing::error!("no CLI attached: {e}");
                let _ = teardown::teardown(&opts.root, &store, &runner, &opts.id);
                return Err(Error::io(paths.attach_socket())(e));
            }
        }
    } else {
        None
    };

    // The init's pid is known once created; a quick program may be gone
    // (and its state say so) right after start.
    let started = runner
        .state(opts.id.as_str())
        .and_then(|state| {
            runner.start(opts.id.as_str())?;
            Ok(state.pid)
        })
        .map_err(Error::from);
    session.pid = match started {
        Ok(pid) => pid,
        Err(e) => {
            if let Some(mut r) = report.take() {
                let _ = writeln!(r, "error: {e}");
            }
            return Err(e);
        }
    };
    let pid = session.pid;
    let started = store.update(&opts.id, |r| {
        r.status = ContainerStatus::Running;
        r.started_at = Some(Utc::now());
        r.pid = Some(pid);
    });
    if let Err(e) = started {
        tracing::error!("recording the start: {e}");
    }
    tracing::info!(pid = session.pid, "container started");
    if let Some(mut r) = report.take() {
        let _ = writeln!(r, "created");
    }

    let exit: pump::ExitWatch = Box::new(move || pump::reap_until(pid));
    let outcome = pump::run(
        &mut session,
        listener,
        first_client,
        &paths,
        exit,
        Box::new(|_, _| {}),
    )?;
    let mut ended = outcome.ended;
    if ended.oom_killed.is_none() {
        ended.oom_killed = Some(oom::was_oom_killed(&session.cgroups_path));
    }
    let code = finish(opts, &store, &runner, &ended)?;
    tell_clients(outcome.clients, code, &ended);
    Ok(code)
}

/// The attached CLIs learn the exit status, and first why the container
/// ended if that was not its own doing (so `run --rm` can say it).
pub(crate) fn tell_clients(clients: Vec<UnixStream>, code: i32, ended: &pump::Ended) {
    for mut client in clients {
        if let Some(why) = &ended.error {
            let _ = Frame::Failure(why.clone()).write_to(&mut client);
        }
        let _ = Frame::Exit(code).write_to(&mut client);
    }
}

/// The supervisor's view of a created container.
pub(crate) struct Session {
    pub pid: i32,
    pub host_ends: stdio::HostEnds,
    pub master: Option<std::os::fd::OwnedFd>,
    pub cgroups_path: String,
}

/// Binds the attach socket and records this process as the container's
/// supervisor: the first steps at either level.
fn bind_attach_and_record(
    opts: &SupervisorOptions,
    store: &StateStore,
    paths: &ContainerPaths,
) -> Result<(SocketDir, UnixListener)> {
    let attach_path = paths.attach_socket();
    let _ = std::fs::remove_file(&attach_path);
    let sockets = SocketDir::open(&paths.dir).map_err(Error::io(&paths.dir))?;
    let listener =
        UnixListener::bind(sockets.path(ATTACH_SOCKET)).map_err(Error::io(&attach_path))?;
    let me = std::process::id() as i32;
    store.update(&opts.id, |r| {
        r.supervisor_pid = Some(me);
        r.supervisor_start_time = liveness::start_time(me);
    })?;
    Ok((sockets, listener))
}

/// Binds the attach socket, makes the stdio, records the supervisor and
/// has the runner create the container.
fn prepare(
    opts: &SupervisorOptions,
    store: &StateStore,
    runner: &Runner,
    paths: &ContainerPaths,
    interactive: bool,
    tty: bool,
) -> Result<(Session, UnixListener)> {
    let (sockets, listener) = bind_attach_and_record(opts, store, paths)?;

    let spec = std::fs::read(paths.config()).map_err(Error::io(paths.config()))?;
    let spec: serde_json::Value =
        serde_json::from_slice(&spec).map_err(|source| Error::CorruptState {
            path: paths.config(),
            source,
        })?;
    let cgroups_path = spec["linux"]["cgroupsPath"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    let devnull = rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| Error::io("/dev/null")(e.into()))?;
    let mut create = CreateOptions {
        detach: true,
        ..Default::default()
    };
    let (host_ends, master) = if tty {
        let console = stdio::console_listener(&sockets.path(CONSOLE_SOCKET))
            .map_err(Error::io(paths.console_socket()))?;
        create.console_socket = Some(paths.console_socket());
        stdio::detach(&devnull).map_err(Error::io("stdio"))?;
        let receiver = std::thread::spawn(move || stdio::receive_master(&console));
        runner.create(opts.id.as_str(), &paths.bundle(), &create)?;
        let master = receiver
            .join()
            .map_err(|_| Error::Invalid("console receiver panicked".into()))?
            .map_err(Error::io(paths.console_socket()))?;
        let _ = std::fs::remove_file(paths.console_socket());
        (stdio::HostEnds::Terminal, Some(master))
    } else {
        let (host, container) = stdio::pipes(interactive).map_err(Error::io("pipe"))?;
        stdio::install(&container, &devnull).map_err(Error::io("stdio"))?;
        let created = runner.create(opts.id.as_str(), &paths.bundle(), &create);
        stdio::detach(&devnull).map_err(Error::io("stdio"))?;
        drop(container);
        created?;
        (host, None)
    };
    Ok((
        Session {
            pid: 0,
            host_ends,
            master,
            cgroups_path,
        },
        listener,
    ))
}

/// Waits for the attaching CLI's connection and its `Ready`; a terminal
/// size sent before `Ready` is applied at once, so the program starts with
/// the right size.
fn wait_for_attach(
    listener: &UnixListener,
    resize: &mut dyn FnMut(u16, u16),
) -> std::io::Result<UnixStream> {
    // Block in poll, not a sleep loop: this is on every `run`'s start path.
    let mut fds = [rustix::event::PollFd::new(
        listener,
        rustix::event::PollFlags::IN,
    )];
    let timeout = rustix::event::Timespec {
        tv_sec: ATTACH_TIMEOUT.as_secs() as i64,
        tv_nsec: 0,
    };
    if rustix::event::poll(&mut fds, Some(&timeout))? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "attach timed out",
        ));
    }
    let (mut stream, _) = listener.accept()?;
    stream.set_read_timeout(Some(ATTACH_TIMEOUT))?;
    loop {
        match Frame::read_from(&mut stream)? {
            Some(Frame::Ready) => break,
            Some(Frame::Resize { rows, cols }) => resize(rows, cols),
            Some(other) => tracing::debug!("before Ready: {other:?}"),
            None => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the attaching CLI hung up",
                ))
            }
        }
    }
    stream.set_read_timeout(None)?;
    Ok(stream)
}

/// Records the exit, removes the container if it was `--rm`, and returns
/// the status.
fn finish(
    opts: &SupervisorOptions,
    store: &StateStore,
    runner: &Runner,
    ended: &pump::Ended,
) -> Result<i32> {
    let code = ended.code;
    let oom_killed = ended.oom_killed.unwrap_or(false);
    let (record, _) = store.update(&opts.id, |r| {
        r.status = ContainerStatus::Stopped;
        r.exit_code = Some(code);
        r.finished_at = Some(Utc::now());
        r.oom_killed = oom_killed;
        if ended.error.is_some() {
            r.error = ended.error.clone();
        }
    })?;
    tracing::info!(code, oom_killed, "container exited");
    if record.auto_remove {
        teardown::teardown(&opts.root, store, runner, &opts.id)?;
    }
    Ok(code)
}

//! The container API: each container's init and exec'd processes are run by
//! the same runner as at the process level (`isola-runtime`, shipped in the
//! initramfs), with the host's stdio streams (vsock connections) as their
//! standard descriptors, so output goes from the container to the host
//! without passing through the agent. With a terminal, the agent copies
//! between the pty master and the streams.
//!
//! Lifecycle of a process: created (bundle or process file ready) →
//! streams attached → started (runner spawned) → exited (status kept for
//! any later `WaitProcess`, until room is needed: see `make_room`).

mod bundle;
mod terminal;

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use isola_protocol::{GuestFile, GuestVolume, ProcessKey, Response, StdioStream};

use crate::exec;
use crate::reaper::Children;
use crate::sys;

pub use bundle::{validate_name, RootSource};

/// The runner, as rootfs/build.sh puts it in the initramfs.
pub const RUNTIME: &str = "/bin/isola-runtime";

const ENV: &[&str] = &["PATH=/bin:/sbin:/usr/bin:/usr/sbin"];

/// At most this many processes (live or remembered) per guest.
const MAX_PROCESSES: usize = 4096;

/// Orders exits, so that the exec that ended first is forgotten first.
static EXIT_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

struct Process {
    /// The runner's command line.
    argv: Vec<String>,
    /// The container's directory in the guest.
    dir: PathBuf,
    terminal: bool,
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    pid: Option<libc::pid_t>,
    /// Kept to resize the terminal.
    master: Option<OwnedFd>,
    /// A size that came before the terminal did; applied when it comes.
    size: Option<(u16, u16)>,
    /// Kept so the reaper's notification byte has somewhere to go.
    _notify: Option<OwnedFd>,
    waiting: bool,
    exit: Option<(i32, bool)>,
    /// When it exited, in `EXIT_SEQ` order.
    exit_seq: u64,
}

impl Process {
    /// Where an attached stream waits for the process's start.
    fn stream_slot(&mut self, stream: StdioStream) -> &mut Option<OwnedFd> {
        match stream {
            StdioStream::Stdin => &mut self.stdin,
            StdioStream::Stdout => &mut self.stdout,
            StdioStream::Stderr => &mut self.stderr,
        }
    }
}

static TABLE: Mutex<Option<HashMap<ProcessKey, Process>>> = Mutex::new(None);

fn table() -> MutexGuard<'static, Option<HashMap<ProcessKey, Process>>> {
    TABLE.lock().unwrap_or_else(|p| p.into_inner())
}

fn with_table<T>(f: impl FnOnce(&mut HashMap<ProcessKey, Process>) -> T) -> T {
    let mut guard = table();
    f(guard.get_or_insert_with(HashMap::new))
}

fn init_key(id: &str) -> ProcessKey {
    ProcessKey {
        id: id.to_owned(),
        exec_id: None,
    }
}

fn new_process(argv: Vec<String>, dir: PathBuf, terminal: bool) -> Process {
    Process {
        argv,
        dir,
        terminal,
        stdin: None,
        stdout: None,
        stderr: None,
        pid: None,
        master: None,
        size: None,
        _notify: None,
        waiting: false,
        exit: None,
        exit_seq: 0,
    }
}

fn insert(key: ProcessKey, process: Process) -> Result<(), String> {
    with_table(|t| {
        if t.contains_key(&key) {
            return Err(format!("{key:?} already exists"));
        }
        make_room(t, MAX_PROCESSES)?;
        t.insert(key, process);
        Ok(())
    })
}

/// Keeps the table under `max` entries by forgetting the exec that ended
/// longest ago, so a guest that runs an exec every few seconds for days (a
/// healthcheck) never runs out. Live processes (waited for or not) and
/// containers' inits are never forgotten: a full table of those is refused.
fn make_room(t: &mut HashMap<ProcessKey, Process>, max: usize) -> Result<(), String> {
    while t.len() >= max {
        let oldest = t
            .iter()
            .filter(|(k, p)| k.exec_id.is_some() && p.exit.is_some())
            .min_by_key(|(_, p)| p.exit_seq)
            .map(|(k, _)| k.clone());
        match oldest {
            Some(key) => {
                t.remove(&key);
            }
            None => return Err("too many processes in this guest".into()),
        }
    }
    Ok(())
}

fn runner_base() -> Vec<String> {
    vec![RUNTIME.into(), "--root".into(), bundle::RUNNER_ROOT.into()]
}

fn pid_file(dir: &std::path::Path, key: &ProcessKey) -> PathBuf {
    dir.join(format!("{}.pid", key.exec_id.as_deref().unwrap_or("init")))
}

/// Where the runner hands a process's pty master over: a short path of its
/// own, since a socket path has room for 107 bytes and the container's
/// directory (a 64-character id) plus an exec id would overrun it.
fn console_socket(key: &ProcessKey) -> PathBuf {
    use std::hash::{Hash, Hasher};
    // Fixed keys: the same process always hashes to the same path.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    PathBuf::from(format!("{CONSOLE_DIR}/{:016x}.sock", h.finish()))
}

const CONSOLE_DIR: &str = "/run/isola-tty";

pub fn create_container(
    id: &str,
    spec: &str,
    root: &RootSource,
    files: &[GuestFile],
    volumes: &[GuestVolume],
    terminal: bool,
) -> Result<Response, String> {
    validate_name("container id", id)?;
    if with_table(|t| t.contains_key(&init_key(id))) {
        return Err(format!("container {id} already exists in this guest"));
    }
    let dir = bundle::prepare(id, spec, root, files, volumes)?;
    let mut argv = runner_base();
    // Without a terminal, one runner process creates and starts (`run
    // --detach`): every exec of the runner costs a guest a few hundred
    // milliseconds under nested virtualization. With one, the size must
    // be set between `create` and `start` (see `launched`).
    argv.push(if terminal { "create" } else { "run" }.into());
    if !terminal {
        argv.push("--detach".into());
    }
    // The guest's root is the initramfs, which pivot_root cannot leave.
    argv.extend(["--no-pivot", "--pid-file"].map(String::from));
    argv.push(pid_file(&dir, &init_key(id)).to_string_lossy().into_owned());
    argv.push("--bundle".into());
    argv.push(dir.to_string_lossy().into_owned());
    if terminal {
        argv.push("--console-socket".into());
        argv.push(console_socket(&init_key(id)).to_string_lossy().into_owned());
    }
    argv.push(id.to_owned());
    if let Err(e) = insert(init_key(id), new_process(argv, dir, terminal)) {
        bundle::remove(id);
        return Err(e);
    }
    tracing::info!(id, "container created");
    Ok(Response::Ok)
}

pub fn create_exec(
    id: &str,
    exec_id: &str,
    process: &str,
    terminal: bool,
) -> Result<Response, String> {
    validate_name("exec id", exec_id)?;
    let dir = with_table(|t| match t.get(&init_key(id)) {
        Some(p) if p.pid.is_some() && p.exit.is_none() => Ok(p.dir.clone()),
        Some(_) => Err(format!("container {id} is not running")),
        None => Err(format!("no container {id}")),
    })?;
    serde_json::from_str::<serde_json::Value>(process)
        .map_err(|e| format!("process of exec {exec_id}: {e}"))?;
    let file = dir.join(format!("exec-{exec_id}.json"));
    fs::write(&file, process).map_err(|e| format!("writing {}: {e}", file.display()))?;
    let key = ProcessKey {
        id: id.to_owned(),
        exec_id: Some(exec_id.to_owned()),
    };
    let mut argv = runner_base();
    argv.extend(["exec", "--detach", "--pid-file"].map(String::from));
    argv.push(pid_file(&dir, &key).to_string_lossy().into_owned());
    argv.push("--process".into());
    argv.push(file.to_string_lossy().into_owned());
    if terminal {
        argv.push("--console-socket".into());
        argv.push(console_socket(&key).to_string_lossy().into_owned());
    }
    argv.push(id.to_owned());
    insert(key, new_process(argv, dir, terminal))?;
    Ok(Response::Ok)
}

/// Takes over the connection of an `AttachStdio`, before its `Ok` is sent:
/// checked and stored under one lock, so a stream is never stored where no
/// start will take it (a start under way has already taken the streams) or
/// over another.
pub fn attach(key: &ProcessKey, stream: StdioStream, fd: OwnedFd) -> Result<(), String> {
    with_table(|t| {
        let p = t
            .get_mut(key)
            .ok_or_else(|| format!("no process {key:?}"))?;
        if p.pid.is_some() || p.waiting {
            return Err("the process has already started".into());
        }
        let slot = p.stream_slot(stream);
        if slot.is_some() {
            return Err(format!("{stream:?} is already attached"));
        }
        *slot = Some(fd);
        Ok(())
    })
}

/// Undoes an [`attach`] whose `Ok` never reached the host; only if the slot
/// still holds that very descriptor.
pub fn detach(key: &ProcessKey, stream: StdioStream, fd: RawFd) {
    with_table(|t| {
        if let Some(p) = t.get_mut(key) {
            let slot = p.stream_slot(stream);
            if slot.as_ref().is_some_and(|held| held.as_raw_fd() == fd) {
                *slot = None;
            }
        }
    });
}

fn dev_null(write: bool) -> Result<OwnedFd, String> {
    OpenOptions::new()
        .read(!write)
        .write(write)
        .open("/dev/null")
        .map(OwnedFd::from)
        .map_err(|e| format!("/dev/null: {e}"))
}

fn clone_fd(fd: &OwnedFd) -> Result<OwnedFd, String> {
    fd.try_clone().map_err(|e| format!("dup: {e}"))
}

pub fn start(key: &ProcessKey) -> Result<Response, String> {
    // Everything the spawn needs is taken under the lock; the spawn itself
    // (fork + exec of the runner) happens outside it.
    let (argv, dir, terminal, stdin, stdout, stderr) = with_table(|t| {
        let p = t
            .get_mut(key)
            .ok_or_else(|| format!("no process {key:?}"))?;
        if p.pid.is_some() || p.waiting {
            return Err(format!("{key:?} has already started"));
        }
        p.waiting = true; // reserved: a second Start is refused
        Ok((
            p.argv.clone(),
            p.dir.clone(),
            p.terminal,
            p.stdin.take(),
            p.stdout.take(),
            p.stderr.take(),
        ))
    })?;
    let started = spawn(key, &argv, terminal, stdin, stdout, stderr)
        .and_then(|runner| launched(key, &dir, runner));
    with_table(|t| {
        if let Some(p) = t.get_mut(key) {
            p.waiting = false;
            if let Ok((pid, notify)) = &started {
                p.pid = Some(*pid);
                p._notify = notify.try_clone().ok();
            }
        }
    });
    let (pid, _) = started?;
    tracing::info!(?key, pid, "process started");
    Ok(Response::Ok)
}

/// The runner's `run --detach`, `create` (a container with a terminal) or
/// `exec --detach` has been spawned: waits for it, adopts the process it
/// left (ours once the runner exits), and after a `create` sizes the
/// terminal and starts the container.
fn launched(
    key: &ProcessKey,
    dir: &std::path::Path,
    runner: Spawned,
) -> Result<(libc::pid_t, OwnedFd), String> {
    let children = Children::global();
    let status = children.wait(runner.pid);
    if status != 0 {
        if key.exec_id.is_none() {
            remove_container(&key.id);
        }
        return Err(format!(
            "the runner failed (status {status}); its message went to the process's stderr"
        ));
    }
    let file = pid_file(dir, key);
    let pid = fs::read_to_string(&file)
        .ok()
        .and_then(|t| t.trim().parse::<libc::pid_t>().ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("the runner left no pid in {}", file.display()))?;
    let (notify_r, notify_w) = sys::pipe().map_err(|e| format!("pipe: {e}"))?;
    // A process that already ended (a detached one) is found among the
    // reaped orphans, so no status is lost either way.
    children.adopt(pid, notify_w);
    let Some(ready) = runner.terminal_ready else {
        // No terminal: `run --detach` (or `exec --detach`) started it.
        return Ok((pid, notify_r));
    };
    // The program must start on a terminal of the right size.
    if ready.recv_timeout(TERMINAL_TIMEOUT).is_err() {
        tracing::warn!(?key, "the terminal did not arrive in time");
    }
    if key.exec_id.is_none() {
        if let Err(e) = run_runner(&["start", &key.id]) {
            // Its status is collected by whoever waits, as for any exit.
            let _ = run_runner(&["kill", &key.id, "KILL"]);
            return Err(format!("starting the container: {e}"));
        }
    }
    Ok((pid, notify_r))
}

fn spawn(
    key: &ProcessKey,
    argv: &[String],
    terminal: bool,
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
) -> Result<Spawned, String> {
    let env: Vec<String> = ENV.iter().map(|s| s.to_string()).collect();
    let mut terminal_ready = None;
    let stdout = match stdout {
        Some(fd) => fd,
        None => dev_null(true)?,
    };
    let stdio = if terminal {
        // The runner's own messages go to the output stream; the
        // container's stdio is the pty.
        let listener =
            terminal::listen(&console_socket(key)).map_err(|e| format!("console socket: {e}"))?;
        let to_host = clone_fd(&stdout)?;
        let key = key.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        terminal_ready = Some(ready_rx);
        std::thread::Builder::new()
            .name("terminal".into())
            .spawn(move || pump_terminal(key, listener, to_host, stdin, ready_tx))
            .map_err(|e| format!("terminal thread: {e}"))?;
        let stderr = match stderr {
            Some(fd) => fd,
            None => clone_fd(&stdout)?,
        };
        [dev_null(false)?, stdout, stderr]
    } else {
        let stdin = match stdin {
            Some(fd) => fd,
            None => dev_null(false)?,
        };
        let stderr = match stderr {
            Some(fd) => fd,
            None => dev_null(true)?,
        };
        [stdin, stdout, stderr]
    };
    let (notify_r, notify_w) = sys::pipe().map_err(|e| format!("pipe: {e}"))?;
    let pid = exec::spawn_with_stdio(argv, &env, stdio, notify_w).map_err(|e| e.to_string())?;
    Ok(Spawned {
        pid,
        _notify: notify_r,
        terminal_ready,
    })
}

/// A runner just spawned.
struct Spawned {
    pid: libc::pid_t,
    _notify: OwnedFd,
    /// With a terminal: says when the master is here and sized.
    terminal_ready: Option<std::sync::mpsc::Receiver<()>>,
}

/// How long the terminal's master may take to arrive after `create`.
const TERMINAL_TIMEOUT: Duration = Duration::from_secs(10);

fn pump_terminal(
    key: ProcessKey,
    listener: std::os::unix::net::UnixListener,
    to_host: OwnedFd,
    from_host: Option<OwnedFd>,
    ready: std::sync::mpsc::Sender<()>,
) {
    let received = terminal::receive_master(&listener);
    let _ = fs::remove_file(console_socket(&key));
    let master = match received {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(?key, "no terminal: {e}");
            return;
        }
    };
    drop(listener);
    let (Ok(reader), Ok(writer), Ok(kept)) =
        (master.try_clone(), master.try_clone(), master.try_clone())
    else {
        return;
    };
    with_table(|t| {
        if let Some(p) = t.get_mut(&key) {
            if let Some((rows, cols)) = p.size.take() {
                let _ = terminal::resize(&kept, rows, cols);
            }
            p.master = Some(kept);
        }
    });
    let _ = ready.send(());
    if let Some(input) = from_host {
        std::thread::spawn(move || terminal::copy(input, writer));
    }
    terminal::copy(reader, to_host);
}

/// Blocks until the process ends; for a container's init, also removes the
/// container from the guest.
pub fn wait(key: &ProcessKey) -> Result<Response, String> {
    let pid = loop {
        let state = with_table(|t| {
            let p = t
                .get_mut(key)
                .ok_or_else(|| format!("no process {key:?}"))?;
            if let Some((code, oom_killed)) = p.exit {
                return Ok(Err(Response::Exited { code, oom_killed }));
            }
            match p.pid {
                Some(pid) if !p.waiting => {
                    p.waiting = true;
                    Ok(Ok(Some(pid)))
                }
                Some(_) => Ok(Ok(None)),
                None => Err(format!("{key:?} has not started")),
            }
        })?;
        match state {
            Err(done) => return Ok(done),
            Ok(Some(pid)) => break pid,
            // Another connection waits for it; its answer is kept for us.
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let code = Children::global().wait(pid);
    let dir = with_table(|t| t.get(key).map(|p| p.dir.clone()));
    let mut oom_killed = false;
    if key.exec_id.is_none() {
        if let Some(dir) = &dir {
            oom_killed = bundle::oom_killed(dir);
        }
        remove_container(&key.id);
    } else if let (Some(dir), Some(exec_id)) = (&dir, &key.exec_id) {
        let _ = fs::remove_file(dir.join(format!("exec-{exec_id}.json")));
    }
    with_table(|t| {
        if let Some(p) = t.get_mut(key) {
            p.exit = Some((code, oom_killed));
            p.exit_seq = EXIT_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            p.waiting = false;
            p.master = None;
        }
    });
    tracing::info!(?key, code, oom_killed, "process exited");
    Ok(Response::Exited { code, oom_killed })
}

fn run_runner(args: &[&str]) -> Result<String, String> {
    run_runner_with_input(args, &[])
}

fn run_runner_with_input(args: &[&str], stdin: &[u8]) -> Result<String, String> {
    let mut argv = runner_base();
    argv.extend(args.iter().map(|s| s.to_string()));
    let env: Vec<String> = ENV.iter().map(|s| s.to_string()).collect();
    let result = exec::run(&exec::Command {
        argv: &argv,
        env: &env,
        cwd: None,
        stdin,
    })
    .map_err(|e| e.to_string())?;
    if result.status != 0 {
        return Err(String::from_utf8_lossy(&result.stderr).trim().to_string());
    }
    Ok(String::from_utf8_lossy(&result.stdout).into_owned())
}

fn remove_container(id: &str) {
    if let Err(e) = run_runner(&["delete", "--force", id]) {
        tracing::warn!(id, "runner delete: {e}");
    }
    bundle::remove(id);
}

pub fn signal(id: &str, signal: &str, all: bool) -> Result<Response, String> {
    validate_name("container id", id)?;
    if signal.is_empty() || !signal.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!("invalid signal {signal:?}"));
    }
    let mut args = vec!["kill"];
    if all {
        args.push("--all");
    }
    args.extend([id, signal]);
    run_runner(&args)?;
    Ok(Response::Ok)
}

/// Pauses or resumes the container through the runner, as the process
/// level does on the host.
pub fn freeze(id: &str, paused: bool) -> Result<Response, String> {
    validate_name("container id", id)?;
    run_runner(&[if paused { "pause" } else { "resume" }, id])?;
    Ok(Response::Ok)
}

pub fn update(id: &str, resources: &str) -> Result<Response, String> {
    validate_name("container id", id)?;
    serde_json::from_str::<serde_json::Value>(resources)
        .map_err(|e| format!("resources for {id}: {e}"))?;
    run_runner_with_input(&["update", "--resources", "-", id], resources.as_bytes())?;
    Ok(Response::Ok)
}

pub fn signal_process(key: &ProcessKey, signal: i32) -> Result<Response, String> {
    if !(1..=64).contains(&signal) {
        return Err(format!("invalid signal {signal}"));
    }
    let pid = with_table(|t| {
        let p = t.get(key).ok_or_else(|| format!("no process {key:?}"))?;
        match (p.pid, p.exit) {
            (Some(pid), None) => Ok(pid),
            _ => Err(format!("{key:?} is not running")),
        }
    })?;
    // SAFETY: kill takes plain integers and touches no memory of ours. (The
    // pid is the process's until its waiter records the exit.)
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(format!(
            "signalling {key:?}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(Response::Ok)
}

pub fn resize(key: &ProcessKey, rows: u16, cols: u16) -> Result<Response, String> {
    with_table(|t| {
        let p = t
            .get_mut(key)
            .ok_or_else(|| format!("no process {key:?}"))?;
        match &p.master {
            Some(m) => terminal::resize(m, rows, cols).map_err(|e| format!("resize: {e}")),
            None if p.terminal && p.exit.is_none() => {
                p.size = Some((rows, cols));
                Ok(())
            }
            None => Err(format!("{key:?} has no terminal")),
        }
    })?;
    Ok(Response::Ok)
}

pub fn stats(id: &str) -> Result<Response, String> {
    validate_name("container id", id)?;
    let json = run_runner(&["events", "--stats", id])?;
    Ok(Response::Stats { json })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd() -> OwnedFd {
        OwnedFd::from(std::fs::File::open("/dev/null").unwrap())
    }

    fn key(id: &str, exec_id: Option<&str>) -> ProcessKey {
        ProcessKey {
            id: id.into(),
            exec_id: exec_id.map(Into::into),
        }
    }

    fn ended(seq: u64) -> Process {
        let mut p = new_process(Vec::new(), PathBuf::new(), false);
        p.pid = Some(1);
        p.exit = Some((0, false));
        p.exit_seq = seq;
        p
    }

    #[test]
    fn console_sockets_fit_a_socket_path_and_differ_per_process() {
        let id = "f".repeat(64);
        let exec = "e".repeat(64);
        let a = console_socket(&key(&id, Some(&exec)));
        let b = console_socket(&key(&id, None));
        assert!(a.as_os_str().len() < 100, "{a:?}");
        assert_ne!(a, b);
        assert_eq!(a, console_socket(&key(&id, Some(&exec))));
    }

    #[test]
    fn a_full_table_forgets_the_exec_that_ended_first() {
        let mut t = HashMap::new();
        t.insert(key("c", None), ended(0));
        t.insert(key("c", Some("late")), ended(9));
        t.insert(key("c", Some("early")), ended(3));
        let mut live = ended(1);
        live.exit = None;
        t.insert(key("c", Some("live")), live);
        make_room(&mut t, 4).unwrap();
        assert!(!t.contains_key(&key("c", Some("early"))));
        assert_eq!(t.len(), 3);
        // The next to go is the later exec; then nothing can go: the init
        // (kept until the container is gone) and a live exec stay.
        make_room(&mut t, 3).unwrap();
        assert!(!t.contains_key(&key("c", Some("late"))));
        let err = make_room(&mut t, 2).unwrap_err();
        assert!(err.contains("too many"), "{err}");
        assert!(t.contains_key(&key("c", None)) && t.contains_key(&key("c", Some("live"))));
    }

    #[test]
    fn a_stream_is_attached_once_and_never_after_the_start_began() {
        let key = ProcessKey {
            id: "attach-test".into(),
            exec_id: Some("1".into()),
        };
        insert(key.clone(), new_process(Vec::new(), PathBuf::new(), false)).unwrap();
        let out = fd();
        let raw = out.as_raw_fd();
        attach(&key, StdioStream::Stdout, out).unwrap();
        assert!(attach(&key, StdioStream::Stdout, fd()).is_err(), "twice");
        // Undoing someone else's descriptor does nothing; one's own does.
        detach(&key, StdioStream::Stdout, raw + 1000);
        assert!(attach(&key, StdioStream::Stdout, fd()).is_err());
        detach(&key, StdioStream::Stdout, raw);
        attach(&key, StdioStream::Stdout, fd()).unwrap();
        // A start under way has taken the streams: a late one is refused,
        // not stored where nothing would ever take (or close) it.
        with_table(|t| t.get_mut(&key).unwrap().waiting = true);
        assert!(attach(&key, StdioStream::Stderr, fd()).is_err());
        let missing = ProcessKey {
            id: "attach-test".into(),
            exec_id: Some("2".into()),
        };
        assert!(attach(&missing, StdioStream::Stdin, fd()).is_err());
        with_table(|t| t.remove(&key));
    }
}

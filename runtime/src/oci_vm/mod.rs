//! The vm level for OCI runtime callers (podman, containerd's runc shim,
//! `isola-runtime run`): the caller's bundle runs in a microVM of its own,
//! by the same sandbox, agent protocol and in-guest runner as `isola run
//! --isolation=vm`; only where the rootfs comes from differs (the caller's
//! directory, shared over virtio-fs, instead of the image's EROFS disk).
//!
//! Each container has a directory under the runtime's state root, next to
//! the runner's, holding [`record::VmRecord`], the vsock bridge, the
//! virtiofsd sockets and the shim's control socket. Its shim (see
//! [`shim`]) is the process `create` names in `--pid-file`.

pub mod control;
pub mod exec;
pub mod guest_bundle;
pub mod record;
pub mod shim;
pub mod spawn;
pub mod terminal;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use isola_container::{ContainerState, Status};
use isola_protocol::{Request, Response};
use rustix::process::{kill_process, Pid, Signal};
use serde_json::Value;

use crate::atomic;
use crate::error::{Error, Result};
use crate::vm::agent::agent_error;
use crate::vm::connect_agent;
use record::{Phase, VmRecord};

/// How long `kill` waits for the agent to take a signal.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(10);

/// The container `id`'s directory under the state root.
pub fn container_dir(root: &Path, id: &str) -> Result<PathBuf> {
    isola_container::validate_id(id)?;
    Ok(root.join(id))
}

/// Whether `id` is a vm-level container of this state root.
pub fn is_vm(root: &Path, id: &str) -> bool {
    container_dir(root, id).is_ok_and(|d| VmRecord::path(&d).exists())
}

fn load(root: &Path, id: &str) -> Result<(PathBuf, VmRecord)> {
    let dir = container_dir(root, id)?;
    match VmRecord::load(&dir) {
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::NotFound(id.to_owned()))
        }
        other => other.map(|r| (dir, r)),
    }
}

/// What `create` needs besides the bundle.
#[derive(Debug)]
pub struct CreateRequest<'a> {
    pub root: &'a Path,
    pub id: &'a str,
    pub bundle: &'a Path,
    pub console_socket: Option<&'a Path>,
    pub pid_file: Option<&'a Path>,
}

/// Creates the container: boots its VM and creates the container there
/// through a shim (`shim` is the command that runs [`shim::run`]; its
/// arguments are appended). Returns the shim, the caller's child.
pub fn create(request: &CreateRequest, mut shim: Command) -> Result<Child> {
    let id = request.id;
    let dir = container_dir(request.root, id)?;
    let bundle = std::fs::canonicalize(request.bundle).map_err(Error::io(request.bundle))?;
    // Bad bundles are refused before anything exists or boots.
    guest_bundle::prepare(&bundle)?;
    let annotations = std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| serde_json::from_value(v.get("annotations")?.clone()).ok());
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::Invalid(format!("container {id} already exists")))
        }
        Err(e) => return Err(Error::io(&dir)(e)),
    }
    let made = (|| {
        VmRecord {
            id: id.to_owned(),
            bundle: bundle.clone(),
            phase: Phase::Creating,
            shim_pid: 0,
            shim_start_time: 0,
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            annotations,
        }
        .save(&dir)?;
        shim.arg(id).arg("--bundle").arg(&bundle);
        if let Some(socket) = request.console_socket {
            shim.arg("--console-socket").arg(socket);
            // The container's stdio is the terminal: the caller's own
            // stdio must not be held open by the shim (a caller reading it
            // to its end would wait for the container), as runc's init
            // does not hold it either.
            shim.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
        }
        let child = spawn::spawn(shim, "created")?;
        if let Some(pid_file) = request.pid_file {
            atomic::write(pid_file, child.id().to_string().as_bytes())?;
        }
        Ok(child)
    })();
    if made.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    made
}

/// Lets the created container's process run.
pub fn start(root: &Path, id: &str) -> Result<()> {
    let (dir, record) = load(root, id)?;
    match record.status() {
        Status::Created => control::request(&dir, "start"),
        other => Err(Error::Invalid(format!(
            "cannot start container {id}: it is {other}, not created"
        ))),
    }
}

pub fn state(root: &Path, id: &str) -> Result<ContainerState> {
    Ok(load(root, id)?.1.state())
}

/// Every vm-level container under the state root.
pub fn list(root: &Path) -> Vec<ContainerState> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| VmRecord::load(&e.path()).ok())
        .map(|r| r.state())
        .collect()
}

/// Sends `signal` to the container's init (with `all`, to all its
/// processes) through its guest's agent. A KILL the agent cannot deliver
/// (a hung guest) ends the shim, and with it the VM.
pub fn kill(root: &Path, id: &str, signal: &str, all: bool) -> Result<()> {
    let (dir, record) = load(root, id)?;
    match record.status() {
        // A paused container's processes still take signals (the guest's
        // cgroup v2 freezer lets a fatal one through), as runc's do.
        Status::Running | Status::Paused => {}
        // Its process does not run in the guest yet: the shim ends it.
        Status::Created => return control::request(&dir, &format!("kill {signal}")),
        // As runc: --all of a stopped container is no error.
        Status::Stopped if all => return Ok(()),
        // containerd's shim recognises runc's words.
        _ => {
            return Err(Error::Invalid(format!(
                "cannot signal container {id}: container not running"
            )))
        }
    }
    let reached = connect_agent(&dir).and_then(|mut agent| {
        agent
            .stream()
            .set_read_timeout(Some(SIGNAL_TIMEOUT))
            .map_err(Error::io(&dir))?;
        Ok(agent.call(Request::SignalContainer {
            id: id.to_owned(),
            signal: signal.to_owned(),
            all,
        }))
    });
    match reached {
        Ok(Ok(Response::Ok)) => Ok(()),
        // The agent answered: its refusal is the answer.
        Ok(Err(e @ isola_protocol::ClientError::Agent(_))) => Err(agent_error(e)),
        Ok(Ok(other)) => Err(Error::Vm(format!(
            "unexpected answer from the guest agent: {other:?}"
        ))),
        // Unreachable or silent: a hung guest.
        Err(e) if is_kill(signal) => {
            tracing::warn!("the guest is unreachable ({e}); stopping its VM");
            end_shim(&record);
            Ok(())
        }
        Ok(Err(e)) if is_kill(signal) => {
            tracing::warn!("the guest did not take SIGKILL ({e}); stopping its VM");
            end_shim(&record);
            Ok(())
        }
        Err(e) => Err(e),
        Ok(Err(e)) => Err(agent_error(e)),
    }
}

fn is_kill(signal: &str) -> bool {
    matches!(
        signal
            .trim_start_matches("SIG")
            .to_ascii_uppercase()
            .as_str(),
        "KILL" | "9"
    )
}

/// Kills the shim (the VM goes with it) and waits for it to be gone.
fn end_shim(record: &VmRecord) {
    if record.shim_alive() {
        end_process(record.shim_pid, record.shim_start_time);
    }
}

/// SIGKILLs `pid` if it is still the process that started at `started`,
/// and waits (at most 10 s) until it is gone or a zombie.
fn end_process(pid: i32, started: u64) {
    let alive = || crate::liveness::is_same_process(pid, started);
    if !alive() {
        return;
    }
    if let Some(p) = Pid::from_raw(pid) {
        let _ = kill_process(p, Signal::KILL);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Removes the container; a running one only with `force` (it is killed).
pub fn delete(root: &Path, id: &str, force: bool) -> Result<()> {
    let (dir, record) = match load(root, id) {
        // An unreadable record names no shim to end: its control socket
        // does. (A shim also ends by itself once its directory is gone.)
        Err(e @ Error::CorruptState { .. }) if force => {
            tracing::warn!("deleting container {id} despite its record: {e}");
            let dir = container_dir(root, id)?;
            if let Some(pid) = control::shim_pid(&dir) {
                if let Some(started) = crate::liveness::start_time(pid) {
                    end_process(pid, started);
                }
            }
            return remove_dir(&dir);
        }
        other => other?,
    };
    let status = record.status();
    if matches!(status, Status::Running | Status::Paused) && !force {
        return Err(Error::Invalid(format!(
            "cannot delete container {id}: it is {status}; stop it first or use --force"
        )));
    }
    end_shim(&record);
    remove_dir(&dir)
}

/// Removes a container's directory. A shim or virtiofsd that is still
/// ending may write a last file (a log line, a socket) while the directory
/// goes; the removal is tried again for a moment rather than fail on it.
fn remove_dir(dir: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e)
                if e.kind() == std::io::ErrorKind::DirectoryNotEmpty
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(Error::io(dir)(e)),
        }
    }
}

/// `exec`: starts `process` in the running container. Detached, an exec
/// shim (`shim`, see [`exec::run_shim`]) holds the process and is
/// returned; otherwise this waits and returns the process's status.
pub fn exec(
    root: &Path,
    id: &str,
    process: &Value,
    console_socket: Option<&Path>,
    detach: Option<(Command, Option<&Path>)>,
) -> Result<i32> {
    let (dir, record) = load(root, id)?;
    if record.status() != Status::Running {
        return Err(Error::Invalid(format!(
            "cannot exec in container {id}: it is {}, not running",
            record.status()
        )));
    }
    let Some((mut shim, pid_file)) = detach else {
        return exec::start(&dir, id, process, console_socket)?.wait();
    };
    shim.arg(id).arg("--process-json").arg(process.to_string());
    if let Some(socket) = console_socket {
        shim.arg("--console-socket").arg(socket);
        // As for the container's own terminal (see `create`).
        shim.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    }
    let child = spawn::spawn(shim, "started")?;
    if let Some(pid_file) = pid_file {
        atomic::write(pid_file, child.id().to_string().as_bytes())?;
    }
    Ok(0)
}

/// `pause` (`paused`) or `resume`: the guest's runner freezes or thaws the
/// container's cgroup, as the process level's runner does on the host.
pub fn freeze(root: &Path, id: &str, paused: bool) -> Result<()> {
    let (dir, mut record) = load(root, id)?;
    let status = record.status();
    let (from, to) = if paused {
        (Status::Running, Phase::Paused)
    } else {
        (Status::Paused, Phase::Running)
    };
    if status != from {
        // runc's words, which containerd's shim recognises.
        let not = if paused { "running" } else { "paused" };
        return Err(Error::Invalid(format!(
            "cannot {} container {id}: container not {not} (it is {status})",
            if paused { "pause" } else { "resume" }
        )));
    }
    crate::vm::agent::send(
        &dir,
        Request::FreezeContainer {
            id: id.to_owned(),
            paused,
        },
    )?;
    record.phase = to;
    record.save(&dir)
}

/// New cgroup limits (a runtime-spec `linux.resources` document) for a
/// running or paused container, applied by the guest's runner to the
/// container's cgroup in the guest. The VM keeps the memory and vCPUs it
/// booted with: a limit above them holds no more than the VM has.
pub fn update(root: &Path, id: &str, resources: &Value) -> Result<()> {
    let (dir, record) = load(root, id)?;
    let status = record.status();
    if !matches!(status, Status::Running | Status::Paused) {
        return Err(Error::Invalid(format!(
            "cannot update container {id}: it is {status}, not running"
        )));
    }
    crate::vm::agent::send(
        &dir,
        Request::UpdateContainer {
            id: id.to_owned(),
            resources: resources.to_string(),
        },
    )
}

/// One statistics sample of a running (or paused) container, as the guest's
/// runner prints it for `events --stats`: runc's
/// `{"type":"stats","id":..,"data":..}` line, read from the guest's cgroup.
pub fn stats(root: &Path, id: &str) -> Result<String> {
    let (dir, record) = load(root, id)?;
    let status = record.status();
    if !matches!(status, Status::Running | Status::Paused) {
        return Err(Error::Invalid(format!(
            "container {id} is not running (it is {status})"
        )));
    }
    crate::vm::agent::container_stats(&dir, id)
}

/// Refuses a verb the vm level does not have (the guest's processes and
/// cgroups are not the host's to list or resize).
pub fn unsupported(id: &str, verb: &str) -> Error {
    Error::Invalid(format!(
        "{verb} is not available for container {id}: it runs at the vm level"
    ))
}

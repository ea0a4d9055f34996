//! The agent's whole API, one function per [`Request`], each validating its
//! input before acting. This layer knows nothing about streams: requests that
//! continue on the connection (raw transfers, power) say so in their
//! [`Outcome`] and [`crate::serve`] carries that out after replying.

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

use isola_protocol::{ProcessKey, Request, Response, StdioStream, MAX_FRAME_LEN, PROTOCOL_VERSION};

use crate::container;

use crate::exec;
use crate::sys;
use crate::vsock::{VsockStream, HOST_CID};

/// Largest file ReadFile returns: its data travels base64-encoded (4/3
/// larger) in one frame of at most MAX_FRAME_LEN, minus room for the rest of
/// the envelope.
pub const MAX_READ_FILE: u64 = (MAX_FRAME_LEN as u64 - 4096) / 4 * 3;

/// What to do once the reply is on the wire.
#[derive(Debug, PartialEq, Eq)]
pub enum Then {
    /// Read the next request.
    Continue,
    /// Read exactly this many raw bytes and answer with their sha256.
    HashStream(u64),
    /// Write this many pattern bytes, then close our side.
    GenerateStream(u64),
    /// Hand the connection over as a standard stream of a process.
    Attach(ProcessKey, StdioStream),
    PowerOff,
    Reboot,
}

pub struct Outcome {
    pub reply: Response,
    pub then: Then,
}

impl From<Response> for Outcome {
    fn from(reply: Response) -> Self {
        Outcome {
            reply,
            then: Then::Continue,
        }
    }
}

fn ok_then(then: Then) -> Outcome {
    Outcome {
        reply: Response::Ok,
        then,
    }
}

/// An error reply; the message is what the host shows its user.
pub fn error(message: impl std::fmt::Display) -> Response {
    Response::Error {
        message: message.to_string(),
    }
}

fn from_result(r: Result<Response, String>) -> Outcome {
    r.unwrap_or_else(error).into()
}

pub fn handle(req: Request) -> Outcome {
    match req {
        Request::Ping => Response::Pong.into(),
        Request::Version => version().into(),
        Request::Exec {
            argv,
            env,
            cwd,
            stdin,
        } => from_result(exec_request(&argv, &env, cwd.as_deref(), &stdin)),
        Request::Mount {
            source,
            target,
            fstype,
            readonly,
        } => from_result(mount(&source, &target, &fstype, readonly)),
        Request::ReadFile { path } => from_result(read_file(&path)),
        Request::WriteFile { path, data } => from_result(write_file(&path, &data)),
        Request::HashStream { len } => ok_then(Then::HashStream(len)),
        Request::GenerateStream { len } => ok_then(Then::GenerateStream(len)),
        Request::ConnectHost { port, payload } => from_result(connect_host(port, &payload)),
        Request::CreateContainer {
            id,
            spec,
            image_device,
            root_share,
            scratch_device,
            files,
            volumes,
            terminal,
            stdin: _,
        } => from_result(
            container::RootSource::from_request(image_device, root_share, scratch_device).and_then(
                |root| container::create_container(&id, &spec, &root, &files, &volumes, terminal),
            ),
        ),
        Request::CreateExec {
            id,
            exec_id,
            process,
            terminal,
            stdin: _,
        } => from_result(container::create_exec(&id, &exec_id, &process, terminal)),
        // The stream is attached, or refused, by the connection itself
        // (`serve`), which holds its descriptor.
        Request::AttachStdio { key, stream } => ok_then(Then::Attach(key, stream)),
        Request::StartProcess { key } => from_result(container::start(&key)),
        Request::WaitProcess { key } => from_result(container::wait(&key)),
        Request::SignalContainer { id, signal, all } => {
            from_result(container::signal(&id, &signal, all))
        }
        Request::SignalProcess { key, signal } => {
            from_result(container::signal_process(&key, signal))
        }
        Request::FreezeContainer { id, paused } => from_result(container::freeze(&id, paused)),
        Request::UpdateContainer { id, resources } => {
            from_result(container::update(&id, &resources))
        }
        Request::ResizeTerminal { key, rows, cols } => {
            from_result(container::resize(&key, rows, cols))
        }
        Request::ContainerStats { id } => from_result(container::stats(&id)),
        Request::Restored {
            unix_time_ns,
            entropy,
        } => from_result(crate::restored::settle(unix_time_ns, &entropy).map(|()| Response::Ok)),
        Request::Shutdown => ok_then(Then::PowerOff),
        Request::Reboot => ok_then(Then::Reboot),
    }
}

fn version() -> Response {
    Response::Version {
        protocol: PROTOCOL_VERSION,
        agent: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

fn exec_request(
    argv: &[String],
    env: &[String],
    cwd: Option<&str>,
    stdin: &[u8],
) -> Result<Response, String> {
    if let Some(cwd) = cwd {
        if cwd.is_empty() {
            return Err("cwd is empty".into());
        }
    }
    let cmd = exec::Command {
        argv,
        env,
        cwd,
        stdin,
    };
    tracing::debug!(?argv, ?cwd, "exec");
    let result = exec::run(&cmd).map_err(|e| e.to_string())?;
    tracing::debug!(?argv, status = result.status, "exec done");
    Ok(Response::Exec(result))
}

/// Paths from the host must be absolute: the agent's cwd is nobody's
/// business, and "relative to /" would only hide host bugs.
fn absolute<'a>(what: &str, path: &'a str) -> Result<&'a Path, String> {
    if path.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if !path.starts_with('/') {
        return Err(format!("{what} {path:?} is not an absolute path"));
    }
    if path.contains('\0') {
        return Err(format!("{what} {path:?} contains a NUL byte"));
    }
    Ok(Path::new(path))
}

fn mount(source: &str, target: &str, fstype: &str, readonly: bool) -> Result<Response, String> {
    if source.is_empty() {
        return Err("mount source is empty".into());
    }
    if fstype.is_empty() {
        return Err("filesystem type is empty".into());
    }
    let target_path = absolute("mount target", target)?;
    fs::create_dir_all(target_path)
        .map_err(|e| format!("cannot create mount point {target:?}: {e}"))?;
    let flags = if readonly { libc::MS_RDONLY } else { 0 };
    sys::mount(source, target, fstype, flags, None)
        .map_err(|e| format!("mount {source:?} on {target:?} ({fstype}): {e}"))?;
    tracing::info!(source, target, fstype, readonly, "mounted");
    Ok(Response::Ok)
}

fn read_file(path: &str) -> Result<Response, String> {
    let p = absolute("path", path)?;
    let file = fs::File::open(p).map_err(|e| format!("cannot open {path:?}: {e}"))?;
    // Read at most one byte more than allowed instead of trusting the size
    // in the metadata: /proc and /sys files report 0 and still have data.
    let mut data = Vec::new();
    file.take(MAX_READ_FILE + 1)
        .read_to_end(&mut data)
        .map_err(|e| format!("cannot read {path:?}: {e}"))?;
    if data.len() as u64 > MAX_READ_FILE {
        return Err(format!(
            "{path:?} is larger than the {MAX_READ_FILE}-byte limit of ReadFile"
        ));
    }
    Ok(Response::File { data })
}

fn write_file(path: &str, data: &[u8]) -> Result<Response, String> {
    let p = absolute("path", path)?;
    let mut file = fs::File::create(p).map_err(|e| format!("cannot create {path:?}: {e}"))?;
    file.write_all(data)
        .map_err(|e| format!("cannot write {path:?}: {e}"))?;
    match file.sync_all() {
        // Special files (/proc/sys, /sys, cgroupfs: the usual targets of a
        // host tweaking the guest) have nothing to sync and say EINVAL.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(Response::Ok),
        Err(e) => Err(format!("cannot sync {path:?}: {e}")),
        Ok(()) => Ok(Response::Ok),
    }
}

fn connect_host(port: u32, payload: &[u8]) -> Result<Response, String> {
    let send = || -> io::Result<()> {
        let mut conn = VsockStream::connect(HOST_CID, port)?;
        conn.write_all(payload)
        // Dropping the stream closes it: the host sees EOF after the payload.
    };
    send().map_err(|e| format!("cannot send to host vsock port {port}: {e}"))?;
    Ok(Response::Ok)
}

//! The shim's control socket: other `isola-runtime` processes ask it to
//! start the container, one line each way (`start` → `ok` or `error: ...`).
//! The shim does the start itself because it waits for the container on
//! the same agent, and the agent can be waited on only once started.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::paths::SocketDir;

pub const CONTROL_SOCKET: &str = "shim.sock";

/// Booting is done by then; a start is a round trip to the agent.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// Sends `request` to the shim of the container whose directory is `dir`.
pub fn request(dir: &Path, request: &str) -> Result<()> {
    let sockets = SocketDir::open(dir).map_err(Error::io(dir))?;
    let socket = dir.join(CONTROL_SOCKET);
    let mut stream =
        UnixStream::connect(sockets.path(CONTROL_SOCKET)).map_err(Error::io(&socket))?;
    stream
        .set_read_timeout(Some(REPLY_TIMEOUT))
        .map_err(Error::io(&socket))?;
    writeln!(stream, "{request}").map_err(Error::io(&socket))?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .map_err(Error::io(&socket))?;
    match line.trim_end() {
        "ok" => Ok(()),
        "" => Err(Error::Vm(
            "the container's shim hung up without an answer".into(),
        )),
        other => Err(Error::Vm(
            other.strip_prefix("error: ").unwrap_or(other).to_owned(),
        )),
    }
}

/// The shim's pid, from its control socket's peer credentials: how to find
/// a shim whose record is too broken to name it. The shim reads nothing
/// from this connection and drops it.
pub fn shim_pid(dir: &Path) -> Option<i32> {
    let sockets = SocketDir::open(dir).ok()?;
    let stream = UnixStream::connect(sockets.path(CONTROL_SOCKET)).ok()?;
    let cred = rustix::net::sockopt::socket_peercred(&stream).ok()?;
    Some(cred.pid.as_raw_nonzero().get())
}

/// Reads one request from a connection the shim accepted.
pub fn read_request(stream: &UnixStream) -> Option<String> {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    Some(line.trim_end().to_owned())
}

/// Answers it.
pub fn reply(mut stream: &UnixStream, outcome: &Result<()>) {
    let line = match outcome {
        Ok(()) => "ok".to_owned(),
        Err(e) => format!("error: {}", e.to_string().replace('\n', " ")),
    };
    let _ = writeln!(stream, "{line}");
}

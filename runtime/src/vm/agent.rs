//! Talking to a container's guest agent from any host process (the
//! supervisor, `exec`, `kill`): through the vsock bridge socket in the
//! container's directory.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use isola_protocol::{AgentClient, ProcessKey, Request, StdioStream, AGENT_VSOCK_PORT};
use isola_vmm::virtio::vsock::host as bridge;

use crate::error::{Error, Result};
use crate::paths::SocketDir;

use super::VSOCK_SOCKET;

/// How long a connection waits for the agent's answer to CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub type AgentConn = AgentClient<UnixStream>;

/// A protocol connection to the agent of the VM whose container directory
/// is `dir`. Requests on it have no read timeout (`WaitProcess` blocks for
/// the container's life): the caller sets one where it must.
pub fn connect_agent(dir: &Path) -> Result<AgentConn> {
    let stream = connect_stream(dir)?;
    stream
        .set_read_timeout(None)
        .map_err(Error::io(dir.join(VSOCK_SOCKET)))?;
    Ok(AgentClient::new(stream))
}

/// How often a connection the guest refused is tried again, and the first
/// pause (doubled each time). The agent listens for the VM's whole life, so
/// a refusal means its accept backlog was full or the guest short of memory
/// for a moment; a bridge that hung up or a guest that did not answer is
/// not retried.
const REFUSED_RETRIES: u32 = 4;
const REFUSED_BACKOFF: Duration = Duration::from_millis(50);

fn connect_stream(dir: &Path) -> Result<UnixStream> {
    let sockets = SocketDir::open(dir).map_err(Error::io(dir))?;
    let path = sockets.path(VSOCK_SOCKET);
    let mut attempt = 0;
    loop {
        match bridge::connect(&path, AGENT_VSOCK_PORT, CONNECT_TIMEOUT) {
            Err(e) if bridge::GuestRefused::is(&e) && attempt < REFUSED_RETRIES => {
                let pause = REFUSED_BACKOFF * 2u32.pow(attempt);
                tracing::warn!("{e}; trying again in {pause:?}");
                std::thread::sleep(pause);
                attempt += 1;
            }
            other => break other,
        }
    }
    .map_err(|e| {
        Error::Vm(format!(
            "cannot reach the container's guest agent ({}): {e}",
            dir.join(VSOCK_SOCKET).display()
        ))
    })
}

/// Opens one standard stream of a process: after the agent's `Ok`, the
/// connection carries that stream's raw bytes.
pub fn open_stdio(dir: &Path, key: &ProcessKey, stream: StdioStream) -> Result<UnixStream> {
    let mut client = connect_agent(dir)?;
    client
        .expect_ok(Request::AttachStdio {
            key: key.clone(),
            stream,
        })
        .map_err(agent_error)?;
    Ok(client.into_stream())
}

/// Sends one request that is answered `Ok` on a connection of its own
/// (a signal, a resize: rare, so not worth a held connection).
pub fn send(dir: &Path, request: Request) -> Result<()> {
    connect_agent(dir)?.expect_ok(request).map_err(agent_error)
}

/// How long the guest's runner may take for one statistics sample.
const STATS_TIMEOUT: Duration = Duration::from_secs(30);

/// One statistics sample of container `id`, as the guest runner's `events
/// --stats` prints it: runc's `{"type":"stats","id":..,"data":..}` line.
pub fn container_stats(dir: &Path, id: &str) -> Result<String> {
    let mut agent = connect_agent(dir)?;
    agent
        .stream()
        .set_read_timeout(Some(STATS_TIMEOUT))
        .map_err(Error::io(dir.join(VSOCK_SOCKET)))?;
    match agent
        .call(Request::ContainerStats { id: id.to_owned() })
        .map_err(agent_error)?
    {
        isola_protocol::Response::Stats { json } => Ok(json.trim_end().to_owned()),
        other => Err(Error::Vm(format!(
            "unexpected answer from the guest agent: {other:?}"
        ))),
    }
}

/// An agent's refusal or a broken connection, for the user.
pub fn agent_error(e: isola_protocol::ClientError) -> Error {
    match e {
        isola_protocol::ClientError::Agent(message) => Error::Vm(message),
        other => Error::Vm(format!("guest agent: {other}")),
    }
}

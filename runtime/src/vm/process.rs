//! An extra process (`exec`) at the vm level: it runs in the container's VM,
//! started by the guest's agent with its own stdio streams, which this side
//! copies to and from the caller's stdio (or, with a terminal, a local
//! socket the caller treats as the terminal's master). Both front-ends'
//! `exec` come here.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;

use isola_protocol::{ProcessKey, Request, Response, StdioStream};
use serde_json::Value;

use super::agent::{agent_error, open_stdio, send};
use super::{connect_agent, AgentConn};
use crate::error::{Error, Result};

/// The host's side of a process running in a VM.
#[derive(Debug)]
pub struct VmExec {
    key: ProcessKey,
    /// The container's directory, to reach the agent.
    dir: std::path::PathBuf,
    waiter: Waiter,
    /// The container's directory, to reach the agent with terminal
    /// resizes; only with a terminal.
    resize_dir: Option<std::path::PathBuf>,
    /// Copies of the process's output; joined before its status is
    /// returned, so no output is lost.
    outputs: Vec<JoinHandle<()>>,
}

struct Waiter(AgentConn);

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Waiter")
    }
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A new exec id: 7 base-36 characters (78 billion values) mixed from the
/// time, the pid and a counter, so unique in practice even when a host pid
/// comes back while the agent still remembers an ended exec's status.
fn exec_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut n = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ u64::from(NEXT.fetch_add(1, Ordering::Relaxed)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    (0..7)
        .map(|_| {
            let d = digits[(n % 36) as usize] as char;
            n /= 36;
            d
        })
        .collect()
}

/// How long a process's output may keep flowing after its status is known.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Starts `process` (an OCI process JSON) in container `id`, whose VM's
/// directory is `dir`. Returns the local end of its terminal, if it has one,
/// and the handle to wait for it.
pub fn exec(
    dir: &Path,
    id: &str,
    process: &Value,
    tty: bool,
    size: Option<(u16, u16)>,
) -> Result<(Option<OwnedFd>, VmExec)> {
    let exec_id = exec_id();
    let key = ProcessKey {
        id: id.to_owned(),
        exec_id: Some(exec_id.clone()),
    };
    let mut control = connect_agent(dir)?;
    control
        .expect_ok(Request::CreateExec {
            id: id.to_owned(),
            exec_id,
            process: process.to_string(),
            terminal: tty,
            stdin: true,
        })
        .map_err(agent_error)?;
    let stdout = open_stdio(dir, &key, StdioStream::Stdout)?;
    let stdin = open_stdio(dir, &key, StdioStream::Stdin)?;
    let stderr = if tty {
        None
    } else {
        Some(open_stdio(dir, &key, StdioStream::Stderr)?)
    };
    let waiter = connect_agent(dir)?;
    if let (true, Some((rows, cols))) = (tty, size) {
        // Kept by the agent until the terminal exists.
        control
            .expect_ok(Request::ResizeTerminal {
                key: key.clone(),
                rows,
                cols,
            })
            .map_err(agent_error)?;
    }
    control
        .expect_ok(Request::StartProcess { key: key.clone() })
        .map_err(agent_error)?;

    let mut outputs = Vec::new();
    let terminal = if tty {
        // The caller drives this like a terminal master: reads the
        // output, writes keystrokes.
        let (ours, theirs) = UnixStream::pair().map_err(Error::io("socketpair"))?;
        let to_caller = ours.try_clone().map_err(Error::io("socketpair"))?;
        let closer = ours.try_clone().map_err(Error::io("socketpair"))?;
        copy_thread(ours, stdin);
        outputs.push(std::thread::spawn(move || {
            copy(stdout, to_caller);
            // The caller reads until end of file, which the keystroke
            // copy's end of the pair would otherwise hold off.
            let _ = closer.shutdown(std::net::Shutdown::Both);
        }));
        Some(OwnedFd::from(theirs))
    } else {
        outputs.push(copy_thread(stdout, File::from(dup(1)?)));
        if let Some(stderr) = stderr {
            outputs.push(copy_thread(stderr, File::from(dup(2)?)));
        }
        // Our stdin (the caller made it /dev/null without -i) ends the
        // process's stdin when it ends.
        copy_thread(File::from(dup(0)?), stdin);
        None
    };
    Ok((
        terminal,
        VmExec {
            key,
            dir: dir.to_path_buf(),
            waiter: Waiter(waiter),
            resize_dir: tty.then(|| dir.to_path_buf()),
            outputs,
        },
    ))
}

impl VmExec {
    /// A function that resizes the process's terminal (SIGWINCH), if it
    /// has one.
    pub fn resizer(&mut self) -> Option<Box<dyn FnMut(u16, u16) + Send>> {
        let dir = self.resize_dir.take()?;
        let key = self.key.clone();
        // A connection per resize: resizes are rare, and a connection held
        // for the process's life would be one more the agent serves.
        Some(Box::new(move |rows, cols| {
            let sent = send(
                &dir,
                Request::ResizeTerminal {
                    key: key.clone(),
                    rows,
                    cols,
                },
            );
            if let Err(e) = sent {
                tracing::debug!("terminal resize not delivered: {e}");
            }
        }))
    }

    /// A function that sends a signal (a number) to the process.
    pub fn signaller(&self) -> impl Fn(i32) + Send + 'static {
        let (dir, key) = (self.dir.clone(), self.key.clone());
        move |signal| {
            let sent = send(
                &dir,
                Request::SignalProcess {
                    key: key.clone(),
                    signal,
                },
            );
            if let Err(e) = sent {
                tracing::warn!("signal {signal} not passed to the process: {e}");
            }
        }
    }

    pub fn wait(mut self) -> Result<i32> {
        let reply = self
            .waiter
            .0
            .call(Request::WaitProcess {
                key: self.key.clone(),
            })
            .map_err(agent_error)?;
        tracing::debug!(?reply, "the agent says the process ended");
        // A background child in the guest may hold the streams open after
        // the process ended; its status must not wait for that.
        let deadline = std::time::Instant::now() + DRAIN_TIMEOUT;
        for output in self.outputs.drain(..) {
            while !output.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        tracing::debug!("its output streams ended");
        match reply {
            Response::Exited { code, .. } => Ok(code),
            other => Err(Error::Vm(format!(
                "unexpected answer from the guest agent: {other:?}"
            ))),
        }
    }
}

pub(crate) fn dup(fd: i32) -> Result<OwnedFd> {
    // SAFETY: fds 0-2 are open for the life of the process (the CLI's
    // stdio); the borrow only lasts for the dup.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    borrowed
        .try_clone_to_owned()
        .map_err(Error::io(format!("fd {fd}")))
}

/// Copies until either side ends; the writer is closed then (the peer sees
/// end of file).
pub(crate) fn copy_thread(
    from: impl Read + Send + 'static,
    to: impl Write + Send + 'static,
) -> JoinHandle<()> {
    std::thread::spawn(move || copy(from, to))
}

pub(crate) fn copy(mut from: impl Read, mut to: impl Write) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).and_then(|_| to.flush()).is_err() {
                    break;
                }
            }
        }
    }
}

//! The supervisor's running phase: container output to the log file and to
//! attached CLIs, their input to the container, and the init's exit.
//!
//! One thread per source (each output, each client, the listener, the
//! reaper) feeds one bounded channel; the main loop owns every sink. The
//! bound is what keeps a container flooding stdout from growing our memory:
//! its pipe simply fills and it waits, as under docker.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use rustix::process::wait;

use super::wait_all;

use super::attach::{Frame, MAX_PAYLOAD};
use super::stdio::HostEnds;
use super::{Session, LOG_KEEP, LOG_MAX_SIZE};
use crate::error::{Error, Result};
use crate::logs::{LogWriter, Stream};
use crate::paths::ContainerPaths;

/// Output still in flight after the init exits is read for at most this
/// long (a daemonised grandchild may hold the pipe open forever).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// A client that does not read its output for this long is dropped.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

enum Event {
    Output(Stream, Vec<u8>),
    OutputClosed,
    Client(UnixStream),
    Input(Frame),
    Exited(Ended),
}

/// How the container's init ended, as its watcher learned it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ended {
    pub code: i32,
    /// Known to the watcher (the guest's cgroup, at the vm level); else the
    /// supervisor asks the host's cgroup.
    pub oom_killed: Option<bool>,
    /// Why it ended when it was not its own doing (its VM died).
    pub error: Option<String>,
}

/// Blocks until the container's init has ended (run on a thread).
pub(crate) type ExitWatch = Box<dyn FnOnce() -> Ended + Send>;
/// Applies a terminal size the attached CLI sends.
pub(crate) type Resize = Box<dyn FnMut(u16, u16)>;

/// How the running phase ended: the init's status, and the CLIs still
/// attached (they get `Exit` once the supervisor has cleaned up).
pub(crate) struct Outcome {
    pub ended: Ended,
    pub clients: Vec<UnixStream>,
}

pub(crate) fn run(
    session: &mut Session,
    listener: UnixListener,
    first_client: Option<UnixStream>,
    paths: &ContainerPaths,
    exit: ExitWatch,
    mut resize: Resize,
) -> Result<Outcome> {
    let (tx, rx) = sync_channel::<Event>(64);
    let mut log = LogWriter::open(&paths.log(), LOG_MAX_SIZE, LOG_KEEP)?;

    let mut stdin: Option<File> = None;
    let mut terminal: Option<File> = None;
    let mut open_outputs = 0;
    match std::mem::replace(&mut session.host_ends, HostEnds::Terminal) {
        HostEnds::Pipes {
            stdin: input,
            stdout,
            stderr,
        } => {
            stdin = input.map(File::from);
            spawn_reader(stdout, Stream::Stdout, tx.clone());
            open_outputs = 1;
            if let Some(stderr) = stderr {
                spawn_reader(stderr, Stream::Stderr, tx.clone());
                open_outputs = 2;
            }
        }
        HostEnds::Terminal => {
            if let Some(master) = session.master.take() {
                let reader = master.try_clone().map_err(Error::io("terminal"))?;
                spawn_reader(reader, Stream::Stdout, tx.clone());
                terminal = Some(File::from(master));
                open_outputs = 1;
            }
        }
    }
    spawn_watcher(exit, tx.clone());
    let mut clients = Vec::new();
    if let Some(client) = first_client {
        if let Some(writer) = client_writer(&client) {
            clients.push(writer);
        }
        spawn_client_reader(client, tx.clone());
    }
    spawn_acceptor(listener, tx.clone());
    drop(tx);

    let mut exit: Option<(Ended, Instant)> = None;
    loop {
        if let Some((ended, at)) = &exit {
            if open_outputs == 0 || at.elapsed() > DRAIN_TIMEOUT {
                let _ = log.flush();
                return Ok(Outcome {
                    ended: ended.clone(),
                    clients,
                });
            }
        }
        let event = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(e) => e,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Error::Invalid("supervisor event sources vanished".into()))
            }
        };
        match event {
            Event::Output(stream, bytes) => {
                if let Err(e) = log.write(stream, &bytes) {
                    tracing::warn!("log write: {e}");
                }
                let frame = match stream {
                    Stream::Stdout => Frame::Stdout(bytes),
                    Stream::Stderr => Frame::Stderr(bytes),
                };
                clients.retain_mut(|c| frame.write_to(c).is_ok());
            }
            Event::OutputClosed => open_outputs -= 1,
            Event::Client(writer) => clients.push(writer),
            Event::Input(Frame::Stdin(bytes)) => {
                let sink = terminal.as_mut().or(stdin.as_mut());
                if let Some(sink) = sink {
                    if sink.write_all(&bytes).is_err() {
                        stdin = None;
                    }
                }
            }
            Event::Input(Frame::StdinEof) => stdin = None,
            Event::Input(Frame::Resize { rows, cols }) => match &terminal {
                Some(t) => super::stdio::resize(t, rows, cols),
                None => resize(rows, cols),
            },
            Event::Input(_) => {}
            Event::Exited(ended) => exit = Some((ended, Instant::now())),
        }
    }
}

fn spawn_reader(fd: OwnedFd, stream: Stream, tx: SyncSender<Event>) {
    std::thread::spawn(move || {
        let mut file = File::from(fd);
        let mut buf = vec![0u8; MAX_PAYLOAD];
        loop {
            match file.read(&mut buf) {
                // EIO is how a terminal master says its last slave closed.
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(Event::Output(stream, buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = tx.send(Event::OutputClosed);
    });
}

fn spawn_watcher(exit: ExitWatch, tx: SyncSender<Event>) {
    std::thread::spawn(move || {
        let _ = tx.send(Event::Exited(exit()));
    });
}

/// Reaps every child (`wait`: pid -1; rustix maps `waitpid(None)` to 0,
/// our process group only), the init and orphans reparented to us, and
/// returns the init's status in docker's numbers.
pub(crate) fn reap_until(pid: i32) -> Ended {
    loop {
        match wait(wait_all()) {
            Ok(Some((child, status))) if child.as_raw_nonzero().get() == pid => {
                let code = status
                    .exit_status()
                    .or_else(|| status.terminating_signal().map(|s| 128 + s))
                    .unwrap_or(255);
                return Ended {
                    code,
                    ..Ended::default()
                };
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!("waiting for the container's init ({pid}): {e}");
                return Ended {
                    code: 255,
                    ..Ended::default()
                };
            }
        }
    }
}

fn spawn_acceptor(listener: UnixListener, tx: SyncSender<Event>) {
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Some(writer) = client_writer(&client) else {
                continue;
            };
            if tx.send(Event::Client(writer)).is_err() {
                return;
            }
            spawn_client_reader(client, tx.clone());
        }
    });
}

fn client_writer(client: &UnixStream) -> Option<UnixStream> {
    let writer = client.try_clone().ok()?;
    writer.set_write_timeout(Some(CLIENT_WRITE_TIMEOUT)).ok()?;
    Some(writer)
}

fn spawn_client_reader(mut client: UnixStream, tx: SyncSender<Event>) {
    std::thread::spawn(move || {
        while let Ok(Some(frame)) = Frame::read_from(&mut client) {
            if tx.send(Event::Input(frame)).is_err() {
                return;
            }
        }
    });
}

//! The shim of a vm-level container made through the OCI runtime: the
//! process `create` leaves behind and names in `--pid-file`, as runc leaves
//! the container's init. It holds the VM (the VMM runs on its threads), the
//! stdio the caller gave `create` (conmon's pipes) or the caller's terminal,
//! and exits with the container's status, so a caller that waits for "the
//! container's process" (conmon, as a subreaper) gets the right one.

use std::fs::File;
use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use isola_protocol::{ProcessKey, Request, StdioStream};
use rustix::event::{poll, PollFd, PollFlags, Timespec};

use super::control::{self, CONTROL_SOCKET};
use super::guest_bundle::{self, ROOT_TAG};
use super::record::{Phase, VmRecord};
use super::terminal::HostTerminal;
use crate::error::{Error, Result};
use crate::liveness;
use crate::paths::SocketDir;
use crate::supervisor::{exit_watch, Ended};
use crate::vm::agent::{agent_error, open_stdio, send};
use crate::vm::process::{copy_thread, dup};
use crate::vm::{connect_agent, AgentConn, Sandbox, Volume};

/// Control requests (create, start, resize) get this long to be answered.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the container's output may keep flowing after its status is
/// known: the agent closes the streams when the process ends.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the shim is asked to run.
#[derive(Debug)]
pub struct ShimArgs {
    /// The container's directory under the state root.
    pub dir: PathBuf,
    pub id: String,
    pub bundle: PathBuf,
    pub console_socket: Option<PathBuf>,
}

/// Runs the shim: reports `created` (or `error: ...`) on `report` once the
/// container exists in its VM, then serves until the container ends;
/// returns its exit status.
pub fn run(args: &ShimArgs, mut report: File) -> i32 {
    // Its own session: the caller's terminal signals are not ours, and a
    // pty can become our controlling terminal.
    let _ = rustix::process::setsid();
    let shim = match Shim::create(args) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("creating container {}: {e}", args.id);
            let _ = writeln!(report, "error: {e}");
            return 1;
        }
    };
    let _ = writeln!(report, "created");
    drop(report);
    forward_signals(&args.dir, &args.id);
    shim.serve()
}

struct Shim {
    dir: PathBuf,
    key: ProcessKey,
    sandbox: Sandbox,
    control: AgentConn,
    listener: UnixListener,
    _sockets: SocketDir,
    /// Copies of the container's output; drained before the shim exits.
    outputs: Vec<JoinHandle<()>>,
    record: VmRecord,
}

impl Shim {
    fn create(args: &ShimArgs) -> Result<Shim> {
        let dir = &args.dir;
        let guest = guest_bundle::prepare(&args.bundle)?;
        let console = std::env::var_os("ISOLA_VM_CONSOLE").map(|_| dir.join("console.log"));
        tracing::debug!(size = ?guest.size, "booting the VM");
        // The root comes over virtio-fs, which templates cannot serve.
        let sandbox = Sandbox::boot(dir, None, None, &guest.shares(), guest.size, console, None)?;
        let key = ProcessKey {
            id: args.id.clone(),
            exec_id: None,
        };
        let made = (|| {
            let mut control = connect_agent(dir)?;
            control
                .stream()
                .set_read_timeout(Some(CONTROL_TIMEOUT))
                .map_err(Error::io(dir))?;
            control.handshake().map_err(agent_error)?;
            let tty = args.console_socket.is_some();
            control
                .expect_ok(Request::CreateContainer {
                    id: args.id.clone(),
                    spec: guest.spec.clone(),
                    image_device: None,
                    root_share: Some(ROOT_TAG.into()),
                    scratch_device: None,
                    files: guest.files.clone(),
                    volumes: guest.volumes.iter().map(Volume::to_guest).collect(),
                    terminal: tty,
                    stdin: true,
                })
                .map_err(agent_error)?;
            let outputs = match &args.console_socket {
                Some(socket) => relay_terminal(dir, &key, &mut control, socket)?,
                None => relay_pipes(dir, &key)?,
            };
            let sockets = SocketDir::open(dir).map_err(Error::io(dir))?;
            let _ = std::fs::remove_file(dir.join(CONTROL_SOCKET));
            let listener = UnixListener::bind(sockets.path(CONTROL_SOCKET))
                .map_err(Error::io(dir.join(CONTROL_SOCKET)))?;
            let me = std::process::id() as i32;
            let mut record = VmRecord::load(dir)?;
            record.phase = Phase::Created;
            record.shim_pid = me;
            record.shim_start_time = liveness::start_time(me).unwrap_or(0);
            record.save(dir)?;
            Ok::<_, Error>((control, outputs, sockets, listener, record))
        })();
        match made {
            Ok((control, outputs, sockets, listener, record)) => Ok(Shim {
                dir: dir.clone(),
                key,
                sandbox,
                control,
                listener,
                _sockets: sockets,
                outputs,
                record,
            }),
            Err(e) => {
                sandbox.stop();
                Err(e)
            }
        }
    }

    fn serve(mut self) -> i32 {
        let mut exited: Option<Receiver<Ended>> = None;
        let ended = loop {
            if let Some(rx) = &exited {
                if let Ok(ended) = rx.try_recv() {
                    break ended;
                }
            } else if let Some(reason) = self.sandbox.ended() {
                break Ended {
                    code: 137,
                    oom_killed: Some(false),
                    error: Some(format!(
                        "the container's VM stopped before its start: {reason}"
                    )),
                };
            }
            // `delete --force` of a container whose record was unreadable
            // could not name this shim: the record's going ends it.
            if !VmRecord::path(&self.dir).exists() {
                break Ended {
                    code: 137,
                    oom_killed: Some(false),
                    error: Some("the container was deleted".into()),
                };
            }
            let mut fds = [PollFd::new(&self.listener, PollFlags::IN)];
            let tick = Timespec {
                tv_sec: 0,
                tv_nsec: 100_000_000,
            };
            if poll(&mut fds, Some(&tick)).unwrap_or(0) == 0 {
                continue;
            }
            let Ok((stream, _)) = self.listener.accept() else {
                continue;
            };
            let request = control::read_request(&stream).unwrap_or_default();
            let mut words = request.split_whitespace();
            match (words.next(), words.next()) {
                (Some("start"), None) if exited.is_some() => control::reply(
                    &stream,
                    &Err(Error::Invalid("the container has already started".into())),
                ),
                (Some("start"), None) => match self.start() {
                    Ok(rx) => {
                        exited = Some(rx);
                        control::reply(&stream, &Ok(()));
                    }
                    Err(e) => {
                        // The guest removed the container: nothing is left
                        // to start, and the caller must see it end.
                        control::reply(&stream, &Err(Error::Vm(e.to_string())));
                        break Ended {
                            code: 1,
                            oom_killed: Some(false),
                            error: Some(format!("the start failed: {e}")),
                        };
                    }
                },
                // A created container's process does not run yet in the
                // guest. runc's waiting init is its pid namespace's init,
                // which only KILL ends; so here: KILL stops the VM, other
                // signals do nothing.
                (Some("kill"), Some(signal)) if exited.is_none() => {
                    control::reply(&stream, &Ok(()));
                    if signal_number(signal) == 9 {
                        break Ended {
                            code: 137,
                            oom_killed: Some(false),
                            error: None,
                        };
                    }
                    tracing::debug!("signal {signal} to a created container: ignored");
                }
                _ => control::reply(
                    &stream,
                    &Err(Error::Invalid(format!("unknown shim request {request:?}"))),
                ),
            }
        };
        self.record.phase = Phase::Stopped;
        if let Err(e) = self.record.save(&self.dir) {
            tracing::warn!("recording the end: {e}");
        }
        if let Some(why) = &ended.error {
            tracing::error!("container {}: {why}", self.key.id);
        }
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        for output in self.outputs.drain(..) {
            while !output.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.sandbox.stop();
        let _ = std::fs::remove_file(self.dir.join(CONTROL_SOCKET));
        ended.code
    }

    /// Starts the container's process and watches for its end.
    fn start(&mut self) -> Result<Receiver<Ended>> {
        // Asked before the start, on its own connection, so no exit is missed.
        let waiter = connect_agent(&self.dir)?;
        self.control
            .expect_ok(Request::StartProcess {
                key: self.key.clone(),
            })
            .map_err(agent_error)?;
        self.record.phase = Phase::Running;
        if let Err(e) = self.record.save(&self.dir) {
            tracing::error!("recording the start: {e}");
        }
        let watch = exit_watch(waiter, self.key.clone(), &self.sandbox);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(watch());
        });
        tracing::info!("container started in its VM");
        Ok(rx)
    }
}

/// The signal `name` (`TERM`, `SIGTERM`, `15`) as a number; 0 for one
/// this does not know.
fn signal_number(name: &str) -> i32 {
    if let Ok(n) = name.parse::<i32>() {
        return n;
    }
    let known = [
        ("HUP", 1),
        ("INT", 2),
        ("QUIT", 3),
        ("KILL", 9),
        ("USR1", 10),
        ("USR2", 12),
        ("ALRM", 14),
        ("TERM", 15),
    ];
    let name = name.trim_start_matches("SIG").to_ascii_uppercase();
    known
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, number)| *number)
}

/// The signals a caller may send the pid it knows as the container's (all
/// but those the shim cannot or must not take: KILL, STOP, the faults,
/// CHLD, PIPE, WINCH, URG).
pub(crate) fn forwarded_signals() -> Vec<i32> {
    use signal_hook::consts::*;
    let mut all = vec![
        SIGHUP,
        SIGINT,
        SIGQUIT,
        SIGUSR1,
        SIGUSR2,
        SIGTERM,
        SIGALRM,
        SIGTSTP,
        SIGTTIN,
        SIGTTOU,
        SIGXCPU,
        SIGXFSZ,
        SIGVTALRM,
        SIGPROF,
        SIGIO,
        libc::SIGPWR,
        SIGSYS,
    ];
    all.extend(libc::SIGRTMIN()..=libc::SIGRTMAX());
    all
}

/// A signal sent to the shim, whose pid the caller knows as the container's,
/// goes to the container, as it would to runc's init.
fn forward_signals(dir: &Path, id: &str) {
    let Ok(mut signals) = signal_hook::iterator::Signals::new(forwarded_signals()) else {
        tracing::warn!("cannot forward signals to the container");
        return;
    };
    let (dir, id) = (dir.to_path_buf(), id.to_owned());
    std::thread::spawn(move || {
        for signal in signals.forever() {
            let sent = send(
                &dir,
                Request::SignalContainer {
                    id: id.clone(),
                    signal: signal.to_string(),
                    all: false,
                },
            );
            if let Err(e) = sent {
                tracing::warn!("signal {signal} not passed to the container: {e}");
            }
        }
    });
}

/// The caller's stdio (conmon's pipes) to and from the process's streams.
fn relay_pipes(dir: &Path, key: &ProcessKey) -> Result<Vec<JoinHandle<()>>> {
    let stdout = open_stdio(dir, key, StdioStream::Stdout)?;
    let stderr = open_stdio(dir, key, StdioStream::Stderr)?;
    let stdin = open_stdio(dir, key, StdioStream::Stdin)?;
    // Stdin's copy is not waited for: the caller may never close it.
    copy_thread(File::from(dup(0)?), stdin);
    Ok(vec![
        copy_thread(stdout, File::from(dup(1)?)),
        copy_thread(stderr, File::from(dup(2)?)),
    ])
}

/// The caller's terminal (the master sent to `console_socket`) to and from
/// the process's terminal stream, with the caller's resizes passed on.
fn relay_terminal(
    dir: &Path,
    key: &ProcessKey,
    control: &mut AgentConn,
    console_socket: &Path,
) -> Result<Vec<JoinHandle<()>>> {
    let stdout = open_stdio(dir, key, StdioStream::Stdout)?;
    let stdin = open_stdio(dir, key, StdioStream::Stdin)?;
    // Before the pty is ours: a hangup (the caller closing the master) must
    // not end the shim, and a resize must not be lost.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGWINCH,
        signal_hook::consts::SIGHUP,
    ])
    .map_err(Error::io("signal handlers"))?;
    let terminal = HostTerminal::open_and_send(console_socket)?;
    terminal.make_controlling()?;
    if let Some((rows, cols)) = terminal.size() {
        // Kept by the agent until the terminal exists.
        control
            .expect_ok(Request::ResizeTerminal {
                key: key.clone(),
                rows,
                cols,
            })
            .map_err(agent_error)?;
    }
    let (resize_dir, resize_key, sizes) = (dir.to_path_buf(), key.clone(), terminal.file()?);
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if signal != signal_hook::consts::SIGWINCH {
                continue;
            }
            let Some((rows, cols)) = rustix::termios::tcgetwinsize(&sizes)
                .ok()
                .map(|w| (w.ws_row, w.ws_col))
            else {
                continue;
            };
            let sent = send(
                &resize_dir,
                Request::ResizeTerminal {
                    key: resize_key.clone(),
                    rows,
                    cols,
                },
            );
            if let Err(e) = sent {
                tracing::debug!("terminal resize not delivered: {e}");
            }
        }
    });
    copy_thread(terminal.file()?, stdin);
    Ok(vec![copy_thread(stdout, terminal.file()?)])
}

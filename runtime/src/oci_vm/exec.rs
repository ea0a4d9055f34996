//! `exec` into a vm-level container made through the OCI runtime: the
//! process starts in the VM (see [`crate::vm::process`]); with a terminal,
//! the caller's pty (its `--console-socket`) is relayed to the process's.
//! Detached (conmon's way), an exec shim holds the process's stdio and
//! exits with its status, as runc's detached exec leaves the process.

use std::fs::File;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::terminal::HostTerminal;
use crate::error::{Error, Result};
use crate::vm::process::{copy_thread, VmExec};

/// A started exec process.
pub struct Running {
    vm: VmExec,
    /// The copy of the process's terminal output into the caller's pty.
    relay: Option<JoinHandle<()>>,
}

impl Running {
    /// Waits for the process; its status.
    pub fn wait(self) -> Result<i32> {
        let code = self.vm.wait()?;
        if let Some(relay) = self.relay {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !relay.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(code)
    }
}

/// Starts `process` (an OCI process JSON) in container `id`.
pub fn start(
    dir: &Path,
    id: &str,
    process: &Value,
    console_socket: Option<&Path>,
) -> Result<Running> {
    let wants_tty = process
        .get("terminal")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    match (wants_tty, console_socket) {
        (true, None) => {
            return Err(Error::Invalid(
                "the process asks for a terminal: give --console-socket".into(),
            ))
        }
        (false, Some(_)) => {
            return Err(Error::Invalid(
                "--console-socket is given but the process has no terminal".into(),
            ))
        }
        _ => {}
    }
    let Some(socket) = console_socket else {
        let (_, vm) = crate::vm::process::exec(dir, id, process, false, None)?;
        return Ok(Running { vm, relay: None });
    };
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGWINCH,
        signal_hook::consts::SIGHUP,
    ])
    .map_err(Error::io("signal handlers"))?;
    let terminal = HostTerminal::open_and_send(socket)?;
    if let Err(e) = terminal.make_controlling() {
        // Only a session leader can; the caller's resizes are then lost.
        tracing::debug!("the pty cannot be our controlling terminal: {e}");
    }
    let (local, mut vm) = crate::vm::process::exec(dir, id, process, true, terminal.size())?;
    let local = UnixStream::from(
        local.ok_or_else(|| Error::Vm("the agent gave the process no terminal".into()))?,
    );
    if let Some(mut resize) = vm.resizer() {
        let sizes = terminal.file()?;
        let mut signals = signals;
        std::thread::spawn(move || {
            for signal in signals.forever() {
                if signal != signal_hook::consts::SIGWINCH {
                    continue;
                }
                if let Ok(w) = rustix::termios::tcgetwinsize(&sizes) {
                    resize(w.ws_row, w.ws_col);
                }
            }
        });
    }
    copy_thread(
        terminal.file()?,
        local.try_clone().map_err(Error::io("socketpair"))?,
    );
    let relay = copy_thread(local, terminal.file()?);
    Ok(Running {
        vm,
        relay: Some(relay),
    })
}

/// The exec shim: starts the process, reports `started` (or why not) on
/// `report`, and returns the process's status once it ends.
pub fn run_shim(
    dir: &Path,
    id: &str,
    process: &Value,
    console_socket: Option<&Path>,
    mut report: File,
) -> i32 {
    let _ = rustix::process::setsid();
    let running = match start(dir, id, process, console_socket) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(report, "error: {e}");
            return 1;
        }
    };
    let _ = writeln!(report, "started");
    drop(report);
    // The caller knows this shim's pid as the process's (podman's exec
    // timeouts, containerd's exec kill): what it sends goes to the process.
    let signal = running.vm.signaller();
    match signal_hook::iterator::Signals::new(super::shim::forwarded_signals()) {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                for s in signals.forever() {
                    signal(s);
                }
            });
        }
        Err(e) => tracing::warn!("cannot forward signals to the process: {e}"),
    }
    match running.wait() {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("exec in container {id}: {e}");
            137
        }
    }
}

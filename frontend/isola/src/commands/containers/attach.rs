//! The CLI end of an attach: the user's stdin to the container, its output
//! to the user's stdout/stderr, terminal resizes and (without a terminal)
//! Ctrl-C and other signals forwarded, until the supervisor reports the
//! exit status.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use anyhow::{Context, Result};
use isola_host::supervisor::Frame;
use isola_host::{ContainerId, Host};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGWINCH};
use signal_hook::iterator::Signals;

use super::terminal::{self, RawMode};

/// Attaches to a container started with `wait_attach` and returns its exit
/// status.
pub fn attach(host: &Host, id: &ContainerId, interactive: bool, tty: bool) -> Result<i32> {
    let stream = host.attach(id).context("attaching to the container")?;
    let mut writer = stream.try_clone().context("attach socket")?;
    let _raw = if tty { RawMode::enable() } else { None };
    if tty {
        if let Some((rows, cols)) = terminal::size() {
            let _ = Frame::Resize { rows, cols }.write_to(&mut writer);
        }
    }
    // After the size, so the program starts on the right-sized terminal.
    Frame::Ready
        .write_to(&mut writer)
        .context("attach socket")?;
    forward_signals(host, id, tty, writer.try_clone().context("attach socket")?);
    if interactive {
        std::thread::spawn(move || pump_stdin(writer));
    }
    read_output(stream, host, id)
}

fn pump_stdin(mut writer: UnixStream) {
    let mut stdin = std::io::stdin().lock();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match stdin.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if Frame::Stdin(buf[..n].to_vec())
                    .write_to(&mut writer)
                    .is_err()
                {
                    return;
                }
            }
        }
    }
    let _ = Frame::StdinEof.write_to(&mut writer);
}

/// With a terminal, Ctrl-C is a byte for the container's terminal; only
/// resizes travel as signals. Without one, docker's sig-proxy: signals to
/// the CLI go to the container.
fn forward_signals(host: &Host, id: &ContainerId, tty: bool, mut writer: UnixStream) {
    let wanted: &[i32] = if tty {
        &[SIGWINCH]
    } else {
        &[SIGINT, SIGTERM, SIGHUP, SIGQUIT]
    };
    let Ok(mut signals) = Signals::new(wanted) else {
        return;
    };
    let host = host.clone();
    let id = id.clone();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if signal == SIGWINCH {
                if let Some((rows, cols)) = terminal::size() {
                    let _ = Frame::Resize { rows, cols }.write_to(&mut writer);
                }
            } else if let Err(e) = host.kill(&id, &signal.to_string()) {
                tracing::debug!("forwarding signal {signal}: {e}");
            }
        }
    });
}

fn read_output(mut stream: UnixStream, host: &Host, id: &ContainerId) -> Result<i32> {
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    // Said once: a supervisor that hangs up after the reason but before the
    // status leaves the same reason in the record.
    let mut told = false;
    loop {
        match Frame::read_from(&mut stream) {
            Ok(Some(Frame::Stdout(bytes))) => {
                let _ = stdout.write_all(&bytes).and_then(|_| stdout.flush());
            }
            Ok(Some(Frame::Stderr(bytes))) => {
                let _ = stderr.write_all(&bytes).and_then(|_| stderr.flush());
            }
            Ok(Some(Frame::Exit(code))) => return Ok(code),
            Ok(Some(Frame::Failure(why))) => {
                eprintln!("isola: {why}");
                told = true;
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                // The supervisor went away without a status: say what the
                // record says (a killed supervisor is reconciled there).
                let record = host.record(id).context("the supervisor hung up")?;
                if let (Some(error), false) = (&record.error, told) {
                    eprintln!("isola: {error}");
                }
                return Ok(record.exit_code.unwrap_or(125));
            }
        }
    }
}

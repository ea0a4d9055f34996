//! `isola exec [-i] [-t] [-e] [-u] [-w] CONTAINER CMD...`.

use std::fs::File;
use std::io::{Read, Write};

use anyhow::Result;
use clap::Args;
use isola_host::host::ExecRequest;
use isola_host::Host;
use signal_hook::consts::SIGWINCH;
use signal_hook::iterator::Signals;

use super::flags;
use super::terminal::{self, RawMode};

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Keep STDIN open
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    tty: bool,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// User: name|uid[:group|gid]
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    container: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

pub fn run(host: &Host, args: ExecArgs) -> Result<i32> {
    let id = match host.resolve(&args.container) {
        Ok(id) => id,
        Err(e) => return Ok(super::fail(&e.into())),
    };
    if !args.interactive && !args.tty {
        // docker exec without -i gives the process no stdin.
        if let Ok(null) = File::open("/dev/null") {
            let _ = rustix::stdio::dup2_stdin(&null);
        }
    }
    let request = ExecRequest {
        args: args.command.clone(),
        env: flags::expand_env(&args.env),
        user: args.user.clone(),
        workdir: args.workdir.clone(),
        tty: args.tty,
        size: if args.tty { terminal::size() } else { None },
    };
    let mut process = match host.exec(&id, &request) {
        Ok(p) => p,
        Err(e) => return Ok(super::fail(&e.into())),
    };
    if let Some(master) = process.terminal.take() {
        let _raw = RawMode::enable();
        let master = File::from(master);
        // At the vm level the terminal is in the guest: resizes go there.
        let resizer: Box<dyn FnMut(u16, u16) + Send> = match host.exec_resizer(&mut process) {
            Some(r) => r,
            None => {
                let sized = master.try_clone()?;
                Box::new(move |rows, cols| resize(&sized, rows, cols))
            }
        };
        proxy_terminal(master, args.interactive, resizer);
        return Ok(host.wait_exec(&mut process)?);
    }
    Ok(host.wait_exec(&mut process)?)
}

fn resize(master: &File, rows: u16, cols: u16) {
    let size = rustix::termios::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let _ = rustix::termios::tcsetwinsize(master, size);
}

/// Copies the user's keystrokes to the terminal and its output back, until
/// the process closes its side.
fn proxy_terminal(master: File, interactive: bool, mut resizer: Box<dyn FnMut(u16, u16) + Send>) {
    if let Some((rows, cols)) = terminal::size() {
        resizer(rows, cols);
    }
    if interactive {
        if let Ok(mut input) = master.try_clone() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut stdin = std::io::stdin().lock();
                while let Ok(n) = stdin.read(&mut buf) {
                    if n == 0 || input.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    }
    if let Ok(mut signals) = Signals::new([SIGWINCH]) {
        std::thread::spawn(move || {
            for _ in signals.forever() {
                if let Some((rows, cols)) = terminal::size() {
                    resizer(rows, cols);
                }
            }
        });
    }
    let mut output = master;
    let mut stdout = std::io::stdout();
    let mut buf = [0u8; 16 * 1024];
    // EIO once the process's side is closed: the session is over.
    while let Ok(n) = output.read(&mut buf) {
        if n == 0
            || stdout
                .write_all(&buf[..n])
                .and_then(|_| stdout.flush())
                .is_err()
        {
            break;
        }
    }
}

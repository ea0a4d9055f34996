//! `isola-agent`: `/init` of the guest initramfs.
//!
//! Usage: isola-agent [--log-level LEVEL] [--port PORT]
//!
//! The log level can also come from `isola.log=LEVEL` on the kernel command
//! line (the flag wins). Unknown arguments are ignored with a warning: the
//! kernel passes init any command-line words it does not know.

use std::sync::Arc;
use std::time::Duration;

use isola_agent::power::{ExitProcess, Machine, Power};
use isola_agent::{init, logging, reaper, server, sys};
use isola_protocol::AGENT_VSOCK_PORT;

struct Args {
    log_level: Option<String>,
    port: u32,
    ignored: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        log_level: None,
        port: AGENT_VSOCK_PORT,
        ignored: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or(format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--log-level" => args.log_level = Some(value()?),
            "--port" => {
                let v = value()?;
                args.port = v.parse().map_err(|_| format!("bad --port {v:?}"))?;
            }
            "--help" | "-h" => {
                println!("usage: isola-agent [--log-level LEVEL] [--port PORT]");
                std::process::exit(0);
            }
            "--version" => {
                println!("isola-agent {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            _ => args.ignored.push(arg),
        }
    }
    Ok(args)
}

fn main() {
    let pid1 = sys::is_pid1();

    // Mount first: the log level may come from /proc/cmdline.
    let mut setup = init::Report::default();
    if pid1 {
        init::mount_basics(&mut setup);
        init::ensure_stdio(&mut setup);
    }

    let (args, arg_error) = match parse_args() {
        Ok(a) => (a, None),
        Err(e) if pid1 => (
            Args {
                log_level: None,
                port: AGENT_VSOCK_PORT,
                ignored: Vec::new(),
            },
            Some(e),
        ),
        Err(e) => {
            eprintln!("isola-agent: {e}");
            std::process::exit(2);
        }
    };
    let level = args
        .log_level
        .clone()
        .or_else(|| init::read_cmdline().and_then(|c| init::cmdline_value(&c, "isola.log")));
    if let Some(complaint) = logging::init(level.as_deref()) {
        eprintln!("isola-agent: {complaint}");
    }
    install_panic_hook(pid1);

    for d in &setup.done {
        tracing::debug!("{d}");
    }
    for f in &setup.failed {
        tracing::error!("{f}");
    }
    if let Some(e) = arg_error {
        tracing::warn!("{e}; using defaults");
    }
    if !args.ignored.is_empty() {
        tracing::warn!("ignoring arguments {:?}", args.ignored);
    }
    tracing::info!(
        pid1,
        "isola-agent {} (protocol {})",
        env!("CARGO_PKG_VERSION"),
        isola_protocol::PROTOCOL_VERSION
    );

    let power: Arc<dyn Power> = if pid1 {
        // Orphans are ours to reap from the start, not only once the first
        // exec has started the reaper.
        reaper::Children::global();
        Arc::new(Machine)
    } else {
        Arc::new(ExitProcess)
    };
    // Only the guest's init announces itself: another agent started by
    // hand (or by Exec) in the same guest is not "the agent is up".
    server::run_vsock(args.port, power, pid1)
}

/// Release builds abort on panic, and PID 1 dying panics the kernel. As
/// PID 1, log the panic and park the panicking thread forever instead: one
/// connection is lost, the agent stays up. (A lock the thread held stays
/// held; everything else goes on.)
fn install_panic_hook(pid1: bool) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!("panic: {info}");
        if pid1 {
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        default(info);
    }));
}

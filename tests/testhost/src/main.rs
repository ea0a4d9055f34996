//! `isola-testhost [OPTIONS] -- CMD ARGS...` / `isola-testhost --shell`: see the crate docs.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use isola_testhost::spec::{valid_env_name, Mode};
use isola_testhost::{assets, Options, EXIT_FAILURE};

/// Run a command in the isola test host: an outer Linux under QEMU TCG with emulated AMD
/// SVM, where /dev/kvm works. Prints the command's output and exits with its status
/// (124: the test host stalled or the command ran past --time-limit; 125: the test host failed).
#[derive(Debug, Parser)]
#[command(name = "isola-testhost", version)]
struct Cli {
    /// Memory of the test host, in MiB.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(256..))]
    mem: u32,

    /// vCPUs of the test host.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    cpus: u32,

    /// Stop the test host when it gives no heartbeat for this many seconds (during boot: at
    /// least 30).
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    stall_timeout: u64,

    /// Stop the command (and fail with 124) when the run, the test host's
    /// boot included, lasts longer than this many seconds; no limit by
    /// default.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    time_limit: Option<u64>,

    /// Run the command again, from a fresh boot, this many times when the
    /// test host itself fails (its kernel panics, QEMU dies, it stalls):
    /// emulated SVM under TCG is not flawless, and CI should not fail for
    /// that. The failure is still reported on stderr each time.
    #[arg(long, value_name = "N", default_value_t = 1)]
    retries: u32,

    /// Log level or filter for isola-testhost's own messages (error, warn, info, debug,
    /// trace; `debug` also shows the console).
    #[arg(long, default_value = "warn")]
    log_level: String,

    /// Save the test host's whole serial console log here.
    #[arg(long, value_name = "PATH")]
    keep_console: Option<PathBuf>,

    /// An interactive shell in the test host, on the serial console.
    #[arg(long)]
    shell: bool,

    /// The read-write work tree (default: the nearest ancestor of the working directory with
    /// .git or a Cargo workspace).
    #[arg(long, value_name = "DIR")]
    workdir: Option<PathBuf>,

    /// Another host directory to share read-write at the same path (repeatable).
    #[arg(long, value_name = "DIR")]
    share: Vec<PathBuf>,

    /// Set a variable for the command: NAME=VALUE, or NAME to pass the caller's value
    /// (repeatable).
    #[arg(short = 'e', long = "env", value_name = "NAME[=VALUE]")]
    env: Vec<OsString>,

    /// Another argument for the test host's kernel command line (repeatable; for debugging,
    /// e.g. initcall_debug).
    #[arg(long, value_name = "ARG")]
    kernel_arg: Vec<String>,

    /// The QEMU binary (>= 10).
    #[arg(
        long,
        env = "ISOLA_TESTHOST_QEMU",
        default_value = "qemu-system-x86_64"
    )]
    qemu: PathBuf,

    /// The command and its arguments (after --).
    #[arg(last = true, value_name = "CMD")]
    command: Vec<OsString>,
}

fn parse_env(items: &[OsString]) -> Result<Vec<(String, OsString)>, String> {
    let mut out = Vec::new();
    for item in items {
        let bytes = item.as_bytes();
        let (name, value) = match bytes.iter().position(|&b| b == b'=') {
            Some(eq) => (
                String::from_utf8_lossy(&bytes[..eq]).into_owned(),
                OsString::from_vec(bytes[eq + 1..].to_vec()),
            ),
            None => {
                let name = item.to_string_lossy().into_owned();
                let value = std::env::var_os(&name).unwrap_or_default();
                (name, value)
            }
        };
        if !valid_env_name(&name) {
            return Err(format!("--env: {name:?} is not a valid variable name"));
        }
        out.push((name, value));
    }
    Ok(out)
}

fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level).unwrap_or_else(|e| {
        eprintln!("isola-testhost: bad --log-level {:?}: {e}", cli.log_level);
        std::process::exit(2);
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();

    if !cli.shell && cli.command.is_empty() {
        eprintln!("isola-testhost: nothing to run: give -- CMD ARGS... or --shell");
        std::process::exit(2);
    }
    let extra_env = parse_env(&cli.env).unwrap_or_else(|e| {
        eprintln!("isola-testhost: {e}");
        std::process::exit(2);
    });
    let cwd = match std::env::current_dir() {
        Ok(cwd) => cwd,
        Err(e) => {
            eprintln!("isola-testhost: cannot read the working directory: {e}");
            std::process::exit(EXIT_FAILURE);
        }
    };
    let opts = Options {
        qemu: cli.qemu,
        cpus: cli.cpus,
        mem_mib: cli.mem,
        stall_timeout: Duration::from_secs(cli.stall_timeout),
        time_limit: cli.time_limit.map(Duration::from_secs),
        keep_console: cli.keep_console,
        mode: if cli.shell {
            Mode::Shell
        } else {
            Mode::Command
        },
        argv: cli.command,
        cwd,
        workdir: cli.workdir,
        extra_shares: cli.share,
        extra_env,
        kernel_args: cli.kernel_arg,
        cache: assets::cache_dir(),
    };
    let mut attempt = 0;
    loop {
        match isola_testhost::run(&opts) {
            Ok(f) if f.host_failed && attempt < cli.retries && !cli.shell => {
                attempt += 1;
                eprintln!(
                    "isola-testhost: the test host failed (not the command); \
                     running the command again from a fresh boot (retry {attempt} of {})",
                    cli.retries
                );
            }
            Ok(f) => std::process::exit(f.status),
            Err(e) => {
                eprintln!("isola-testhost: error: {e:#}");
                std::process::exit(EXIT_FAILURE);
            }
        }
    }
}

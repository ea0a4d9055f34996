//! The command line: runc's commands and flags, plus `--isolation`,
//! `--log-level` and `--config`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use isola_container::Isolation;

use crate::log::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "isola-runtime",
    version,
    about = "runc-compatible OCI runtime of isola"
)]
pub struct Cli {
    /// Directory holding the containers' state.
    #[arg(long, default_value = "/run/isola-runtime")]
    pub root: PathBuf,
    /// Log file (default: stderr).
    #[arg(long)]
    pub log: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Same as `--log-level debug`.
    #[arg(long)]
    pub debug: bool,
    /// error, warn, info, debug or trace (libcgroups warns about every
    /// controller the host lacks, hence error by default).
    #[arg(long, default_value = "error")]
    pub log_level: tracing::Level,
    /// The host's defaults (key `isolation`).
    #[arg(long, default_value = isola_container::config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Refused: this runtime manages cgroups through cgroupfs only.
    #[arg(long)]
    pub systemd_cgroup: bool,
    /// Accepted for runc compatibility; rootless mode is not supported.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub rootless: Option<String>,
    /// Accepted for runc compatibility; checkpointing is not supported.
    #[arg(long)]
    pub criu: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container from a bundle; its process waits for `start`.
    Create(Create),
    /// Start a created container.
    Start(Id),
    /// Print a container's state as JSON.
    State(Id),
    /// Send a signal to a container's init (or all) processes.
    Kill(Kill),
    /// Remove a container and everything it holds.
    Delete(Delete),
    /// Create and start a container; wait for it unless --detach.
    Run(Run),
    /// Run a new process inside a running container.
    Exec(Exec),
    /// List a container's processes.
    Ps(Ps),
    /// Freeze a container's processes.
    Pause(Id),
    /// Thaw a paused container.
    Resume(Id),
    /// Change a container's resource limits.
    Update(Update),
    /// Print a container's resource usage.
    Events(Events),
    /// Write a default config.json into a bundle.
    Spec(Spec),
    /// Print what this runtime supports as JSON.
    Features,
    /// List containers.
    List(List),
    /// Internal: the shim of a vm-level container (see isola_host::oci_vm).
    #[cfg(feature = "vm")]
    #[command(name = "__vm-shim", hide = true)]
    VmShim(VmShim),
    /// Internal: the shim of a detached exec at the vm level.
    #[cfg(feature = "vm")]
    #[command(name = "__vm-exec-shim", hide = true)]
    VmExecShim(VmExecShim),
}

#[cfg(feature = "vm")]
#[derive(Debug, Args)]
pub struct VmShim {
    pub id: String,
    #[arg(long)]
    pub bundle: PathBuf,
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    #[arg(long)]
    pub report_fd: i32,
}

#[cfg(feature = "vm")]
#[derive(Debug, Args)]
pub struct VmExecShim {
    pub id: String,
    #[arg(long)]
    pub process_json: String,
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    #[arg(long)]
    pub report_fd: i32,
}

#[derive(Debug, Args)]
pub struct Id {
    pub id: String,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Bundle directory (config.json + rootfs).
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket that receives the terminal's master fd.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Use chroot instead of pivot_root.
    #[arg(long)]
    pub no_pivot: bool,
    /// Accepted for runc compatibility (no session keyring is created).
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass this many fds after stdio into the container.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
    /// Isolation level (the strongest of this, the bundle's
    /// io.isola.isolation annotation and the config default wins).
    #[arg(long, value_parser = parse_isolation)]
    pub isolation: Option<Isolation>,
}

#[derive(Debug, Args)]
pub struct Create {
    #[command(flatten)]
    pub args: CreateArgs,
    pub id: String,
}

#[derive(Debug, Args)]
pub struct Run {
    #[command(flatten)]
    pub args: CreateArgs,
    /// Return once started instead of waiting for the container.
    #[arg(short, long)]
    pub detach: bool,
    /// Keep the container's state after it exits.
    #[arg(long)]
    pub keep: bool,
    pub id: String,
}

#[derive(Debug, Args)]
pub struct Kill {
    /// Signal every process in the container.
    #[arg(short, long)]
    pub all: bool,
    pub id: String,
    /// Name (TERM, SIGTERM) or number.
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

#[derive(Debug, Args)]
pub struct Delete {
    /// Kill the container first if it is still running.
    #[arg(short, long)]
    pub force: bool,
    pub id: String,
}

#[derive(Debug, Args)]
pub struct Exec {
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// KEY=VALUE, repeatable.
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Allocate a terminal (needs --console-socket).
    #[arg(short, long)]
    pub tty: bool,
    /// UID[:GID].
    #[arg(short, long)]
    pub user: Option<String>,
    #[arg(short = 'g', long)]
    pub additional_gids: Vec<u32>,
    /// A runtime-spec process JSON file; replaces the command.
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    #[arg(short, long)]
    pub detach: bool,
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Refused: no SELinux on the hosts isola targets.
    #[arg(long)]
    pub process_label: Option<String>,
    /// Refused: no AppArmor on the hosts isola targets.
    #[arg(long)]
    pub apparmor: Option<String>,
    #[arg(long)]
    pub no_new_privs: bool,
    /// Add a capability, repeatable.
    #[arg(short, long)]
    pub cap: Vec<String>,
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
    /// Sub-cgroup to join.
    #[arg(long)]
    pub cgroup: Option<String>,
    /// Exec even into a paused container.
    #[arg(long)]
    pub ignore_paused: bool,
    pub id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct Ps {
    #[arg(short, long, value_enum, default_value = "table")]
    pub format: ListFormat,
    pub id: String,
    /// Options for ps(1) in table format (default -ef).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_options: Vec<String>,
}

#[derive(Debug, Args)]
pub struct Update {
    /// runtime-spec `linux.resources` JSON file, or `-` for stdin.
    #[arg(short, long)]
    pub resources: Option<PathBuf>,
    /// Memory limit in bytes (suffixes k, m, g allowed).
    #[arg(long)]
    pub memory: Option<String>,
    #[arg(long)]
    pub memory_reservation: Option<String>,
    #[arg(long)]
    pub memory_swap: Option<String>,
    #[arg(long)]
    pub cpu_period: Option<u64>,
    #[arg(long)]
    pub cpu_quota: Option<i64>,
    #[arg(long)]
    pub cpu_shares: Option<u64>,
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    #[arg(long)]
    pub pids_limit: Option<i64>,
    pub id: String,
}

#[derive(Debug, Args)]
pub struct Events {
    /// Seconds between samples (runc's `5s` form accepted).
    #[arg(long, default_value = "5s")]
    pub interval: String,
    /// Print one sample and exit.
    #[arg(long)]
    pub stats: bool,
    pub id: String,
}

#[derive(Debug, Args)]
pub struct Spec {
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Refused: rootless mode is not supported.
    #[arg(long)]
    pub rootless: bool,
}

#[derive(Debug, Args)]
pub struct List {
    #[arg(short, long, value_enum, default_value = "table")]
    pub format: ListFormat,
    /// Print IDs only.
    #[arg(short, long)]
    pub quiet: bool,
}

fn parse_isolation(s: &str) -> Result<Isolation, String> {
    s.parse().map_err(|e: isola_container::Error| e.to_string())
}

//! Options of `create` and `exec`, independent of any command line.

use std::collections::HashMap;
use std::path::PathBuf;

/// How to create a container's init process.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Unix socket to send the terminal's master fd to (when
    /// `process.terminal` is set).
    pub console_socket: Option<PathBuf>,
    /// Where to write the init process's pid.
    pub pid_file: Option<PathBuf>,
    /// How many fds after stdio (3, 4, ...) to pass into the container.
    pub preserve_fds: i32,
    /// Use chroot instead of pivot_root (for a rootfs on ramfs).
    pub no_pivot: bool,
    /// The caller will not wait for the init process (false only for a
    /// foreground `run`).
    pub detach: bool,
}

/// How to start an extra process inside a running container.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// A runtime-spec `process` JSON file; when set, it replaces `args`.
    pub process: Option<PathBuf>,
    pub args: Vec<String>,
    pub env: HashMap<String, String>,
    pub cwd: Option<PathBuf>,
    pub user: Option<u32>,
    pub group: Option<u32>,
    pub additional_gids: Vec<u32>,
    pub capabilities: Vec<String>,
    pub no_new_privs: bool,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: i32,
    pub detach: bool,
    /// Sub-cgroup of the container's cgroup to join.
    pub cgroup: Option<String>,
    pub ignore_paused: bool,
}

//! One container's persisted record.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::ContainerId;

/// Where a container is in the one lifecycle; "removed" is the absence of a
/// record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerStatus {
    Created,
    Running,
    Stopped,
}

/// Everything `ps`, `inspect`, `wait` and `rm` need without asking a live
/// process: written by the CLI at create, then by the supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: ContainerId,
    pub name: String,
    /// The image reference the user gave, and the manifest digest it resolved to.
    pub image: String,
    pub image_digest: String,
    /// `process` or `vm`.
    pub isolation: String,
    /// The command line the container runs (entrypoint + cmd), for `ps`.
    pub command: Vec<String>,
    pub bundle: PathBuf,
    pub status: ContainerStatus,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// PID of the container's init on the host (process level) or of the VMM.
    pub pid: Option<i32>,
    /// PID of the supervisor that holds the container's stdio and exit
    /// status, and its start time (so a reused PID is not mistaken for it).
    pub supervisor_pid: Option<i32>,
    #[serde(default)]
    pub supervisor_start_time: Option<u64>,
    /// `-i`: the container's stdin is a pipe the attached CLI feeds.
    #[serde(default)]
    pub stdin_open: bool,
    /// `-t`: the container runs on a terminal.
    #[serde(default)]
    pub tty: bool,
    pub exit_code: Option<i32>,
    pub oom_killed: bool,
    /// Why the container stopped when it was not its own doing (e.g. the
    /// supervisor was killed).
    pub error: Option<String>,
    /// Remove everything once it stops (`run --rm`).
    pub auto_remove: bool,
    /// At the vm level: the image's EROFS disk, attached read-only.
    #[serde(default)]
    pub vm_disk: Option<PathBuf>,
    /// At the vm level, for a container that may start again: the disk of
    /// its writable layer.
    #[serde(default)]
    pub vm_scratch: Option<PathBuf>,
}

impl ContainerRecord {
    /// A record in state `created`, stamped now.
    pub fn new(id: ContainerId, name: String, bundle: PathBuf) -> ContainerRecord {
        ContainerRecord {
            id,
            name,
            image: String::new(),
            image_digest: String::new(),
            isolation: "process".into(),
            command: Vec::new(),
            bundle,
            status: ContainerStatus::Created,
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
            pid: None,
            supervisor_pid: None,
            supervisor_start_time: None,
            stdin_open: false,
            tty: false,
            exit_code: None,
            oom_killed: false,
            error: None,
            auto_remove: false,
            vm_disk: None,
            vm_scratch: None,
        }
    }
}

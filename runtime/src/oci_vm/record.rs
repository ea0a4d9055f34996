//! What `isola-runtime` keeps of a vm-level container: one small file next
//! to the runner's state directories, written whole (see
//! [`crate::atomic`]), so `state`, `kill` and `delete` in other processes
//! find its shim and its VM.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use isola_container::{ContainerState, Status};
use serde::{Deserialize, Serialize};

use crate::atomic;
use crate::error::{Error, Result};
use crate::liveness;

/// The file's name inside the container's directory; its presence marks
/// the directory as a vm-level container's.
pub const RECORD_FILE: &str = "isola-vm.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The shim is booting the VM.
    Creating,
    /// The container exists in the guest; its process waits for `start`.
    Created,
    Running,
    /// Frozen in its guest (`pause`), until `resume`.
    Paused,
    /// The container has ended; the shim is draining its output and
    /// stopping the VM.
    Stopped,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmRecord {
    pub id: String,
    pub bundle: PathBuf,
    pub phase: Phase,
    /// The shim: the process the caller (conmon) waits for, which holds
    /// the VM; 0 until it has reported.
    pub shim_pid: i32,
    pub shim_start_time: u64,
    /// RFC 3339, UTC.
    pub created: String,
    #[serde(default)]
    pub annotations: Option<HashMap<String, String>>,
}

impl VmRecord {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(RECORD_FILE)
    }

    pub fn load(dir: &Path) -> Result<VmRecord> {
        let path = Self::path(dir);
        let bytes = std::fs::read(&path).map_err(Error::io(&path))?;
        serde_json::from_slice(&bytes).map_err(|source| Error::CorruptState { path, source })
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = Self::path(dir);
        let bytes = serde_json::to_vec_pretty(self).map_err(|source| Error::CorruptState {
            path: path.clone(),
            source,
        })?;
        atomic::write(&path, &bytes)
    }

    /// Whether the shim (and so the VM) still lives.
    pub fn shim_alive(&self) -> bool {
        self.shim_pid > 0 && liveness::is_same_process(self.shim_pid, self.shim_start_time)
    }

    /// The OCI state: a container whose shim is gone has stopped, whatever
    /// the record last said.
    pub fn status(&self) -> Status {
        match self.phase {
            Phase::Creating if self.shim_pid == 0 => Status::Creating,
            Phase::Stopped => Status::Stopped,
            _ if !self.shim_alive() => Status::Stopped,
            Phase::Creating => Status::Creating,
            Phase::Created => Status::Created,
            Phase::Running => Status::Running,
            Phase::Paused => Status::Paused,
        }
    }

    pub fn state(&self) -> ContainerState {
        let status = self.status();
        ContainerState {
            oci_version: "1.0.2".into(),
            id: self.id.clone(),
            pid: if status == Status::Stopped {
                0
            } else {
                self.shim_pid
            },
            status,
            bundle: self.bundle.clone(),
            created: Some(self.created.clone()),
            annotations: self.annotations.clone(),
        }
    }
}

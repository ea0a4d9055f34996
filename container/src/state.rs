//! What callers see of a container: the OCI runtime-spec state.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use libcontainer::container::{Container, ContainerStatus};
use serde::Serialize;

/// The lifecycle status, as the OCI runtime spec names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Creating => "creating",
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Stopped => "stopped",
        })
    }
}

impl From<ContainerStatus> for Status {
    fn from(s: ContainerStatus) -> Self {
        match s {
            ContainerStatus::Creating => Self::Creating,
            ContainerStatus::Created => Self::Created,
            ContainerStatus::Running => Self::Running,
            ContainerStatus::Paused => Self::Paused,
            ContainerStatus::Stopped => Self::Stopped,
        }
    }
}

/// The OCI state of one container (`runc state` prints the same fields).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerState {
    pub oci_version: String,
    pub id: String,
    pub status: Status,
    /// The init process; 0 once the container has stopped, as runc reports.
    pub pid: i32,
    pub bundle: PathBuf,
    /// RFC 3339, nanoseconds, UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<HashMap<String, String>>,
}

impl From<&Container> for ContainerState {
    fn from(c: &Container) -> Self {
        let status = Status::from(c.status());
        let pid = match status {
            Status::Stopped => 0,
            _ => c.pid().map_or(0, |p| p.as_raw()),
        };
        Self {
            oci_version: c.state.oci_version.clone(),
            id: c.id().to_owned(),
            status,
            pid,
            bundle: c.bundle().clone(),
            created: c
                .created()
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)),
            annotations: c.state.annotations.clone(),
        }
    }
}

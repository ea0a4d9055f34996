//! The runner's errors: one variant per way an operation can fail.

use std::path::PathBuf;

/// Why a runner operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid container id {id:?}: {reason}")]
    InvalidId { id: String, reason: &'static str },
    #[error("container {0:?} does not exist")]
    NotFound(String),
    #[error("container {0:?} already exists")]
    Exists(String),
    #[error("container {id:?} is {status}, cannot {action}")]
    WrongStatus {
        id: String,
        status: String,
        action: &'static str,
    },
    #[error("cannot read bundle config {path}: {source}")]
    ReadSpec {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("malformed bundle config {path}: {source}")]
    MalformedSpec {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("unknown fields in bundle config {path}: {}", fields.join(", "))]
    UnknownFields { path: PathBuf, fields: Vec<String> },
    #[error("bundle rootfs {0} does not exist")]
    MissingRootfs(PathBuf),
    #[error("bundle config has no {0}")]
    MissingSpecField(&'static str),
    #[error("invalid isolation level {0:?} (expected \"process\" or \"vm\")")]
    InvalidIsolation(String),
    #[error("invalid signal {0:?}")]
    InvalidSignal(String),
    #[error("state directory {path}: {source}")]
    StateRoot {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cgroup of container {id:?}: {message}")]
    Cgroup { id: String, message: String },
    #[error(transparent)]
    Libcontainer(#[from] libcontainer::error::LibcontainerError),
}

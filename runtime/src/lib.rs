//! The host runtime: the one container lifecycle (created → running →
//! stopped → removed) that every front-end (`isola`, `isola-runtime`, later a
//! containerd shim) drives, whatever the isolation level.
//!
//! This first part holds what the lifecycle persists and shares: container
//! IDs and names, crash-safe state files under a lock, and the log files the
//! supervisor writes.

pub mod atomic;
pub mod bundle;
pub mod error;
pub mod host;
pub mod id;
pub mod liveness;
pub mod lock;
pub mod logs;
pub mod name;
pub mod oci_vm;
pub mod oom;
pub mod paths;
pub mod state;
pub mod supervisor;
pub mod teardown;
pub mod vm;

pub use error::Error;
pub use host::Host;
pub use id::ContainerId;
/// The host owner's defaults, shared with the OCI runtime front-end.
pub use isola_container::config;
pub use state::{ContainerRecord, ContainerStatus, StateStore};

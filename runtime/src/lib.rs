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
pub mod id;
pub mod lock;
pub mod logs;
pub mod name;
pub mod state;

pub use error::Error;
pub use id::ContainerId;
pub use state::{ContainerRecord, ContainerStatus, StateStore};

//! The runner: runs one OCI runtime-spec bundle at process level.
//!
//! A thin layer over youki's `libcontainer`, which does the real work
//! (namespaces, pivot_root, mounts, devices, capabilities, seccomp, rlimits,
//! hooks, cgroups v1 and v2). What this crate adds is what every caller of
//! the runner needs and libcontainer leaves to its CLI: validated container
//! IDs, a lock per container so concurrent callers never see half an
//! operation, clean-up when `create` fails half-way, the isolation-level
//! decision, and typed errors. The same API serves the host's OCI runtime CLI
//! (`isola-runtime`) and, later, the guest agent inside a microVM.

pub mod config;
mod error;
mod id;
pub mod isolation;
mod lock;
mod options;
mod runner;
mod spec_check;
mod state;
mod state_shadow;

pub use error::Error;
/// The rule container IDs follow (a path component, a cgroup name).
pub use id::validate as validate_id;
pub use isolation::Isolation;
pub use options::{CreateOptions, ExecOptions};
pub use runner::Runner;
pub use spec_check::load_bundle_spec;
pub use state::{ContainerState, Status};

/// Cgroup statistics as reported by [`Runner::stats`].
pub use libcgroups::stats::Stats;
/// The OCI runtime-spec types, re-exported so callers use the same version.
pub use libcontainer::oci_spec;

/// Result of runner operations.
pub type Result<T> = std::result::Result<T, Error>;

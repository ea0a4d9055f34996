//! The vm isolation level's sandbox: each container gets its own microVM,
//! run by the container's supervisor process itself (so the VMM *is* the
//! supervisor: one process holds the stdio, the logs, the exit status and
//! the guest). The guest's agent runs the very config.json the process
//! level would, with the same runner, on an overlay of the image's EROFS
//! disk (shared read-only by every VM of that image) and a writable layer
//! in guest memory or on a scratch disk; volumes come over virtio-fs.

pub mod agent;
pub mod files;
pub mod process;
pub mod sandbox;
pub mod scratch;
pub mod sizing;
pub mod template;
pub mod volumes;

pub use agent::{connect_agent, AgentConn};
pub use files::shipped_files;
pub use sandbox::Sandbox;
pub use sizing::VmSize;
pub use volumes::{volumes, FsDaemons, Volume};

/// Name of the vsock bridge socket in the container's directory.
pub const VSOCK_SOCKET: &str = "vsock.sock";

/// The guest device the image disk appears as (the first virtio-blk).
pub const IMAGE_DEVICE: &str = "/dev/vda";
/// The guest device of the writable layer's disk, when there is one.
pub const SCRATCH_DEVICE: &str = "/dev/vdb";

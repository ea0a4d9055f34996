//! The host↔agent protocol: typed messages ([`message`]) carried in
//! length-prefixed JSON frames ([`frame`]), plus a small blocking client
//! ([`client`]) the host uses over any byte stream (a vsock connection
//! bridged to a Unix socket, in practice).

pub mod client;
pub mod frame;
pub mod message;

pub use client::{AgentClient, ClientError};
pub use frame::{read_frame, write_frame, FrameError, MAX_FRAME_LEN};
pub use message::{
    pattern_byte, Envelope, ExecResult, GuestFile, GuestVolume, ProcessKey, Request, Response,
    StdioStream, PROTOCOL_VERSION,
};

/// vsock port the agent listens on inside the guest.
pub const AGENT_VSOCK_PORT: u32 = 1024;

/// Host port the agent connects to (guest→host) once it listens, and writes
/// [`READY_LINE`] to: a host that wants to know when the agent is up listens
/// there (at `<uds>_1025` through the VMM's vsock bridge) instead of polling,
/// which would cost the booting guest an interrupt per attempt.
pub const AGENT_READY_PORT: u32 = 1025;
pub const READY_LINE: &[u8] = b"READY\n";

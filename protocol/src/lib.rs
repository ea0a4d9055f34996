//! The host↔agent protocol: typed messages ([`message`]) carried in
//! length-prefixed JSON frames ([`frame`]), plus a small blocking client
//! ([`client`]) the host uses over any byte stream (a vsock connection
//! bridged to a Unix socket, in practice).

pub mod client;
pub mod frame;
pub mod message;

pub use client::{AgentClient, ClientError};
pub use frame::{read_frame, write_frame, FrameError, MAX_FRAME_LEN};
pub use message::{pattern_byte, Envelope, ExecResult, Request, Response, PROTOCOL_VERSION};

/// vsock port the agent listens on inside the guest.
pub const AGENT_VSOCK_PORT: u32 = 1024;

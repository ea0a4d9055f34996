//! virtio-vsock, emulated in userspace and bridged to Unix sockets.
//!
//! Three layers, each testable alone: [`packet`] (a header and payload taken
//! from or put into a descriptor chain, every length checked),
//! [`connection`] (one stream's state: credit, half-close, buffered bytes)
//! and [`muxer`] (the host side: which connection belongs to which Unix
//! socket). [`device`] is the virtio device and its worker thread.
//!
//! Host conventions (those of Firecracker, which tools already speak):
//! a host process connects to the Unix socket `uds` and writes
//! `CONNECT <port>\n`; once the guest accepts it reads `OK <host_port>\n` and
//! the stream is bridged. A guest connecting to the host's CID on port P is
//! bridged to a connection to the Unix socket `<uds>_P`.

pub mod connection;
pub mod device;
pub mod host;
pub mod muxer;
pub mod packet;

pub use device::Vsock;

pub const HOST_CID: u64 = 2;
pub const DEFAULT_GUEST_CID: u64 = 3;

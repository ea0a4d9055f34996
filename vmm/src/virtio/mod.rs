//! virtio over MMIO: the device trait every device implements ([`device`]),
//! the MMIO transport that knows registers but no device ([`mmio`]), and a
//! folder per device ([`block`], [`vsock`], [`fs`]).

pub mod block;
pub mod device;
pub mod fs;
pub mod mmio;
#[cfg(test)]
pub(crate) mod test_chains;
pub mod vsock;
pub mod worker;

pub use device::{ActivateError, ActiveQueue, Interrupt, QuiesceError, VirtioDevice};

/// Feature bits shared by all devices.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
pub const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << 29;

pub const DEVICE_ID_BLOCK: u32 = 2;
pub const DEVICE_ID_VSOCK: u32 = 19;
pub const DEVICE_ID_FS: u32 = 26;

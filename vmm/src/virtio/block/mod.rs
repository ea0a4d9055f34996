//! virtio-blk backed by a raw image file.
//!
//! [`request`] parses one descriptor chain into a typed request and executes
//! it against the file; [`device`] is the device model and its worker thread.

pub mod device;
pub mod request;

pub use device::Block;

pub const SECTOR_SIZE: u64 = 512;
/// Bytes returned by GET_ID.
pub const ID_LEN: usize = 20;

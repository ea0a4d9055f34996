//! virtio-fs (virtio 1.2 §5.11) as a vhost-user frontend: the guest's FUSE
//! requests are served by a separate virtiofsd process, which maps guest
//! RAM from the memfd we share and reads the rings itself. The VMM only
//! negotiates and hands over the rings, the KVM ioeventfds the guest kicks
//! and the irqfd the backend signals: a request never passes through a
//! thread of ours.

pub mod device;

pub use device::{FsError, VhostUserFs};

/// The tag field of the config space is 36 bytes, not NUL-terminated when full.
pub const TAG_LEN: usize = 36;

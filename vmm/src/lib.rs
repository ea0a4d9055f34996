//! isola-vmm: a small KVM virtual machine monitor.
//!
//! It boots an uncompressed Linux `vmlinux` (PVH entry) with an initramfs,
//! 1..N vCPUs, an 8250 console, an i8042 reset port, a power-off port, and
//! virtio-mmio devices (blk, vsock, and virtio-fs through a vhost-user backend). It knows nothing about containers.
//!
//! Layout: [`arch`] is the x86_64 boot path, [`devices`] the legacy port-I/O
//! devices and the bus that routes exits to them, [`virtio`] the transport
//! and one folder per virtio device, [`vm`] puts it together and [`vcpu`]
//! runs the vCPU threads; [`snapshot`] saves a running VM, and holds the
//! state a restored one is built from.

pub mod arch;
pub mod assets;
pub mod config;
pub mod devices;
pub mod exit;
pub mod host_check;
pub mod seccomp;
pub mod snapshot;
pub mod vcpu;
pub mod virtio;
pub mod vm;

pub use config::{ConsoleMode, DiskConfig, FsConfig, VmConfig};
pub use exit::VmExitReason;
pub use vm::{Vm, VmError};

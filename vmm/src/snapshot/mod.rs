//! Saving a booted VM to a directory, and the pieces a new VM is built from
//! when it starts from one instead of booting: the vCPUs' registers
//! ([`vcpu_state`]), the in-kernel irqchip, PIT and clock ([`vm_state`]),
//! guest RAM as a sparse file ([`guest_ram`]), and the file that holds the
//! rest ([`VmState`]). [`crate::Vm::snapshot`] and [`crate::Vm::restore`]
//! put them together.
//!
//! A snapshot is only good for the same host kernel and VMM build, the
//! same guest kernel and initramfs, and the same devices in the same order;
//! callers key their snapshots accordingly. Every field is still checked on
//! the way in, as the file is input like any other.

pub mod guest_ram;
pub mod vcpu_state;
pub mod vm_state;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::devices::legacy::serial::SerialRegs;
use crate::virtio::mmio::TransportState;

pub use vcpu_state::VcpuState;
pub use vm_state::MachineState;

/// Bumped whenever the layout below changes.
pub const FORMAT_VERSION: u32 = 1;
/// Everything but RAM, as JSON.
pub const STATE_FILE: &str = "vm.json";
/// Guest RAM, region after region, holes where the guest had nothing.
pub const MEMORY_FILE: &str = "memory";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("KVM refused {what}: {source}")]
    Kvm {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("snapshot state file: {0}")]
    Format(#[from] serde_json::Error),
    #[error("snapshot does not fit: {0}")]
    Mismatch(String),
    #[error("the vCPUs did not stop within {0} ms")]
    PauseTimeout(u128),
    #[error("the vsock bridge did not go idle: {0} connections in flight")]
    Busy(usize),
    #[error(transparent)]
    Transport(#[from] crate::virtio::mmio::TransportError),
    #[error("guest memory: {0}")]
    GuestMemory(#[from] vm_memory::GuestMemoryError),
}

pub(crate) fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> SnapshotError {
    move |source| SnapshotError::Kvm { what, source }
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SnapshotError {
    let what = what.into();
    move |source| SnapshotError::Io { what, source }
}

/// Everything of a paused VM except its RAM.
#[derive(Debug, Serialize, Deserialize)]
pub struct VmState {
    pub version: u32,
    pub mem_mib: u64,
    pub machine: MachineState,
    pub vcpus: Vec<VcpuState>,
    pub serial: SerialRegs,
    pub devices: Vec<TransportState>,
}

impl VmState {
    pub fn write(&self, dir: &Path) -> Result<(), SnapshotError> {
        let path = dir.join(STATE_FILE);
        let bytes = serde_json::to_vec(self)?;
        std::fs::write(&path, bytes).map_err(io_err(format!("writing {}", path.display())))
    }

    pub fn read(dir: &Path) -> Result<VmState, SnapshotError> {
        let path = dir.join(STATE_FILE);
        let bytes = std::fs::read(&path).map_err(io_err(format!("reading {}", path.display())))?;
        let state: VmState = serde_json::from_slice(&bytes)?;
        if state.version != FORMAT_VERSION {
            return Err(SnapshotError::Mismatch(format!(
                "format version {} (this VMM reads {FORMAT_VERSION})",
                state.version
            )));
        }
        Ok(state)
    }
}

//! Devices outside virtio: the [`bus`] that routes port-I/O and MMIO exits,
//! and the [`legacy`] ISA devices (serial console, i8042 reset, power-off).

pub mod bus;
pub mod legacy;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use vmm_sys_util::eventfd::EventFd;

use crate::exit::VmExitReason;

/// How devices and vCPUs tell the VM's owner that the VM must stop.
#[derive(Clone)]
pub struct ExitNotifier {
    tx: Sender<VmExitReason>,
    stopping: Arc<AtomicBool>,
}

impl ExitNotifier {
    pub fn new(tx: Sender<VmExitReason>) -> Self {
        Self {
            tx,
            stopping: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn notify(&self, reason: VmExitReason) {
        self.stopping.store(true, Ordering::SeqCst);
        // The receiver only goes away when the process is exiting anyway.
        let _ = self.tx.send(reason);
    }

    /// A stop was requested: vCPUs should not enter the guest again (a vCPU
    /// left inside KVM_RUN only slows the process's exit down).
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

/// An interrupt line backed by a KVM irqfd.
pub struct IrqLine(pub EventFd);

impl vm_superio::Trigger for IrqLine {
    type E = std::io::Error;

    fn trigger(&self) -> Result<(), Self::E> {
        self.0.write(1)
    }
}

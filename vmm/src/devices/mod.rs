//! Devices outside virtio: the [`bus`] that routes port-I/O and MMIO exits,
//! and the [`legacy`] ISA devices (serial console, i8042 reset, power-off).

pub mod bus;
pub mod legacy;

use std::sync::mpsc::Sender;

use vmm_sys_util::eventfd::EventFd;

use crate::exit::VmExitReason;

/// How devices and vCPUs tell the VM's owner that the VM must stop.
#[derive(Clone)]
pub struct ExitNotifier(Sender<VmExitReason>);

impl ExitNotifier {
    pub fn new(tx: Sender<VmExitReason>) -> Self {
        Self(tx)
    }

    pub fn notify(&self, reason: VmExitReason) {
        // The receiver only goes away when the process is exiting anyway.
        let _ = self.0.send(reason);
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

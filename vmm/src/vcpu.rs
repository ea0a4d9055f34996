//! vCPU threads: run the vCPU, route its exits, report why it stopped.

use std::sync::Arc;

use kvm_ioctls::{VcpuExit, VcpuFd};

use crate::devices::bus::Bus;
use crate::devices::ExitNotifier;
use crate::exit::VmExitReason;

pub struct VcpuRunner {
    pub id: u8,
    pub fd: VcpuFd,
    pub pio: Arc<Bus>,
    pub mmio: Arc<Bus>,
    pub exit: ExitNotifier,
}

impl VcpuRunner {
    /// Runs until the guest resets or something fails; the VM owner then
    /// ends the process, which also ends the other vCPU threads.
    pub fn run(mut self) {
        // Before the first guest instruction: this thread decodes every
        // access the guest makes to our devices.
        if let Err(e) = crate::seccomp::confine_current_thread() {
            self.exit
                .notify(VmExitReason::Error(format!("vCPU {}: {e}", self.id)));
            return;
        }
        match self.run_loop() {
            Some(reason) => {
                tracing::debug!(vcpu = self.id, "vCPU stopped: {reason}");
                self.exit.notify(reason);
            }
            // The VM is stopping for a reason reported elsewhere.
            None => tracing::debug!(vcpu = self.id, "vCPU left the guest"),
        }
    }

    /// Runs the vCPU; `None` when the VM was stopped from elsewhere.
    fn run_loop(&mut self) -> Option<VmExitReason> {
        loop {
            if self.exit.stopping() {
                return None;
            }
            match self.fd.run() {
                Ok(VcpuExit::IoIn(port, data)) => {
                    tracing::trace!(vcpu = self.id, port, "pio in");
                    if !self.pio.read(port as u64, data) {
                        // Nothing there: what an empty ISA bus reads as.
                        data.fill(0xff);
                    }
                }
                Ok(VcpuExit::IoOut(port, data)) => {
                    tracing::trace!(vcpu = self.id, port, "pio out");
                    self.pio.write(port as u64, data);
                }
                Ok(VcpuExit::MmioRead(addr, data)) => {
                    tracing::trace!(vcpu = self.id, addr, "mmio read");
                    if !self.mmio.read(addr, data) {
                        data.fill(0);
                    }
                }
                Ok(VcpuExit::MmioWrite(addr, data)) => {
                    tracing::trace!(vcpu = self.id, addr, "mmio write");
                    self.mmio.write(addr, data);
                }
                Ok(VcpuExit::Shutdown) => {
                    // Triple fault: how some guests reset.
                    return Some(VmExitReason::Reset);
                }
                Ok(VcpuExit::SystemEvent(kind, _)) => {
                    tracing::debug!(vcpu = self.id, kind, "system event");
                    return Some(VmExitReason::Reset);
                }
                Ok(VcpuExit::Hlt) => {
                    return Some(VmExitReason::Error(format!(
                        "vCPU {} halted with no irqchip",
                        self.id
                    )));
                }
                Ok(VcpuExit::FailEntry(reason, cpu)) => {
                    return Some(VmExitReason::Error(format!(
                        "vCPU {} failed to enter the guest (reason {reason:#x}, cpu {cpu})",
                        self.id
                    )));
                }
                Ok(VcpuExit::InternalError) => {
                    // SAFETY: on KVM_EXIT_INTERNAL_ERROR, KVM has filled in
                    // the `internal` member of the run structure's exit union.
                    let sub = unsafe { self.fd.get_kvm_run().__bindgen_anon_1.internal.suberror };
                    let what = match sub {
                        1 => "instruction emulation failed",
                        2 => "simultaneous exceptions",
                        3 => "exception while delivering an event",
                        4 => "unexpected exit reason",
                        _ => "unknown",
                    };
                    return Some(VmExitReason::Error(format!(
                        "KVM internal error on vCPU {} (suberror {sub}: {what})",
                        self.id
                    )));
                }
                Ok(VcpuExit::Intr) => {}
                Ok(other) => {
                    return Some(VmExitReason::Error(format!(
                        "unexpected exit on vCPU {}: {other:?}",
                        self.id
                    )));
                }
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
                Err(e) => {
                    return Some(VmExitReason::Error(format!(
                        "KVM_RUN on vCPU {}: {e}",
                        self.id
                    )));
                }
            }
        }
    }
}

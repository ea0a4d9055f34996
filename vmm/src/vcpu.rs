//! vCPU threads: run the vCPU, route its exits, report why it stopped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use kvm_ioctls::{VcpuExit, VcpuFd};
use vmm_sys_util::signal::{register_signal_handler, unblock_signal, SIGRTMIN};

use crate::devices::bus::Bus;
use crate::devices::ExitNotifier;
use crate::exit::VmExitReason;

/// The signal that pulls a vCPU thread out of KVM_RUN (its handler does
/// nothing: the interrupted ioctl returning EINTR is the point).
pub fn kick_signal() -> i32 {
    SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Installs the kick signal's handler, once per process.
pub fn install_kick_handler() -> std::io::Result<()> {
    static INSTALLED: std::sync::OnceLock<Result<(), i32>> = std::sync::OnceLock::new();
    INSTALLED
        .get_or_init(|| register_signal_handler(kick_signal(), on_kick).map_err(|e| e.errno()))
        .map_err(std::io::Error::from_raw_os_error)
}

/// A request that the vCPUs leave the guest for good and hand their file
/// descriptors over, so that their state can be read (a snapshot).
pub struct Handover {
    requested: AtomicBool,
    to: Mutex<Sender<(u8, VcpuFd)>>,
}

impl Handover {
    pub fn new(to: Sender<(u8, VcpuFd)>) -> Self {
        Self {
            requested: AtomicBool::new(false),
            to: Mutex::new(to),
        }
    }

    pub fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
    }

    fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    fn give(&self, id: u8, fd: VcpuFd) {
        let to = self.to.lock().unwrap_or_else(|p| p.into_inner());
        let _ = to.send((id, fd));
    }
}

pub struct VcpuRunner {
    pub id: u8,
    pub fd: VcpuFd,
    pub pio: Arc<Bus>,
    pub mmio: Arc<Bus>,
    pub exit: ExitNotifier,
    pub handover: Arc<Handover>,
}

/// How a vCPU's run ended.
enum Left {
    /// The guest stopped the VM, or KVM failed: report it.
    Exit(VmExitReason),
    /// The VM is stopping for a reason reported elsewhere.
    Stopped,
    /// A snapshot asked for the vCPU.
    HandedOver,
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
        // Threads inherit their creator's mask, which may block it.
        if let Err(e) = unblock_signal(kick_signal()) {
            tracing::debug!(vcpu = self.id, "cannot unblock the kick signal: {e:?}");
        }
        match self.run_loop() {
            Left::Exit(reason) => {
                tracing::debug!(vcpu = self.id, "vCPU stopped: {reason}");
                self.exit.notify(reason);
            }
            Left::Stopped => tracing::debug!(vcpu = self.id, "vCPU left the guest"),
            Left::HandedOver => {
                // An exit we just served may be an I/O read whose value KVM
                // writes into the guest's registers on the next entry; an
                // entry with immediate_exit set does only that and returns.
                self.fd.set_kvm_immediate_exit(1);
                let _ = self.fd.run();
                self.fd.set_kvm_immediate_exit(0);
                tracing::debug!(vcpu = self.id, "vCPU handed over for a snapshot");
                self.handover.give(self.id, self.fd);
            }
        }
    }

    fn run_loop(&mut self) -> Left {
        match self.run_inner() {
            Some(reason) => Left::Exit(reason),
            None if self.handover.requested() => Left::HandedOver,
            None => Left::Stopped,
        }
    }

    /// Runs the vCPU; `None` when the VM was stopped (or a snapshot taken)
    /// from elsewhere.
    fn run_inner(&mut self) -> Option<VmExitReason> {
        loop {
            if self.exit.stopping() || self.handover.requested() {
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

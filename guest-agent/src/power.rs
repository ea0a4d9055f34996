//! Ending the VM: power-off and reboot.
//!
//! Behind a trait because only PID 1 inside a guest may really do this: the
//! same agent run by hand on a workstation (as root!) must not reboot it, and
//! unit tests need to see that the request got through without anything
//! happening.

use std::time::Duration;

use crate::sys;

/// isola-vmm's power-off device: writing any byte to this I/O port ends the
/// VM. Without ACPI the kernel has no way of its own to power off.
pub const POWER_OFF_PORT: u16 = 0x510;

pub trait Power: Send + Sync {
    /// Flush filesystems and switch the machine off. May return only where
    /// power-off is not possible (see the implementations).
    fn power_off(&self);
    /// Flush filesystems and reset the machine.
    fn reboot(&self);
}

/// The real thing, for the agent as PID 1 in the guest.
pub struct Machine;

impl Power for Machine {
    fn power_off(&self) {
        sys::sync();
        #[cfg(target_arch = "x86_64")]
        match sys::ioperm(POWER_OFF_PORT, 1) {
            Ok(()) => {
                // SAFETY: ioperm just granted this thread the port; the write
                // is isola-vmm's power-off request and touches no memory.
                unsafe { sys::outb(POWER_OFF_PORT, 0) };
                // A VMM stops the vCPU on that write; still here means this
                // one does not have the device (another VMM, QEMU).
                tracing::warn!("power-off port {POWER_OFF_PORT:#x} did nothing; rebooting instead");
            }
            Err(e) => tracing::error!("ioperm({POWER_OFF_PORT:#x}): {e}; rebooting instead"),
        }
        // With reboot=k on the cmdline, the reset goes through the keyboard
        // controller, which isola-vmm turns into the VM's end.
        let e = sys::reboot(libc::RB_AUTOBOOT);
        halt_forever(&format!("reboot(2) failed: {e}"));
    }

    fn reboot(&self) {
        sys::sync();
        let e = sys::reboot(libc::RB_AUTOBOOT);
        halt_forever(&format!("reboot(2) failed: {e}"));
    }
}

/// PID 1 must never exit (the kernel panics); if even reboot failed, stay
/// alive and quiet so the host can kill the VM.
fn halt_forever(why: &str) -> ! {
    tracing::error!("{why}; the host has to end this VM");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// For the agent run outside a VM (not PID 1): shutting down means ending
/// this process, never touching the machine.
pub struct ExitProcess;

impl Power for ExitProcess {
    fn power_off(&self) {
        tracing::info!("shutdown requested; not PID 1, so exiting instead of powering off");
        std::process::exit(0);
    }

    fn reboot(&self) {
        tracing::info!("reboot requested; not PID 1, so exiting instead of rebooting");
        std::process::exit(0);
    }
}

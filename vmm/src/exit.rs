//! Why a VM stopped, and the process exit status each reason maps to.
//!
//! The codes are part of `isola-vmm`'s contract (callers and tests rely on
//! them), so they live in one place.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmExitReason {
    /// The guest wrote to the power-off port.
    PowerOff,
    /// The guest reset the machine (i8042 reset, or a triple fault).
    Reset,
    /// The guest kernel panicked (seen on the console, then a reset).
    Panic,
    /// The host asked the VMM to stop (SIGTERM/SIGINT).
    Terminated(i32),
    /// The VMM itself failed.
    Error(String),
}

impl VmExitReason {
    /// Process exit status for this reason.
    pub fn exit_code(&self) -> i32 {
        match self {
            VmExitReason::PowerOff => 0,
            VmExitReason::Error(_) => 1,
            VmExitReason::Reset => 3,
            VmExitReason::Panic => 4,
            VmExitReason::Terminated(sig) => 128 + sig,
        }
    }
}

impl fmt::Display for VmExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmExitReason::PowerOff => write!(f, "guest powered off"),
            VmExitReason::Reset => write!(f, "guest rebooted (reset); the VM ends here"),
            VmExitReason::Panic => write!(f, "guest kernel panicked"),
            VmExitReason::Terminated(sig) => write!(f, "stopped by signal {sig}"),
            VmExitReason::Error(e) => write!(f, "VMM error: {e}"),
        }
    }
}

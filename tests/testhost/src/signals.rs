//! SIGINT, SIGTERM and SIGHUP become a flag the supervision loop polls, so the test host
//! can stop QEMU and report instead of leaving it behind.

use std::io;
use std::sync::atomic::{AtomicI32, Ordering};

static PENDING: AtomicI32 = AtomicI32::new(0);

/// The signals that stop a run.
pub const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

extern "C" fn on_signal(sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    PENDING.store(sig, Ordering::SeqCst);
}

/// Installs the handlers (idempotent).
pub fn install() -> io::Result<()> {
    for sig in STOP_SIGNALS {
        // The handler only performs an atomic store, which is async-signal-safe.
        // SAFETY: an all-zero `sigaction` is valid (empty mask, no flags); the pointers
        // passed to sigaction/sigemptyset point to that live local.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The last stop signal received, if any.
pub fn pending() -> Option<i32> {
    match PENDING.load(Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}

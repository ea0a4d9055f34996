//! Can this host's KVM run a standard Linux guest?
//!
//! `kvm_pvm` (PVM) exposes `/dev/kvm` on hosts without VT-x/AMD-V, but runs a
//! stock guest kernel in an instruction emulator: it crawls to `/init` and
//! dies at the first user-space syscall. We refuse early rather than hang.

use std::fs;
use std::io::{BufRead, BufReader};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvmCapability {
    /// Hardware virtualization (vmx or svm) backs /dev/kvm.
    Hardware,
    /// /dev/kvm exists but is not backed by VT-x/AMD-V; says why.
    NoHardware(String),
}

pub fn kvm_capability() -> KvmCapability {
    let pvm = fs::metadata("/sys/module/kvm_pvm").is_ok();
    // The first CPU's flags are enough; /proc/cpuinfo of a large host is
    // big and this runs on every VM start.
    let hw = fs::File::open("/proc/cpuinfo")
        .ok()
        .and_then(|f| {
            BufReader::new(f)
                .lines()
                .map_while(Result::ok)
                .find(|l| l.starts_with("flags"))
        })
        .is_some_and(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    match (hw, pvm) {
        (true, false) => KvmCapability::Hardware,
        (true, true) => KvmCapability::NoHardware(
            "the kvm_pvm module is loaded and may be what serves /dev/kvm".into(),
        ),
        (false, _) => KvmCapability::NoHardware(format!(
            "the CPU shows neither vmx nor svm{}",
            if pvm {
                " and /dev/kvm is served by kvm_pvm"
            } else {
                ""
            }
        )),
    }
}

/// True when a standard Linux guest can run under this host's /dev/kvm.
pub fn host_runs_linux_guests() -> bool {
    kvm_capability() == KvmCapability::Hardware
}

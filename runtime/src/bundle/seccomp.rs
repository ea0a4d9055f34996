//! The default seccomp filter: every syscall allowed except those that reach
//! kernel facilities a container has no business with, which fail with
//! EPERM. It is a deny list, smaller than docker's allow-list profile, and
//! aimed at the calls behind most container-escape CVEs (kernel keyrings,
//! module loading, kexec, bpf, userfaultfd, perf, open_by_handle_at).

use serde_json::{json, Value};

/// Names as x86_64 knows them (libseccomp refuses names it cannot resolve).
const DENIED: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "move_pages",
    "nfsservctl",
    "open_by_handle_at",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "set_mempolicy",
    "settimeofday",
    "swapoff",
    "swapon",
    "sysfs",
    "_sysctl",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "setns",
    "mount",
    "mount_setattr",
];

/// The `linux.seccomp` object of config.json.
pub fn default_profile() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{
            "names": DENIED,
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": EPERM,
        }]
    })
}

const EPERM: u32 = 1;

//! `--privileged`, as docker means it: every capability, no seccomp filter,
//! no masked or read-only kernel paths, every device allowed. At the vm level
//! that power ends at the guest kernel, which is the point of running an
//! untrusted privileged container there.

/// Capabilities by number, as the kernel numbers them (0..=40 in 6.x).
const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The capabilities a privileged container gets. In a VM that is all of
/// them (the guest's init has them all). On the host it is those the
/// runtime itself holds: a capability outside our bounding set cannot be
/// granted (this sandbox, for one, has no CAP_SYS_RESOURCE).
pub fn capabilities(isolation: &str) -> Vec<&'static str> {
    let bounding = if isolation == "vm" {
        u64::MAX
    } else {
        own_bounding_set().unwrap_or(u64::MAX)
    };
    ALL_CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| bounding & (1u64 << bit) != 0)
        .map(|(_, name)| *name)
        .collect()
}

/// CapBnd of this process, from /proc/self/status.
fn own_bounding_set() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapBnd:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sit_at_their_kernel_numbers() {
        assert_eq!(ALL_CAPABILITIES[21], "CAP_SYS_ADMIN");
        assert_eq!(ALL_CAPABILITIES[24], "CAP_SYS_RESOURCE");
        assert_eq!(ALL_CAPABILITIES[40], "CAP_CHECKPOINT_RESTORE");
        assert_eq!(capabilities("vm").len(), ALL_CAPABILITIES.len());
        let host = capabilities("process");
        let bnd = own_bounding_set().unwrap();
        assert_eq!(
            host.len() as u32,
            (bnd & ((1 << ALL_CAPABILITIES.len()) - 1)).count_ones()
        );
    }
}

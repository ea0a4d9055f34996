//! Confinement of the threads that handle guest-controlled input: the vCPU
//! threads (every MMIO and port access of the guest is decoded there) and
//! the device workers they start (virtqueue parsing, disk and vsock I/O).
//! A guest that found a bug in that code would hold a thread of a root
//! process; the filter leaves it unable to run programs, start processes,
//! open files, reach the network, change privileges, mounts or namespaces,
//! trace or signal other processes, or load kernel code. Those calls fail
//! with EPERM instead of killing the VMM, so an unforeseen benign use shows
//! as an error, not a crash.
//!
//! A deny list rather than Firecracker's allow list: our threads share the
//! process with the supervisor's logging and the Rust runtime, whose exact
//! syscalls vary with glibc and the allocator; what is denied is what an
//! attacker needs.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("building the seccomp filter: {0}")]
    Build(String),
    #[error("installing the seccomp filter: {0}")]
    Install(String),
}

/// Denied outright.
const DENIED: &[libc::c_long] = &[
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_fork,
    libc::SYS_vfork,
    libc::SYS_open,
    libc::SYS_openat,
    libc::SYS_openat2,
    libc::SYS_creat,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_pidfd_open,
    libc::SYS_pidfd_getfd,
    libc::SYS_kill,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_setuid,
    libc::SYS_setgid,
    libc::SYS_setreuid,
    libc::SYS_setregid,
    libc::SYS_setresuid,
    libc::SYS_setresgid,
    libc::SYS_setfsuid,
    libc::SYS_setfsgid,
    libc::SYS_setgroups,
    libc::SYS_capset,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_chmod,
    libc::SYS_fchmodat,
    libc::SYS_chown,
    libc::SYS_fchownat,
    libc::SYS_lchown,
    libc::SYS_symlink,
    libc::SYS_symlinkat,
    libc::SYS_link,
    libc::SYS_linkat,
    libc::SYS_rename,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_mknod,
    libc::SYS_mknodat,
    libc::SYS_io_uring_setup,
];

fn condition(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, SeccompError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| SeccompError::Build(e.to_string()))
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, SeccompError> {
    SeccompRule::new(conditions).map_err(|e| SeccompError::Build(e.to_string()))
}

/// The deny list as a BPF program (matches get EPERM).
fn deny_list() -> Result<BpfProgram, SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|&nr| (nr, Vec::new())).collect();
    // Only threads: a clone without CLONE_THREAD is a new process.
    rules.insert(
        libc::SYS_clone,
        vec![rule(vec![condition(
            0,
            SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64),
            0,
        )?])?],
    );
    // Only Unix sockets: the vsock device reaches host programs through
    // Unix sockets and needs nothing else.
    rules.insert(
        libc::SYS_socket,
        vec![rule(vec![condition(
            0,
            SeccompCmpOp::Ne,
            libc::AF_UNIX as u64,
        )?])?],
    );
    // Signals only within this process.
    let me = std::process::id() as u64;
    rules.insert(
        libc::SYS_tgkill,
        vec![rule(vec![condition(0, SeccompCmpOp::Ne, me)?])?],
    );
    compile(rules, libc::EPERM)
}

/// The listed syscalls (under their rules) fail with `errno`; all else is
/// allowed.
fn compile(rules: BTreeMap<i64, Vec<SeccompRule>>, errno: i32) -> Result<BpfProgram, SeccompError> {
    SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        TargetArch::x86_64,
    )
    .and_then(BpfProgram::try_from)
    .map_err(|e| SeccompError::Build(e.to_string()))
}

/// clone3 passes its flags in memory a filter cannot read; ENOSYS makes
/// glibc fall back to clone, whose flags the deny list checks.
fn no_clone3() -> Result<BpfProgram, SeccompError> {
    compile(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        libc::ENOSYS,
    )
}

/// Confines the calling thread (and the threads it starts from now on).
/// The programs are compiled once per process, not once per vCPU.
pub fn confine_current_thread() -> Result<(), SeccompError> {
    static PROGRAMS: OnceLock<Result<[BpfProgram; 2], String>> = OnceLock::new();
    let programs = PROGRAMS
        .get_or_init(|| {
            let build =
                || -> Result<[BpfProgram; 2], SeccompError> { Ok([no_clone3()?, deny_list()?]) };
            build().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| SeccompError::Build(e.clone()))?;
    for program in programs {
        seccompiler::apply_filter(program).map_err(|e| SeccompError::Install(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn errno() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    #[test]
    fn a_confined_thread_keeps_what_it_needs_and_loses_the_rest() {
        std::thread::spawn(|| {
            confine_current_thread().unwrap();
            // Denied, with EPERM.
            assert!(std::fs::File::open("/etc/hostname").is_err());
            assert!(std::process::Command::new("/bin/true").status().is_err());
            // SAFETY: socket(2) with constant arguments.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
            assert_eq!((fd, errno()), (-1, libc::EPERM));
            // SAFETY: kill(2) of our own pid with signal 0 touches nothing.
            let rc = unsafe { libc::kill(std::process::id() as i32, 0) };
            assert_eq!((rc, errno()), (-1, libc::EPERM));
            // Still allowed: Unix sockets, threads (through clone's
            // fallback), memory, eventfds.
            let (mut a, mut b) = UnixStream::pair().unwrap();
            use std::io::{Read, Write};
            a.write_all(b"x").unwrap();
            let mut byte = [0u8];
            b.read_exact(&mut byte).unwrap();
            let t = std::thread::spawn(|| vec![7u8; 1 << 20].len());
            assert_eq!(t.join().unwrap(), 1 << 20);
            vmm_sys_util::eventfd::EventFd::new(0)
                .unwrap()
                .write(1)
                .unwrap();
        })
        .join()
        .unwrap();
        // The rest of the process is untouched.
        assert!(std::fs::File::open("/proc/self/status").is_ok());
    }
}

//! What PID 1 sets up before anything else: the standard descriptors and the
//! basic mounts. Nothing here is fatal: a guest missing, say, /run is still
//! better served by an agent that reports the problem than by a kernel panic.

use std::fs;
use std::io;
use std::os::unix::fs::symlink;

use crate::sys;

struct MountSpec {
    source: &'static str,
    target: &'static str,
    fstype: &'static str,
    flags: libc::c_ulong,
    data: Option<&'static str>,
}

const NOSUID_NODEV: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV;
const NOSUID_NODEV_NOEXEC: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

/// In order: /dev/pts needs /dev, the cgroup mount point needs /sys.
const MOUNTS: &[MountSpec] = &[
    MountSpec {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    MountSpec {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    MountSpec {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: libc::MS_NOSUID,
        data: Some("mode=0755"),
    },
    MountSpec {
        // A private instance with a usable ptmx: /dev/ptmx (from devtmpfs)
        // resolves to the instance mounted at /dev/pts since Linux 4.7.
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: libc::MS_NOSUID | libc::MS_NOEXEC,
        data: Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    },
    MountSpec {
        source: "shm",
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: Some("mode=1777"),
    },
    MountSpec {
        source: "tmpfs",
        target: "/tmp",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: Some("mode=1777"),
    },
    MountSpec {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: Some("mode=0755"),
    },
    MountSpec {
        // cgroup v2 only at the root; the runner can still mount v1
        // hierarchies for a container that wants them.
        source: "cgroup2",
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
];

/// The /dev symlinks that programs expect and devtmpfs does not create.
const DEV_LINKS: &[(&str, &str)] = &[
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
];

/// What setup did and what failed, kept for logging once logging is up
/// (which itself needs /proc, for the kernel command line).
#[derive(Default)]
pub struct Report {
    pub done: Vec<String>,
    pub failed: Vec<String>,
}

/// Mount the basics and create the /dev symlinks.
pub fn mount_basics(report: &mut Report) {
    for m in MOUNTS {
        match mount_one(m) {
            Ok(()) => report
                .done
                .push(format!("mounted {} on {}", m.fstype, m.target)),
            Err(e) => report
                .failed
                .push(format!("mount {} on {}: {e}", m.fstype, m.target)),
        }
    }
    for (target, link) in DEV_LINKS {
        match symlink(target, link) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => report
                .failed
                .push(format!("symlink {link} -> {target}: {e}")),
        }
    }
}

fn mount_one(m: &MountSpec) -> io::Result<()> {
    fs::create_dir_all(m.target)?;
    match sys::mount(m.source, m.target, m.fstype, m.flags, m.data) {
        // Already there (say, devtmpfs mounted by the kernel): fine.
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(()),
        other => other,
    }
}

/// Make sure descriptors 0, 1 and 2 are open. The kernel opens
/// /dev/console for init only if the initramfs has that node; without it
/// they are closed, and the first pipe we create would land on 0-2.
/// Call after /dev is mounted.
pub fn ensure_stdio(report: &mut Report) {
    for fd in 0..=2 {
        if sys::fd_is_open(fd) {
            continue;
        }
        let opened = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/console")
            .or_else(|_| {
                fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/null")
            });
        // The opened file is dropped after dup2; the duplicate on `fd` stays
        // (dup2 does not copy O_CLOEXEC).
        match opened.and_then(|f| sys::dup2(&f, fd)) {
            Ok(()) => report.done.push(format!("opened the console as fd {fd}")),
            Err(e) => report.failed.push(format!("open console for fd {fd}: {e}")),
        }
    }
}

/// The value of `key=` on the kernel command line, if present.
pub fn cmdline_value(cmdline: &str, key: &str) -> Option<String> {
    cmdline
        .split_ascii_whitespace()
        // Like the kernel: the last occurrence wins.
        .rev()
        .filter_map(|word| word.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_owned())
}

pub fn read_cmdline() -> Option<String> {
    fs::read_to_string("/proc/cmdline").ok()
}

#[cfg(test)]
mod tests {
    use super::cmdline_value;

    #[test]
    fn cmdline_parsing() {
        let c = "console=ttyS0 reboot=k isola.log=debug panic=-1 isola.log=trace\n";
        assert_eq!(cmdline_value(c, "isola.log").as_deref(), Some("trace"));
        assert_eq!(cmdline_value(c, "reboot").as_deref(), Some("k"));
        assert_eq!(cmdline_value(c, "isola"), None);
        assert_eq!(cmdline_value("", "isola.log"), None);
        assert_eq!(cmdline_value("isola.log", "isola.log"), None);
    }
}

//! The QEMU side: checking the version, and building the command line of the outer guest.
//!
//! The machine: q35 under multi-threaded TCG with an EPYC CPU that has SVM and nested paging
//! (so the outer kernel's kvm_amd gives a working /dev/kvm), no default devices, the serial
//! console on QEMU's stdio, the host's `/` read-only and the shares read-write over
//! virtio-9p, three virtio-serial ports (command stdout, command stderr, control) whose
//! host ends are file descriptors QEMU inherits, and the run spec in fw_cfg.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::io::RawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::spec::Share;

/// The oldest QEMU that runs this setup reliably (7.2 froze with two vCPUs).
pub const MIN_QEMU_MAJOR: u32 = 10;

pub const HOSTROOT_TAG: &str = "hostroot";
pub const STDOUT_PORT: &str = "org.isola.testhost.stdout";
pub const STDERR_PORT: &str = "org.isola.testhost.stderr";
pub const CTL_PORT: &str = "org.isola.testhost.ctl";
pub const PORT_NAMES: [&str; 3] = [STDOUT_PORT, STDERR_PORT, CTL_PORT];
/// fw_cfg item holding the run spec; the guest reads
/// `/sys/firmware/qemu_fw_cfg/by_name/<this>/raw`.
pub const SPEC_FW_CFG_NAME: &str = "opt/org.isola.testhost/spec";

/// The kernel command line of the outer guest. Under TCG every instruction counts, and this
/// is a throwaway test machine: `mitigations=off` saves about 0.7 s of boot and
/// `cryptomgr.notests=1` (no crypto self-tests) about 1 s.
pub const KERNEL_APPEND: &str =
    "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init mitigations=off cryptomgr.notests=1";

#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    #[error("cannot run {binary} (install QEMU >= {MIN_QEMU_MAJOR}: apt-get install -t bookworm-backports qemu-system-x86)")]
    NotFound {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("{binary} is QEMU {found}; the test host needs QEMU >= {MIN_QEMU_MAJOR} (Debian 12's 7.2 freezes with 2 vCPUs): apt-get install -t bookworm-backports qemu-system-x86")]
    TooOld { binary: PathBuf, found: String },
    #[error("cannot read the version of {binary} from {output:?}")]
    UnknownVersion { binary: PathBuf, output: String },
}

/// `(major, minor, micro)` from `qemu-system-x86_64 --version` output.
pub fn parse_version(output: &str) -> Option<(u32, u32, u32)> {
    let line = output
        .lines()
        .find(|l| l.starts_with("QEMU emulator version "))?;
    let version = line
        .trim_start_matches("QEMU emulator version ")
        .split_whitespace()
        .next()?;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let micro = parts.next().flatten().unwrap_or(0);
    Some((major, minor, micro))
}

/// Runs `binary --version` and insists on [`MIN_QEMU_MAJOR`].
pub fn check_version(binary: &Path) -> Result<(u32, u32, u32), QemuError> {
    let out = Command::new(binary)
        .arg("--version")
        .output()
        .map_err(|source| QemuError::NotFound {
            binary: binary.to_path_buf(),
            source,
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = parse_version(&text).ok_or_else(|| QemuError::UnknownVersion {
        binary: binary.to_path_buf(),
        output: text.trim().to_owned(),
    })?;
    if version.0 < MIN_QEMU_MAJOR {
        return Err(QemuError::TooOld {
            binary: binary.to_path_buf(),
            found: format!("{}.{}.{}", version.0, version.1, version.2),
        });
    }
    Ok(version)
}

/// Host ends of the virtio-serial ports: write ends of pipes that QEMU inherits.
#[derive(Debug, Clone, Copy)]
pub struct PortFds {
    pub stdout: RawFd,
    pub stderr: RawFd,
    pub ctl: RawFd,
}

#[derive(Debug, Clone)]
pub struct QemuConfig {
    pub cpus: u32,
    pub mem_mib: u32,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub append: String,
    /// Shared read-only as [`HOSTROOT_TAG`]; normally `/`.
    pub host_root: PathBuf,
    /// Read-write shares.
    pub shares: Vec<Share>,
    pub ports: PortFds,
    pub spec_file: PathBuf,
    /// QEMU copies the console here (`logfile=`).
    pub console_log: Option<PathBuf>,
    /// Interactive: Ctrl-C goes to the guest instead of stopping QEMU.
    pub interactive: bool,
}

/// Escapes a value for QEMU's `key=value,key=value` option syntax (a comma is doubled).
pub fn opt_value(value: &OsStr) -> OsString {
    let mut out = Vec::with_capacity(value.len());
    for &b in value.as_bytes() {
        out.push(b);
        if b == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

fn opt(parts: &[&OsStr]) -> OsString {
    parts.iter().copied().collect()
}

impl QemuConfig {
    /// The arguments after the QEMU binary.
    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |items: &[&str]| a.extend(items.iter().map(OsString::from));
        push(&[
            "-M",
            "q35",
            "-accel",
            "tcg,thread=multi",
            "-cpu",
            "EPYC,+svm,+npt",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ]);
        push(&[
            "-smp",
            &self.cpus.to_string(),
            "-m",
            &self.mem_mib.to_string(),
        ]);

        a.push("-kernel".into());
        a.push(self.kernel.clone().into_os_string());
        a.push("-initrd".into());
        a.push(self.initrd.clone().into_os_string());
        a.push("-append".into());
        a.push(self.append.clone().into());

        // Serial console on stdio.
        let mut console = OsString::from("stdio,id=con,signal=");
        console.push(if self.interactive { "off" } else { "on" });
        if let Some(log) = &self.console_log {
            console.push(",logfile=");
            console.push(opt_value(log.as_os_str()));
            console.push(",logappend=off");
        }
        a.push("-chardev".into());
        a.push(console);
        a.push("-serial".into());
        a.push("chardev:con".into());

        // The host's / (read-only), then the read-write shares.
        a.push("-virtfs".into());
        a.push(opt(&[
            OsStr::new("local,path="),
            &opt_value(self.host_root.as_os_str()),
            OsStr::new(",mount_tag="),
            OsStr::new(HOSTROOT_TAG),
            OsStr::new(",security_model=passthrough,readonly=on,multidevs=remap"),
        ]));
        for share in &self.shares {
            a.push("-virtfs".into());
            a.push(opt(&[
                OsStr::new("local,path="),
                &opt_value(share.path.as_os_str()),
                OsStr::new(",mount_tag="),
                OsStr::new(&share.tag),
                OsStr::new(",security_model=passthrough,multidevs=remap"),
            ]));
        }

        // virtio-serial ports; `nr` 0 is left to a console port.
        a.push("-device".into());
        a.push("virtio-serial-pci,id=vser,max_ports=4".into());
        let ports = [
            ("out", self.ports.stdout, STDOUT_PORT),
            ("err", self.ports.stderr, STDERR_PORT),
            ("ctl", self.ports.ctl, CTL_PORT),
        ];
        for (nr, (id, fd, name)) in ports.into_iter().enumerate() {
            a.push("-chardev".into());
            a.push(format!("file,id={id},path=/dev/fd/{fd}").into());
            a.push("-device".into());
            a.push(
                format!(
                    "virtserialport,bus=vser.0,nr={},chardev={id},name={name}",
                    nr + 1
                )
                .into(),
            );
        }

        a.push("-fw_cfg".into());
        a.push(opt(&[
            OsStr::new("name="),
            OsStr::new(SPEC_FW_CFG_NAME),
            OsStr::new(",file="),
            &opt_value(self.spec_file.as_os_str()),
        ]));
        a
    }
}

/// Whether a line QEMU printed on stderr is expected noise: the warnings of emulating EPYC
/// under TCG, and QEMU's note that it got our SIGTERM.
pub fn is_noise(line: &str) -> bool {
    line.contains("TCG doesn't support requested feature") || line.contains("terminating on signal")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> QemuConfig {
        QemuConfig {
            cpus: 2,
            mem_mib: 4096,
            kernel: "/c/vmlinuz".into(),
            initrd: "/c/init,rd.cpio".into(),
            append: KERNEL_APPEND.into(),
            host_root: "/".into(),
            shares: vec![Share {
                tag: "share0".into(),
                path: "/work/main".into(),
            }],
            ports: PortFds {
                stdout: 5,
                stderr: 6,
                ctl: 7,
            },
            spec_file: "/tmp/run/spec".into(),
            console_log: None,
            interactive: false,
        }
    }

    fn args(c: &QemuConfig) -> Vec<String> {
        c.args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    /// The value following `flag` each time it occurs.
    fn values(args: &[String], flag: &str) -> Vec<String> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].clone())
            .collect()
    }

    #[test]
    fn machine_and_cpu() {
        let a = args(&config());
        let joined = a.join(" ");
        assert!(joined.starts_with(
            "-M q35 -accel tcg,thread=multi -cpu EPYC,+svm,+npt -nodefaults -no-user-config -display none -no-reboot -smp 2 -m 4096"
        ), "{joined}");
        assert_eq!(values(&a, "-kernel"), ["/c/vmlinuz"]);
        // -kernel/-initrd/-append go to the machine options as they are: no escaping.
        assert_eq!(values(&a, "-initrd"), ["/c/init,rd.cpio"]);
        assert_eq!(values(&a, "-append"), [KERNEL_APPEND]);
    }

    #[test]
    fn shares_and_ports() {
        let a = args(&config());
        assert_eq!(
            values(&a, "-virtfs"),
            [
                "local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap",
                "local,path=/work/main,mount_tag=share0,security_model=passthrough,multidevs=remap",
            ]
        );
        assert_eq!(
            values(&a, "-chardev"),
            [
                "stdio,id=con,signal=on",
                "file,id=out,path=/dev/fd/5",
                "file,id=err,path=/dev/fd/6",
                "file,id=ctl,path=/dev/fd/7",
            ]
        );
        assert_eq!(
            values(&a, "-device"),
            [
                "virtio-serial-pci,id=vser,max_ports=4",
                "virtserialport,bus=vser.0,nr=1,chardev=out,name=org.isola.testhost.stdout",
                "virtserialport,bus=vser.0,nr=2,chardev=err,name=org.isola.testhost.stderr",
                "virtserialport,bus=vser.0,nr=3,chardev=ctl,name=org.isola.testhost.ctl",
            ]
        );
        assert_eq!(values(&a, "-serial"), ["chardev:con"]);
        assert_eq!(
            values(&a, "-fw_cfg"),
            ["name=opt/org.isola.testhost/spec,file=/tmp/run/spec"]
        );
    }

    #[test]
    fn interactive_console_with_log() {
        let mut c = config();
        c.interactive = true;
        c.console_log = Some("/tmp/a,b.log".into());
        assert_eq!(
            values(&args(&c), "-chardev")[0],
            "stdio,id=con,signal=off,logfile=/tmp/a,,b.log,logappend=off"
        );
    }

    #[test]
    fn commas_in_paths_are_escaped() {
        assert_eq!(opt_value(OsStr::new("a,b,,c")), "a,,b,,,,c");
        let mut c = config();
        c.shares[0].path = "/w,x".into();
        assert!(values(&args(&c), "-virtfs")[1].starts_with("local,path=/w,,x,mount_tag"));
    }

    #[test]
    fn versions() {
        assert_eq!(
            parse_version(
                "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\nCopyright"
            ),
            Some((10, 0, 2))
        );
        assert_eq!(
            parse_version("QEMU emulator version 7.2.15 (Debian 1:7.2+dfsg-7+deb12u12)"),
            Some((7, 2, 15))
        );
        assert_eq!(parse_version("QEMU emulator version 9.1"), Some((9, 1, 0)));
        assert_eq!(parse_version("qemu-kvm"), None);
        assert_eq!(parse_version("QEMU emulator version x.y"), None);
    }

    #[test]
    fn noise_is_recognised() {
        assert!(is_noise(
            "qemu-system-x86_64: warning: TCG doesn't support requested feature: CPUID.80000001H:ECX.osvw [bit 9]"
        ));
        assert!(is_noise(
            "qemu-system-x86_64: terminating on signal 15 from pid 1 (x)"
        ));
        assert!(!is_noise("qemu-system-x86_64: -virtfs: error"));
    }
}

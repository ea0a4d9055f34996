//! Where the test host's inputs live on the machine: the unpacked Debian kernel (put there
//! by `tests/testhost/prepare.sh`), its modules, and a static busybox.

use std::fs;
use std::path::{Path, PathBuf};

/// What to tell the user whenever the kernel is missing.
pub const PREPARE_HINT: &str = "run tests/testhost/prepare.sh";

#[derive(Debug, thiserror::Error)]
pub enum AssetsError {
    #[error("no test host kernel in {dir}: {reason} ({PREPARE_HINT})")]
    NoKernel { dir: PathBuf, reason: String },
    #[error("busybox {path}: {reason} (apt-get install busybox-static, or set ISOLA_TESTHOST_BUSYBOX to a static busybox)")]
    Busybox { path: PathBuf, reason: String },
}

/// `${ISOLA_CACHE:-/var/cache/isola}/testhost`.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("ISOLA_CACHE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/isola"));
    base.join("testhost")
}

/// The located inputs; all paths are absolute and canonical.
#[derive(Debug, Clone)]
pub struct Assets {
    /// `6.1.0-56-amd64`
    pub kernel_version: String,
    /// The compressed bzImage (`.../boot/vmlinuz-<kver>`).
    pub vmlinuz: PathBuf,
    /// The uncompressed ELF kernel (`.../boot/vmlinux-<kver>`, extracted by prepare.sh),
    /// which QEMU boots through PVH without the seconds of decompression under TCG.
    pub vmlinux: Option<PathBuf>,
    /// `.../lib/modules/<kver>`, holding `modules.dep` and `kernel/`.
    pub modules_dir: PathBuf,
    /// A statically linked busybox for the initramfs.
    pub busybox: PathBuf,
}

impl Assets {
    /// Finds the kernel recorded in `<cache>/KERNEL` and the busybox to use
    /// (`$ISOLA_TESTHOST_BUSYBOX`, else `/bin/busybox`).
    pub fn locate(cache: &Path) -> Result<Self, AssetsError> {
        let no_kernel = |reason: String| AssetsError::NoKernel {
            dir: cache.to_path_buf(),
            reason,
        };
        let stamp = cache.join("KERNEL");
        let kernel_version = fs::read_to_string(&stamp)
            .map_err(|e| no_kernel(format!("{}: {e}", stamp.display())))?
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        if kernel_version.is_empty()
            || kernel_version.contains('/')
            || kernel_version.starts_with('.')
        {
            return Err(no_kernel(format!(
                "{} does not name a kernel version",
                stamp.display()
            )));
        }
        let root = cache.join("kernel").join(&kernel_version);
        let vmlinuz = root.join("boot").join(format!("vmlinuz-{kernel_version}"));
        let modules_dir = root.join("lib/modules").join(&kernel_version);
        for needed in [&vmlinuz, &modules_dir.join("modules.dep")] {
            if !needed.is_file() {
                return Err(no_kernel(format!("{} is missing", needed.display())));
            }
        }
        let canonical =
            |p: &Path| fs::canonicalize(p).map_err(|e| no_kernel(format!("{}: {e}", p.display())));
        let busybox = std::env::var_os("ISOLA_TESTHOST_BUSYBOX")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/bin/busybox"));
        check_static_busybox(&busybox)?;
        let vmlinux = root.join("boot").join(format!("vmlinux-{kernel_version}"));
        let vmlinux = if vmlinux.is_file() {
            Some(canonical(&vmlinux)?)
        } else {
            tracing::warn!(
                "{} is missing; booting the compressed kernel, which is slower ({PREPARE_HINT})",
                vmlinux.display()
            );
            None
        };
        Ok(Self {
            vmlinux,
            vmlinuz: canonical(&vmlinuz)?,
            modules_dir: canonical(&modules_dir)?,
            busybox,
            kernel_version,
        })
    }
}

impl Assets {
    /// The kernel image QEMU should boot: vmlinux when there is one.
    pub fn boot_kernel(&self) -> &Path {
        self.vmlinux.as_deref().unwrap_or(&self.vmlinuz)
    }
}

fn check_static_busybox(path: &Path) -> Result<(), AssetsError> {
    let err = |reason: String| AssetsError::Busybox {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = fs::read(path).map_err(|e| err(e.to_string()))?;
    match elf_has_interpreter(&bytes) {
        None => Err(err("not a 64-bit little-endian ELF executable".into())),
        Some(true) => Err(err("dynamically linked; the initramfs has no libc".into())),
        Some(false) => Ok(()),
    }
}

/// Whether an ELF64 little-endian file asks for a program interpreter (is dynamically
/// linked); `None` if it is not such a file or its program headers are out of bounds.
pub fn elf_has_interpreter(elf: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return None;
    }
    let bytes = |o: usize, n: usize| elf.get(o..o.checked_add(n)?);
    let u16_at = |o: usize| Some(u16::from_le_bytes(bytes(o, 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(bytes(o, 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(bytes(o, 8)?.try_into().ok()?));
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    if phentsize < 4 {
        return None;
    }
    for i in 0..phnum {
        let at = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(at)? == PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_busybox_and_shell_are_told_apart() {
        // Both exist on the Debian machines this runs on; skip quietly elsewhere.
        if let Ok(b) = fs::read("/bin/busybox") {
            assert_eq!(elf_has_interpreter(&b), Some(false));
        }
        if let Ok(b) = fs::read("/bin/sh") {
            assert_eq!(elf_has_interpreter(&b), Some(true));
        }
    }

    #[test]
    fn garbage_is_not_elf() {
        assert_eq!(elf_has_interpreter(b"#!/bin/sh\n"), None);
        let mut fake = vec![0u8; 64];
        fake[..6].copy_from_slice(b"\x7fELF\x02\x01");
        fake[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        fake[0x36] = 56;
        fake[0x38] = 1;
        assert_eq!(elf_has_interpreter(&fake), None);
    }

    #[test]
    fn missing_kernel_says_how_to_fix() {
        let dir = std::env::temp_dir().join(format!("isola-th-assets-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let msg = Assets::locate(&dir).unwrap_err().to_string();
        assert!(msg.contains(PREPARE_HINT), "{msg}");
        fs::write(dir.join("KERNEL"), "6.1.0-1-amd64\n").unwrap();
        let msg = Assets::locate(&dir).unwrap_err().to_string();
        assert!(msg.contains("vmlinuz-6.1.0-1-amd64 is missing"), "{msg}");
        fs::remove_dir_all(&dir).unwrap();
    }
}

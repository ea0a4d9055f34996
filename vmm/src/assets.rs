//! Where the default guest kernel, initramfs and virtiofsd are found.
//!
//! In order: `ISOLA_KERNEL` / `ISOLA_INITRAMFS`; a `build/` directory next to
//! an ancestor of the running executable (the work tree the README's build
//! fills); `/usr/local/share/isola`, then `/usr/share/isola`.

use std::path::{Path, PathBuf};

pub const KERNEL_NAME: &str = "vmlinux";
pub const INITRAMFS_NAME: &str = "initramfs.cpio";
pub const VIRTIOFSD_NAME: &str = "virtiofsd";

fn candidates() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        for anc in exe.ancestors().skip(1) {
            dirs.push(anc.join("build"));
        }
    }
    dirs.push(PathBuf::from("/usr/local/share/isola"));
    dirs.push(PathBuf::from("/usr/share/isola"));
    dirs
}

fn find(env: &str, name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    candidates()
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

pub fn default_kernel() -> Option<PathBuf> {
    find("ISOLA_KERNEL", KERNEL_NAME)
}

pub fn default_initramfs() -> Option<PathBuf> {
    find("ISOLA_INITRAMFS", INITRAMFS_NAME)
}

/// The vhost-user file system daemon for virtio-fs devices: the places
/// above (`ISOLA_VIRTIOFSD` first), then where distributions install it.
pub fn default_virtiofsd() -> Option<PathBuf> {
    find("ISOLA_VIRTIOFSD", VIRTIOFSD_NAME).or_else(|| {
        [
            "/usr/libexec/virtiofsd",
            "/usr/lib/qemu/virtiofsd",
            "/usr/bin/virtiofsd",
        ]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
    })
}

/// The directory searched, for error messages.
pub fn searched() -> String {
    candidates()
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn exists(p: &Path) -> bool {
    p.is_file()
}

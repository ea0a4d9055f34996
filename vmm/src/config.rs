//! What a VM is made of, as the caller asks for it.

use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleMode {
    /// Guest console output is discarded (still scanned for panics).
    Off,
    /// Written to the VMM's stdout.
    Stdout,
    /// Appended to a file.
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct DiskConfig {
    pub path: PathBuf,
    pub read_only: bool,
}

/// A virtio-fs device whose file system a vhost-user backend (virtiofsd)
/// serves on `socket`; the guest mounts it by `tag`.
#[derive(Debug, Clone)]
pub struct FsConfig {
    pub socket: PathBuf,
    pub tag: String,
}

#[derive(Debug, Clone)]
pub struct VmConfig {
    pub kernel: PathBuf,
    pub initramfs: Option<PathBuf>,
    pub mem_mib: u64,
    pub vcpus: u8,
    pub disks: Vec<DiskConfig>,
    /// Host side of the vsock device; no vsock device when `None`.
    pub vsock_uds: Option<PathBuf>,
    /// Shared directories; any makes guest RAM a shared memfd.
    pub filesystems: Vec<FsConfig>,
    pub guest_cid: u64,
    pub console: ConsoleMode,
    pub cmdline_extra: String,
}

impl VmConfig {
    pub const MAX_VCPUS: u8 = 32;
    pub const MIN_MEM_MIB: u64 = 16;
}

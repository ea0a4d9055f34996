//! Starting a vm container from a snapshot of a booted guest (a template)
//! instead of booting one: the guest kernel's boot and the agent's start
//! happen once per template, and each container's VM continues from the
//! moment the agent announced itself.
//!
//! A template serves every VM configured the same way: the same VMM build,
//! guest kernel and initramfs, memory, vCPUs, console, and disks of the
//! same sizes in the same order. Disk contents may differ, as the guest's
//! first request after a restore drops its block caches. VMs with virtio-fs
//! devices (volumes, a shared root) boot: a vhost-user backend's state
//! lives in another process. `ISOLA_VM_TEMPLATES=off` boots every VM.
//!
//! ```text
//! <root>/vm-templates/<key>/vm.json   device, vCPU and irqchip state
//! <root>/vm-templates/<key>/memory    guest RAM, sparse
//! <root>/vm-templates/<key>.lock      held while the template is made
//! ```

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use isola_vmm::snapshot::{FORMAT_VERSION, STATE_FILE};
use isola_vmm::VmConfig;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::lock::FileLock;

pub const TEMPLATES_DIR: &str = "vm-templates";
/// Templates kept per root; the oldest beyond this go when one is made.
const MAX_TEMPLATES: usize = 16;
/// How long a kind whose template could not be made boots before the
/// next try.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(600);
/// Host entropy handed to each restored guest.
pub const ENTROPY_BYTES: usize = 64;

pub fn dir(root: &Path) -> PathBuf {
    root.join(TEMPLATES_DIR)
}

/// Off only when the environment says so.
pub fn enabled() -> bool {
    !matches!(
        std::env::var("ISOLA_VM_TEMPLATES").as_deref(),
        Ok("off" | "0" | "false")
    )
}

/// A file's identity: a rebuilt kernel, initramfs or VMM gets a new key.
fn file_id(path: &Path) -> Option<String> {
    let m = std::fs::metadata(path).ok()?;
    Some(format!(
        "{} dev={} ino={} len={} mtime={}.{}",
        path.display(),
        m.dev(),
        m.ino(),
        m.len(),
        m.mtime(),
        m.mtime_nsec()
    ))
}

/// The template that serves VMs configured as `cfg`; `None` where
/// templates cannot serve it.
pub fn key(cfg: &VmConfig) -> Option<String> {
    if !cfg.filesystems.is_empty() {
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    // The host: a restored guest keeps what its kernel learnt of the CPU at
    // boot (features it patched itself for), so a template lives no longer
    // than the host's boot (a new kernel, microcode or CPU needs a reboot).
    let host_boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let mut parts = vec![
        format!("format={FORMAT_VERSION}"),
        format!("host boot {}", host_boot.trim()),
        file_id(&exe)?,
        file_id(&cfg.kernel)?,
        file_id(cfg.initramfs.as_deref()?)?,
        format!(
            "mem={} vcpus={} cid={} vsock={} console={} cmdline={:?}",
            cfg.mem_mib,
            cfg.vcpus,
            cfg.guest_cid,
            cfg.vsock_uds.is_some(),
            !matches!(cfg.console, isola_vmm::ConsoleMode::Off),
            cfg.cmdline_extra
        ),
    ];
    for d in &cfg.disks {
        let len = std::fs::metadata(&d.path).ok()?.len();
        parts.push(format!("disk ro={} len={len}", d.read_only));
    }
    let mut h = Sha256::new();
    for p in &parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    Some(
        h.finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    )
}

fn complete(dir: &Path) -> bool {
    dir.join(STATE_FILE).is_file()
}

/// The template `key` under `templates`, made first by `make` (given an
/// empty directory to snapshot a booted VM into) if there is none yet.
/// Containers starting at once wait for the one that makes it.
pub fn ensure(
    templates: &Path,
    key: &str,
    make: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let dir = templates.join(key);
    if complete(&dir) {
        return Ok(dir);
    }
    // Guest RAM of a freshly booted guest, and every later VM's start:
    // for root's eyes only.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(templates)
        .map_err(Error::io(templates))?;
    let _lock = FileLock::exclusive(&templates.join(format!("{key}.lock")))?;
    if complete(&dir) {
        return Ok(dir);
    }
    let failed = templates.join(format!("{key}.failed"));
    if let Some(age) = std::fs::metadata(&failed)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
    {
        if age < RETRY_AFTER {
            return Err(Error::Vm(format!(
                "making this template failed {} s ago ({}); booting until {} s have passed",
                age.as_secs(),
                failed.display(),
                RETRY_AFTER.as_secs()
            )));
        }
    }
    remove_leftovers(templates, key);
    let tmp = templates.join(format!("{key}.tmp-{}", std::process::id()));
    std::fs::create_dir(&tmp).map_err(Error::io(&tmp))?;
    if let Err(e) = make(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        // Each try costs a boot and a snapshot on top of the container's
        // own start: one that failed is not tried again for a while.
        let _ = std::fs::write(&failed, e.to_string());
        return Err(e);
    }
    let _ = std::fs::remove_file(&failed);
    // A crash before this leaves only a .tmp directory, never a half
    // template under the key.
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::rename(&tmp, &dir) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(Error::io(&dir)(e));
    }
    prune(templates, key);
    Ok(dir)
}

/// The directories of makes that never finished (a killed supervisor):
/// with the lock held, nobody is making `key` now.
fn remove_leftovers(templates: &Path, key: &str) {
    let prefix = format!("{key}.tmp-");
    let Ok(entries) = std::fs::read_dir(templates) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(&prefix))
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Drops a template a restore could not use (damaged, or not the machine
/// its key says); the next container makes it again. Under the template's
/// lock, so that one being renamed into place is not removed half-way.
pub fn discard(dir: &Path) {
    let _lock = FileLock::exclusive(&dir.with_extension("lock"));
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!("cannot remove the template {}: {e}", dir.display());
        }
    }
}

/// Keeps the newest [`MAX_TEMPLATES`]: keys change with every rebuild of
/// the kernel, initramfs or VMM, and each template holds tens of MiB.
fn prune(templates: &Path, keep: &str) {
    let Ok(entries) = std::fs::read_dir(templates) else {
        return;
    };
    let mut dirs: Vec<(SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.len() == 64 && n != keep)
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if dirs.len() < MAX_TEMPLATES {
        return;
    }
    dirs.sort();
    for (_, d) in dirs.iter().take(dirs.len() + 1 - MAX_TEMPLATES) {
        tracing::debug!("pruning the old template {}", d.display());
        discard(d);
        let _ = std::fs::remove_file(d.with_extension("lock"));
    }
}

/// The wall clock, for the restored guest's.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Fresh host entropy for a restored guest's RNG.
pub fn entropy() -> Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = vec![0u8; ENTROPY_BYTES];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(Error::io("/dev/urandom"))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system's temp dir, removed on drop.
    struct Scratch(PathBuf);
    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let p = std::env::temp_dir().join(format!("isola-tmpl-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Scratch(p)
        }
        fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn config(dir: &Path, disk_len: u64) -> VmConfig {
        let kernel = dir.join("vmlinux");
        let initramfs = dir.join("initramfs");
        let disk = dir.join("disk");
        std::fs::write(&kernel, b"k").unwrap();
        std::fs::write(&initramfs, b"i").unwrap();
        std::fs::File::create(&disk)
            .unwrap()
            .set_len(disk_len)
            .unwrap();
        VmConfig {
            kernel,
            initramfs: Some(initramfs),
            mem_mib: 512,
            vcpus: 1,
            disks: vec![isola_vmm::DiskConfig {
                path: disk,
                read_only: true,
            }],
            vsock_uds: Some(dir.join("v.sock")),
            filesystems: vec![],
            guest_cid: 3,
            console: isola_vmm::ConsoleMode::Off,
            cmdline_extra: String::new(),
        }
    }

    #[test]
    fn the_key_follows_what_the_guest_saw() {
        let dir = Scratch::new("key");
        let a = config(dir.path(), 1 << 20);
        let k = key(&a).unwrap();
        assert_eq!(key(&a).unwrap(), k, "the key is stable");
        let mut b = a.clone();
        b.mem_mib = 1024;
        assert_ne!(key(&b).unwrap(), k, "memory is in the key");
        let mut c = a.clone();
        c.vsock_uds = Some(dir.path().join("another.sock"));
        assert_eq!(key(&c).unwrap(), k, "socket paths are not");
        let d = config(dir.path(), 2 << 20);
        assert_ne!(key(&d).unwrap(), k, "disk sizes are");
        let mut e = a.clone();
        e.filesystems.push(isola_vmm::FsConfig {
            socket: dir.path().join("fs.sock"),
            tag: "t".into(),
        });
        assert!(key(&e).is_none(), "virtio-fs VMs boot");
    }

    #[test]
    fn ensure_makes_once_and_a_failed_make_leaves_nothing() {
        let dir = Scratch::new("ensure");
        let failed = ensure(dir.path(), "k", |_| Err(Error::Vm("no".into())));
        assert!(failed.is_err());
        assert!(!dir.path().join("k").exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "only the lock and the failure's mark"
        );
        let soon = ensure(dir.path(), "k", |_| panic!("tried again at once"));
        assert!(soon.unwrap_err().to_string().contains("failed"));
        // Once the mark has aged, the next container tries again.
        let old = std::time::SystemTime::now() - RETRY_AFTER - std::time::Duration::from_secs(1);
        std::fs::File::options()
            .write(true)
            .open(dir.path().join("k.failed"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        let made = ensure(dir.path(), "k", |d| {
            std::fs::write(d.join(STATE_FILE), b"{}").map_err(Error::io(d))
        })
        .unwrap();
        assert!(complete(&made));
        // A make that was killed half-way left its directory: the next
        // make under the lock removes it.
        std::fs::create_dir(dir.path().join("j.tmp-1")).unwrap();
        ensure(dir.path(), "j", |d| {
            std::fs::write(d.join(STATE_FILE), b"{}").map_err(Error::io(d))
        })
        .unwrap();
        assert!(!dir.path().join("j.tmp-1").exists());
        assert!(
            !dir.path().join("k.failed").exists(),
            "success clears the mark"
        );
        let again = ensure(dir.path(), "k", |_| panic!("made twice")).unwrap();
        assert_eq!(again, made);
    }
}

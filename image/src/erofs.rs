//! The vm level's root disk: one read-only EROFS image per image (manifest
//! digest), built on first use from the merged layers and cached; every VM
//! of the image attaches the same file.
//!
//! The layers are merged by a read-only overlay mounted in a mount namespace
//! private to one thread, so the mount cannot leak: it vanishes with the
//! thread and its mkfs.erofs child, whatever happens to them.

use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::mount::{mount_change, MountPropagationFlags};
use rustix::thread::UnshareFlags;
use tracing::debug;

use crate::error::{Error, IoContext, Result};
use crate::rootfs::mount_overlay;
use crate::store::layout::sync_dir;
use crate::store::lock::Lock;
use crate::store::{Image, Store};
use crate::unpack::is_root;

pub const MKFS: &str = "mkfs.erofs";

fn build_in_private_ns(lowers: Vec<PathBuf>, mnt: PathBuf, out: PathBuf) -> Result<()> {
    // Only NEWNS (which implies FS) is unshared, never FILES, so no file
    // descriptor table is split between threads; the mount namespace change
    // is confined to this short-lived thread.
    // SAFETY: as above, no other thread's view of fds or memory changes.
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS) }
        .ctx(|| "unshare(CLONE_NEWNS)".into())?;
    mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .ctx(|| "making the private mount namespace private".into())?;
    mount_overlay(&lowers, None, &mnt)?;
    let output = Command::new(MKFS)
        .arg("--quiet")
        .arg(&out)
        .arg(&mnt)
        .output()
        .ctx(|| format!("running {MKFS} (install erofs-utils)"))?;
    if !output.status.success() {
        return Err(Error::Tool {
            tool: MKFS.into(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(())
}

impl Store {
    pub fn erofs_path(&self, image: &Image) -> PathBuf {
        self.root()
            .join("erofs")
            .join(format!("{}.erofs", image.manifest_digest.hex()))
    }

    /// The image's EROFS root disk, built once (concurrent callers wait for
    /// the first) and cached. Needs root (overlay mount).
    pub fn erofs_image(&self, image: &Image) -> Result<PathBuf> {
        let dest = self.erofs_path(image);
        if dest.is_file() {
            return Ok(dest);
        }
        let _guard = self.import_guard()?;
        let _lock = Lock::exclusive(
            &self.lock_path(&format!("erofs-{}.lock", image.manifest_digest.hex())),
        )?;
        if dest.is_file() {
            return Ok(dest);
        }
        if !is_root() {
            return Err(Error::NeedsRoot("building an EROFS image".into()));
        }
        let lowers = self.layer_dirs(image)?;
        let tmp = tempfile::Builder::new()
            .prefix(".erofs-")
            .tempdir_in(self.tmp_dir())
            .ctx(|| "creating temp dir".into())?;
        let mnt = tmp.path().join("mnt");
        std::fs::create_dir(&mnt).ctx(|| "creating mount point".into())?;
        let out = tmp.path().join("image.erofs");
        let (m, o) = (mnt.clone(), out.clone());
        std::thread::spawn(move || build_in_private_ns(lowers, m, o))
            .join()
            .map_err(|_| Error::Unsupported("erofs build thread panicked".into()))??;
        finish(&out, &dest)?;
        debug!(image = %image.manifest_digest, path = %dest.display(), "EROFS image built");
        Ok(dest)
    }
}

fn finish(out: &Path, dest: &Path) -> Result<()> {
    let f = std::fs::File::open(out).ctx(|| format!("opening {}", out.display()))?;
    f.sync_all().ctx(|| "syncing EROFS image".into())?;
    std::fs::set_permissions(out, std::os::unix::fs::PermissionsExt::from_mode(0o444))
        .ctx(|| "chmod EROFS image".into())?;
    std::fs::rename(out, dest).ctx(|| format!("storing {}", dest.display()))?;
    sync_dir(dest.parent().unwrap_or(Path::new("/")))
}

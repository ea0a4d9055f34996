//! The process level's root filesystem: an overlay of the image's unpacked
//! layers, with the container's writable upper dir on top.

use std::path::{Path, PathBuf};

use rustix::mount::{mount, MountFlags};

use crate::error::{Error, IoContext, Result};
use crate::store::{Image, Store};

/// Overlay's mount data is limited to a page; long roots with many layers
/// would overflow it.
const MAX_MOUNT_DATA: usize = 4000;

fn escape(p: &Path) -> Result<String> {
    let s = p
        .to_str()
        .ok_or_else(|| Error::Unsupported(format!("non-UTF-8 path {}", p.display())))?;
    if s.contains([',', ':']) {
        return Err(Error::Unsupported(format!(
            "overlay path with ',' or ':': {s}"
        )));
    }
    Ok(s.to_string())
}

/// `lowerdir=top:…:bottom[,upperdir=…,workdir=…]`.
pub fn overlay_options(
    lowers_lowest_first: &[PathBuf],
    upper: Option<(&Path, &Path)>,
) -> Result<String> {
    let lowers = lowers_lowest_first
        .iter()
        .rev()
        .map(|p| escape(p))
        .collect::<Result<Vec<_>>>()?
        .join(":");
    let mut data = format!("lowerdir={lowers}");
    if let Some((u, w)) = upper {
        data.push_str(&format!(",upperdir={},workdir={}", escape(u)?, escape(w)?));
    }
    if data.len() > MAX_MOUNT_DATA {
        return Err(Error::Unsupported(format!(
            "{} layers exceed overlay's mount option size; use a shorter --root",
            lowers_lowest_first.len()
        )));
    }
    Ok(data)
}

/// Mounts the image's layers at `target`: read-write with `upper`/`work`
/// (same filesystem, both empty at first), or read-only without them.
pub fn mount_overlay(
    lowers: &[PathBuf],
    upper: Option<(&Path, &Path)>,
    target: &Path,
) -> Result<()> {
    if lowers.is_empty() {
        return Err(Error::Unsupported("an image without layers".into()));
    }
    let mut flags = MountFlags::empty();
    // Overlay needs two lowers when there is no upper; one lower read-only
    // is a bind mount.
    if upper.is_none() && lowers.len() == 1 {
        mount(&lowers[0], target, "", MountFlags::BIND, None)
            .ctx(|| format!("bind mount on {}", target.display()))?;
        return rustix::mount::mount_remount(target, MountFlags::BIND | MountFlags::RDONLY, "")
            .ctx(|| format!("read-only remount of {}", target.display()));
    }
    if upper.is_none() {
        flags |= MountFlags::RDONLY;
    }
    let data = overlay_options(lowers, upper)?;
    let data = std::ffi::CString::new(data)
        .map_err(|_| Error::Unsupported("NUL in overlay options".into()))?;
    mount("overlay", target, "overlay", flags, data.as_c_str())
        .ctx(|| format!("overlay mount on {}", target.display()))
}

impl Store {
    /// The container rootfs: the image's layers under `upper` (with `work`,
    /// on the same filesystem as `upper`) mounted at `target`. Needs root.
    pub fn mount_rootfs(
        &self,
        image: &Image,
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> Result<()> {
        mount_overlay(&self.layer_dirs(image)?, Some((upper, work)), target)
    }
}

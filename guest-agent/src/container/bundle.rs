//! A container's bundle in the guest: the image disk mounted once per
//! device, an overlay with a writable layer in guest memory as the rootfs,
//! and the host's config.json pointed at it.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use isola_protocol::{GuestFile, GuestVolume};
use serde_json::Value;

use crate::sys;

/// Where the agent keeps containers, image mounts and the runner's state.
pub const CONTAINERS_DIR: &str = "/run/isola/containers";
pub const IMAGES_DIR: &str = "/run/isola/images";
pub const RUNNER_ROOT: &str = "/run/isola/runner";

/// The annotation that asked the host for a VM: inside the guest the same
/// bundle runs at process level, so the in-guest runner must not see it.
const ISOLATION_ANNOTATION: &str = "io.isola.isolation";

/// Image devices already mounted (one mount serves every container of it).
static MOUNTED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// A name the host chose for a container or process: it becomes a path
/// component and a runner ID, so only a safe alphabet.
pub fn validate_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!("invalid {what} {name:?}"))
    }
}

pub fn container_dir(id: &str) -> PathBuf {
    Path::new(CONTAINERS_DIR).join(id)
}

/// Mounts `device` (an attached virtio-blk disk holding the image's EROFS)
/// read-only, once; returns where.
fn mount_image(device: &str) -> Result<PathBuf, String> {
    let name = device
        .strip_prefix("/dev/")
        .filter(|n| n.starts_with("vd") && n[2..].bytes().all(|b| b.is_ascii_lowercase()))
        .ok_or_else(|| format!("image device {device:?} is not a virtio disk"))?;
    let target = Path::new(IMAGES_DIR).join(name);
    let mut mounted = MOUNTED.lock().unwrap_or_else(|p| p.into_inner());
    let set = mounted.get_or_insert_with(HashSet::new);
    if set.contains(name) {
        return Ok(target);
    }
    fs::create_dir_all(&target).map_err(|e| format!("creating {}: {e}", target.display()))?;
    sys::mount(
        device,
        &target.to_string_lossy(),
        "erofs",
        libc::MS_RDONLY | libc::MS_NODEV,
        None,
    )
    .map_err(|e| format!("mounting the image disk {device}: {e}"))?;
    set.insert(name.to_owned());
    Ok(target)
}

/// Mounts the writable layer's ext4 disk read-write at `at`.
fn mount_scratch(device: &str, at: &Path) -> Result<(), String> {
    let name = device
        .strip_prefix("/dev/")
        .filter(|n| n.starts_with("vd") && n[2..].bytes().all(|b| b.is_ascii_lowercase()))
        .ok_or_else(|| format!("scratch device {device:?} is not a virtio disk"))?;
    fs::create_dir_all(at).map_err(|e| format!("creating {}: {e}", at.display()))?;
    // The host made it with lazy inode tables; zeroing them would only
    // grow the sparse file.
    sys::mount(
        device,
        &at.to_string_lossy(),
        "ext4",
        libc::MS_NODEV | libc::MS_NOSUID,
        Some("noinit_itable"),
    )
    .map_err(|e| format!("mounting the writable layer's disk {name}: {e}"))
}

/// Where a container's root filesystem comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSource {
    /// An overlay: the image's EROFS disk under a writable layer, in guest
    /// memory or on the scratch disk.
    Image {
        device: String,
        scratch_device: Option<String>,
    },
    /// A host directory shared over virtio-fs (a bundle someone else
    /// prepared, such as podman's overlay), used as it is: writes reach
    /// the host, where the bundle's owner expects them.
    Share { tag: String },
}

impl RootSource {
    /// The request's fields, of which exactly one root must be given.
    pub fn from_request(
        image_device: Option<String>,
        root_share: Option<String>,
        scratch_device: Option<String>,
    ) -> Result<RootSource, String> {
        match (image_device, root_share) {
            (Some(device), None) => Ok(RootSource::Image {
                device,
                scratch_device,
            }),
            (None, Some(tag)) if scratch_device.is_none() => {
                validate_name("root share tag", &tag)?;
                Ok(RootSource::Share { tag })
            }
            (None, Some(_)) => Err("a shared root takes no scratch disk".into()),
            (Some(_), Some(_)) => Err("give an image device or a root share, not both".into()),
            (None, None) => Err("no root filesystem: give an image device or a root share".into()),
        }
    }
}

/// Builds the bundle of container `id`; returns its directory.
pub fn prepare(
    id: &str,
    spec: &str,
    root: &RootSource,
    files: &[GuestFile],
    volumes: &[GuestVolume],
) -> Result<PathBuf, String> {
    let mut spec: Value =
        serde_json::from_str(spec).map_err(|e| format!("config.json of {id}: {e}"))?;
    let lower = match root {
        RootSource::Image { device, .. } => Some(mount_image(device)?),
        RootSource::Share { .. } => None,
    };
    let dir = container_dir(id);
    if dir.exists() {
        return Err(format!("container {id} already exists in this guest"));
    }
    let made = (|| {
        let (rootfs, shipped) = (dir.join("rootfs"), dir.join("files"));
        for d in [&rootfs, &shipped] {
            fs::create_dir_all(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
        }
        match (root, lower) {
            (RootSource::Image { scratch_device, .. }, Some(lower)) => {
                mount_overlay(id, &dir, &lower, scratch_device.as_deref(), &rootfs)
            }
            (RootSource::Share { tag }, _) => {
                sys::mount(tag, &rootfs.to_string_lossy(), "virtiofs", 0, None)
                    .map_err(|e| format!("mounting the shared rootfs {tag} of {id}: {e}"))
            }
            (RootSource::Image { .. }, None) => Err("the image disk is not mounted".into()),
        }?;

        spec["root"]["path"] = Value::String(rootfs.to_string_lossy().into_owned());
        if let Some(annotations) = spec.get_mut("annotations").and_then(Value::as_object_mut) {
            annotations.remove(ISOLATION_ANNOTATION);
        }
        place_files(&mut spec, files, &shipped)?;
        mount_volumes(&mut spec, volumes, &dir.join("volumes"))?;
        let text = serde_json::to_vec(&spec).map_err(|e| e.to_string())?;
        let config = dir.join("config.json");
        fs::write(&config, text).map_err(|e| format!("writing {}: {e}", config.display()))
    })();
    match made {
        Ok(()) => Ok(dir),
        Err(e) => {
            // Leave nothing half-made: the host may retry with the same id.
            remove(id);
            Err(e)
        }
    }
}

/// Mounts the image's overlay at `rootfs`, its writable layer in `dir` (in
/// guest memory) or on the scratch disk.
fn mount_overlay(
    id: &str,
    dir: &Path,
    lower: &Path,
    scratch_device: Option<&str>,
    rootfs: &Path,
) -> Result<(), String> {
    let layer = match scratch_device {
        Some(device) => {
            let at = dir.join("scratch");
            mount_scratch(device, &at)?;
            at
        }
        None => dir.to_path_buf(),
    };
    let (upper, work) = (layer.join("upper"), layer.join("work"));
    for d in [&upper, &work] {
        fs::create_dir_all(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    sys::mount(
        "overlay",
        &rootfs.to_string_lossy(),
        "overlay",
        0,
        Some(&options),
    )
    .map_err(|e| format!("mounting the rootfs of {id}: {e}"))
}

/// Writes the shipped files and points the mounts that name them at the
/// guest copies.
fn place_files(spec: &mut Value, files: &[GuestFile], dir: &Path) -> Result<(), String> {
    for (n, file) in files.iter().enumerate() {
        let guest = dir.join(n.to_string());
        fs::write(&guest, &file.data).map_err(|e| format!("writing {}: {e}", guest.display()))?;
        point_mounts_at(spec, &file.source, &guest);
    }
    Ok(())
}

/// Mounts each virtio-fs volume under `dir` and points the bind mounts of
/// its host path at it; the runner then binds it like any directory.
fn mount_volumes(spec: &mut Value, volumes: &[GuestVolume], dir: &Path) -> Result<(), String> {
    for v in volumes {
        validate_name("volume tag", &v.tag)?;
        let at = dir.join(&v.tag);
        fs::create_dir_all(&at).map_err(|e| format!("creating {}: {e}", at.display()))?;
        let mut flags = libc::MS_NODEV;
        if v.read_only {
            flags |= libc::MS_RDONLY;
        }
        sys::mount(&v.tag, &at.to_string_lossy(), "virtiofs", flags, None)
            .map_err(|e| format!("mounting the volume {} ({}): {e}", v.tag, v.source))?;
        point_mounts_at(spec, &v.source, &at);
    }
    Ok(())
}

/// Rewrites the source of every spec mount that names `source`.
fn point_mounts_at(spec: &mut Value, source: &str, guest: &Path) {
    let Some(mounts) = spec.get_mut("mounts").and_then(Value::as_array_mut) else {
        return;
    };
    for mount in mounts.iter_mut() {
        if mount.get("source").and_then(Value::as_str) == Some(source) {
            mount["source"] = Value::String(guest.to_string_lossy().into_owned());
        }
    }
}

/// Unmounts and removes what [`prepare`] made.
pub fn remove(id: &str) {
    let dir = container_dir(id);
    if let Ok(entries) = fs::read_dir(dir.join("volumes")) {
        for e in entries.flatten() {
            if let Ok(c) = std::ffi::CString::new(e.path().to_string_lossy().as_bytes()) {
                // SAFETY: umount2 with a NUL-terminated path that outlives the call.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
    let rootfs = dir.join("rootfs");
    if let Ok(c) = std::ffi::CString::new(rootfs.to_string_lossy().as_bytes()) {
        // SAFETY: umount2 with a NUL-terminated path that outlives the call.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
    let scratch = dir.join("scratch");
    if let Ok(c) = std::ffi::CString::new(scratch.to_string_lossy().as_bytes()) {
        // A plain unmount writes the layer back to its disk before the host
        // stops the VM; detach only if something still holds it.
        // SAFETY: umount2 with a NUL-terminated path that outlives the call.
        if unsafe { libc::umount2(c.as_ptr(), 0) } != 0 {
            sys::sync();
            // SAFETY: as above.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
    if let Err(e) = remove_on_one_filesystem(&dir) {
        tracing::warn!("removing {}: {e}", dir.display());
    }
}

/// Removes `dir` and everything under it on its own filesystem, and never
/// goes into another mount: a shared root or a volume whose unmount failed
/// is the host's data, seen through virtio-fs.
fn remove_on_one_filesystem(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dev = fs::symlink_metadata(dir)?.dev();
    fn remove(path: &Path, dev: u64) -> std::io::Result<()> {
        let meta = fs::symlink_metadata(path)?;
        if !meta.is_dir() {
            return fs::remove_file(path);
        }
        if meta.dev() != dev {
            return Err(std::io::Error::other(format!(
                "{} is still a mount; left alone",
                path.display()
            )));
        }
        let mut first_error = None;
        for entry in fs::read_dir(path)? {
            if let Err(e) = entry.and_then(|e| remove(&e.path(), dev)) {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => fs::remove_dir(path),
        }
    }
    remove(dir, dev)
}

/// Whether the container's cgroup (v2, where the runner put it) saw the OOM
/// killer.
pub fn oom_killed(spec_dir: &Path) -> bool {
    let Ok(text) = fs::read_to_string(spec_dir.join("config.json")) else {
        return false;
    };
    let Ok(spec) = serde_json::from_str::<Value>(&text) else {
        return false;
    };
    let Some(path) = spec["linux"]["cgroupsPath"].as_str() else {
        return false;
    };
    let events = Path::new("/sys/fs/cgroup")
        .join(path.trim_start_matches('/'))
        .join("memory.events");
    fs::read_to_string(events)
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse::<u64>().ok())
        })
        .is_some_and(|n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_their_directory_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            ".hidden",
            "a b",
            &"x".repeat(129),
        ] {
            assert!(validate_name("id", bad).is_err(), "{bad:?}");
        }
        for good in ["abc", "0123456789abcdef", "a.b-c_d"] {
            assert!(validate_name("id", good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn shipped_files_replace_the_sources_that_name_them() {
        let dir = std::env::temp_dir().join(format!("isola-place-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let mut spec = serde_json::json!({"mounts": [
            {"destination": "/etc/hosts", "source": "/host/c/etc/hosts", "options": ["bind"]},
            {"destination": "/proc", "source": "proc", "type": "proc"}
        ]});
        let files = [GuestFile {
            source: "/host/c/etc/hosts".into(),
            data: b"127.0.0.1 localhost\n".to_vec(),
        }];
        place_files(&mut spec, &files, &dir).unwrap();
        let source = spec["mounts"][0]["source"].as_str().unwrap().to_owned();
        assert!(source.starts_with(dir.to_str().unwrap()), "{source}");
        assert_eq!(fs::read(&source).unwrap(), b"127.0.0.1 localhost\n");
        assert_eq!(spec["mounts"][1]["source"], "proc");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_virtio_disks_are_image_devices() {
        for bad in [
            "/dev/sda",
            "vda",
            "/dev/vda/../sda",
            "/dev/vd1",
            "/etc/passwd",
        ] {
            assert!(mount_image(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_container_has_exactly_one_root() {
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            RootSource::from_request(some("/dev/vda"), None, some("/dev/vdb")),
            Ok(RootSource::Image {
                device: "/dev/vda".into(),
                scratch_device: some("/dev/vdb"),
            })
        );
        assert_eq!(
            RootSource::from_request(None, some("isola-root"), None),
            Ok(RootSource::Share {
                tag: "isola-root".into()
            })
        );
        for (image, share, scratch) in [
            (None, None, None),
            (some("/dev/vda"), some("isola-root"), None),
            (None, some("isola-root"), some("/dev/vdb")),
            (None, some("../etc"), None),
        ] {
            assert!(
                RootSource::from_request(image.clone(), share.clone(), scratch.clone()).is_err(),
                "{image:?} {share:?} {scratch:?}"
            );
        }
    }

    #[test]
    fn removal_never_goes_into_a_mount_left_under_the_container() {
        let dir = std::env::temp_dir().join(format!("isola-agent-rm-{}", std::process::id()));
        let mounted = dir.join("rootfs");
        fs::create_dir_all(&mounted).unwrap();
        fs::write(dir.join("config.json"), b"{}").unwrap();
        // Stands for the host's rootfs, shared over virtio-fs.
        sys::mount("tmpfs", &mounted.to_string_lossy(), "tmpfs", 0, None).unwrap();
        fs::write(mounted.join("precious"), b"host data").unwrap();
        assert!(remove_on_one_filesystem(&dir).is_err());
        assert_eq!(fs::read(mounted.join("precious")).unwrap(), b"host data");
        assert!(!dir.join("config.json").exists());
        let c = std::ffi::CString::new(mounted.to_string_lossy().as_bytes()).unwrap();
        // SAFETY: umount2 with a NUL-terminated path that outlives the call.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        remove_on_one_filesystem(&dir).unwrap();
        assert!(!dir.exists());
    }
}

//! A bundle someone else prepared (podman, containerd, a user of
//! `isola-runtime`), as its VM gets it: the very config.json, with only what
//! cannot mean anything inside a guest changed, its rootfs directory shared
//! over virtio-fs, the regular files it binds copied in, and the
//! directories it binds shared as volumes.

use std::path::{Path, PathBuf};

use isola_protocol::GuestFile;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::vm::files::{regular_file, shipped_files};
use crate::vm::{volumes, VmSize, Volume};

/// The virtio-fs tag of the shared rootfs.
pub const ROOT_TAG: &str = "isola-root";

#[derive(Debug)]
pub struct GuestBundle {
    /// config.json as the guest's runner gets it.
    pub spec: String,
    /// The bundle's rootfs on the host, shared as [`ROOT_TAG`].
    pub rootfs: PathBuf,
    pub files: Vec<GuestFile>,
    pub volumes: Vec<Volume>,
    pub size: VmSize,
}

impl GuestBundle {
    /// Every host directory the VM needs a virtiofsd for: the rootfs first.
    pub fn shares(&self) -> Vec<Volume> {
        std::iter::once(Volume {
            tag: ROOT_TAG.into(),
            host: self.rootfs.clone(),
            read_only: false,
        })
        .chain(self.volumes.iter().cloned())
        .collect()
    }
}

/// Reads `bundle`'s config.json and splits it as above.
pub fn prepare(bundle: &Path) -> Result<GuestBundle> {
    let path = bundle.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
    let mut value: Value = serde_json::from_str(&text).map_err(|source| Error::CorruptState {
        path: path.clone(),
        source,
    })?;
    for_the_guest(&mut value);
    let spec: oci_spec::runtime::Spec =
        serde_json::from_value(value.clone()).map_err(|source| Error::CorruptState {
            path: path.clone(),
            source,
        })?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::Invalid(format!("{}: no root", path.display())))?;
    let rootfs = bundle.join(root.path());
    if !rootfs.is_dir() {
        return Err(Error::Invalid(format!(
            "the bundle's rootfs {} is not a directory",
            rootfs.display()
        )));
    }
    let files = shipped_files(&spec, &regular_file)?;
    let volumes = volumes(&spec, &regular_file)?;
    Ok(GuestBundle {
        spec: value.to_string(),
        rootfs,
        files,
        volumes,
        size: VmSize::for_spec(&spec),
    })
}

/// Changes what names the host and not the guest:
/// - a bind-mounted `/dev/shm` (podman's per-container tmpfs on the host)
///   becomes the guest's own tmpfs, as a VM cannot share host memory;
/// - namespace paths (`/proc/<pid>/ns/net`, `/run/netns/...`) name host
///   namespaces, which do not exist in the guest: the container gets new
///   ones there, isolated by the VM as the host's would have been.
fn for_the_guest(spec: &mut Value) {
    if let Some(mounts) = spec.get_mut("mounts").and_then(Value::as_array_mut) {
        for m in mounts.iter_mut() {
            let is_bind = m.get("type").and_then(Value::as_str) == Some("bind")
                || m.get("options")
                    .and_then(Value::as_array)
                    .is_some_and(|o| o.iter().any(|o| o == "bind" || o == "rbind"));
            if is_bind && m.get("destination").and_then(Value::as_str) == Some("/dev/shm") {
                *m = json!({
                    "destination": "/dev/shm",
                    "type": "tmpfs",
                    "source": "shm",
                    "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
                });
            }
        }
    }
    if let Some(namespaces) = spec
        .pointer_mut("/linux/namespaces")
        .and_then(Value::as_array_mut)
    {
        for ns in namespaces.iter_mut() {
            if let Some(obj) = ns.as_object_mut() {
                if let Some(path) = obj.remove("path") {
                    tracing::info!(
                        "the host namespace {path} does not exist in the guest; the container \
                         gets a new {} namespace there",
                        obj.get("type")
                            .and_then(serde_json::Value::as_str)
                            .unwrap_or("?")
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_only_parts_are_replaced_and_the_rest_is_kept() {
        let mut spec = json!({
            "ociVersion": "1.0.2",
            "process": {"args": ["sh"], "cwd": "/"},
            "root": {"path": "rootfs"},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev/shm", "type": "bind", "source": "/var/lib/x/shm",
                 "options": ["bind", "private"]},
            ],
            "linux": {"namespaces": [
                {"type": "pid"},
                {"type": "network", "path": "/run/netns/cni-1"},
            ]},
        });
        for_the_guest(&mut spec);
        assert_eq!(spec["mounts"][0]["type"], "proc");
        assert_eq!(spec["mounts"][1]["type"], "tmpfs");
        assert_eq!(spec["mounts"][1]["destination"], "/dev/shm");
        assert_eq!(
            spec["linux"]["namespaces"],
            json!([{"type": "pid"}, {"type": "network"}])
        );
        assert_eq!(spec["process"]["args"], json!(["sh"]));
    }

    #[test]
    fn files_are_shipped_directories_shared_and_the_rootfs_too() {
        let dir = std::env::temp_dir().join(format!("isola-guest-bundle-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(dir.join("hosts"), b"127.0.0.1 localhost\n").unwrap();
        let spec = json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "mounts": [
                {"destination": "/etc/hosts", "type": "bind", "source": dir.join("hosts"),
                 "options": ["bind"]},
                {"destination": "/data", "type": "bind", "source": dir.join("data"),
                 "options": ["rbind", "ro"]},
            ],
        });
        std::fs::write(dir.join("config.json"), spec.to_string()).unwrap();
        let b = prepare(&dir).unwrap();
        assert_eq!(b.files.len(), 1);
        assert_eq!(b.files[0].data, b"127.0.0.1 localhost\n");
        let shares = b.shares();
        assert_eq!(shares.len(), 2);
        assert_eq!(
            (shares[0].tag.as_str(), &shares[0].host),
            (ROOT_TAG, &dir.join("rootfs"))
        );
        assert_eq!(shares[1].host, dir.join("data"));
        assert!(shares[1].read_only);

        std::fs::remove_dir_all(dir.join("rootfs")).unwrap();
        let err = prepare(&dir).unwrap_err().to_string();
        assert!(err.contains("is not a directory"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

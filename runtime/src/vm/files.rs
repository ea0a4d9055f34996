//! The host files a bundle's bind mounts name, as a VM can have them.

use std::path::Path;

use isola_protocol::GuestFile;

use crate::error::{Error, Result};

/// A host file a bundle may ship into the guest (hosts, resolv.conf,
/// hostname) is never larger than this.
const MAX_SHIPPED_FILE: u64 = 1 << 20;

/// Which bind-mount sources are copied into the guest rather than shared.
pub type Shipped<'a> = &'a dyn Fn(&Path) -> bool;

/// `isola run`'s rule: the container's own small files (under `etc`).
pub fn under(etc: &Path) -> impl Fn(&Path) -> bool + '_ {
    move |source| source.starts_with(etc)
}

/// An OCI runtime caller's rule: every regular file it binds (podman's
/// hosts, resolv.conf, hostname, .containerenv); directories are shared.
pub fn regular_file(source: &Path) -> bool {
    std::fs::metadata(source).is_ok_and(|m| m.is_file())
}

/// The bundle's bind mounts that `shipped` picks, read to be copied into
/// the guest; other bind mounts are volumes (see [`super::volumes`]).
pub fn shipped_files(spec: &oci_spec::runtime::Spec, shipped: Shipped) -> Result<Vec<GuestFile>> {
    let mut files = Vec::new();
    for mount in spec.mounts().iter().flatten() {
        let is_bind = mount
            .options()
            .iter()
            .flatten()
            .any(|o| o == "bind" || o == "rbind")
            || mount.typ().as_deref() == Some("bind");
        let Some(source) = mount.source() else {
            continue;
        };
        if !is_bind || !shipped(source) {
            continue;
        }
        let size = std::fs::metadata(source).map_err(Error::io(source))?.len();
        if size > MAX_SHIPPED_FILE {
            return Err(Error::Invalid(format!(
                "{} is too large to ship into the guest",
                source.display()
            )));
        }
        let data = std::fs::read(source).map_err(Error::io(source))?;
        files.push(GuestFile {
            source: source.to_string_lossy().into_owned(),
            data,
        });
    }
    Ok(files)
}

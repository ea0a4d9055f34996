//! OCI whiteouts (`.wh.NAME`, `.wh..wh..opq`) turned into their overlayfs
//! form, so an unpacked layer is directly an overlay lower dir: a 0/0
//! character device hides NAME, `trusted.overlay.opaque=y` hides a whole
//! lower directory.

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, XattrFlags};
use rustix::io::Errno;

use crate::error::{Error, IoContext, Result};

const PREFIX: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

#[derive(Debug, PartialEq)]
pub enum Whiteout {
    /// Hide NAME from lower layers.
    Name(OsString),
    /// Hide every lower entry of this directory.
    Opaque,
    /// aufs bookkeeping (`.wh..wh.plnk` …): nothing to do.
    Ignore,
}

pub fn classify(name: &OsStr) -> Option<Whiteout> {
    let b = name.as_bytes();
    if b == OPAQUE {
        return Some(Whiteout::Opaque);
    }
    let rest = b.strip_prefix(PREFIX)?;
    if rest.starts_with(PREFIX) {
        return Some(Whiteout::Ignore);
    }
    Some(Whiteout::Name(OsStr::from_bytes(rest).to_os_string()))
}

pub fn apply(w: Whiteout, parent: &OwnedFd, raw: &[u8], as_root: bool) -> Result<()> {
    let bad = |reason: &str| Error::UnsafeEntry {
        path: String::from_utf8_lossy(raw).into_owned(),
        reason: reason.into(),
    };
    match w {
        Whiteout::Ignore => Ok(()),
        Whiteout::Opaque => {
            if !as_root {
                return Err(Error::NeedsRoot(
                    "unpacking an opaque-directory whiteout".into(),
                ));
            }
            rfs::fsetxattr(parent, OPAQUE_XATTR, b"y", XattrFlags::empty())
                .ctx(|| format!("marking {} opaque", String::from_utf8_lossy(raw)))
        }
        Whiteout::Name(name) => {
            let b = name.as_bytes();
            if b.is_empty() || b == b"." || b == b".." {
                return Err(bad("whiteout of an invalid name"));
            }
            if !as_root {
                return Err(Error::NeedsRoot("unpacking a whiteout".into()));
            }
            match rfs::statat(parent, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                    rfs::unlinkat(parent, name.as_os_str(), AtFlags::REMOVEDIR)
                        .map_err(|_| bad("whiteout of a non-empty directory of the same layer"))?;
                }
                Ok(_) => rfs::unlinkat(parent, name.as_os_str(), AtFlags::empty())
                    .ctx(|| format!("whiteout {}", String::from_utf8_lossy(raw)))?,
                Err(Errno::NOENT) => {}
                Err(e) => {
                    return Err(e).ctx(|| format!("whiteout {}", String::from_utf8_lossy(raw)))
                }
            }
            rfs::mknodat(
                parent,
                name.as_os_str(),
                FileType::CharacterDevice,
                Mode::empty(),
                rfs::makedev(0, 0),
            )
            .ctx(|| format!("whiteout {}", String::from_utf8_lossy(raw)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(classify(OsStr::new(".wh..wh..opq")), Some(Whiteout::Opaque));
        assert_eq!(
            classify(OsStr::new(".wh.foo")),
            Some(Whiteout::Name("foo".into()))
        );
        assert_eq!(classify(OsStr::new(".wh..wh.plnk")), Some(Whiteout::Ignore));
        assert_eq!(classify(OsStr::new("foo")), None);
    }
}

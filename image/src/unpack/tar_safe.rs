//! Applies one layer tar to an empty directory without ever writing outside
//! it. Every path is resolved one component at a time from the layer's root
//! fd with O_NOFOLLOW, so neither `..`, nor an absolute path, nor a symlink
//! laid down by an earlier entry can lead a later write elsewhere: such
//! entries are refused. Symlink *targets* are data: stored, never followed.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;
use tar::EntryType;
use tracing::{debug, warn};

use crate::error::{Error, IoContext, Result};
use crate::unpack::whiteout;

/// Bounds on what one layer may unpack to (a tar bomb stops here).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 8 << 30,
            max_entries: 2_000_000,
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub entries: u64,
    pub bytes: u64,
    pub skipped_devices: u64,
}

/// A path inside the layer: clean, relative, no `.`/`..`.
type Components = Vec<OsString>;

fn unsafe_entry(path: &[u8], reason: &str) -> Error {
    Error::UnsafeEntry {
        path: String::from_utf8_lossy(path).into_owned(),
        reason: reason.to_string(),
    }
}

/// Splits a tar path into components; refuses absolute paths and `..`.
pub fn clean_path(raw: &[u8]) -> Result<Components> {
    if raw.first() == Some(&b'/') {
        return Err(unsafe_entry(raw, "absolute path"));
    }
    let mut out = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(unsafe_entry(raw, "`..` component")),
            c => out.push(OsStr::from_bytes(c).to_os_string()),
        }
    }
    Ok(out)
}

fn open_dir_nofollow(parent: impl AsFd, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    rfs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Opens the directory holding `comps`' last component, creating missing
/// directories, refusing to pass through anything but real directories.
fn open_parent(root: &OwnedFd, comps: &[OsString], raw: &[u8], create: bool) -> Result<OwnedFd> {
    let mut cur = rfs::openat(
        root,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| "reopening layer root".into())?;
    for c in comps {
        let next = match open_dir_nofollow(&cur, c) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if create => {
                match rfs::mkdirat(&cur, c.as_os_str(), Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => {
                        return Err(e)
                            .ctx(|| format!("creating parent of {}", String::from_utf8_lossy(raw)))
                    }
                }
                open_dir_nofollow(&cur, c)
                    .ctx(|| format!("opening parent of {}", String::from_utf8_lossy(raw)))?
            }
            Err(Errno::LOOP | Errno::NOTDIR) => {
                let st = rfs::statat(&cur, c.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
                    .ctx(|| format!("checking {}", String::from_utf8_lossy(raw)))?;
                return Err(
                    if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
                        unsafe_entry(raw, "path goes through a symlink (a write through it could leave the layer)")
                    } else {
                        unsafe_entry(raw, "a parent component is not a directory")
                    },
                );
            }
            Err(e) => {
                return Err(e).ctx(|| format!("opening parent of {}", String::from_utf8_lossy(raw)))
            }
        };
        cur = next;
    }
    Ok(cur)
}

/// Removes whatever is at `name` (not a directory) so an entry can replace it.
/// An existing directory is kept when the new entry is one too.
fn clear(parent: &OwnedFd, name: &OsStr, keep_dir: bool, raw: &[u8]) -> Result<bool> {
    match rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(e).ctx(|| format!("checking {}", String::from_utf8_lossy(raw))),
        Ok(st) => {
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                if keep_dir {
                    return Ok(true);
                }
                match rfs::unlinkat(parent, name, AtFlags::REMOVEDIR) {
                    Ok(()) => Ok(false),
                    Err(Errno::NOTEMPTY) => Err(unsafe_entry(
                        raw,
                        "replaces a non-empty directory of the same layer",
                    )),
                    Err(e) => Err(e).ctx(|| format!("replacing {}", String::from_utf8_lossy(raw))),
                }
            } else {
                rfs::unlinkat(parent, name, AtFlags::empty())
                    .ctx(|| format!("replacing {}", String::from_utf8_lossy(raw)))?;
                Ok(false)
            }
        }
    }
}

struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: i64,
    xattrs: Vec<(String, Vec<u8>)>,
}

fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Meta> {
    let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
    let bad = |what: &str| crate::error::malformed("layer tar", format!("bad {what} in {path}"));
    let h = entry.header();
    let uid = h.uid().map_err(|_| bad("uid"))?;
    let gid = h.gid().map_err(|_| bad("gid"))?;
    let mode = h.mode().map_err(|_| bad("mode"))?;
    let mtime = h.mtime().map_err(|_| bad("mtime"))?;
    let mut xattrs = Vec::new();
    if let Some(exts) = entry.pax_extensions().map_err(|_| bad("pax header"))? {
        for ext in exts {
            let ext = ext.map_err(|_| bad("pax header"))?;
            if let (Ok(key), value) = (ext.key(), ext.value_bytes()) {
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    xattrs.push((name.to_string(), value.to_vec()));
                }
            }
        }
    }
    Ok(Meta {
        uid: u32::try_from(uid).map_err(|_| bad("uid"))?,
        gid: u32::try_from(gid).map_err(|_| bad("gid"))?,
        mode: mode & 0o7777,
        mtime: i64::try_from(mtime).unwrap_or(0),
        xattrs,
    })
}

fn times(mtime: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// The layer's own overlay xattrs are ours to set (opaque dirs); a tar
/// carrying them is trying to forge whiteouts, so they are dropped.
fn xattr_allowed(name: &str, as_root: bool) -> bool {
    if name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.") {
        return false;
    }
    as_root || name.starts_with("user.")
}

fn set_xattrs(fd: &impl AsFd, meta: &Meta, as_root: bool, raw: &[u8]) {
    for (name, value) in &meta.xattrs {
        if !xattr_allowed(name, as_root) {
            debug!(name, path = %String::from_utf8_lossy(raw), "xattr dropped");
            continue;
        }
        if let Err(e) = rfs::fsetxattr(fd, name.as_str(), value, XattrFlags::empty()) {
            warn!(name, path = %String::from_utf8_lossy(raw), error = %e, "xattr not set");
        }
    }
}

/// Ownership, then mode (chown clears set-id bits), then xattrs (chown clears
/// file capabilities), then times.
fn set_meta_fd(fd: &impl AsFd, meta: &Meta, as_root: bool, raw: &[u8]) -> Result<()> {
    if as_root {
        rfs::fchown(
            fd,
            Some(rfs::Uid::from_raw(meta.uid)),
            Some(rfs::Gid::from_raw(meta.gid)),
        )
        .ctx(|| format!("chown {}", String::from_utf8_lossy(raw)))?;
    }
    rfs::fchmod(fd, Mode::from_raw_mode(meta.mode))
        .ctx(|| format!("chmod {}", String::from_utf8_lossy(raw)))?;
    set_xattrs(fd, meta, as_root, raw);
    rfs::futimens(fd, &times(meta.mtime))
        .ctx(|| format!("utimes {}", String::from_utf8_lossy(raw)))?;
    Ok(())
}

/// For things we cannot open (symlinks, devices): by name, never following.
fn set_meta_at(
    parent: &OwnedFd,
    name: &OsStr,
    meta: &Meta,
    as_root: bool,
    is_symlink: bool,
    raw: &[u8],
) -> Result<()> {
    if as_root {
        rfs::chownat(
            parent,
            name,
            Some(rfs::Uid::from_raw(meta.uid)),
            Some(rfs::Gid::from_raw(meta.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .ctx(|| format!("chown {}", String::from_utf8_lossy(raw)))?;
    }
    if !is_symlink {
        rfs::chmodat(
            parent,
            name,
            Mode::from_raw_mode(meta.mode),
            AtFlags::empty(),
        )
        .ctx(|| format!("chmod {}", String::from_utf8_lossy(raw)))?;
    }
    rfs::utimensat(parent, name, &times(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)
        .ctx(|| format!("utimes {}", String::from_utf8_lossy(raw)))?;
    Ok(())
}

/// The size an entry will take once written: for GNU sparse files the real
/// size, not the few bytes stored, so a sparse bomb is caught before reading.
fn declared_size<R: Read>(entry: &tar::Entry<'_, R>) -> Result<u64> {
    let h = entry.header();
    if h.entry_type().is_gnu_sparse() {
        let gnu = h.as_gnu().ok_or_else(|| {
            crate::error::malformed("layer tar", "sparse entry without GNU header")
        })?;
        return gnu
            .real_size()
            .map_err(|_| crate::error::malformed("layer tar", "bad sparse real size"));
    }
    Ok(entry.size())
}

/// Applies `reader` (an uncompressed tar) to the empty directory `root`,
/// whiteouts in overlayfs form. `as_root` says whether ownership, device
/// nodes and trusted xattrs can be honoured.
pub fn apply<R: Read>(
    reader: R,
    root: &OwnedFd,
    limits: Limits,
    as_root: bool,
) -> Result<(Stats, R)> {
    let mut archive = tar::Archive::new(reader);
    let mut stats = Stats::default();
    // Directory times and modes are set last: creating entries inside a
    // directory changes its mtime, and a 0555 directory would stop them.
    let mut dirs: BTreeMap<Components, Meta> = BTreeMap::new();
    {
        let entries = archive
            .entries()
            .map_err(|e| crate::error::malformed("layer tar", e.to_string()))?;
        for entry in entries {
            let mut entry =
                entry.map_err(|e| crate::error::malformed("layer tar", e.to_string()))?;
            stats.entries += 1;
            if stats.entries > limits.max_entries {
                return Err(Error::LayerTooLarge {
                    limit: limits.max_entries,
                    unit: "entries",
                });
            }
            let size = declared_size(&entry)?;
            stats.bytes = stats.bytes.saturating_add(size);
            if stats.bytes > limits.max_bytes {
                return Err(Error::LayerTooLarge {
                    limit: limits.max_bytes,
                    unit: "bytes",
                });
            }
            apply_entry(&mut entry, root, as_root, &mut dirs, &mut stats)?;
        }
    }
    // Deepest first, so a parent's mode never blocks a child's utimes.
    for (comps, meta) in dirs.iter().rev() {
        let raw = comps.join(OsStr::new("/"));
        let raw = raw.as_bytes();
        let fd = if comps.is_empty() {
            rfs::openat(
                root,
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .ctx(|| "reopening layer root".into())?
        } else {
            let parent = open_parent(root, &comps[..comps.len() - 1], raw, false)?;
            open_dir_nofollow(&parent, &comps[comps.len() - 1])
                .ctx(|| format!("reopening {}", String::from_utf8_lossy(raw)))?
        };
        set_meta_fd(&fd, meta, as_root, raw)?;
    }
    Ok((stats, archive.into_inner()))
}

fn apply_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    root: &OwnedFd,
    as_root: bool,
    dirs: &mut BTreeMap<Components, Meta>,
    stats: &mut Stats,
) -> Result<()> {
    let raw = entry.path_bytes().into_owned();
    let kind = entry.header().entry_type();
    if matches!(
        kind,
        EntryType::XGlobalHeader
            | EntryType::XHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink
    ) {
        return Ok(());
    }
    let comps = clean_path(&raw)?;
    let meta = read_meta(entry)?;
    let Some((name, parent_comps)) = comps.split_last() else {
        // "./": the layer root itself.
        if kind == EntryType::Directory {
            dirs.insert(Vec::new(), meta);
        }
        return Ok(());
    };
    let parent = open_parent(root, parent_comps, &raw, true)?;

    if let Some(w) = whiteout::classify(name) {
        return whiteout::apply(w, &parent, &raw, as_root);
    }

    match kind {
        EntryType::Directory => {
            if !clear(&parent, name, true, &raw)? {
                rfs::mkdirat(&parent, name.as_os_str(), Mode::from_raw_mode(0o755))
                    .ctx(|| format!("mkdir {}", String::from_utf8_lossy(&raw)))?;
            }
            dirs.insert(comps.clone(), meta);
        }
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
            clear(&parent, name, false, &raw)?;
            let fd = rfs::openat(
                &parent,
                name.as_os_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .ctx(|| format!("creating {}", String::from_utf8_lossy(&raw)))?;
            let mut file = File::from(fd);
            io::copy(entry, &mut file)
                .ctx(|| format!("writing {}", String::from_utf8_lossy(&raw)))?;
            set_meta_fd(&file, &meta, as_root, &raw)?;
        }
        EntryType::Symlink => {
            let target = entry
                .link_name_bytes()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| unsafe_entry(&raw, "symlink without a target"))?
                .into_owned();
            clear(&parent, name, false, &raw)?;
            rfs::symlinkat(OsStr::from_bytes(&target), &parent, name.as_os_str())
                .ctx(|| format!("symlink {}", String::from_utf8_lossy(&raw)))?;
            set_meta_at(&parent, name, &meta, as_root, true, &raw)?;
        }
        EntryType::Link => {
            let target_raw = entry
                .link_name_bytes()
                .ok_or_else(|| unsafe_entry(&raw, "hard link without a target"))?
                .into_owned();
            let target = clean_path(&target_raw)
                .map_err(|_| unsafe_entry(&raw, "hard link target leaves the layer"))?;
            let Some((tname, tparent_comps)) = target.split_last() else {
                return Err(unsafe_entry(&raw, "hard link to the layer root"));
            };
            let tparent =
                open_parent(root, tparent_comps, &target_raw, false).map_err(|e| match e {
                    Error::UnsafeEntry { .. } => {
                        unsafe_entry(&raw, "hard link target goes through a symlink")
                    }
                    e => e,
                })?;
            let st = rfs::statat(&tparent, tname.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|_| unsafe_entry(&raw, "hard link target is not in this layer"))?;
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                return Err(unsafe_entry(&raw, "hard link to a directory"));
            }
            if comps == target {
                return Ok(());
            }
            clear(&parent, name, false, &raw)?;
            // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
            rfs::linkat(
                &tparent,
                tname.as_os_str(),
                &parent,
                name.as_os_str(),
                AtFlags::empty(),
            )
            .ctx(|| format!("hard link {}", String::from_utf8_lossy(&raw)))?;
        }
        EntryType::Char | EntryType::Block | EntryType::Fifo => {
            let ftype = match kind {
                EntryType::Char => FileType::CharacterDevice,
                EntryType::Block => FileType::BlockDevice,
                _ => FileType::Fifo,
            };
            if ftype != FileType::Fifo && !as_root {
                stats.skipped_devices += 1;
                debug!(path = %String::from_utf8_lossy(&raw), "device node skipped: not root");
                return Ok(());
            }
            let h = entry.header();
            let major = h.device_major().ok().flatten().unwrap_or(0);
            let minor = h.device_minor().ok().flatten().unwrap_or(0);
            clear(&parent, name, false, &raw)?;
            rfs::mknodat(
                &parent,
                name.as_os_str(),
                ftype,
                Mode::from_raw_mode(meta.mode),
                rfs::makedev(major, minor),
            )
            .ctx(|| format!("mknod {}", String::from_utf8_lossy(&raw)))?;
            set_meta_at(&parent, name, &meta, as_root, false, &raw)?;
        }
        other => {
            warn!(path = %String::from_utf8_lossy(&raw), kind = ?other, "tar entry type ignored");
        }
    }
    Ok(())
}

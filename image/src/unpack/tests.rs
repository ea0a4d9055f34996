//! The unpacker against hostile and ordinary archives, built here byte by
//! byte (the tar crate's builder refuses to write most of these).

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use tar::{EntryType, Header};

use super::tar_safe::{apply, Limits};
use super::*;
use crate::error::Error;

/// A raw entry: path and link name are written into the header as given.
fn entry(out: &mut Vec<u8>, path: &[u8], kind: EntryType, data: &[u8], link: &[u8]) {
    let mut h = Header::new_gnu();
    h.as_old_mut().name[..path.len()].copy_from_slice(path);
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.set_entry_type(kind);
    h.set_mode(if kind == EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_size(data.len() as u64);
    h.set_mtime(1_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn finish(mut out: Vec<u8>) -> Vec<u8> {
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn open(p: &Path) -> OwnedFd {
    rustix::fs::open(p, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap()
}

/// Applies `tar` in `<tmp>/layer`; `<tmp>/outside` exists beside it and must
/// stay empty.
fn run(tar: &[u8]) -> (tempfile::TempDir, crate::Result<Stats>) {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("layer")).unwrap();
    fs::create_dir(tmp.path().join("outside")).unwrap();
    let root = open(&tmp.path().join("layer"));
    let r = apply(tar, &root, Limits::default(), is_root()).map(|(s, _)| s);
    (tmp, r)
}

fn assert_unsafe(r: crate::Result<Stats>, tmp: &Path) {
    match r {
        Err(Error::UnsafeEntry { .. }) => {}
        other => panic!("expected UnsafeEntry, got {other:?}"),
    }
    assert_eq!(
        fs::read_dir(tmp.join("outside")).unwrap().count(),
        0,
        "wrote outside the layer"
    );
    assert!(!tmp.join("evil").exists(), "wrote beside the layer");
}

#[test]
fn rejects_dotdot() {
    let mut t = Vec::new();
    entry(&mut t, b"../evil", EntryType::Regular, b"x", b"");
    let (tmp, r) = run(&finish(t));
    assert_unsafe(r, tmp.path());
    let mut t = Vec::new();
    entry(&mut t, b"a/../../outside/x", EntryType::Regular, b"x", b"");
    let (tmp, r) = run(&finish(t));
    assert_unsafe(r, tmp.path());
}

#[test]
fn rejects_absolute() {
    let mut t = Vec::new();
    entry(
        &mut t,
        b"/tmp/isola-abs-evil",
        EntryType::Regular,
        b"x",
        b"",
    );
    let (tmp, r) = run(&finish(t));
    assert_unsafe(r, tmp.path());
    assert!(!Path::new("/tmp/isola-abs-evil").exists());
}

#[test]
fn rejects_write_through_symlink_laid_by_earlier_entry() {
    let tmp_outside = tempfile::tempdir().unwrap();
    let target = tmp_outside.path().to_str().unwrap().as_bytes().to_vec();
    let mut t = Vec::new();
    entry(&mut t, b"link", EntryType::Symlink, b"", &target);
    entry(&mut t, b"link/pwned", EntryType::Regular, b"x", b"");
    let (tmp, r) = run(&finish(t));
    assert_unsafe(r, tmp.path());
    assert!(!tmp_outside.path().join("pwned").exists());
    // Relative, through `..`.
    let mut t = Vec::new();
    entry(&mut t, b"up", EntryType::Symlink, b"", b"../outside");
    entry(&mut t, b"up/pwned", EntryType::Regular, b"x", b"");
    let (tmp, r) = run(&finish(t));
    assert_unsafe(r, tmp.path());
    // A file entry at the symlink's own path replaces the link, not its target.
    let mut t = Vec::new();
    entry(&mut t, b"f", EntryType::Symlink, b"", b"../outside/f");
    entry(&mut t, b"f", EntryType::Regular, b"data", b"");
    let (tmp, r) = run(&finish(t));
    r.unwrap();
    assert!(!tmp.path().join("outside/f").exists());
    assert_eq!(fs::read(tmp.path().join("layer/f")).unwrap(), b"data");
}

#[test]
fn rejects_hard_links_out() {
    for link in [&b"../outside/x"[..], b"/etc/passwd"] {
        let mut t = Vec::new();
        entry(&mut t, b"h", EntryType::Link, b"", link);
        let (tmp, r) = run(&finish(t));
        assert_unsafe(r, tmp.path());
    }
    // Through a symlink to a directory outside.
    let mut t = Vec::new();
    entry(&mut t, b"etc", EntryType::Symlink, b"", b"/etc");
    entry(&mut t, b"h", EntryType::Link, b"", b"etc/passwd");
    let (tmp, r) = run(&finish(t));
    assert_unsafe(r, tmp.path());
    assert!(!tmp.path().join("layer/h").exists());
}

#[test]
fn bounds_a_sparse_bomb_before_reading_it() {
    // A GNU sparse entry claiming 10 GiB with one byte of data.
    let mut h = Header::new_gnu();
    h.as_old_mut().name[..4].copy_from_slice(b"bomb");
    h.set_entry_type(EntryType::GNUSparse);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(512);
    {
        let gnu = h.as_gnu_mut().unwrap();
        let real = format!("{:012o}", 10u64 << 30);
        gnu.realsize.copy_from_slice(real.as_bytes());
        let off = format!("{:012o}", (10u64 << 30) - 512);
        gnu.sparse[0].offset.copy_from_slice(off.as_bytes());
        gnu.sparse[0]
            .numbytes
            .copy_from_slice(format!("{:012o}", 512).as_bytes());
    }
    h.set_cksum();
    let mut t = h.as_bytes().to_vec();
    t.extend_from_slice(&[1u8; 512]);
    let (tmp, r) = run(&finish(t));
    assert!(matches!(r, Err(Error::LayerTooLarge { .. })), "{r:?}");
    assert!(fs::metadata(tmp.path().join("layer/bomb")).map_or(true, |m| m.len() == 0));
}

#[test]
fn bounds_declared_size() {
    let mut h = Header::new_gnu();
    h.as_old_mut().name[..3].copy_from_slice(b"big");
    h.set_entry_type(EntryType::Regular);
    h.set_size(10 << 30);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    // The data is not even there: the header alone must stop it.
    let (_tmp, r) = run(&finish(h.as_bytes().to_vec()));
    assert!(matches!(r, Err(Error::LayerTooLarge { .. })), "{r:?}");
}

#[test]
fn unpacks_ordinary_entries() {
    let mut t = Vec::new();
    entry(&mut t, b"./", EntryType::Directory, b"", b"");
    entry(&mut t, b"etc/", EntryType::Directory, b"", b"");
    entry(
        &mut t,
        b"etc/hosts",
        EntryType::Regular,
        b"127.0.0.1 localhost\n",
        b"",
    );
    entry(&mut t, b"etc/hosts2", EntryType::Link, b"", b"etc/hosts");
    entry(&mut t, b"etc/abs", EntryType::Symlink, b"", b"/etc/hosts");
    entry(&mut t, b"deep/er/file", EntryType::Regular, b"x", b"");
    entry(&mut t, b"fifo", EntryType::Fifo, b"", b"");
    let (tmp, r) = run(&finish(t));
    r.unwrap();
    let l = tmp.path().join("layer");
    assert_eq!(
        fs::read(l.join("etc/hosts")).unwrap(),
        b"127.0.0.1 localhost\n"
    );
    assert_eq!(
        fs::metadata(l.join("etc/hosts")).unwrap().ino(),
        fs::metadata(l.join("etc/hosts2")).unwrap().ino()
    );
    assert_eq!(
        fs::read_link(l.join("etc/abs")).unwrap(),
        Path::new("/etc/hosts")
    );
    assert_eq!(
        fs::metadata(l.join("etc/hosts"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o644
    );
    assert_eq!(fs::metadata(l.join("etc")).unwrap().mtime(), 1_000_000);
    assert!(fs::symlink_metadata(l.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(fs::read(l.join("deep/er/file")).unwrap(), b"x");
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    assert!(
        is_root(),
        "the unpacker's whiteout tests run as root (as CI does)"
    );
    let mut t = Vec::new();
    entry(&mut t, b"dir/", EntryType::Directory, b"", b"");
    entry(&mut t, b"dir/.wh..wh..opq", EntryType::Regular, b"", b"");
    entry(&mut t, b".wh.gone", EntryType::Regular, b"", b"");
    entry(&mut t, b".wh...", EntryType::Regular, b"", b"");
    let (_tmp, r) = run(&finish(t));
    assert!(
        matches!(r, Err(Error::UnsafeEntry { .. })),
        "whiteout of `..` must be refused: {r:?}"
    );

    let mut t = Vec::new();
    entry(&mut t, b"dir/", EntryType::Directory, b"", b"");
    entry(&mut t, b"dir/.wh..wh..opq", EntryType::Regular, b"", b"");
    entry(&mut t, b".wh.gone", EntryType::Regular, b"", b"");
    let (tmp, r) = run(&finish(t));
    r.unwrap();
    let l = tmp.path().join("layer");
    let m = fs::symlink_metadata(l.join("gone")).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), 0);
    let v = rustix::fs::getxattr(
        l.join("dir").as_path(),
        whiteout::OPAQUE_XATTR,
        &mut [0u8; 8],
    )
    .unwrap();
    assert_eq!(v, 1);
    assert!(!l.join("dir/.wh..wh..opq").exists());
}

#[test]
fn diff_id_mismatch_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut t = Vec::new();
    entry(&mut t, b"a", EntryType::Regular, b"x", b"");
    let t = finish(t);
    let blob = tmp.path().join("blob");
    fs::write(&blob, &t).unwrap();
    let dest = tmp.path().join("dest");
    let scratch = tmp.path().join("tmp");
    fs::create_dir(&scratch).unwrap();
    let wrong = Digest::of_bytes(b"not this");
    let r = unpack_layer(&blob, &wrong, &dest, &scratch, Limits::default());
    assert!(matches!(r, Err(Error::DigestMismatch { .. })), "{r:?}");
    assert!(!dest.exists());
    assert_eq!(fs::read_dir(&scratch).unwrap().count(), 0);
    unpack_layer(
        &blob,
        &Digest::of_bytes(&t),
        &dest,
        &scratch,
        Limits::default(),
    )
    .unwrap();
    assert_eq!(fs::read(dest.join("a")).unwrap(), b"x");
}

#[test]
fn gzip_and_zstd_layers() {
    use std::io::Write;
    let mut t = Vec::new();
    entry(&mut t, b"a", EntryType::Regular, b"hello", b"");
    let t = finish(t);
    let diff_id = Digest::of_bytes(&t);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&t).unwrap();
    let gz = gz.finish().unwrap();
    let zs = zstd::encode_all(&t[..], 1).unwrap();
    assert_eq!(detect(&gz), Compression::Gzip);
    assert_eq!(detect(&zs), Compression::Zstd);
    for (i, blob) in [gz, zs].iter().enumerate() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("blob");
        fs::write(&p, blob).unwrap();
        let dest = tmp.path().join(format!("d{i}"));
        unpack_layer(&p, &diff_id, &dest, tmp.path(), Limits::default()).unwrap();
        assert_eq!(fs::read(dest.join("a")).unwrap(), b"hello");
    }
}

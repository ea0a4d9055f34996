//! One layer blob → one unpacked directory under `<root>/layers/<diff_id>`,
//! verified against its diff_id, made visible only when complete (unpacked in
//! a temp dir, synced, renamed), so a crash or a mismatch leaves nothing.

pub mod tar_safe;
pub mod whiteout;

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use tracing::debug;

use crate::digest::{Digest, HashingReader};
use crate::error::{Error, IoContext, Result};
pub use tar_safe::{Limits, Stats};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// By magic bytes, not media type: the bytes cannot lie about themselves.
pub fn detect(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// A reader of the uncompressed tar inside a (maybe compressed) blob.
pub fn decompressed<'a>(
    mut r: BufReader<Box<dyn Read + Send + 'a>>,
) -> Result<Box<dyn Read + Send + 'a>> {
    let head = r.fill_buf().ctx(|| "reading layer".into())?;
    Ok(match detect(head) {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(r).ctx(|| "starting zstd".into())?)
        }
    })
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Unpacks `blob` into `dest` (which must not exist yet), checking that the
/// uncompressed stream hashes to `diff_id`.
pub fn unpack_layer(
    blob: &Path,
    diff_id: &Digest,
    dest: &Path,
    tmp_parent: &Path,
    limits: Limits,
) -> Result<Stats> {
    let file = File::open(blob).ctx(|| format!("opening {}", blob.display()))?;
    let reader = decompressed(BufReader::with_capacity(1 << 20, Box::new(file)))?;
    let tmp = tempfile::Builder::new()
        .prefix(".unpack-")
        .tempdir_in(tmp_parent)
        .ctx(|| "creating temp layer dir".into())?;
    let root = rustix::fs::open(
        tmp.path(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| "opening temp layer dir".into())?;
    rustix::fs::fchmod(&root, Mode::from_raw_mode(0o755)).ctx(|| "chmod layer dir".into())?;
    let (stats, hashing) = tar_safe::apply(HashingReader::new(reader), &root, limits, is_root())?;
    let (actual, _) = hashing
        .finish()
        .ctx(|| "reading the rest of the layer".into())?;
    if actual != *diff_id {
        return Err(Error::DigestMismatch {
            what: format!("uncompressed layer {}", blob.display()),
            expected: diff_id.to_string(),
            actual: actual.to_string(),
        });
    }
    // One syncfs for the whole tree instead of an fsync per file.
    rustix::fs::syncfs(&root).ctx(|| "syncing layer".into())?;
    let path = tmp.keep();
    if let Err(e) = fs::rename(&path, dest) {
        let _ = fs::remove_dir_all(&path);
        if !dest.is_dir() {
            return Err(e).ctx(|| format!("renaming layer into {}", dest.display()));
        }
    }
    debug!(%diff_id, entries = stats.entries, bytes = stats.bytes, "layer unpacked");
    Ok(stats)
}

#[cfg(test)]
mod tests;

//! The OCI image layout under `<root>/oci` (oci-layout, index.json,
//! blobs/sha256/…), so skopeo and umoci read the store as it is. Every write
//! goes to a temp file, is fsynced, verified and renamed into place: a blob
//! path either holds exactly its content or does not exist.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, HashingWriter};
use crate::error::{json, Error, IoContext, Result};
use crate::store::lock::Lock;

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// Manifests and configs are small; anything bigger is refused before it is
/// read into memory.
pub const MAX_JSON_BLOB: u64 = 16 << 20;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Descriptor {
    pub fn ref_name(&self) -> Option<&str> {
        self.annotations.as_ref()?.get(REF_NAME).map(String::as_str)
    }
}

/// A manifest or an index, whichever the JSON is (both are read through
/// this one shape, then told apart by their fields).
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<Descriptor>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifests: Option<Vec<Descriptor>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Manifest {
    pub fn parse(bytes: &[u8], what: &str) -> Result<Manifest> {
        let m: Manifest = json(serde_json::from_slice(bytes), || what.to_string())?;
        if m.schema_version != 2 {
            return Err(Error::Unsupported(format!(
                "{what}: schemaVersion {} (only 2 is supported)",
                m.schema_version
            )));
        }
        Ok(m)
    }

    pub fn is_index(&self) -> bool {
        self.manifests.is_some() && self.config.is_none()
    }

    /// The config and layers of an image manifest.
    pub fn image_parts(&self, what: &str) -> Result<(&Descriptor, &[Descriptor])> {
        match (&self.config, &self.layers) {
            (Some(c), Some(l)) => Ok((c, l)),
            _ => Err(crate::error::malformed(
                what,
                "not an image manifest (no config or layers)",
            )),
        }
    }
}

/// index.json.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

#[derive(Clone, Debug)]
pub struct Layout {
    pub dir: PathBuf,
    pub tmp: PathBuf,
    index_lock: PathBuf,
}

impl Layout {
    pub fn open(dir: PathBuf, tmp: PathBuf, locks: &Path) -> Result<Layout> {
        fs::create_dir_all(dir.join("blobs/sha256"))
            .ctx(|| format!("creating {}", dir.display()))?;
        let layout = Layout {
            index_lock: locks.join("index.lock"),
            dir,
            tmp,
        };
        let marker = layout.dir.join("oci-layout");
        if !marker.exists() {
            atomic_write(&layout.tmp, &marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        if !layout.dir.join("index.json").exists() {
            let _l = Lock::exclusive(&layout.index_lock)?;
            if !layout.dir.join("index.json").exists() {
                layout.write_index(&Index {
                    schema_version: 2,
                    media_type: Some(OCI_INDEX.into()),
                    manifests: vec![],
                })?;
            }
        }
        Ok(layout)
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(d.hex())
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Streams `reader` into the store, verifying it against `expected` when
    /// given. Nothing lands under blobs/ unless the digest matches.
    pub fn write_blob(
        &self,
        expected: Option<&Digest>,
        reader: &mut dyn Read,
        what: &str,
    ) -> Result<(Digest, u64)> {
        if let Some(d) = expected {
            if self.has_blob(d) {
                let len = fs::metadata(self.blob_path(d))
                    .map(|m| m.len())
                    .unwrap_or(0);
                io::copy(reader, &mut io::sink()).ctx(|| format!("reading {what}"))?;
                return Ok((d.clone(), len));
            }
        }
        let tmp = tempfile::NamedTempFile::new_in(&self.tmp).ctx(|| "creating temp blob".into())?;
        let mut w = HashingWriter::new(io::BufWriter::new(tmp));
        io::copy(reader, &mut w).ctx(|| format!("writing {what}"))?;
        let HashingWriter { inner, hasher } = w;
        let tmp = inner
            .into_inner()
            .map_err(|e| e.into_error())
            .ctx(|| format!("writing {what}"))?;
        let len = hasher.len();
        let actual = hasher.finish();
        if let Some(d) = expected {
            if *d != actual {
                return Err(Error::DigestMismatch {
                    what: what.to_string(),
                    expected: d.to_string(),
                    actual: actual.to_string(),
                });
            }
        }
        self.commit_blob(tmp, &actual)?;
        Ok((actual, len))
    }

    pub fn write_blob_bytes(&self, bytes: &[u8], what: &str) -> Result<Digest> {
        Ok(self.write_blob(None, &mut &bytes[..], what)?.0)
    }

    /// fsync + rename of a temp file whose content has been verified to be `d`.
    pub fn commit_blob(&self, tmp: tempfile::NamedTempFile, d: &Digest) -> Result<()> {
        tmp.as_file().sync_all().ctx(|| "syncing blob".into())?;
        let dest = self.blob_path(d);
        tmp.persist(&dest)
            .map_err(|e| e.error)
            .ctx(|| format!("storing blob {d}"))?;
        sync_dir(dest.parent().unwrap_or(&self.dir))
    }

    /// Moves in a file (on the store's filesystem) already hashed to `d`.
    pub fn adopt(&self, path: &Path, d: &Digest) -> Result<()> {
        File::open(path)
            .and_then(|f| f.sync_all())
            .ctx(|| format!("syncing {}", path.display()))?;
        let dest = self.blob_path(d);
        fs::rename(path, &dest).ctx(|| format!("storing blob {d}"))?;
        sync_dir(dest.parent().unwrap_or(&self.dir))
    }

    /// Reads a small JSON blob, verifying its digest on the way.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(d);
        let f = File::open(&path).ctx(|| format!("blob {d} missing from the store"))?;
        let mut bytes = Vec::new();
        f.take(MAX_JSON_BLOB + 1)
            .read_to_end(&mut bytes)
            .ctx(|| format!("reading blob {d}"))?;
        if bytes.len() as u64 > MAX_JSON_BLOB {
            return Err(crate::error::malformed(
                format!("blob {d}"),
                "too large for a manifest or config",
            ));
        }
        let actual = Digest::of_bytes(&bytes);
        if actual != *d {
            return Err(Error::DigestMismatch {
                what: format!("stored blob {}", path.display()),
                expected: d.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }

    pub fn read_index(&self) -> Result<Index> {
        let path = self.dir.join("index.json");
        let bytes = fs::read(&path).ctx(|| format!("reading {}", path.display()))?;
        json(serde_json::from_slice(&bytes), || {
            path.display().to_string()
        })
    }

    fn write_index(&self, index: &Index) -> Result<()> {
        let bytes = json(serde_json::to_vec_pretty(index), || "index.json".into())?;
        atomic_write(&self.tmp, &self.dir.join("index.json"), &bytes)
    }

    /// Read-modify-write of index.json under the index lock.
    pub fn update_index<T>(&self, f: impl FnOnce(&mut Index) -> Result<T>) -> Result<T> {
        let _l = Lock::exclusive(&self.index_lock)?;
        let mut index = self.read_index()?;
        let out = f(&mut index)?;
        self.write_index(&index)?;
        Ok(out)
    }
}

/// Writes a whole file so that readers see the old or the new content, never
/// a mix, even across a crash.
pub fn atomic_write(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(tmp_dir).ctx(|| "creating temp file".into())?;
    tmp.write_all(bytes)
        .ctx(|| format!("writing {}", dest.display()))?;
    tmp.as_file()
        .sync_all()
        .ctx(|| format!("syncing {}", dest.display()))?;
    tmp.persist(dest)
        .map_err(|e| e.error)
        .ctx(|| format!("renaming into {}", dest.display()))?;
    if let Some(parent) = dest.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .ctx(|| format!("syncing {}", dir.display()))
}

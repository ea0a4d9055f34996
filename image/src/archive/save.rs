//! `isola save`: images back out as an oci-archive or a docker-archive.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};

use crate::archive::docker::Entry;
use crate::archive::Format;
use crate::digest::Digest;
use crate::error::{json, malformed, IoContext, Result};
use crate::store::layout::{Descriptor, Index, OCI_INDEX, REF_NAME};
use crate::store::{Image, Store};
use crate::unpack::decompressed;

fn header(size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

fn add_bytes<W: Write>(b: &mut tar::Builder<W>, path: &str, data: &[u8]) -> Result<()> {
    b.append_data(&mut header(data.len() as u64, 0o644), path, data)
        .ctx(|| format!("writing {path} to the archive"))
}

fn add_file<W: Write>(b: &mut tar::Builder<W>, path: &str, file: &std::path::Path) -> Result<()> {
    let f = File::open(file).ctx(|| format!("opening {}", file.display()))?;
    let len = f
        .metadata()
        .ctx(|| format!("stat {}", file.display()))?
        .len();
    b.append_data(&mut header(len, 0o644), path, BufReader::new(f))
        .ctx(|| format!("writing {path} to the archive"))
}

impl Store {
    pub fn save(&self, references: &[String], format: Format, out: impl Write) -> Result<()> {
        let images: Vec<(Image, Option<String>)> = references
            .iter()
            .map(|r| {
                let image = self.resolve(r)?;
                let name = crate::reference::normalize(r)
                    .ok()
                    .filter(|n| image.names.contains(n));
                let name = name.or_else(|| image.names.first().cloned());
                Ok((image, name))
            })
            .collect::<Result<_>>()?;
        let mut b = tar::Builder::new(out);
        match format {
            Format::OciArchive => self.save_oci(&mut b, &images)?,
            Format::DockerArchive => self.save_docker(&mut b, &images)?,
        }
        b.into_inner()
            .ctx(|| "finishing the archive".into())?
            .flush()
            .ctx(|| "flushing the archive".into())
    }

    fn save_oci<W: Write>(
        &self,
        b: &mut tar::Builder<W>,
        images: &[(Image, Option<String>)],
    ) -> Result<()> {
        add_bytes(b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let mut index = Index {
            schema_version: 2,
            media_type: Some(OCI_INDEX.into()),
            manifests: vec![],
        };
        let mut written: HashSet<Digest> = HashSet::new();
        for (image, name) in images {
            let mut d: Descriptor = image.descriptor();
            d.annotations = name
                .as_ref()
                .map(|n| BTreeMap::from([(REF_NAME.to_string(), n.clone())]));
            index.manifests.push(d);
            let blobs = std::iter::once(image.manifest_digest.clone())
                .chain(image.config_descriptor().map(|c| c.digest.clone()))
                .chain(image.layers().iter().map(|l| l.digest.clone()));
            for blob in blobs {
                if written.insert(blob.clone()) {
                    add_file(
                        b,
                        &format!("blobs/sha256/{}", blob.hex()),
                        &self.layout.blob_path(&blob),
                    )?;
                }
            }
        }
        add_bytes(
            b,
            "index.json",
            &json(serde_json::to_vec(&index), || "index.json".into())?,
        )
    }

    fn save_docker<W: Write>(
        &self,
        b: &mut tar::Builder<W>,
        images: &[(Image, Option<String>)],
    ) -> Result<()> {
        let mut entries = Vec::new();
        let mut written: HashSet<String> = HashSet::new();
        for (image, _) in images {
            let config = image
                .config_descriptor()
                .ok_or_else(|| malformed("image", "no config"))?;
            let config_path = format!("{}.json", config.digest.hex());
            if written.insert(config_path.clone()) {
                add_file(b, &config_path, &self.layout.blob_path(&config.digest))?;
            }
            let mut layers = Vec::new();
            for (l, diff_id) in image.layers().iter().zip(image.diff_ids()?) {
                // docker load wants uncompressed layer tars.
                let path = format!("{}/layer.tar", diff_id.hex());
                if written.insert(path.clone()) {
                    self.add_uncompressed(b, &path, &l.digest, &diff_id)?;
                }
                layers.push(path);
            }
            entries.push(Entry {
                config: config_path,
                repo_tags: Some(image.names.clone()),
                layers,
            });
        }
        add_bytes(
            b,
            "manifest.json",
            &json(serde_json::to_vec(&entries), || "manifest.json".into())?,
        )
    }

    fn add_uncompressed<W: Write>(
        &self,
        b: &mut tar::Builder<W>,
        path: &str,
        blob: &Digest,
        diff_id: &Digest,
    ) -> Result<()> {
        let f = File::open(self.layout.blob_path(blob)).ctx(|| format!("opening blob {blob}"))?;
        let mut r = decompressed(BufReader::new(Box::new(f) as Box<dyn Read + Send>))?;
        // The tar header needs the size first: decompress to a temp file.
        let tmp = tempfile::tempfile_in(self.tmp_dir()).ctx(|| "creating temp file".into())?;
        let mut w = crate::digest::HashingWriter::new(io::BufWriter::new(tmp));
        io::copy(&mut r, &mut w).ctx(|| format!("decompressing {blob}"))?;
        let crate::digest::HashingWriter { inner, hasher } = w;
        let mut tmp = inner
            .into_inner()
            .map_err(|e| e.into_error())
            .ctx(|| "writing temp file".into())?;
        let len = hasher.len();
        let actual = hasher.finish();
        if actual != *diff_id {
            return Err(crate::Error::DigestMismatch {
                what: format!("stored layer {blob}"),
                expected: diff_id.to_string(),
                actual: actual.to_string(),
            });
        }
        io::Seek::rewind(&mut tmp).ctx(|| "rewinding temp file".into())?;
        b.append_data(&mut header(len, 0o644), path, BufReader::new(tmp))
            .ctx(|| format!("writing {path} to the archive"))
    }
}

//! docker-archive: `manifest.json` listing, per image, a config file, its
//! tags and its layer tars (uncompressed by docker; compressed accepted).

use serde::{Deserialize, Serialize};

use crate::archive::staging::Staging;
use crate::digest::Digest;
use crate::error::{malformed, Result};
use crate::reference;
use crate::store::layout::{Descriptor, Manifest, OCI_CONFIG, OCI_MANIFEST};
use crate::store::{Image, Store};
use crate::unpack::{detect, Compression};

#[derive(Serialize, Deserialize, Debug)]
#[serde(rename_all = "PascalCase")]
pub struct Entry {
    pub config: String,
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    pub layers: Vec<String>,
}

pub fn layer_media_type(c: Compression) -> &'static str {
    match c {
        Compression::None => "application/vnd.oci.image.layer.v1.tar",
        Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
    }
}

fn compression_of(path: &std::path::Path) -> Result<Compression> {
    use std::io::Read;
    let mut head = [0u8; 4];
    let mut f = std::fs::File::open(path).map_err(|e| malformed("archive", e.to_string()))?;
    let n = f
        .read(&mut head)
        .map_err(|e| malformed("archive", e.to_string()))?;
    Ok(detect(&head[..n]))
}

pub(crate) fn import(store: &Store, st: &Staging) -> Result<Vec<Image>> {
    let (entries, _, _): (Vec<Entry>, _, _) = st.read_json("manifest.json")?;
    let mut images = Vec::new();
    for e in entries {
        let config = st.get(&e.config)?;
        let config_bytes =
            std::fs::read(&config.path).map_err(|err| malformed("archive", err.to_string()))?;
        let parsed: serde_json::Value =
            crate::error::json(serde_json::from_slice(&config_bytes), || e.config.clone())?;
        let diff_ids: Vec<Digest> = parsed
            .pointer("/rootfs/diff_ids")
            .and_then(|v| v.as_array())
            .ok_or_else(|| malformed(&e.config, "no rootfs.diff_ids"))?
            .iter()
            .map(|v| v.as_str().unwrap_or_default().parse())
            .collect::<Result<_>>()?;
        if diff_ids.len() != e.layers.len() {
            return Err(malformed(
                "manifest.json",
                format!("{} layers for {} diff_ids", e.layers.len(), diff_ids.len()),
            ));
        }
        let mut layers = Vec::new();
        for (path, diff_id) in e.layers.iter().zip(&diff_ids) {
            let s = st.get(path)?;
            let c = compression_of(&s.path)?;
            // Uncompressed, the blob is the diff: check it now, not only at unpack.
            let expected = (c == Compression::None).then_some(diff_id);
            let digest = st.import_blob(path, expected, &store.layout)?;
            layers.push(Descriptor {
                media_type: layer_media_type(c).into(),
                size: s.size,
                digest,
                annotations: None,
                platform: None,
            });
        }
        let config_digest = st.import_blob(&e.config, None, &store.layout)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            config: Some(Descriptor {
                media_type: OCI_CONFIG.into(),
                digest: config_digest,
                size: config.size,
                annotations: None,
                platform: None,
            }),
            layers: Some(layers),
            manifests: None,
            annotations: None,
        };
        let bytes = crate::error::json(serde_json::to_vec(&manifest), || "manifest".into())?;
        let names = e
            .repo_tags
            .unwrap_or_default()
            .iter()
            .map(|t| reference::normalize(t))
            .collect::<Result<Vec<_>>>()?;
        images.push(store.commit_image(&bytes, None, &names)?);
    }
    Ok(images)
}

//! One stored image: a manifest digest, its parsed manifest and config, and
//! the names pointing at it.

use oci_spec::image::ImageConfiguration;
use serde_json::{json, Value};

use crate::digest::Digest;
use crate::error::{json as json_err, malformed, Result};
use crate::reference;
use crate::store::layout::{Descriptor, Manifest, OCI_MANIFEST};

#[derive(Clone, Debug)]
pub struct Image {
    pub manifest_digest: Digest,
    pub manifest_size: u64,
    pub manifest: Manifest,
    /// The image ID, as docker prints it: the config's digest.
    pub id: Digest,
    /// Full names (`docker.io/library/busybox:latest`); empty when untagged.
    pub names: Vec<String>,
    /// Entrypoint, Cmd, Env, WorkingDir, User, ExposedPorts, Volumes, …
    pub config: ImageConfiguration,
    config_json: Value,
}

impl Image {
    pub(crate) fn new(
        manifest_digest: Digest,
        manifest_size: u64,
        manifest: Manifest,
        config_bytes: &[u8],
        names: Vec<String>,
    ) -> Result<Image> {
        let what = format!("config of {manifest_digest}");
        let (config_desc, layers) = manifest.image_parts(&what)?;
        let config = ImageConfiguration::from_reader(config_bytes)
            .map_err(|e| malformed(&what, e.to_string()))?;
        let config_json = json_err(serde_json::from_slice(config_bytes), || what.clone())?;
        if config.rootfs().diff_ids().len() != layers.len() {
            return Err(malformed(
                &what,
                format!(
                    "{} diff_ids for {} layers",
                    config.rootfs().diff_ids().len(),
                    layers.len()
                ),
            ));
        }
        Ok(Image {
            id: config_desc.digest.clone(),
            manifest_digest,
            manifest_size,
            manifest,
            names,
            config,
            config_json,
        })
    }

    /// The index.json entry for this image.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self
                .manifest
                .media_type
                .clone()
                .unwrap_or_else(|| OCI_MANIFEST.into()),
            digest: self.manifest_digest.clone(),
            size: self.manifest_size,
            annotations: None,
            platform: None,
        }
    }

    pub fn layers(&self) -> &[Descriptor] {
        self.manifest.layers.as_deref().unwrap_or(&[])
    }

    pub fn config_descriptor(&self) -> Option<&Descriptor> {
        self.manifest.config.as_ref()
    }

    /// Uncompressed layer digests, lowest first.
    pub fn diff_ids(&self) -> Result<Vec<Digest>> {
        self.config
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| d.parse())
            .collect()
    }

    /// Compressed size of the blobs, as registries and `docker images` count.
    pub fn size(&self) -> u64 {
        self.layers().iter().map(|l| l.size).sum::<u64>()
            + self.config_descriptor().map_or(0, |c| c.size)
    }

    pub fn created(&self) -> Option<&str> {
        self.config.created().as_deref()
    }

    /// The useful fields of `docker image inspect`.
    pub fn inspect(&self) -> Value {
        let repo_digests: Vec<String> = self
            .names
            .iter()
            .map(|n| format!("{}@{}", reference::split_name(n).0, self.manifest_digest))
            .collect();
        json!({
            "Id": self.id.to_string(),
            "Digest": self.manifest_digest.to_string(),
            "RepoTags": self.names,
            "RepoDigests": repo_digests,
            "Created": self.created(),
            "Author": self.config_json.get("author"),
            "Architecture": self.config_json.get("architecture"),
            "Os": self.config_json.get("os"),
            "Size": self.size(),
            "ManifestMediaType": self.descriptor().media_type,
            "Config": self.config_json.get("config").cloned().unwrap_or(Value::Null),
            "RootFS": {
                "Type": "layers",
                "Layers": self.config.rootfs().diff_ids(),
            },
            "Layers": self.layers().iter().map(|l| json!({
                "Digest": l.digest.to_string(), "Size": l.size, "MediaType": l.media_type,
            })).collect::<Vec<_>>(),
        })
    }
}

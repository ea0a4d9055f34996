//! oci-archive: a tarred OCI image layout (oci-layout, index.json, blobs).

use crate::archive::staging::Staging;
use crate::digest::Digest;
use crate::error::{malformed, Result};
use crate::pull::platform::{pick, PlatformWanted};
use crate::reference;
use crate::store::layout::{Descriptor, Index, Manifest};
use crate::store::{Image, Store};

fn blob_name(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// The image manifest a top-level entry stands for (following an index to
/// the wanted platform).
fn image_manifest(
    st: &Staging,
    d: &Descriptor,
    platform: &PlatformWanted,
) -> Result<(Digest, Vec<u8>)> {
    let mut digest = d.digest.clone();
    for _ in 0..4 {
        let (m, bytes, staged): (Manifest, Vec<u8>, _) = st.read_json(&blob_name(&digest))?;
        if staged.digest != digest {
            return Err(crate::Error::DigestMismatch {
                what: format!("{} in the archive", blob_name(&digest)),
                expected: digest.to_string(),
                actual: staged.digest.to_string(),
            });
        }
        if !m.is_index() {
            return Ok((digest, bytes));
        }
        digest = pick(m.manifests.as_deref().unwrap_or(&[]), platform)?
            .digest
            .clone();
    }
    Err(malformed("archive", "indexes nested too deep"))
}

pub(crate) fn import(store: &Store, st: &Staging, platform: &PlatformWanted) -> Result<Vec<Image>> {
    let (index, _, _): (Index, _, _) = st.read_json("index.json")?;
    let mut images = Vec::new();
    for d in &index.manifests {
        let (digest, bytes) = image_manifest(st, d, platform)?;
        let m = Manifest::parse(&bytes, &format!("manifest {digest}"))?;
        let (config, layers) = m.image_parts(&format!("manifest {digest}"))?;
        for b in std::iter::once(config).chain(layers) {
            st.import_blob(&blob_name(&b.digest), Some(&b.digest), &store.layout)?;
        }
        // A bare tag ("latest") names nothing; it is kept untagged.
        let names: Vec<String> = d
            .ref_name()
            .filter(|n| !is_bare_tag(n))
            .and_then(|n| reference::normalize(n).ok())
            .into_iter()
            .collect();
        images.push(store.commit_image(&bytes, Some(&digest), &names)?);
    }
    Ok(images)
}

/// The OCI spec's ref.name is often just a tag ("latest"): no image name.
fn is_bare_tag(n: &str) -> bool {
    !n.contains(':') && !n.contains('/')
}

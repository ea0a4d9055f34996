//! Image removal that respects containers: the layers under a container's
//! rootfs must outlive it, so an image still used by any container (in any
//! state) keeps its manifest, and with it its layers, through `rmi` and
//! `prune`, as docker refuses `rmi` of an image a container uses.

use super::Host;
use crate::error::{Error, Result};

impl Host {
    /// `isola rmi`: removes a name, or the image, unless a container uses
    /// the image and this removal would delete it.
    pub fn remove_image(&self, reference: &str, force: bool) -> Result<Vec<String>> {
        let image = self.images.resolve(reference)?;
        let digest = image.manifest_digest.to_string();
        let users: Vec<String> = self
            .list()?
            .into_iter()
            .filter(|r| r.image_digest == digest)
            .map(|r| r.name)
            .collect();
        // Dropping one of several names leaves the image in place.
        let only_untags = image.names.len() > 1
            && image
                .names
                .iter()
                .any(|n| n == reference || n.ends_with(&format!("/{reference}")));
        if !users.is_empty() && !only_untags {
            return Err(Error::Invalid(format!(
                "image {reference} is used by container(s) {}; remove them first",
                users.join(", ")
            )));
        }
        Ok(self.images.remove(reference, force)?)
    }
}

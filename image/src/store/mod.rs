//! The store: `<root>/oci` (an OCI image layout: blobs, index.json = tags),
//! `<root>/layers/<diff_id hex>` (each layer unpacked once, shared by every
//! image that has it, usable as an overlay lower dir), `<root>/erofs`
//! (the vm level's root disk per image), `<root>/tmp` (same filesystem, for
//! atomic renames) and `<root>/locks`.

pub mod check;
pub mod gc;
pub mod image;
pub mod layout;
pub mod lock;

use std::fs;
use std::path::{Path, PathBuf};

use tracing::debug;

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::reference;
use crate::unpack::{self, Limits};
pub use image::Image;
use layout::{Descriptor, Layout, Manifest, REF_NAME};
use lock::Lock;

pub const DEFAULT_ROOT: &str = "/var/lib/isola";

#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
    pub(crate) layout: Layout,
    pub(crate) limits: Limits,
}

impl Store {
    pub fn open(root: impl AsRef<Path>) -> Result<Store> {
        let root = root.as_ref().to_path_buf();
        for sub in ["layers", "erofs", "tmp", "locks"] {
            fs::create_dir_all(root.join(sub))
                .ctx(|| format!("creating {}", root.join(sub).display()))?;
        }
        let layout = Layout::open(root.join("oci"), root.join("tmp"), &root.join("locks"))?;
        Ok(Store {
            root,
            layout,
            limits: Limits::default(),
        })
    }

    /// Bounds on what one layer may unpack to.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The OCI layout directory (`skopeo copy oci:<this>:<name> …`).
    pub fn oci_dir(&self) -> &Path {
        &self.layout.dir
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub(crate) fn lock_path(&self, name: &str) -> PathBuf {
        self.root.join("locks").join(name)
    }

    /// Held (shared) by every import for its whole run, taken exclusively by
    /// garbage collection, so GC never deletes what an import is writing.
    pub(crate) fn import_guard(&self) -> Result<Lock> {
        Lock::shared(&self.lock_path("gc.lock"))
    }

    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers").join(diff_id.hex())
    }

    /// Unpacks one layer blob once: concurrent importers of the same layer
    /// wait for each other instead of both doing the work.
    pub(crate) fn ensure_layer(&self, blob: &Digest, diff_id: &Digest) -> Result<bool> {
        let dest = self.layer_dir(diff_id);
        if dest.is_dir() {
            return Ok(false);
        }
        let _l = Lock::exclusive(&self.lock_path(&format!("layer-{}.lock", diff_id.hex())))?;
        if dest.is_dir() {
            return Ok(false);
        }
        unpack::unpack_layer(
            &self.layout.blob_path(blob),
            diff_id,
            &dest,
            &self.tmp_dir(),
            self.limits,
        )?;
        Ok(true)
    }

    /// Reads and parses an image manifest and its config, verifying both
    /// against their digests.
    pub(crate) fn load_image(&self, manifest_digest: &Digest, names: Vec<String>) -> Result<Image> {
        let bytes = self.layout.read_blob(manifest_digest)?;
        let manifest = Manifest::parse(&bytes, &format!("manifest {manifest_digest}"))?;
        let (config_desc, _) = manifest.image_parts(&format!("manifest {manifest_digest}"))?;
        let config_bytes = self.layout.read_blob(&config_desc.digest)?;
        Image::new(
            manifest_digest.clone(),
            bytes.len() as u64,
            manifest,
            &config_bytes,
            names,
        )
    }

    /// The last step of every import: config and layer blobs are in the
    /// store; unpack the layers (verifying diff_ids), then store the manifest
    /// and only then name it, so a failed import leaves no image behind.
    pub(crate) fn commit_image(
        &self,
        manifest_bytes: &[u8],
        expected: Option<&Digest>,
        names: &[String],
    ) -> Result<Image> {
        let digest = Digest::of_bytes(manifest_bytes);
        if let Some(e) = expected {
            if *e != digest {
                return Err(Error::DigestMismatch {
                    what: "manifest".into(),
                    expected: e.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        let what = format!("manifest {digest}");
        let manifest = Manifest::parse(manifest_bytes, &what)?;
        let (config, layers) = manifest.image_parts(&what)?;
        let config_bytes = self.layout.read_blob(&config.digest)?;
        let layers = layers.to_vec();
        let image = Image::new(
            digest.clone(),
            manifest_bytes.len() as u64,
            manifest,
            &config_bytes,
            names.to_vec(),
        )?;
        for l in &layers {
            if !self.layout.has_blob(&l.digest) {
                return Err(Error::NotFound(format!(
                    "layer blob {} of {what}",
                    l.digest
                )));
            }
        }
        let jobs: Vec<(Digest, Digest)> = layers
            .iter()
            .map(|l| l.digest.clone())
            .zip(image.diff_ids()?)
            .collect();
        self.unpack_all(&jobs)?;
        self.layout
            .write_blob(Some(&digest), &mut &manifest_bytes[..], &what)?;
        let desc = image.descriptor();
        if names.is_empty() {
            self.set_name(&desc, None)?;
        }
        for n in names {
            self.set_name(&desc, Some(n))?;
        }
        Ok(image)
    }

    /// Unpacks (blob, diff_id) pairs on a few threads; the first error wins.
    pub(crate) fn unpack_all(&self, jobs: &[(Digest, Digest)]) -> Result<()> {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let threads = jobs.len().clamp(1, 4);
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| -> Result<()> {
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some((blob, diff_id)) = jobs.get(i) else {
                                return Ok(());
                            };
                            self.ensure_layer(blob, diff_id)?;
                        }
                    })
                })
                .collect();
            let mut first = Ok(());
            for w in workers {
                let r = w
                    .join()
                    .unwrap_or_else(|_| Err(Error::Unsupported("unpack thread panicked".into())));
                if first.is_ok() {
                    first = r;
                }
            }
            first
        })
    }

    /// Every image (one per manifest digest) with its names.
    pub fn images(&self) -> Result<Vec<Image>> {
        let index = self.layout.read_index()?;
        let mut by_digest: Vec<(Digest, Vec<String>)> = Vec::new();
        for d in &index.manifests {
            let names = d.ref_name().map(str::to_string).into_iter();
            match by_digest.iter_mut().find(|(m, _)| *m == d.digest) {
                Some((_, n)) => n.extend(names),
                None => by_digest.push((d.digest.clone(), names.collect())),
            }
        }
        by_digest
            .into_iter()
            .map(|(d, names)| self.load_image(&d, names))
            .collect()
    }

    /// A name (`busybox`, `busybox:1`, `reg:5000/x:y`), `name@sha256:…`, a
    /// full digest (manifest or ID) or a unique prefix of an ID.
    pub fn resolve(&self, reference: &str) -> Result<Image> {
        // The start path of every container: a plain name loads only its
        // own manifest and config, not every image in the store.
        if let Some(name) = reference::quick_normalize(reference) {
            let index = self.layout.read_index()?;
            if let Some(d) = index
                .manifests
                .iter()
                .find(|d| d.ref_name() == Some(name.as_str()))
            {
                let names = index
                    .manifests
                    .iter()
                    .filter(|m| m.digest == d.digest)
                    .filter_map(|m| m.ref_name().map(str::to_string))
                    .collect();
                return self.load_image(&d.digest, names);
            }
        }
        let images = self.images()?;
        if let Ok(d) = reference.parse::<Digest>() {
            if let Some(i) = images.iter().find(|i| i.manifest_digest == d || i.id == d) {
                return Ok(i.clone());
            }
            return Err(Error::NotFound(reference.to_string()));
        }
        if let Ok(r) = reference::parse(reference) {
            if let Some(name) = reference::tag_name(&r).filter(|_| r.digest().is_none()) {
                if let Some(i) = images.iter().find(|i| i.names.contains(&name)) {
                    return Ok(i.clone());
                }
            }
            if let Some(d) = r.digest().and_then(|d| d.parse::<Digest>().ok()) {
                if let Some(i) = images.iter().find(|i| i.manifest_digest == d) {
                    return Ok(i.clone());
                }
            }
        }
        let prefix = reference.strip_prefix("sha256:").unwrap_or(reference);
        if !prefix.is_empty() && prefix.len() <= 64 && prefix.bytes().all(|b| b.is_ascii_hexdigit())
        {
            let hits: Vec<&Image> = images
                .iter()
                .filter(|i| {
                    i.id.hex().starts_with(prefix) || i.manifest_digest.hex().starts_with(prefix)
                })
                .collect();
            match hits.as_slice() {
                [one] => return Ok((*one).clone()),
                [] => {}
                _ => return Err(Error::Ambiguous(reference.to_string())),
            }
        }
        Err(Error::NotFound(reference.to_string()))
    }

    /// Points `name` at `manifest`, moving it off any other image (which
    /// then stays, untagged, until pruned).
    pub(crate) fn set_name(&self, manifest: &Descriptor, name: Option<&str>) -> Result<()> {
        let mut entry = manifest.clone();
        entry.annotations = name.map(|n| {
            [(REF_NAME.to_string(), n.to_string())]
                .into_iter()
                .collect()
        });
        self.layout.update_index(|index| {
            let Some(name) = name else {
                if !index.manifests.iter().any(|d| d.digest == entry.digest) {
                    index.manifests.push(entry);
                }
                return Ok(());
            };
            let (old, kept): (Vec<_>, Vec<_>) = index
                .manifests
                .drain(..)
                .partition(|d| d.ref_name() == Some(name));
            // A named entry supersedes this manifest's untagged one.
            index.manifests = kept
                .into_iter()
                .filter(|d| !(d.digest == entry.digest && d.ref_name().is_none()))
                .collect();
            index.manifests.push(entry);
            for mut o in old {
                if !index.manifests.iter().any(|d| d.digest == o.digest) {
                    o.annotations = None;
                    index.manifests.push(o);
                }
            }
            Ok(())
        })
    }

    /// `isola tag SOURCE TARGET`.
    pub fn tag(&self, source: &str, target: &str) -> Result<Image> {
        let image = self.resolve(source)?;
        let name = reference::normalize(target)?;
        self.set_name(&image.descriptor(), Some(&name))?;
        self.resolve(&name)
    }

    /// `isola rmi`: by name removes that name; by ID removes the image, which
    /// needs `force` when it still has several names. Then a best-effort GC.
    pub fn remove(&self, reference: &str, force: bool) -> Result<Vec<String>> {
        let image = self.resolve(reference)?;
        let by_name = reference::normalize(reference)
            .ok()
            .filter(|n| image.names.contains(n));
        let removed = self.layout.update_index(|index| {
            let mut removed = Vec::new();
            match &by_name {
                Some(name) if image.names.len() > 1 => {
                    index
                        .manifests
                        .retain(|d| d.ref_name() != Some(name.as_str()));
                    removed.push(format!("Untagged: {name}"));
                }
                _ => {
                    if image.names.len() > 1 && !force {
                        return Err(Error::InUseByNames {
                            reference: reference.to_string(),
                            names: image.names.join(", "),
                        });
                    }
                    index
                        .manifests
                        .retain(|d| d.digest != image.manifest_digest);
                    removed.extend(image.names.iter().map(|n| format!("Untagged: {n}")));
                    removed.push(format!("Deleted: {}", image.id));
                }
            }
            Ok(removed)
        })?;
        match self.gc(false) {
            Ok(Some(report)) => debug!(?report, "gc after rmi"),
            Ok(None) => debug!("gc skipped: an import is running"),
            Err(e) => tracing::warn!(error = %e, "gc after rmi failed; run `isola image prune`"),
        }
        Ok(removed)
    }

    /// Unpacked layer directories, lowest first (reverse them for overlay's
    /// `lowerdir=top:…:bottom`).
    pub fn layer_dirs(&self, image: &Image) -> Result<Vec<PathBuf>> {
        image
            .diff_ids()?
            .iter()
            .map(|d| {
                let p = self.layer_dir(d);
                if p.is_dir() {
                    Ok(p)
                } else {
                    Err(Error::NotFound(format!(
                        "unpacked layer {d} of image {} (run `isola image check`)",
                        image.id
                    )))
                }
            })
            .collect()
    }
}

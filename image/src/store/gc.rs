//! Garbage collection: whatever no index.json entry reaches (blobs, unpacked
//! layers, EROFS images) and everything left in tmp/ by a crashed process.
//! It holds the GC lock exclusively, so it never runs during an import.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use serde::Serialize;
use tracing::{debug, warn};

use crate::digest::Digest;
use crate::error::{IoContext, Result};
use crate::store::layout::Manifest;
use crate::store::lock::Lock;
use crate::store::Store;

#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    pub images_removed: Vec<String>,
    pub blobs_removed: u64,
    pub layers_removed: u64,
    pub erofs_removed: u64,
    pub tmp_removed: u64,
    pub bytes_freed: u64,
}

/// What the index reaches.
#[derive(Default)]
pub(crate) struct Live {
    pub blobs: HashSet<Digest>,
    pub layers: HashSet<Digest>,
    pub manifests: HashSet<Digest>,
}

impl Store {
    pub(crate) fn live(&self) -> Result<Live> {
        let mut live = Live::default();
        let mut todo: Vec<Digest> = self
            .layout
            .read_index()?
            .manifests
            .into_iter()
            .map(|d| d.digest)
            .collect();
        while let Some(d) = todo.pop() {
            if !live.blobs.insert(d.clone()) {
                continue;
            }
            let bytes = self.layout.read_blob(&d)?;
            let m = Manifest::parse(&bytes, &format!("manifest {d}"))?;
            if m.is_index() {
                todo.extend(m.manifests.iter().flatten().map(|c| c.digest.clone()));
                continue;
            }
            live.manifests.insert(d.clone());
            let image = self.load_image(&d, vec![])?;
            live.blobs
                .extend(image.config_descriptor().map(|c| c.digest.clone()));
            live.blobs
                .extend(image.layers().iter().map(|l| l.digest.clone()));
            live.layers.extend(image.diff_ids()?);
        }
        Ok(live)
    }

    /// `isola image prune`: drops untagged images, then collects garbage.
    /// Waits for running imports to finish.
    pub fn prune(&self) -> Result<PruneReport> {
        let _l = Lock::exclusive(&self.lock_path("gc.lock"))?;
        let mut removed = Vec::new();
        self.layout.update_index(|index| {
            index.manifests.retain(|d| {
                let keep = d.ref_name().is_some();
                if !keep {
                    removed.push(d.digest.to_string());
                }
                keep
            });
            Ok(())
        })?;
        let mut report = self.collect()?;
        report.images_removed = removed;
        Ok(report)
    }

    /// Collects garbage; with `wait == false` returns None at once when an
    /// import holds the store.
    pub(crate) fn gc(&self, wait: bool) -> Result<Option<PruneReport>> {
        let path = self.lock_path("gc.lock");
        let _l = if wait {
            Lock::exclusive(&path)?
        } else {
            match Lock::try_exclusive(&path)? {
                Some(l) => l,
                None => return Ok(None),
            }
        };
        self.collect().map(Some)
    }

    fn collect(&self) -> Result<PruneReport> {
        let live = self.live()?;
        let mut report = PruneReport::default();
        let blobs = self.layout.dir.join("blobs/sha256");
        for (name, path) in entries(&blobs)? {
            if Digest::from_hex(&name).is_ok_and(|d| live.blobs.contains(&d)) {
                continue;
            }
            report.bytes_freed += fs::symlink_metadata(&path).map(|m| m.len()).unwrap_or(0);
            fs::remove_file(&path).ctx(|| format!("removing {}", path.display()))?;
            report.blobs_removed += 1;
        }
        for (name, path) in entries(&self.root().join("layers"))? {
            if Digest::from_hex(&name).is_ok_and(|d| live.layers.contains(&d)) {
                continue;
            }
            // Renamed away first, so a half-removed layer never looks complete.
            let doomed = self.tmp_dir().join(format!(".rm-{name}"));
            fs::rename(&path, &doomed).ctx(|| format!("removing {}", path.display()))?;
            report.layers_removed += 1;
        }
        for (name, path) in entries(&self.root().join("erofs"))? {
            let keep = name
                .strip_suffix(".erofs")
                .and_then(|h| Digest::from_hex(h).ok())
                .is_some_and(|d| live.manifests.contains(&d));
            if !keep {
                report.bytes_freed += fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                fs::remove_file(&path).ctx(|| format!("removing {}", path.display()))?;
                report.erofs_removed += 1;
            }
        }
        for (_, path) in entries(&self.tmp_dir())? {
            let r = if path.is_dir() && !path.is_symlink() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match r {
                Ok(()) => report.tmp_removed += 1,
                Err(e) => warn!(path = %path.display(), error = %e, "temp entry not removed"),
            }
        }
        debug!(?report, "gc done");
        Ok(report)
    }
}

fn entries(dir: &Path) -> Result<Vec<(String, std::path::PathBuf)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).ctx(|| format!("listing {}", dir.display()))? {
        let e = e.ctx(|| format!("listing {}", dir.display()))?;
        out.push((e.file_name().to_string_lossy().into_owned(), e.path()));
    }
    Ok(out)
}

//! `isola image check`: an fsck of the store. Re-hashes every blob, checks
//! that each image's manifest, config, layer blobs and unpacked layers are
//! there, and reports leftovers. Read-only.

use std::fs::File;
use std::io::BufReader;

use serde::Serialize;

use crate::digest::{Digest, HashingReader};
use crate::error::{IoContext, Result};
use crate::store::Store;

#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    pub images: usize,
    pub blobs_checked: usize,
    /// Each a sentence; empty means the store is consistent.
    pub problems: Vec<String>,
    /// Unreferenced content `isola image prune` would remove (not an error).
    pub garbage: Vec<String>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Store {
    pub fn check(&self) -> Result<CheckReport> {
        let mut report = CheckReport::default();
        let blobs_dir = self.layout.dir.join("blobs/sha256");
        for e in std::fs::read_dir(&blobs_dir).ctx(|| format!("listing {}", blobs_dir.display()))? {
            let e = e.ctx(|| "listing blobs".into())?;
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(d) = Digest::from_hex(&name) else {
                report
                    .problems
                    .push(format!("stray file in blobs/sha256: {name}"));
                continue;
            };
            let f = File::open(e.path()).ctx(|| format!("opening blob {d}"))?;
            let (actual, _) = HashingReader::new(BufReader::new(f))
                .finish()
                .ctx(|| format!("reading blob {d}"))?;
            report.blobs_checked += 1;
            if actual != d {
                report
                    .problems
                    .push(format!("blob {d} is corrupt (hashes to {actual})"));
            }
        }
        let index = self.layout.read_index()?;
        let mut seen = std::collections::HashSet::new();
        for entry in &index.manifests {
            if !seen.insert(entry.digest.clone()) {
                continue;
            }
            let name = entry.ref_name().unwrap_or("<untagged>");
            let image = match self.load_image(&entry.digest, vec![]) {
                Ok(i) => i,
                Err(e) => {
                    report
                        .problems
                        .push(format!("image {name} ({}): {e}", entry.digest));
                    continue;
                }
            };
            report.images += 1;
            for l in image.layers() {
                if !self.layout.has_blob(&l.digest) {
                    report
                        .problems
                        .push(format!("image {name}: layer blob {} missing", l.digest));
                }
            }
            match image.diff_ids() {
                Ok(ids) => {
                    for d in ids {
                        if !self.layer_dir(&d).is_dir() {
                            report
                                .problems
                                .push(format!("image {name}: layer {d} not unpacked"));
                        }
                    }
                }
                Err(e) => report.problems.push(format!("image {name}: {e}")),
            }
        }
        if report.problems.is_empty() {
            let live = self.live()?;
            for e in std::fs::read_dir(&blobs_dir)
                .ctx(|| "listing blobs".into())?
                .flatten()
            {
                let n = e.file_name().to_string_lossy().into_owned();
                if Digest::from_hex(&n).is_ok_and(|d| !live.blobs.contains(&d)) {
                    report.garbage.push(format!("unreferenced blob sha256:{n}"));
                }
            }
            let layers = self.root().join("layers");
            for e in std::fs::read_dir(&layers)
                .ctx(|| "listing layers".into())?
                .flatten()
            {
                let n = e.file_name().to_string_lossy().into_owned();
                if !Digest::from_hex(&n).is_ok_and(|d| live.layers.contains(&d)) {
                    report.garbage.push(format!("unreferenced layer {n}"));
                }
            }
        }
        for e in std::fs::read_dir(self.tmp_dir())
            .ctx(|| "listing tmp".into())?
            .flatten()
        {
            report.garbage.push(format!(
                "leftover temp entry {}",
                e.file_name().to_string_lossy()
            ));
        }
        Ok(report)
    }
}

//! `isola load -i FILE|-`: detects the archive kind by its content.

use std::io::Read;

use crate::archive::{docker, oci, staging::Staging};
use crate::error::{malformed, Result};
use crate::pull::platform::PlatformWanted;
use crate::store::{Image, Store};

#[derive(Debug, Default, Clone)]
pub struct LoadOptions {
    pub platform: PlatformWanted,
}

impl Store {
    /// Loads every image of a docker-archive or oci-archive. All blobs are
    /// verified and all layers unpacked before any name is set.
    pub fn load(&self, reader: impl Read, opts: &LoadOptions) -> Result<Vec<Image>> {
        let _guard = self.import_guard()?;
        let st = Staging::read(reader, &self.tmp_dir())?;
        if st.has("manifest.json") {
            docker::import(self, &st)
        } else if st.has("index.json") {
            oci::import(self, &st, &opts.platform)
        } else {
            Err(malformed(
                "archive",
                "neither manifest.json (docker-archive) nor index.json (oci-archive)",
            ))
        }
    }
}

//! The host owner's defaults, `/etc/isola/config.toml`.

use std::path::Path;

use anyhow::{Context, Result};
use isola_container::Isolation;
use serde::Deserialize;

/// Where the host's defaults live unless `--config` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/isola/config.toml";

/// The keys this runtime reads; other parts of isola may add their own.
#[derive(Debug, Default, Deserialize)]
pub struct Config {
    /// Isolation level for containers that do not ask for one.
    pub isolation: Option<Isolation>,
}

impl Config {
    /// Reads the file; a missing file means no defaults.
    pub fn load(path: &Path) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        toml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))
    }
}

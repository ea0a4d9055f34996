//! The host owner's defaults, `/etc/isola/config.toml` (or `ISOLA_CONFIG`):
//! deploy-time choices such as the isolation level, read by every
//! front-end the same way.

use std::path::{Path, PathBuf};

use isola_container::Isolation;
use serde::Deserialize;

use crate::error::{Error, Result};

/// Where the host's defaults live.
pub const DEFAULT_PATH: &str = "/etc/isola/config.toml";

/// The keys the host runtime reads.
#[derive(Debug, Default, Deserialize)]
pub struct Config {
    /// Isolation level for containers that do not ask for one.
    pub isolation: Option<Isolation>,
}

impl Config {
    /// The file named by `ISOLA_CONFIG`, else the default path.
    pub fn path() -> PathBuf {
        std::env::var_os("ISOLA_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| DEFAULT_PATH.into())
    }

    /// Reads the file; a missing file means no defaults, a malformed one
    /// is an error (a typo must not silently lower the isolation level).
    pub fn load(path: &Path) -> Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(Error::io(path)(e)),
        };
        toml::from_str(&text)
            .map_err(|e| Error::Invalid(format!("invalid config {}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_means_defaults_and_typos_are_errors() {
        assert!(Config::load(Path::new("/nonexistent/isola.toml"))
            .unwrap()
            .isolation
            .is_none());
        let dir = std::env::temp_dir().join(format!("isola-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config.toml");
        std::fs::write(&file, "isolation = \"vm\"\n").unwrap();
        assert_eq!(Config::load(&file).unwrap().isolation, Some(Isolation::Vm));
        std::fs::write(&file, "isolation = \"kvm\"\n").unwrap();
        assert!(Config::load(&file).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! The host owner's defaults, `/etc/isola/config.toml` (or `$ISOLA_CONFIG`):
//! deploy-time choices such as the isolation level, read the same way by
//! every front-end.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Isolation;

/// Where the host's defaults live.
pub const DEFAULT_PATH: &str = "/etc/isola/config.toml";

/// Why the defaults could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The keys isola reads; unknown keys are refused, so a typo cannot
/// silently leave the isolation level lower than the owner meant.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Isolation level for containers that do not ask for one.
    pub isolation: Option<Isolation>,
}

impl Config {
    /// The file named by `ISOLA_CONFIG`, else the default path.
    pub fn path() -> PathBuf {
        std::env::var_os("ISOLA_CONFIG").map_or_else(|| DEFAULT_PATH.into(), PathBuf::from)
    }

    /// Reads the file; a missing file means no defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
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
        for bad in [
            "isolation = \"kvm\"\n",
            "isolaton = \"vm\"\n",
            "isolation = ",
        ] {
            std::fs::write(&file, bad).unwrap();
            assert!(Config::load(&file).is_err(), "{bad}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Which manifest of an image index to take: linux/amd64 unless told.

use crate::error::{Error, Result};
use crate::store::layout::Descriptor;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformWanted {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Default for PlatformWanted {
    fn default() -> Self {
        PlatformWanted {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }
}

impl std::str::FromStr for PlatformWanted {
    type Err = Error;
    /// `os/arch[/variant]`, as `--platform` takes it.
    fn from_str(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(PlatformWanted {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, v] if !os.is_empty() && !arch.is_empty() => Ok(PlatformWanted {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(v.to_string()),
            }),
            _ => Err(Error::Unsupported(format!(
                "platform {s:?} (expected os/arch[/variant])"
            ))),
        }
    }
}

impl std::fmt::Display for PlatformWanted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

pub fn pick<'a>(manifests: &'a [Descriptor], want: &PlatformWanted) -> Result<&'a Descriptor> {
    manifests
        .iter()
        .find(|d| {
            d.platform.as_ref().is_some_and(|p| {
                p.os == want.os
                    && p.architecture == want.architecture
                    && (want.variant.is_none() || p.variant == want.variant)
            })
        })
        .ok_or_else(|| Error::NotFound(format!("no {want} image in the index")))
}

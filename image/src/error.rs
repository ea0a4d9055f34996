//! One error type for the image store; every variant says what went wrong in
//! words a user can act on.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("invalid digest {0:?}: only sha256:<64 lowercase hex> is accepted")]
    InvalidDigest(String),
    #[error("invalid reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("image not known: {0}")]
    NotFound(String),
    #[error("{0:?} matches more than one image; use more of the ID or a name")]
    Ambiguous(String),
    #[error("unsafe layer entry {path:?}: {reason}")]
    UnsafeEntry { path: String, reason: String },
    #[error("layer exceeds the unpack limit of {limit} {unit}")]
    LayerTooLarge { limit: u64, unit: &'static str },
    #[error("registry {reference}: {source}")]
    Registry {
        reference: String,
        #[source]
        source: Box<oci_client::errors::OciDistributionError>,
    },
    #[error("{context}: invalid JSON: {source}")]
    Json {
        context: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("malformed {what}: {reason}")]
    Malformed { what: String, reason: String },
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("{tool} failed ({status}): {stderr}")]
    Tool {
        tool: String,
        status: String,
        stderr: String,
    },
    #[error("{0} requires root")]
    NeedsRoot(String),
    #[error("image {reference} has several names ({names}); remove them one by one or use force")]
    InUseByNames { reference: String, names: String },
    #[error("credentials refused by {registry}")]
    LoginRefused { registry: String },
    #[error("store at {path} is busy: {reason}")]
    Busy { path: PathBuf, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds "what we were doing" to an io::Error.
pub(crate) trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: context(),
            source,
        })
    }
}

impl<T> IoContext<T> for rustix::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::Io {
            context: context(),
            source: e.into(),
        })
    }
}

pub(crate) fn json<T>(r: serde_json::Result<T>, context: impl FnOnce() -> String) -> Result<T> {
    r.map_err(|source| Error::Json {
        context: context(),
        source,
    })
}

pub(crate) fn malformed(what: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Malformed {
        what: what.into(),
        reason: reason.into(),
    }
}

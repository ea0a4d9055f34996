//! Errors of the host runtime.

use std::path::PathBuf;

/// What the host runtime can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: corrupt state file: {source}")]
    CorruptState {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "invalid container name {0:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 128 characters"
    )]
    InvalidName(String),
    #[error("the container name {name:?} is already in use by container {id}")]
    NameInUse { name: String, id: String },
    /// Bad user input (a flag value, a volume path, an unknown user): the
    /// front-ends report it as docker does, exit 125.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Runner(#[from] isola_container::Error),
    #[error(transparent)]
    Image(#[from] isola_image::Error),
    /// The container's program does not exist (docker exits 127).
    #[error("{0}")]
    CommandNotFound(String),
    /// The container's program is not executable (docker exits 126).
    #[error("{0}")]
    NotExecutable(String),
    /// The supervisor could not create the container (its report).
    #[error("{0}")]
    Start(String),
    /// The container's VM or its guest agent failed.
    #[error("{0}")]
    Vm(String),
    #[error("no such container: {0}")]
    NotFound(String),
    #[error("{0:?} matches more than one container; give more of the ID")]
    Ambiguous(String),
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

impl Error {
    /// The status docker's CLI exits with for this failure.
    pub fn docker_exit_code(&self) -> i32 {
        match self {
            Error::CommandNotFound(_) => 127,
            Error::NotExecutable(_) => 126,
            _ => 125,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

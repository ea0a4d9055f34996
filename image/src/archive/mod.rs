//! `isola load` / `isola save`: docker-archive (`docker save`) and
//! oci-archive (a tarred OCI layout) tarballs, read from a file or a pipe.

pub mod docker;
mod load;
pub mod oci;
mod save;
mod staging;

pub use load::LoadOptions;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    DockerArchive,
    OciArchive,
}

impl std::str::FromStr for Format {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Format> {
        match s {
            "docker-archive" | "docker" => Ok(Format::DockerArchive),
            "oci-archive" | "oci" => Ok(Format::OciArchive),
            other => Err(crate::Error::Unsupported(format!(
                "archive format {other:?} (docker-archive or oci-archive)"
            ))),
        }
    }
}

//! Image names as users type them, normalized the way docker does
//! (`busybox` is `docker.io/library/busybox:latest`), so one image has one
//! spelling in the store.

use oci_client::Reference;

use crate::error::Error;

pub fn parse(reference: &str) -> Result<Reference, Error> {
    reference
        .parse::<Reference>()
        .map_err(|e| Error::InvalidReference {
            reference: reference.to_string(),
            reason: e.to_string(),
        })
}

/// The full `registry/repository:tag` name stored in the OCI layout's
/// `org.opencontainers.image.ref.name`; None for digest-only references.
pub fn tag_name(reference: &Reference) -> Option<String> {
    if reference.digest().is_some() && reference.tag().is_none() {
        return None;
    }
    Some(format!(
        "{}/{}:{}",
        reference.registry(),
        reference.repository(),
        reference.tag().unwrap_or("latest")
    ))
}

/// Normalizes a user-typed name to the stored spelling.
pub fn normalize(reference: &str) -> Result<String, Error> {
    let r = parse(reference)?;
    tag_name(&r).ok_or_else(|| Error::InvalidReference {
        reference: reference.to_string(),
        reason: "a tag name is needed here, not a digest".into(),
    })
}

/// Splits a stored name into (repository, tag) for listing.
pub fn split_name(name: &str) -> (&str, &str) {
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[slash..].rfind(':') {
        Some(i) => (&name[..slash + i], &name[slash + i + 1..]),
        None => (name, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(
            normalize("busybox").unwrap(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            normalize("127.0.0.1:5000/x/y:1").unwrap(),
            "127.0.0.1:5000/x/y:1"
        );
        assert_eq!(
            split_name("127.0.0.1:5000/x/y:1"),
            ("127.0.0.1:5000/x/y", "1")
        );
        assert!(normalize("has space").is_err());
    }
}

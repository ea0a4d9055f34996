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

/// docker's normalization of a plain `[registry/]repo[:tag]` without the
/// distribution grammar's regex, whose first use costs tens of
/// milliseconds and megabytes (too much for every `isola run`). Returns
/// None for anything unusual (digests, upper case, odd characters), which
/// then takes the full parser.
pub fn quick_normalize(reference: &str) -> Option<String> {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/:".contains(c);
    if reference.is_empty() || !reference.chars().all(ok) || reference.contains("//") {
        return None;
    }
    let (path, tag) = match reference.rfind(':') {
        Some(i) if !reference[i..].contains('/') => (&reference[..i], &reference[i + 1..]),
        _ => (reference, "latest"),
    };
    if path.is_empty() || tag.is_empty() || tag.contains(':') || path.contains(':') {
        return None;
    }
    let first = path.split('/').next().unwrap_or_default();
    let has_registry = path.contains('/') && (first.contains('.') || first == "localhost");
    let full = if has_registry {
        path.to_string()
    } else if path.contains('/') {
        format!("docker.io/{path}")
    } else {
        format!("docker.io/library/{path}")
    };
    Some(format!("{full}:{tag}"))
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
    fn the_quick_path_agrees_with_the_parser() {
        for r in [
            "busybox",
            "busybox:1.36",
            "library/busybox",
            "user/app:v2",
            "localhost/img",
            "registry.example.com/team/app:latest",
            "quay.io/a",
        ] {
            assert_eq!(quick_normalize(r), normalize(r).ok(), "{r}");
        }
        // A registry port is left to the parser.
        assert_eq!(quick_normalize("127.0.0.1:5000/x/y:t"), None);
        for odd in ["", "Busybox", "a@sha256:00", "a:b:c", "a//b", ":tag"] {
            assert_eq!(quick_normalize(odd), None, "{odd}");
        }
    }

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

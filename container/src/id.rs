//! Container IDs name a directory under the state root, so they must never
//! be able to name anything else (`/`, `..`, empty).

use crate::Error;

/// The longest ID we accept; keeps paths (and unix socket names) bounded.
const MAX_LEN: usize = 1024;

/// Accepts the IDs runc accepts: letters, digits, `_ + - .`, not `.`/`..`.
pub fn validate(id: &str) -> Result<(), Error> {
    let invalid = |reason| Error::InvalidId {
        id: id.to_owned(),
        reason,
    };
    if id.is_empty() {
        return Err(invalid("it is empty"));
    }
    if id.len() > MAX_LEN {
        return Err(invalid("it is longer than 1024 bytes"));
    }
    if id == "." || id == ".." {
        return Err(invalid("it names a directory, not a container"));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'))
    {
        return Err(invalid("only letters, digits and _ + - . are allowed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn accepts_runc_style_ids() {
        for id in ["a", "abc-123", "x_y+z.w", "0123456789abcdef"] {
            assert!(validate(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn rejects_paths_and_empties() {
        let long = "a".repeat(1025);
        for id in [
            "",
            ".",
            "..",
            "a/b",
            "../x",
            "/abs",
            "a b",
            "é",
            "a\0b",
            long.as_str(),
        ] {
            assert!(validate(id).is_err(), "{id:?}");
        }
    }
}

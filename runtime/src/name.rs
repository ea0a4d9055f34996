//! Container names: docker's rules, and a generated name when none is given.

use crate::error::{Error, Result};

/// Checks a user-given name against docker's pattern
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]*`; names become file names in the store, so
/// nothing else (no `/`, no `..` start) may pass.
pub fn validate(name: &str) -> Result<()> {
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric());
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if first_ok && rest_ok && name.len() <= 128 {
        Ok(())
    } else {
        Err(Error::InvalidName(name.to_string()))
    }
}

const ADJECTIVES: &[&str] = &[
    "brave", "calm", "eager", "fond", "keen", "lucid", "nimble", "quiet", "sharp", "steady",
    "swift", "tidy", "vivid", "wise", "bold", "gentle",
];
const NOUNS: &[&str] = &[
    "otter", "heron", "lynx", "falcon", "badger", "marten", "ibex", "crane", "puffin", "stoat",
    "wren", "osprey", "tapir", "kestrel", "gecko", "bison",
];

/// A readable name drawn from the container ID's bits (docker draws at
/// random; tying it to the ID keeps it stable across a retry). Callers
/// append a suffix if it is taken.
pub fn generate(id_hex: &str) -> String {
    let bits = u64::from_str_radix(id_hex.get(..16).unwrap_or("0"), 16).unwrap_or(0);
    let adjective = ADJECTIVES[(bits % ADJECTIVES.len() as u64) as usize];
    let noun = NOUNS[((bits >> 8) % NOUNS.len() as u64) as usize];
    format!("{adjective}_{noun}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_docker_names_and_rejects_paths() {
        for ok in ["web", "a", "my-app_1.2", "X9"] {
            validate(ok).unwrap();
        }
        for bad in [
            "",
            "-x",
            ".hidden",
            "..",
            "a/b",
            "a b",
            "é",
            &"a".repeat(129),
        ] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn generated_names_are_valid() {
        let id = "0123456789abcdef".repeat(4);
        let name = generate(&id);
        validate(&name).unwrap();
        assert_eq!(name, generate(&id));
    }
}

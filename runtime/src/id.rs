//! Container IDs as docker spells them: 64 lowercase hex digits, shown as
//! their first 12, and accepted by any unique prefix.

use std::fmt;
use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A full container ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContainerId(String);

impl ContainerId {
    /// A fresh random ID from the kernel's CSPRNG.
    pub fn generate() -> Result<ContainerId> {
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(Error::io("/dev/urandom"))?;
        Ok(ContainerId(
            bytes.iter().map(|b| format!("{b:02x}")).collect(),
        ))
    }

    /// Whether `s` is a full ID (64 lowercase hex digits).
    pub fn is_full(s: &str) -> bool {
        s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }

    /// Whether `s` could be the start of an ID.
    pub fn is_prefix(s: &str) -> bool {
        !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 12-digit form `ps` shows.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl TryFrom<String> for ContainerId {
    type Error = Error;
    fn try_from(s: String) -> Result<ContainerId> {
        if ContainerId::is_full(&s) {
            Ok(ContainerId(s))
        } else {
            Err(Error::NotFound(s))
        }
    }
}

impl From<ContainerId> for String {
    fn from(id: ContainerId) -> String {
        id.0
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_full_and_distinct() {
        let a = ContainerId::generate().unwrap();
        let b = ContainerId::generate().unwrap();
        assert!(ContainerId::is_full(a.as_str()));
        assert_ne!(a, b);
        assert_eq!(a.short().len(), 12);
    }

    #[test]
    fn rejects_non_ids() {
        for s in ["", "abc", "../../etc", &"g".repeat(64), &"A".repeat(64)] {
            assert!(ContainerId::try_from(s.to_string()).is_err(), "{s}");
        }
        assert!(!ContainerId::is_prefix("ab/"));
        assert!(ContainerId::is_prefix("ab12"));
    }
}

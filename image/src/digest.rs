//! sha256 digests, and readers/writers that compute one while data passes.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::error::Error;

/// A `sha256:<hex>` content address. Other algorithms are refused rather than
/// trusted unverified.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    pub fn from_hex(hex: &str) -> Result<Self, Error> {
        if hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Digest {
                hex: hex.to_string(),
            })
        } else {
            Err(Error::InvalidDigest(hex.to_string()))
        }
    }

    pub fn of_bytes(data: &[u8]) -> Self {
        Digest {
            hex: hex::encode(Sha256::digest(data)),
        }
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The 12-character short form docker prints as an image ID.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.split_once(':') {
            Some(("sha256", hex)) => Digest::from_hex(hex),
            _ => Err(Error::InvalidDigest(s.to_string())),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Incremental sha256 with a byte count.
#[derive(Default, Clone)]
pub struct Hasher {
    sha: Sha256,
    len: u64,
}

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        self.sha.update(data);
        self.len += data.len() as u64;
    }
    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn finish(self) -> Digest {
        Digest {
            hex: hex::encode(self.sha.finalize()),
        }
    }
}

/// Hashes everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::default(),
        }
    }
    /// Reads the rest of the stream (trailing bytes count too) and returns
    /// the digest and length of everything that passed.
    pub fn finish(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        let len = self.hasher.len();
        Ok((self.hasher.finish(), len))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Hashes everything written through it.
pub struct HashingWriter<W> {
    pub inner: W,
    pub hasher: Hasher,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Hasher::default(),
        }
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let d: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            .parse()
            .unwrap();
        assert_eq!(d, Digest::of_bytes(b""));
        assert!("sha512:abcd".parse::<Digest>().is_err());
        assert!("sha256:../../etc/passwd".parse::<Digest>().is_err());
        assert!(
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
                .parse::<Digest>()
                .is_err()
        );
    }
}

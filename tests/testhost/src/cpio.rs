//! A minimal writer for the "newc" cpio format, the one the Linux kernel unpacks as an
//! initramfs (see the kernel's `Documentation/driver-api/early-userspace/buffer-format.rst`).
//!
//! Every entry gets mtime 0 and uid/gid 0, so the same inputs give the same bytes.

use std::io::{self, Write};

const MAGIC: &[u8; 6] = b"070701";
const TRAILER: &str = "TRAILER!!!";

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// Streams cpio entries into `W`; call [`CpioWriter::finish`] to write the trailer.
pub struct CpioWriter<W: Write> {
    out: W,
    written: u64,
    next_ino: u32,
}

struct Header<'a> {
    name: &'a str,
    mode: u32,
    nlink: u32,
    size: u32,
    rdev: (u32, u32),
}

impl<W: Write> CpioWriter<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            written: 0,
            next_ino: 1,
        }
    }

    /// A directory; `path` is relative to the archive root ("bin", "dev/pts").
    pub fn dir(&mut self, path: &str, perm: u32) -> io::Result<()> {
        self.entry(
            Header {
                name: path,
                mode: S_IFDIR | (perm & 0o7777),
                nlink: 2,
                size: 0,
                rdev: (0, 0),
            },
            &[],
        )
    }

    /// A regular file with the given contents.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        let size = u32::try_from(data.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{path}: {} bytes is too large for cpio", data.len()),
            )
        })?;
        self.entry(
            Header {
                name: path,
                mode: S_IFREG | (perm & 0o7777),
                nlink: 1,
                size,
                rdev: (0, 0),
            },
            data,
        )
    }

    /// A symbolic link at `path` pointing to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        let size = u32::try_from(target.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "symlink target too long"))?;
        self.entry(
            Header {
                name: path,
                mode: S_IFLNK | 0o777,
                nlink: 1,
                size,
                rdev: (0, 0),
            },
            target.as_bytes(),
        )
    }

    /// A character device node.
    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(
            Header {
                name: path,
                mode: S_IFCHR | (perm & 0o7777),
                nlink: 1,
                size: 0,
                rdev: (major, minor),
            },
            &[],
        )
    }

    /// Writes the trailer and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.entry(
            Header {
                name: TRAILER,
                mode: 0,
                nlink: 1,
                size: 0,
                rdev: (0, 0),
            },
            &[],
        )?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn entry(&mut self, h: Header<'_>, data: &[u8]) -> io::Result<()> {
        if h.name.is_empty() || h.name.starts_with('/') || h.name.as_bytes().contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad cpio entry name {:?}", h.name),
            ));
        }
        let ino = if h.name == TRAILER { 0 } else { self.next_ino };
        self.next_ino += 1;
        let namesize = h.name.len() + 1;
        let fields: [u32; 13] = [
            ino,
            h.mode,
            0, // uid
            0, // gid
            h.nlink,
            0, // mtime
            h.size,
            0, // devmajor
            0, // devminor
            h.rdev.0,
            h.rdev.1,
            u32::try_from(namesize)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name too long"))?,
            0, // check
        ];
        let mut header = Vec::with_capacity(110 + namesize + 3);
        header.extend_from_slice(MAGIC);
        for field in fields {
            header.extend_from_slice(format!("{field:08x}").as_bytes());
        }
        header.extend_from_slice(h.name.as_bytes());
        header.push(0);
        self.write_padded(&header)?;
        self.write_padded(data)
    }

    /// Writes `bytes` and pads the stream to the next multiple of 4.
    fn write_padded(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        let pad = (4 - (self.written % 4) as usize) % 4;
        self.out.write_all(&[0u8; 3][..pad])?;
        self.written += pad as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One parsed entry: (name, mode, rdev, data).
    type Entry = (String, u32, (u32, u32), Vec<u8>);

    /// Parses the archive back, trailer included.
    fn parse(mut buf: &[u8]) -> Vec<Entry> {
        let total = buf.len();
        let mut out = Vec::new();
        loop {
            assert_eq!(&buf[..6], MAGIC);
            let field = |i: usize| {
                let s = std::str::from_utf8(&buf[6 + i * 8..6 + (i + 1) * 8]).unwrap();
                u32::from_str_radix(s, 16).unwrap()
            };
            let (mode, size, rdev) = (field(1), field(6) as usize, (field(9), field(10)));
            let namesize = field(11) as usize;
            let name = std::str::from_utf8(&buf[110..110 + namesize - 1])
                .unwrap()
                .to_string();
            assert_eq!(buf[110 + namesize - 1], 0);
            let data_start = (110 + namesize).next_multiple_of(4);
            let data = buf[data_start..data_start + size].to_vec();
            let next = (data_start + size).next_multiple_of(4);
            buf = &buf[next..];
            let done = name == TRAILER;
            out.push((name, mode, rdev, data));
            if done {
                break;
            }
        }
        assert!(buf.is_empty(), "bytes after trailer");
        assert_eq!(total % 4, 0);
        out
    }

    #[test]
    fn round_trips_every_entry_kind() {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("bin", 0o755).unwrap();
        w.file("bin/x", 0o755, b"hello").unwrap();
        w.file("empty", 0o644, b"").unwrap();
        w.symlink("bin/sh", "x").unwrap();
        w.char_dev("console", 0o600, 5, 1).unwrap();
        let bytes = w.finish().unwrap();
        let entries = parse(&bytes);
        let names: Vec<_> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            ["bin", "bin/x", "empty", "bin/sh", "console", TRAILER]
        );
        assert_eq!(entries[0].1, S_IFDIR | 0o755);
        assert_eq!(entries[1].3, b"hello");
        assert_eq!(entries[3].1, S_IFLNK | 0o777);
        assert_eq!(entries[3].3, b"x");
        assert_eq!(entries[4].1, S_IFCHR | 0o600);
        assert_eq!(entries[4].2, (5, 1));
    }

    #[test]
    fn is_reproducible() {
        let build = || {
            let mut w = CpioWriter::new(Vec::new());
            w.file("a", 0o644, b"abc").unwrap();
            w.finish().unwrap()
        };
        assert_eq!(build(), build());
    }

    #[test]
    fn rejects_bad_names() {
        let mut w = CpioWriter::new(Vec::new());
        assert!(w.file("/abs", 0o644, b"").is_err());
        assert!(w.file("", 0o644, b"").is_err());
        assert!(w.file("a\0b", 0o644, b"").is_err());
    }
}

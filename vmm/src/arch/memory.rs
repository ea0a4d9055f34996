//! Guest RAM: one region below the MMIO hole, one above 4 GiB if needed.

use std::fs::File;
use std::os::fd::FromRawFd;
use std::sync::Arc;

use vm_memory::{FileOffset, GuestAddress, GuestMemoryMmap};

use super::layout::{MMIO_HOLE_END, MMIO_HOLE_START};

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("guest memory of {0} MiB is too small or too large")]
    BadSize(u64),
    #[error("cannot map guest memory: {0}")]
    Mmap(#[from] vm_memory::mmap::FromRangesError),
    #[error("cannot create shared guest memory (memfd): {0}")]
    Memfd(std::io::Error),
}

/// How guest RAM is backed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// Private anonymous memory: the default, and the cheapest.
    Anonymous,
    /// A memfd mapped shared, so that a vhost-user backend (virtiofsd) can
    /// map the same pages from its own process.
    SharedMemfd,
}

/// RAM ranges (start, length) for `mem_bytes` of guest memory.
pub fn ram_ranges(mem_bytes: u64) -> Vec<(GuestAddress, usize)> {
    if mem_bytes <= MMIO_HOLE_START {
        vec![(GuestAddress(0), mem_bytes as usize)]
    } else {
        vec![
            (GuestAddress(0), MMIO_HOLE_START as usize),
            (
                GuestAddress(MMIO_HOLE_END),
                (mem_bytes - MMIO_HOLE_START) as usize,
            ),
        ]
    }
}

pub fn create_guest_memory(mem_mib: u64, backing: Backing) -> Result<GuestMemoryMmap, MemoryError> {
    let bytes = mem_mib
        .checked_mul(1 << 20)
        .filter(|b| *b >= 16 << 20 && *b <= 1 << 40)
        .ok_or(MemoryError::BadSize(mem_mib))?;
    let ranges = ram_ranges(bytes);
    match backing {
        Backing::Anonymous => Ok(GuestMemoryMmap::from_ranges(&ranges)?),
        Backing::SharedMemfd => {
            let file = Arc::new(memfd(bytes)?);
            let mut offset = 0u64;
            let mut with_files = Vec::new();
            for (start, len) in ranges {
                with_files.push((start, len, Some(FileOffset::from_arc(file.clone(), offset))));
                offset += len as u64;
            }
            Ok(GuestMemoryMmap::from_ranges_with_files(with_files)?)
        }
    }
}

/// An anonymous memfd of `bytes` for guest RAM.
fn memfd(bytes: u64) -> Result<File, MemoryError> {
    // SAFETY: the name is a NUL-terminated literal; the call has no other
    // pointer arguments and returns a new fd or -1.
    let fd = unsafe { libc::memfd_create(c"isola-guest-ram".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(MemoryError::Memfd(std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just created above and is owned by nothing else.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(bytes).map_err(MemoryError::Memfd)?;
    Ok(file)
}

/// Highest address + 1 of RAM below the MMIO hole.
pub fn low_ram_end(mem_bytes: u64) -> u64 {
    mem_bytes.min(MMIO_HOLE_START)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_vm_has_one_range_large_vm_skips_the_hole() {
        assert_eq!(ram_ranges(512 << 20).len(), 1);
        let r = ram_ranges(4 << 30);
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].0, GuestAddress(1 << 32));
        assert_eq!(r[0].1 as u64 + r[1].1 as u64, 4 << 30);
    }

    #[test]
    fn rejects_absurd_sizes() {
        assert!(create_guest_memory(1, Backing::Anonymous).is_err());
        assert!(create_guest_memory(u64::MAX, Backing::SharedMemfd).is_err());
    }

    #[test]
    fn shared_memory_has_a_file_behind_every_region() {
        use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
        let mem = create_guest_memory(4096, Backing::SharedMemfd).unwrap();
        let offsets: Vec<u64> = mem
            .iter()
            .map(|r| r.file_offset().expect("file-backed").start())
            .collect();
        assert_eq!(offsets, vec![0, MMIO_HOLE_START]);
    }
}

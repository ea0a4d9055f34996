//! Guest RAM: one region below the MMIO hole, one above 4 GiB if needed.

use std::fs::File;
use std::os::fd::FromRawFd;
use std::sync::Arc;

use vm_memory::mmap::MmapRegionError;
use vm_memory::{FileOffset, GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};

use super::layout::{MMIO_HOLE_END, MMIO_HOLE_START};

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("guest memory of {0} MiB is too small or too large")]
    BadSize(u64),
    #[error("cannot map guest memory: {0}")]
    Mmap(#[from] vm_memory::mmap::FromRangesError),
    #[error("cannot create shared guest memory (memfd): {0}")]
    Memfd(std::io::Error),
    #[error("cannot map guest memory: {0}")]
    Region(#[from] MmapRegionError),
    #[error("cannot assemble guest memory: {0}")]
    Collection(String),
}

/// A transparent huge page, and the alignment KVM needs to map one.
const HUGE_PAGE: usize = 2 << 20;

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
        Backing::Anonymous => {
            let mut regions = Vec::new();
            for (start, len) in ranges {
                let region = GuestRegionMmap::new(anonymous_ram(len)?, start)
                    .ok_or_else(|| MemoryError::Collection(format!("region at {start:?}")))?;
                regions.push(region);
            }
            GuestMemoryMmap::from_regions(regions)
                .map_err(|e| MemoryError::Collection(e.to_string()))
        }
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

/// Private anonymous RAM placed on a 2 MiB boundary and marked for
/// transparent huge pages.
///
/// KVM maps guest memory with 2 MiB pages only where the host address and
/// the guest address agree modulo 2 MiB (otherwise it falls back to 4 KiB
/// for the whole slot). Every guest page first touched then costs one
/// nested-paging fault instead of one per 2 MiB: hundreds more exits at boot,
/// each very dear when KVM itself is nested (the test host). Our guest
/// ranges start on 2 MiB boundaries, so the host side must too.
///
/// vm-memory maps wherever the kernel puts it and owns the mapping (unmaps
/// it when the last region goes), which we keep. To steer the kernel, a
/// 2 MiB-larger reservation is made first and only its aligned middle is
/// released just before vm-memory's mmap: that middle is then the gap the
/// kernel's top-down search finds. Another thread's mmap can take the gap
/// first; the result is checked, and an unaligned region only costs speed.
fn anonymous_ram(len: usize) -> Result<MmapRegion, MemoryError> {
    let hole = AlignedHole::carve(len);
    let region = MmapRegion::new(len)?;
    let aligned = region.as_ptr() as usize % HUGE_PAGE == 0;
    drop(hole);
    if !aligned {
        tracing::debug!("guest RAM landed off a 2 MiB boundary: 4 KiB pages in KVM");
    }
    // SAFETY: the range is the mapping `region` owns; MADV_HUGEPAGE only
    // changes how the kernel backs it, never its contents.
    let rc = unsafe { libc::madvise(region.as_ptr().cast(), len, libc::MADV_HUGEPAGE) };
    if rc != 0 {
        // THP compiled out or disabled: still correct, only slower.
        tracing::debug!(
            "madvise(MADV_HUGEPAGE) on guest RAM: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(region)
}

/// The guard mappings on either side of a released, 2 MiB-aligned gap.
struct AlignedHole {
    guards: [(usize, usize); 2],
}

impl AlignedHole {
    /// Reserve `len` + 2 MiB of address space, keep the unaligned head and
    /// tail reserved, and release the aligned `len` in between. `None` if
    /// the reservation fails (then vm-memory maps wherever it can).
    fn carve(len: usize) -> Option<Self> {
        let total = len.checked_add(HUGE_PAGE)?;
        // SAFETY: a fresh PROT_NONE anonymous mapping at an address the
        // kernel chooses; it overlaps nothing of ours.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        let base = base as usize;
        let start = base.next_multiple_of(HUGE_PAGE);
        let hole = Self {
            guards: [
                (base, start - base),
                (start + len, base + total - start - len),
            ],
        };
        // SAFETY: [start, start + len) lies inside the reservation made
        // above, which nothing else uses.
        unsafe { libc::munmap(start as *mut libc::c_void, len) };
        Some(hole)
    }
}

impl Drop for AlignedHole {
    fn drop(&mut self) {
        for (addr, len) in self.guards {
            if len > 0 {
                // SAFETY: each guard is a remainder of our own PROT_NONE
                // reservation, never handed to anyone.
                unsafe { libc::munmap(addr as *mut libc::c_void, len) };
            }
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
    fn private_ram_sits_on_huge_page_boundaries() {
        use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
        let mem = create_guest_memory(64, Backing::Anonymous).unwrap();
        let region = mem.iter().next().unwrap();
        assert_eq!(region.as_ptr() as usize % HUGE_PAGE, 0);
        assert_eq!(region.len(), 64 << 20);
        // The guards are gone again: a second VM's memory is as well placed.
        let again = create_guest_memory(64, Backing::Anonymous).unwrap();
        assert_eq!(
            again.iter().next().unwrap().as_ptr() as usize % HUGE_PAGE,
            0
        );
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

//! Guest RAM: one region below the MMIO hole, one above 4 GiB if needed.

use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::layout::{MMIO_HOLE_END, MMIO_HOLE_START};

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("guest memory of {0} MiB is too small or too large")]
    BadSize(u64),
    #[error("cannot map guest memory: {0}")]
    Mmap(#[from] vm_memory::mmap::FromRangesError),
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

pub fn create_guest_memory(mem_mib: u64) -> Result<GuestMemoryMmap, MemoryError> {
    let bytes = mem_mib
        .checked_mul(1 << 20)
        .filter(|b| *b >= 16 << 20 && *b <= 1 << 40)
        .ok_or(MemoryError::BadSize(mem_mib))?;
    Ok(GuestMemoryMmap::from_ranges(&ram_ranges(bytes))?)
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
        assert!(create_guest_memory(1).is_err());
        assert!(create_guest_memory(u64::MAX).is_err());
    }
}

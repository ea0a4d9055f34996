//! Guest RAM in a sparse file: only pages the guest touched and filled are
//! written, so a 512 MiB guest that booted in 60 MiB leaves about that
//! much on disk, and a restore reads only that much back.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use vm_memory::{Address, Bytes, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use super::{io_err, SnapshotError};

const PAGE: usize = 4096;

fn total_len(mem: &GuestMemoryMmap) -> u64 {
    mem.iter().map(|r| r.len()).sum()
}

/// Pages of `[ptr, ptr + len)` that hold anything: in memory or swapped
/// out, from this process's page map (mincore would miss swapped pages,
/// and the restore would read them as zeros). A page never touched is
/// neither, and reads as zeros anyway.
fn backed(ptr: *mut u8, len: usize) -> Result<Vec<bool>, SnapshotError> {
    use std::os::unix::fs::FileExt;
    const PRESENT: u64 = 1 << 63;
    const SWAPPED: u64 = 1 << 62;
    let pages = len.div_ceil(PAGE);
    let map = File::open("/proc/self/pagemap").map_err(io_err("opening /proc/self/pagemap"))?;
    let mut raw = vec![0u8; pages * 8];
    map.read_exact_at(&mut raw, (ptr as u64 / PAGE as u64) * 8)
        .map_err(io_err("reading /proc/self/pagemap"))?;
    Ok(raw
        .chunks_exact(8)
        .map(|e| {
            let v = u64::from_le_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]]);
            v & (PRESENT | SWAPPED) != 0
        })
        .collect())
}

/// Writes guest RAM to `path`, regions one after another. The caller has
/// stopped the vCPUs and the device workers: nothing writes to guest
/// memory while it is read here.
pub fn save(mem: &GuestMemoryMmap, path: &Path) -> Result<u64, SnapshotError> {
    let mut file = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(format!("creating {}", path.display())))?;
    file.set_len(total_len(mem))
        .map_err(io_err("sizing the memory file"))?;
    let mut file_base = 0u64;
    let mut written = 0u64;
    for region in mem.iter() {
        let len = region.len() as usize;
        let ptr = region.as_ptr();
        let flags = backed(ptr, len)?;
        // SAFETY: the mapping is live for `mem`'s lifetime and nothing
        // writes to it meanwhile (vCPUs and device workers are stopped).
        let bytes = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
        let mut page = 0;
        while page < flags.len() {
            let filled =
                |p: usize| flags[p] && bytes[p * PAGE..(p + 1) * PAGE].iter().any(|&b| b != 0);
            if !filled(page) {
                page += 1;
                continue;
            }
            let start = page;
            while page < flags.len() && filled(page) {
                page += 1;
            }
            let off = (start * PAGE) as u64;
            let n = (page - start) * PAGE;
            file.seek(SeekFrom::Start(file_base + off))
                .map_err(io_err("seeking in the memory file"))?;
            let addr = region
                .start_addr()
                .checked_add(off)
                .ok_or_else(|| SnapshotError::Mismatch("region past the address space".into()))?;
            mem.write_all_volatile_to(addr, &mut file, n)?;
            written += n as u64;
        }
        file_base += len as u64;
    }
    file.sync_all().map_err(io_err("syncing the memory file"))?;
    Ok(written)
}

/// The next stretch of data at or after `pos` and before `end`, from the
/// file system's record of holes (SEEK_DATA/SEEK_HOLE); a file system
/// without one reports everything as data, which is only slower.
fn next_data(file: &File, pos: u64, end: u64) -> Result<Option<(u64, u64)>, SnapshotError> {
    let fd = file.as_raw_fd();
    // SAFETY: lseek on a descriptor we own only moves its offset.
    let start = unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_DATA) };
    if start < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENXIO) => Ok(None),
            _ => Err(io_err("SEEK_DATA in the memory file")(e)),
        };
    }
    let start = start as u64;
    if start >= end {
        return Ok(None);
    }
    // SAFETY: as above.
    let hole = unsafe { libc::lseek(fd, start as libc::off_t, libc::SEEK_HOLE) };
    if hole < 0 {
        return Err(io_err("SEEK_HOLE in the memory file")(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(Some((start, (hole as u64).min(end))))
}

/// Fills fresh guest RAM (all zeros) from `path`; holes stay untouched.
pub fn load(mem: &GuestMemoryMmap, path: &Path) -> Result<u64, SnapshotError> {
    let mut file = File::open(path).map_err(io_err(format!("opening {}", path.display())))?;
    let len = file
        .metadata()
        .map_err(io_err("reading the memory file's size"))?
        .len();
    if len != total_len(mem) {
        return Err(SnapshotError::Mismatch(format!(
            "memory file holds {len} bytes, the VM has {}",
            total_len(mem)
        )));
    }
    let mut file_base = 0u64;
    let mut read = 0u64;
    let mut extents = 0u32;
    for region in mem.iter() {
        let end = file_base + region.len();
        let mut pos = file_base;
        while let Some((start, stop)) = next_data(&file, pos, end)? {
            file.seek(SeekFrom::Start(start))
                .map_err(io_err("seeking in the memory file"))?;
            let addr = region.start_addr().unchecked_add(start - file_base);
            mem.read_exact_volatile_from(addr, &mut file, (stop - start) as usize)?;
            read += stop - start;
            extents += 1;
            pos = stop;
        }
        file_base = end;
    }
    tracing::debug!(extents, bytes = read, "guest RAM read");
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::memory::{create_guest_memory, Backing};
    use vm_memory::GuestAddress;

    #[test]
    fn touched_pages_round_trip_and_untouched_stay_holes() {
        let dir = std::env::temp_dir().join(format!("isola-ram-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("memory");
        let mem = create_guest_memory(16, Backing::Anonymous).unwrap();
        mem.write_slice(b"hello", GuestAddress(0x1000)).unwrap();
        mem.write_slice(&[7u8; 3 * PAGE], GuestAddress(0x40_0000))
            .unwrap();
        // Touched but zero: not worth a byte on disk.
        mem.write_slice(&[0u8; PAGE], GuestAddress(0x80_0000))
            .unwrap();
        let written = save(&mem, &path).unwrap();
        assert_eq!(written, 4 * PAGE as u64);

        let fresh = create_guest_memory(16, Backing::Anonymous).unwrap();
        load(&fresh, &path).unwrap();
        let mut buf = [0u8; 5];
        fresh.read_slice(&mut buf, GuestAddress(0x1000)).unwrap();
        assert_eq!(&buf, b"hello");
        let mut big = vec![0u8; 3 * PAGE];
        fresh.read_slice(&mut big, GuestAddress(0x40_0000)).unwrap();
        assert!(big.iter().all(|&b| b == 7));

        let small = create_guest_memory(32, Backing::Anonymous).unwrap();
        assert!(matches!(
            load(&small, &path),
            Err(SnapshotError::Mismatch(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

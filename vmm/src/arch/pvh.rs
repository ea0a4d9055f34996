//! The PVH start-of-day structure (`hvm_start_info`, version 1): where the
//! command line, the initramfs (as module 0) and the e820 map are.

use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{
    EBDA_START, HIMEM_START, MEMMAP_ADDR, MEMMAP_MAX_ENTRIES, MMIO_HOLE_END, MMIO_HOLE_START,
    MODLIST_ADDR, START_INFO_ADDR,
};

const XEN_HVM_START_MAGIC: u32 = 0x336e_c578;
const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;

pub struct PvhParams {
    pub cmdline_addr: u64,
    pub initramfs: Option<(u64, u64)>,
    pub mem_bytes: u64,
}

/// The e820 map for a guest of `mem_bytes`.
pub fn e820_entries(mem_bytes: u64) -> Vec<(u64, u64, u32)> {
    let mut map = vec![
        (0, EBDA_START, E820_RAM),
        (EBDA_START, HIMEM_START - EBDA_START, E820_RESERVED),
    ];
    let low_end = mem_bytes.min(MMIO_HOLE_START);
    map.push((HIMEM_START, low_end - HIMEM_START, E820_RAM));
    if mem_bytes > MMIO_HOLE_START {
        map.push((MMIO_HOLE_END, mem_bytes - MMIO_HOLE_START, E820_RAM));
    }
    map
}

pub fn write_start_info(
    mem: &GuestMemoryMmap,
    p: &PvhParams,
) -> Result<u64, vm_memory::GuestMemoryError> {
    let map = e820_entries(p.mem_bytes);
    debug_assert!(map.len() <= MEMMAP_MAX_ENTRIES);
    for (i, (addr, size, type_)) in map.iter().enumerate() {
        let entry = hvm_memmap_table_entry {
            addr: *addr,
            size: *size,
            type_: *type_,
            reserved: 0,
        };
        let at = MEMMAP_ADDR + (i * std::mem::size_of::<hvm_memmap_table_entry>()) as u64;
        mem.write_obj(entry, GuestAddress(at))?;
    }
    let mut info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC,
        version: 1,
        cmdline_paddr: p.cmdline_addr,
        memmap_paddr: MEMMAP_ADDR,
        memmap_entries: map.len() as u32,
        ..Default::default()
    };
    if let Some((addr, size)) = p.initramfs {
        mem.write_obj(
            hvm_modlist_entry {
                paddr: addr,
                size,
                ..Default::default()
            },
            GuestAddress(MODLIST_ADDR),
        )?;
        info.nr_modules = 1;
        info.modlist_paddr = MODLIST_ADDR;
    }
    mem.write_obj(info, GuestAddress(START_INFO_ADDR))?;
    Ok(START_INFO_ADDR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e820_covers_ram_and_skips_the_hole() {
        let small = e820_entries(256 << 20);
        let ram: u64 = small.iter().filter(|e| e.2 == E820_RAM).map(|e| e.1).sum();
        assert_eq!(ram, (256 << 20) - (HIMEM_START - EBDA_START));
        let big = e820_entries(5 << 30);
        assert_eq!(big.last().map(|e| e.0), Some(1 << 32));
        assert!(big
            .iter()
            .all(|e| e.0 + e.1 <= MMIO_HOLE_START || e.0 >= MMIO_HOLE_END));
    }
}

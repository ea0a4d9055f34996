//! The Intel MultiProcessor table (spec 1.4).
//!
//! Without ACPI, this is how a Linux guest learns how many CPUs it has, where
//! the IOAPIC is and how ISA interrupts are wired to it. The kernel scans the
//! top KiB of conventional memory for the floating pointer, so the whole
//! table lives at [`MPTABLE_ADDR`].

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{IOAPIC_ADDR, LAPIC_ADDR, MAX_IRQ, MPTABLE_ADDR};

#[derive(Debug, thiserror::Error)]
pub enum MpTableError {
    #[error("{0} vCPUs do not fit in the MP table area")]
    TooManyCpus(u8),
    #[error("writing the MP table: {0}")]
    Memory(#[from] vm_memory::GuestMemoryError),
}

const FLOATING_LEN: usize = 16;
const HEADER_LEN: usize = 44;
const CPU_ENTRY_LEN: usize = 20;
const ENTRY_LEN: usize = 8;
/// [MPTABLE_ADDR, 1 MiB minus the BIOS area) is what we may use: 1 KiB.
const AREA_LEN: usize = 0x400;

const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const CPU_ENABLED: u8 = 1;
const CPU_BOOT: u8 = 2;
const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;

fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |a, b| a.wrapping_add(*b))
        .wrapping_neg()
}

/// Build the table bytes for `cpus` vCPUs, to be placed at `base`.
pub fn build(cpus: u8, base: u32) -> Result<Vec<u8>, MpTableError> {
    let irqs = MAX_IRQ as usize + 1;
    let entries = cpus as usize + 2 + irqs + 2;
    let table_len =
        HEADER_LEN + cpus as usize * CPU_ENTRY_LEN + (entries - cpus as usize) * ENTRY_LEN;
    if cpus == 0 || FLOATING_LEN + table_len > AREA_LEN {
        return Err(MpTableError::TooManyCpus(cpus));
    }
    let ioapic_id = cpus;
    let mut t = Vec::with_capacity(table_len);
    // Config table header; length, count and checksum are filled below.
    t.extend_from_slice(b"PCMP");
    t.extend_from_slice(&(table_len as u16).to_le_bytes());
    t.push(4); // spec revision 1.4
    t.push(0); // checksum
    t.extend_from_slice(b"ISOLA   ");
    t.extend_from_slice(b"MICROVM     ");
    t.extend_from_slice(&0u32.to_le_bytes()); // OEM table
    t.extend_from_slice(&0u16.to_le_bytes());
    t.extend_from_slice(&(entries as u16).to_le_bytes());
    t.extend_from_slice(&LAPIC_ADDR.to_le_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]); // no extended table
    for id in 0..cpus {
        t.push(0);
        t.push(id);
        t.push(APIC_VERSION);
        t.push(CPU_ENABLED | if id == 0 { CPU_BOOT } else { 0 });
        t.extend_from_slice(&0x600u32.to_le_bytes()); // family 6
        t.extend_from_slice(&0x201u32.to_le_bytes()); // FPU + APIC
        t.extend_from_slice(&[0; 8]);
    }
    t.extend_from_slice(&[1, 0]);
    t.extend_from_slice(b"ISA   ");
    t.extend_from_slice(&[2, ioapic_id, IOAPIC_VERSION, 1]);
    t.extend_from_slice(&IOAPIC_ADDR.to_le_bytes());
    for irq in 0..irqs as u8 {
        t.extend_from_slice(&[3, INT_TYPE_INT, 0, 0, 0, irq, ioapic_id, irq]);
    }
    t.extend_from_slice(&[4, INT_TYPE_EXTINT, 0, 0, 0, 0, 0xff, 0]);
    t.extend_from_slice(&[4, INT_TYPE_NMI, 0, 0, 0, 0, 0xff, 1]);
    debug_assert_eq!(t.len(), table_len);
    t[7] = checksum(&t);

    let mut fp = Vec::with_capacity(FLOATING_LEN + table_len);
    fp.extend_from_slice(b"_MP_");
    fp.extend_from_slice(&(base + FLOATING_LEN as u32).to_le_bytes());
    fp.extend_from_slice(&[1, 4, 0, 0, 0, 0, 0, 0]);
    fp[10] = checksum(&fp[..FLOATING_LEN]);
    fp.extend_from_slice(&t);
    Ok(fp)
}

pub fn setup_mptable(mem: &GuestMemoryMmap, cpus: u8) -> Result<(), MpTableError> {
    let bytes = build(cpus, MPTABLE_ADDR as u32)?;
    mem.write_slice(&bytes, GuestAddress(MPTABLE_ADDR))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_hold_and_counts_match() {
        let t = build(4, MPTABLE_ADDR as u32).unwrap();
        assert_eq!(&t[..4], b"_MP_");
        assert_eq!(t[..16].iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        let table = &t[16..];
        assert_eq!(&table[..4], b"PCMP");
        let len = u16::from_le_bytes([table[4], table[5]]) as usize;
        assert_eq!(len, table.len());
        assert_eq!(table.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        let count = u16::from_le_bytes([table[34], table[35]]);
        assert_eq!(count as usize, 4 + 2 + 24 + 2);
    }

    #[test]
    fn too_many_cpus_is_an_error() {
        assert!(build(32, 0).is_ok());
        assert!(build(40, 0).is_err());
        assert!(build(0, 0).is_err());
    }
}

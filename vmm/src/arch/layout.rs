//! Guest physical memory map.
//!
//! ```text
//! 0x0000_0500  GDT used for PVH entry
//! 0x0000_6000  PVH start_info, then module list and e820 map
//! 0x0002_0000  kernel command line
//! 0x0009_fc00  MP table (top of conventional memory, where the kernel scans)
//! 0x0010_0000  high memory start; the kernel loads at its ELF paddr
//! ...          initramfs, placed at the top of low RAM
//! 0xd000_0000  virtio-mmio devices, 4 KiB each (the 32-bit MMIO hole)
//! 0xfec0_0000  IOAPIC; 0xfee0_0000 LAPIC (in-kernel)
//! 4 GiB        RAM above the hole, if the guest has more than fits below
//! ```

pub const GDT_ADDR: u64 = 0x500;
pub const START_INFO_ADDR: u64 = 0x6000;
pub const MODLIST_ADDR: u64 = 0x6040;
pub const MEMMAP_ADDR: u64 = 0x6080;
pub const MEMMAP_MAX_ENTRIES: usize = 8;
pub const CMDLINE_ADDR: u64 = 0x20000;
pub const CMDLINE_MAX: usize = 4096;
pub const MPTABLE_ADDR: u64 = 0x9fc00;
/// End of conventional memory; [MPTABLE_ADDR, 1 MiB) is reserved.
pub const EBDA_START: u64 = 0x9fc00;
pub const HIMEM_START: u64 = 0x10_0000;

pub const MMIO_HOLE_START: u64 = 0xd000_0000;
pub const MMIO_HOLE_END: u64 = 1 << 32;
pub const VIRTIO_MMIO_BASE: u64 = MMIO_HOLE_START;
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// First GSI for virtio devices (0-4 are PIT, keyboard, cascade, COM2, COM1).
pub const VIRTIO_IRQ_BASE: u32 = 5;
/// IOAPIC pins.
pub const MAX_IRQ: u32 = 23;

pub const IOAPIC_ADDR: u32 = 0xfec0_0000;
pub const LAPIC_ADDR: u32 = 0xfee0_0000;

/// Where KVM puts its three-page TSS on Intel (must not overlap RAM or MMIO).
pub const KVM_TSS_ADDR: usize = 0xfffb_d000;

/// Port-I/O map.
pub const SERIAL_PORT: u16 = 0x3f8;
pub const SERIAL_IRQ: u32 = 4;
pub const I8042_DATA_PORT: u16 = 0x60;
pub const I8042_CMD_PORT: u16 = 0x64;
/// Writing any byte here powers the VM off. There is no ACPI, so the guest
/// kernel cannot power off by itself; the agent does it through this port.
pub const POWER_PORT: u16 = 0x510;

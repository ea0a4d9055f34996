//! Building descriptor chains by hand for the devices' malformed-input tests.

use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::desc::RawDescriptor;
use vm_memory::{GuestAddress, GuestMemoryMmap};

pub const MEM_SIZE: u64 = 0x10_0000;
pub const HDR: u64 = 0x1_0000;
pub const DATA: u64 = 0x2_0000;
pub const NEXT: u16 = 1;
pub const WRITE: u16 = 2;

pub fn desc(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
    RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next))
}

/// 1 MiB of zeroed guest memory at address 0.
pub fn guest_memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)])
        .expect("test guest memory")
}

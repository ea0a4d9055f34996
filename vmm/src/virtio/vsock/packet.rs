//! The vsock packet header (virtio 1.2 §5.10.6) and moving packets in and
//! out of descriptor chains.

use std::io::{Read, Write};

use virtio_queue::{Reader, Writer};

pub const HDR_LEN: usize = 44;
/// Largest payload we accept from or send to the guest in one packet.
pub const MAX_PAYLOAD: usize = 64 << 10;

pub const TYPE_STREAM: u16 = 1;

pub const OP_REQUEST: u16 = 1;
pub const OP_RESPONSE: u16 = 2;
pub const OP_RST: u16 = 3;
pub const OP_SHUTDOWN: u16 = 4;
pub const OP_RW: u16 = 5;
pub const OP_CREDIT_UPDATE: u16 = 6;
pub const OP_CREDIT_REQUEST: u16 = 7;

pub const SHUTDOWN_RCV: u32 = 1;
pub const SHUTDOWN_SEND: u32 = 2;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    pub src_cid: u64,
    pub dst_cid: u64,
    pub src_port: u32,
    pub dst_port: u32,
    pub len: u32,
    pub type_: u16,
    pub op: u16,
    pub flags: u32,
    pub buf_alloc: u32,
    pub fwd_cnt: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PacketError {
    #[error("descriptor chain shorter than a vsock header")]
    ShortHeader,
    #[error("payload of {0} bytes exceeds the {MAX_PAYLOAD}-byte limit")]
    Oversized(u32),
    #[error("header claims {claimed} payload bytes, chain holds {available}")]
    Truncated { claimed: u32, available: usize },
    #[error("receive buffer of {0} bytes cannot hold a header")]
    SmallRxBuffer(usize),
    #[error("descriptor chain error: {0}")]
    Chain(String),
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

impl Header {
    pub fn from_bytes(b: &[u8; HDR_LEN]) -> Self {
        Self {
            src_cid: u64_at(b, 0),
            dst_cid: u64_at(b, 8),
            src_port: u32_at(b, 16),
            dst_port: u32_at(b, 20),
            len: u32_at(b, 24),
            type_: u16_at(b, 28),
            op: u16_at(b, 30),
            flags: u32_at(b, 32),
            buf_alloc: u32_at(b, 36),
            fwd_cnt: u32_at(b, 40),
        }
    }

    pub fn to_bytes(&self) -> [u8; HDR_LEN] {
        let mut b = [0u8; HDR_LEN];
        b[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        b[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        b[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        b[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        b[24..28].copy_from_slice(&self.len.to_le_bytes());
        b[28..30].copy_from_slice(&self.type_.to_le_bytes());
        b[30..32].copy_from_slice(&self.op.to_le_bytes());
        b[32..36].copy_from_slice(&self.flags.to_le_bytes());
        b[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        b[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
        b
    }
}

/// Read a guest→host packet: header, then exactly `len` payload bytes (only
/// for RW; other ops carry none).
pub fn read_tx_packet(reader: &mut Reader<'_>) -> Result<(Header, Vec<u8>), PacketError> {
    let mut raw = [0u8; HDR_LEN];
    reader
        .read_exact(&mut raw)
        .map_err(|_| PacketError::ShortHeader)?;
    let hdr = Header::from_bytes(&raw);
    if hdr.op != OP_RW || hdr.len == 0 {
        return Ok((hdr, Vec::new()));
    }
    if hdr.len as usize > MAX_PAYLOAD {
        return Err(PacketError::Oversized(hdr.len));
    }
    let available = reader.available_bytes();
    if (hdr.len as usize) > available {
        return Err(PacketError::Truncated {
            claimed: hdr.len,
            available,
        });
    }
    let mut data = vec![0u8; hdr.len as usize];
    reader
        .read_exact(&mut data)
        .map_err(|e| PacketError::Chain(e.to_string()))?;
    Ok((hdr, data))
}

/// Room for payload in a guest rx buffer, after the header.
pub fn rx_payload_room(writer: &Writer<'_>) -> Result<usize, PacketError> {
    let n = writer.available_bytes();
    if n < HDR_LEN {
        return Err(PacketError::SmallRxBuffer(n));
    }
    Ok((n - HDR_LEN).min(MAX_PAYLOAD))
}

/// Write a host→guest packet into a guest rx buffer; returns bytes written.
pub fn write_rx_packet(
    writer: &mut Writer<'_>,
    hdr: &Header,
    payload: &[u8],
) -> Result<u32, PacketError> {
    debug_assert_eq!(hdr.len as usize, payload.len());
    if writer.available_bytes() < HDR_LEN + payload.len() {
        return Err(PacketError::SmallRxBuffer(writer.available_bytes()));
    }
    writer
        .write_all(&hdr.to_bytes())
        .and_then(|_| writer.write_all(payload))
        .map_err(|e| PacketError::Chain(e.to_string()))?;
    Ok((HDR_LEN + payload.len()) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let h = Header {
            src_cid: 3,
            dst_cid: 2,
            src_port: 1024,
            dst_port: 52,
            len: 7,
            type_: TYPE_STREAM,
            op: OP_RW,
            flags: 3,
            buf_alloc: 1 << 18,
            fwd_cnt: 99,
        };
        assert_eq!(Header::from_bytes(&h.to_bytes()), h);
    }
}

#[cfg(test)]
mod chain_tests {
    //! Malformed tx chains from a hostile guest: rejected, never a panic,
    //! never an allocation sized by the guest's claims.

    use virtio_queue::desc::RawDescriptor;
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    use super::*;
    use crate::virtio::test_chains::{desc, guest_memory, DATA, HDR, MEM_SIZE, NEXT, WRITE};

    fn mem_with_header(op: u16, len: u32) -> GuestMemoryMmap {
        let mem = guest_memory();
        let h = Header {
            src_cid: 3,
            dst_cid: 2,
            src_port: 5000,
            dst_port: 1234,
            len,
            type_: TYPE_STREAM,
            op,
            ..Default::default()
        };
        mem.write_slice(&h.to_bytes(), GuestAddress(HDR)).unwrap();
        mem.write_slice(&[0x5a; 256], GuestAddress(DATA)).unwrap();
        mem
    }

    /// Parse `descs` as one tx chain (`linked`: keep the `next` fields as
    /// given). `None` when the chain does not even make a reader.
    fn parse(
        mem: &GuestMemoryMmap,
        descs: &[RawDescriptor],
        linked: bool,
    ) -> Option<Result<(Header, Vec<u8>), PacketError>> {
        let q = MockSplitQueue::new(mem, 16);
        let chain = if linked {
            q.build_multiple_desc_chains(descs)
        } else {
            q.build_desc_chain(descs)
        }
        .unwrap();
        let mut reader = chain.reader(mem).ok()?;
        Some(read_tx_packet(&mut reader))
    }

    #[test]
    fn a_valid_rw_packet_parses() {
        let mem = mem_with_header(OP_RW, 100);
        let (h, data) = parse(&mem, &[desc(HDR, 44, 0, 0), desc(DATA, 100, 0, 0)], false)
            .unwrap()
            .unwrap();
        assert_eq!((h.op, h.len, h.dst_port), (OP_RW, 100, 1234));
        assert_eq!(data, vec![0x5a; 100]);
    }

    #[test]
    fn addresses_outside_guest_memory() {
        let mem = mem_with_header(OP_RW, 100);
        for (addr, len) in [(0x7000_0000_0000, 44), (MEM_SIZE - 20, 44), (HDR, u32::MAX)] {
            let r = parse(&mem, &[desc(addr, len, 0, 0), desc(DATA, 100, 0, 0)], false);
            assert!(r.is_none(), "header at {addr:#x}+{len:#x} accepted: {r:?}");
        }
        let r = parse(
            &mem,
            &[desc(HDR, 44, 0, 0), desc(MEM_SIZE - 50, 100, 0, 0)],
            false,
        );
        assert!(
            r.is_none(),
            "payload past the end of memory accepted: {r:?}"
        );
    }

    #[test]
    fn oversized_and_truncated_lengths() {
        let mem = mem_with_header(OP_RW, 1 << 30);
        let r = parse(&mem, &[desc(HDR, 44, 0, 0), desc(DATA, 64, 0, 0)], false).unwrap();
        assert_eq!(r, Err(PacketError::Oversized(1 << 30)));
        let mem = mem_with_header(OP_RW, u32::MAX);
        let r = parse(&mem, &[desc(HDR, 44, 0, 0)], false).unwrap();
        assert_eq!(r, Err(PacketError::Oversized(u32::MAX)));
        let mem = mem_with_header(OP_RW, 1000);
        let r = parse(&mem, &[desc(HDR, 44, 0, 0), desc(DATA, 10, 0, 0)], false).unwrap();
        assert_eq!(
            r,
            Err(PacketError::Truncated {
                claimed: 1000,
                available: 10
            })
        );
    }

    #[test]
    fn short_zero_length_and_write_only_headers() {
        let mem = mem_with_header(OP_REQUEST, 0);
        for d in [
            desc(HDR, 10, 0, 0),
            desc(HDR, 0, 0, 0),
            desc(HDR, 44, WRITE, 0),
        ] {
            let r = parse(&mem, &[d], false).unwrap();
            assert_eq!(r, Err(PacketError::ShortHeader));
        }
    }

    #[test]
    fn looping_descriptors_are_bounded() {
        let mem = mem_with_header(OP_RW, 500);
        // The header descriptor names itself: the walk stops at the queue size.
        let r = parse(&mem, &[desc(HDR, 44, NEXT, 0)], true).unwrap();
        if let Ok((_, data)) = r {
            assert!(data.len() <= 16 * HDR_LEN);
        }
        // Two descriptors pointing at each other.
        let r = parse(
            &mem,
            &[desc(HDR, 44, NEXT, 1), desc(DATA, 100, NEXT, 0)],
            true,
        )
        .unwrap();
        if let Ok((_, data)) = r {
            assert_eq!(data.len(), 500);
        }
    }

    #[test]
    fn unusable_rx_buffers_are_refused() {
        let mem = mem_with_header(OP_RW, 0);
        let q = MockSplitQueue::new(&mem, 16);
        // Too small for a header.
        let chain = q.build_desc_chain(&[desc(DATA, 20, WRITE, 0)]).unwrap();
        let w = chain.writer(&mem).unwrap();
        assert_eq!(rx_payload_room(&w), Err(PacketError::SmallRxBuffer(20)));
        // Device-readable only: nothing to write into.
        let chain = q.build_desc_chain(&[desc(DATA, 4096, 0, 0)]).unwrap();
        let w = chain.writer(&mem).unwrap();
        assert_eq!(rx_payload_room(&w), Err(PacketError::SmallRxBuffer(0)));
        // Outside guest memory.
        let chain = q
            .build_desc_chain(&[desc(MEM_SIZE - 8, 4096, WRITE, 0)])
            .unwrap();
        assert!(chain.writer(&mem).is_err());
    }
}

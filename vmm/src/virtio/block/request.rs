//! One virtio-blk request: header, data, status byte (virtio 1.2 §5.2.6).

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;

use virtio_queue::{Reader, Writer};

use super::{ID_LEN, SECTOR_SIZE};

pub const VIRTIO_BLK_T_IN: u32 = 0;
pub const VIRTIO_BLK_T_OUT: u32 = 1;
pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
pub const VIRTIO_BLK_T_GET_ID: u32 = 8;

pub const VIRTIO_BLK_S_OK: u8 = 0;
pub const VIRTIO_BLK_S_IOERR: u8 = 1;
pub const VIRTIO_BLK_S_UNSUPP: u8 = 2;

/// Data moves through a bounce buffer of at most this size, so a request's
/// claimed length never decides how much host memory we allocate.
const CHUNK: usize = 128 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestType {
    In,
    Out,
    Flush,
    GetId,
    Unsupported(u32),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("descriptor chain too short for a request header")]
    ShortHeader,
    #[error("no writable status byte at the end of the chain")]
    NoStatus,
    #[error("data length {0} is not a multiple of the sector size")]
    Unaligned(usize),
    #[error("sectors {sector}+{len} lie past the end of the disk ({capacity} sectors)")]
    OutOfRange {
        sector: u64,
        len: u64,
        capacity: u64,
    },
    #[error("write to a read-only disk")]
    ReadOnly,
    #[error("descriptor chain error: {0}")]
    Chain(String),
    #[error("i/o error on the backing file: {0}")]
    Io(String),
}

#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub type_: RequestType,
    pub sector: u64,
}

pub fn parse_header(reader: &mut Reader<'_>) -> Result<Header, RequestError> {
    let mut raw = [0u8; 16];
    reader
        .read_exact(&mut raw)
        .map_err(|_| RequestError::ShortHeader)?;
    let t = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
    let sector = u64::from_le_bytes([
        raw[8], raw[9], raw[10], raw[11], raw[12], raw[13], raw[14], raw[15],
    ]);
    let type_ = match t {
        VIRTIO_BLK_T_IN => RequestType::In,
        VIRTIO_BLK_T_OUT => RequestType::Out,
        VIRTIO_BLK_T_FLUSH => RequestType::Flush,
        VIRTIO_BLK_T_GET_ID => RequestType::GetId,
        other => RequestType::Unsupported(other),
    };
    Ok(Header { type_, sector })
}

pub struct Disk<'a> {
    pub file: &'a File,
    pub capacity_sectors: u64,
    pub read_only: bool,
    pub id: &'a [u8; ID_LEN],
}

fn check_range(disk: &Disk<'_>, sector: u64, len: usize) -> Result<u64, RequestError> {
    if len as u64 % SECTOR_SIZE != 0 {
        return Err(RequestError::Unaligned(len));
    }
    let sectors = len as u64 / SECTOR_SIZE;
    match sector.checked_add(sectors) {
        Some(end) if end <= disk.capacity_sectors => Ok(sector * SECTOR_SIZE),
        _ => Err(RequestError::OutOfRange {
            sector,
            len: sectors,
            capacity: disk.capacity_sectors,
        }),
    }
}

/// Carry out one request. `reader` is positioned after the header; `writer`
/// covers the device-writable part of the chain (data for IN/GET_ID, then the
/// status byte). Returns the number of bytes written to the chain, status
/// included.
pub fn execute(
    disk: &Disk<'_>,
    hdr: Header,
    reader: &mut Reader<'_>,
    mut writer: Writer<'_>,
) -> Result<u32, RequestError> {
    let writable = writer.available_bytes();
    if writable == 0 {
        return Err(RequestError::NoStatus);
    }
    let mut status_w = writer
        .split_at(writable - 1)
        .map_err(|e| RequestError::Chain(e.to_string()))?;
    let (status, data_written) = match run(disk, hdr, reader, &mut writer) {
        Ok(n) => (VIRTIO_BLK_S_OK, n),
        Err(RunError::Unsupported) => (VIRTIO_BLK_S_UNSUPP, 0),
        Err(RunError::Failed(e)) => {
            tracing::debug!("virtio-blk request failed: {e}");
            (VIRTIO_BLK_S_IOERR, writer.bytes_written())
        }
    };
    status_w
        .write_all(&[status])
        .map_err(|e| RequestError::Chain(e.to_string()))?;
    Ok((data_written + 1) as u32)
}

enum RunError {
    Unsupported,
    Failed(RequestError),
}

impl From<RequestError> for RunError {
    fn from(e: RequestError) -> Self {
        RunError::Failed(e)
    }
}

fn io_err(e: std::io::Error) -> RunError {
    RunError::Failed(RequestError::Io(e.to_string()))
}

fn run(
    disk: &Disk<'_>,
    hdr: Header,
    reader: &mut Reader<'_>,
    writer: &mut Writer<'_>,
) -> Result<usize, RunError> {
    let mut buf = vec![0u8; CHUNK.min(writer.available_bytes().max(reader.available_bytes()))];
    match hdr.type_ {
        RequestType::In => {
            let len = writer.available_bytes();
            let mut off = check_range(disk, hdr.sector, len)?;
            let mut left = len;
            while left > 0 {
                let n = left.min(buf.len());
                disk.file
                    .read_exact_at(&mut buf[..n], off)
                    .map_err(io_err)?;
                writer.write_all(&buf[..n]).map_err(io_err)?;
                off += n as u64;
                left -= n;
            }
            Ok(len)
        }
        RequestType::Out => {
            if disk.read_only {
                return Err(RequestError::ReadOnly.into());
            }
            let len = reader.available_bytes();
            let mut off = check_range(disk, hdr.sector, len)?;
            let mut left = len;
            while left > 0 {
                let n = left.min(buf.len());
                reader.read_exact(&mut buf[..n]).map_err(io_err)?;
                disk.file.write_all_at(&buf[..n], off).map_err(io_err)?;
                off += n as u64;
                left -= n;
            }
            Ok(0)
        }
        RequestType::Flush => {
            if !disk.read_only {
                disk.file.sync_data().map_err(io_err)?;
            }
            Ok(0)
        }
        RequestType::GetId => {
            let n = writer.available_bytes().min(ID_LEN);
            writer.write_all(&disk.id[..n]).map_err(io_err)?;
            Ok(n)
        }
        RequestType::Unsupported(_) => Err(RunError::Unsupported),
    }
}

//! Loading the kernel, initramfs and command line into guest memory.

use std::fs::File;
use std::path::Path;

use linux_loader::cmdline::Cmdline;
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::{load_cmdline, KernelLoader};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{CMDLINE_ADDR, CMDLINE_MAX, HIMEM_START};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot open kernel {path}: {source}")]
    OpenKernel {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot load kernel {path} (an uncompressed ELF vmlinux is expected): {source}")]
    Kernel {
        path: String,
        source: linux_loader::loader::Error,
    },
    #[error("kernel {0} has no PVH entry point (build it with CONFIG_PVH=y)")]
    NoPvh(String),
    #[error("cannot read initramfs {path}: {source}")]
    Initramfs {
        path: String,
        source: std::io::Error,
    },
    #[error("initramfs of {size} bytes does not fit below {limit:#x} beside the kernel")]
    InitramfsTooBig { size: u64, limit: u64 },
    #[error("kernel command line: {0}")]
    Cmdline(String),
    #[error("writing to guest memory: {0}")]
    Memory(#[from] vm_memory::GuestMemoryError),
}

pub struct LoadedKernel {
    pub pvh_entry: GuestAddress,
    pub kernel_end: u64,
}

pub fn load_kernel(mem: &GuestMemoryMmap, path: &Path) -> Result<LoadedKernel, LoadError> {
    let shown = path.display().to_string();
    let mut file = File::open(path).map_err(|source| LoadError::OpenKernel {
        path: shown.clone(),
        source,
    })?;
    let res =
        Elf::load(mem, None, &mut file, Some(GuestAddress(HIMEM_START))).map_err(|source| {
            LoadError::Kernel {
                path: shown.clone(),
                source,
            }
        })?;
    match res.pvh_boot_cap {
        PvhBootCapability::PvhEntryPresent(entry) => Ok(LoadedKernel {
            pvh_entry: entry,
            kernel_end: res.kernel_end,
        }),
        _ => Err(LoadError::NoPvh(shown)),
    }
}

/// Places the initramfs page-aligned at the top of low RAM; returns (addr, size).
pub fn load_initramfs(
    mem: &GuestMemoryMmap,
    path: &Path,
    kernel_end: u64,
    low_ram_end: u64,
) -> Result<(u64, u64), LoadError> {
    let shown = path.display().to_string();
    let io_err = |source| LoadError::Initramfs {
        path: shown.clone(),
        source,
    };
    let mut file = File::open(path).map_err(io_err)?;
    let size = file.metadata().map_err(io_err)?.len();
    let addr = low_ram_end
        .checked_sub(size)
        .map(|a| a & !0xfff)
        .filter(|a| *a >= kernel_end)
        .ok_or(LoadError::InitramfsTooBig {
            size,
            limit: low_ram_end,
        })?;
    // Straight from the file into guest memory: no copy through the heap
    // on the start path.
    mem.read_exact_volatile_from(GuestAddress(addr), &mut file, size as usize)?;
    Ok((addr, size))
}

pub fn load_command_line(mem: &GuestMemoryMmap, cmdline: &str) -> Result<u64, LoadError> {
    let mut cl = Cmdline::new(CMDLINE_MAX).map_err(|e| LoadError::Cmdline(e.to_string()))?;
    cl.insert_str(cmdline)
        .map_err(|e| LoadError::Cmdline(format!("{e} (in {cmdline:?})")))?;
    load_cmdline(mem, GuestAddress(CMDLINE_ADDR), &cl)
        .map_err(|e| LoadError::Cmdline(e.to_string()))?;
    Ok(CMDLINE_ADDR)
}

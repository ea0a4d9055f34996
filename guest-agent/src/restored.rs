//! A guest started from a snapshot wakes with the snapshot's wall clock,
//! the snapshot's RNG state (shared with every other guest started from
//! it), and block caches filled from the snapshot's own disks. The host's
//! first request puts all three right before any container exists.

use std::fs::File;
use std::os::fd::AsRawFd;

/// `_IOW('R', 0x03, int[2])`: add entropy to the input pool, crediting it.
const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
/// `_IO('R', 0x07)`: reseed the CRNG from the input pool now.
const RNDRESEEDCRNG: libc::c_ulong = 0x5207;
/// `_IO(0x12, 97)`: write back and drop a block device's buffer cache.
const BLKFLSBUF: libc::c_ulong = 0x1261;

/// The most entropy taken per request; more would add nothing.
const MAX_ENTROPY: usize = 256;

#[repr(C)]
struct RandPoolInfo {
    entropy_count: libc::c_int,
    buf_size: libc::c_int,
    buf: [u8; MAX_ENTROPY],
}

pub fn settle(unix_time_ns: u64, entropy: &[u8]) -> Result<(), String> {
    set_wall_clock(unix_time_ns)?;
    reseed(entropy)?;
    drop_block_caches()
}

fn set_wall_clock(ns: u64) -> Result<(), String> {
    let ts = libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: `ts` is a valid timespec; the call only reads it.
    if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) } != 0 {
        return Err(format!(
            "setting the clock: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn reseed(entropy: &[u8]) -> Result<(), String> {
    if entropy.len() < 32 {
        return Err(format!(
            "{} bytes of entropy; at least 32 are needed",
            entropy.len()
        ));
    }
    let n = entropy.len().min(MAX_ENTROPY);
    let mut info = RandPoolInfo {
        entropy_count: (n * 8) as libc::c_int,
        buf_size: n as libc::c_int,
        buf: [0; MAX_ENTROPY],
    };
    info.buf[..n].copy_from_slice(&entropy[..n]);
    let random = File::options()
        .write(true)
        .open("/dev/random")
        .map_err(|e| format!("opening /dev/random: {e}"))?;
    // SAFETY: `info` is the kernel's rand_pool_info layout with `buf_size`
    // bytes of buffer behind it; the ioctl only reads it.
    if unsafe { libc::ioctl(random.as_raw_fd(), RNDADDENTROPY, &info) } != 0 {
        return Err(format!(
            "adding entropy: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: RNDRESEEDCRNG takes no argument.
    if unsafe { libc::ioctl(random.as_raw_fd(), RNDRESEEDCRNG) } != 0 {
        return Err(format!(
            "reseeding the RNG: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Every virtio disk's cached blocks: the snapshot's guest read its disks'
/// first blocks when it probed them, and this guest's disks are other files.
fn drop_block_caches() -> Result<(), String> {
    let entries = std::fs::read_dir("/sys/block").map_err(|e| format!("/sys/block: {e}"))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with("vd") {
            continue;
        }
        let dev = format!("/dev/{name}");
        let file = File::open(&dev).map_err(|e| format!("opening {dev}: {e}"))?;
        // SAFETY: BLKFLSBUF takes no argument on a block device we opened.
        if unsafe { libc::ioctl(file.as_raw_fd(), BLKFLSBUF, 0) } != 0 {
            return Err(format!(
                "dropping {dev}'s cache: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

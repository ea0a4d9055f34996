//! Small safe wrappers around the few system calls the agent makes that std
//! does not offer. Each keeps its `unsafe` to one call with its argument
//! checks spelled out; callers above this module are safe Rust.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Turn a `-1`-on-error return into `io::Result`.
pub fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A C string from something a caller (possibly the host) gave us; a NUL
/// byte inside is an `InvalidInput` error rather than a panic.
fn cstring(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{s:?} contains a NUL byte"),
        )
    })
}

pub fn is_pid1() -> bool {
    std::process::id() == 1
}

/// `mount(2)`. `data` is the filesystem-specific option string.
pub fn mount(
    source: &str,
    target: &str,
    fstype: &str,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let source = cstring(source)?;
    let target = cstring(target)?;
    let fstype = cstring(fstype)?;
    let data = data.map(cstring).transpose()?;
    let data_ptr = data
        .as_ref()
        .map_or(std::ptr::null(), |d| d.as_ptr().cast::<libc::c_void>());
    // SAFETY: every pointer is either null (data, allowed by mount(2)) or a
    // NUL-terminated string that outlives the call.
    cvt(unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data_ptr,
        )
    })?;
    Ok(())
}

/// Flush every filesystem's dirty data to its device.
pub fn sync() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() }
}

/// `reboot(2)` with one of the `RB_*` commands. Only returns on failure.
pub fn reboot(cmd: libc::c_int) -> io::Error {
    // SAFETY: reboot(2) takes a plain integer command; the worst it does on
    // success is not return, which is the point.
    unsafe { libc::reboot(cmd) };
    io::Error::last_os_error()
}

/// Grant this thread access to `num` I/O ports starting at `from`.
pub fn ioperm(from: u16, num: u16) -> io::Result<()> {
    // SAFETY: ioperm(2) only changes this thread's I/O permission bitmap.
    cvt(unsafe { libc::ioperm(from.into(), num.into(), 1) })?;
    Ok(())
}

/// Write one byte to an I/O port. The caller must hold the permission
/// (see [`ioperm`]); otherwise the CPU raises #GP and the kernel kills us.
///
/// # Safety
/// The thread must have been granted access to `port` with [`ioperm`], and
/// the write must be harmless to the machine (we only use it for the VMM's
/// power-off port).
#[cfg(target_arch = "x86_64")]
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller guarantees access to `port`; `out` touches no
    // memory and no registers besides its operands.
    unsafe {
        std::arch::asm!("out dx, al", in("dx") port, in("al") value,
                        options(nomem, nostack, preserves_flags));
    }
}

/// A pipe whose two ends are close-on-exec, so no child ever inherits them
/// by accident. Returns (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2(2) writes.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both are fresh descriptors we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

pub fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL on a descriptor the caller keeps open.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    Ok(())
}

/// `read(2)` on a raw descriptor the caller keeps open.
pub fn read(fd: &impl AsRawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `write(2)` on a raw descriptor the caller keeps open.
pub fn write(fd: &impl AsRawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
    let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Is `fd` an open descriptor?
pub fn fd_is_open(fd: libc::c_int) -> bool {
    // SAFETY: F_GETFD only queries the descriptor table.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// Make `fd` refer to the same open file as `src` (dup2(2)).
pub fn dup2(src: &impl AsRawFd, fd: libc::c_int) -> io::Result<()> {
    // SAFETY: dup2 only manipulates the descriptor table; `fd` is one of
    // the standard descriptors the caller means to replace.
    cvt(unsafe { libc::dup2(src.as_raw_fd(), fd) })?;
    Ok(())
}

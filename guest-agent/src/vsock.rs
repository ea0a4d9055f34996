//! AF_VSOCK sockets through libc (std has none): the listener the host
//! connects to, the accepted streams, and outgoing connections to the host.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::serve::Stream;
use crate::sys;

/// The host's context id, as seen from a guest.
pub const HOST_CID: u32 = libc::VMADDR_CID_HOST;

pub struct VsockListener {
    fd: OwnedFd,
}

pub struct VsockStream {
    fd: OwnedFd,
}

fn socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the flags make it close-on-exec so exec'd
    // children never inherit a connection to the host.
    let fd = sys::cvt(unsafe {
        libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0)
    })?;
    // SAFETY: socket(2) succeeded; the descriptor is ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn sockaddr(cid: u32, port: u32) -> libc::sockaddr_vm {
    // SAFETY: sockaddr_vm is plain old data; all-zero is valid (and the
    // reserved fields must be zero).
    let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_cid = cid;
    addr.svm_port = port;
    addr
}

const SOCKADDR_VM_LEN: libc::socklen_t =
    std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;

impl VsockListener {
    /// Listen on `port` for any CID (in a guest: connections from the host).
    pub fn bind(port: u32) -> io::Result<Self> {
        let fd = socket()?;
        let addr = sockaddr(libc::VMADDR_CID_ANY, port);
        // SAFETY: `addr` is a valid sockaddr_vm and the length is its size.
        sys::cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_vm).cast(),
                SOCKADDR_VM_LEN,
            )
        })?;
        // The host opens many connections at once (tests open 100); a deep
        // backlog keeps bursts from being refused while threads start.
        // SAFETY: listen(2) on the socket we own.
        sys::cvt(unsafe { libc::listen(fd.as_raw_fd(), 256) })?;
        Ok(Self { fd })
    }

    /// Accept one connection; returns it with the peer's (cid, port).
    pub fn accept(&self) -> io::Result<(VsockStream, u32, u32)> {
        let mut addr = sockaddr(0, 0);
        let mut len = SOCKADDR_VM_LEN;
        // SAFETY: `addr`/`len` are valid out-parameters sized for a
        // sockaddr_vm, which is what an AF_VSOCK socket writes.
        let fd = sys::cvt(unsafe {
            libc::accept4(
                self.fd.as_raw_fd(),
                (&mut addr as *mut libc::sockaddr_vm).cast(),
                &mut len,
                libc::SOCK_CLOEXEC,
            )
        })?;
        // SAFETY: accept4 succeeded; the new descriptor is ours alone.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok((VsockStream { fd }, addr.svm_cid, addr.svm_port))
    }
}

impl VsockStream {
    /// Connect to `port` on context `cid` (the host is [`HOST_CID`]).
    pub fn connect(cid: u32, port: u32) -> io::Result<Self> {
        let fd = socket()?;
        let addr = sockaddr(cid, port);
        loop {
            // SAFETY: `addr` is a valid sockaddr_vm and the length its size.
            let ret = unsafe {
                libc::connect(
                    fd.as_raw_fd(),
                    (&addr as *const libc::sockaddr_vm).cast(),
                    SOCKADDR_VM_LEN,
                )
            };
            match sys::cvt(ret) {
                Ok(_) => return Ok(Self { fd }),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl Read for VsockStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        sys::read(&self.fd, buf)
    }
}

/// Largest payload handed to one send(2). Since 6.12.y (and in Debian's
/// 6.12), a virtio-vsock guest sends a payload above ~32 KiB as a header
/// plus one descriptor per page, and some device implementations (seen with
/// rust-vmm's virtio-vsock 0.10) only accept a packet's data in a single
/// descriptor and drop the packet otherwise. Below that size the kernel uses
/// one linear buffer: one data descriptor, understood by every device.
const MAX_SEND: usize = 16 << 10;

impl Write for VsockStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let buf = &buf[..buf.len().min(MAX_SEND)];
        // send(2) with MSG_NOSIGNAL rather than write(2): a host that went
        // away must be an EPIPE error, never a SIGPIPE.
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Stream for VsockStream {
    fn shutdown_write(&self) -> io::Result<()> {
        // SAFETY: shutdown(2) on the socket we own.
        sys::cvt(unsafe { libc::shutdown(self.fd.as_raw_fd(), libc::SHUT_WR) })?;
        Ok(())
    }

    fn clone_fd(&self) -> io::Result<OwnedFd> {
        // F_DUPFD_CLOEXEC: no child the agent starts may inherit it.
        self.fd.try_clone()
    }

    /// SIOCOUTQ on a virtio-vsock socket counts the bytes the device (the
    /// VMM) has not taken off the TX queue yet; poll it down to zero.
    fn wait_sent(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let mut unsent: libc::c_int = 0;
            // SAFETY: SIOCOUTQ (== TIOCOUTQ) writes one int to the pointer.
            let ret = unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::TIOCOUTQ, &mut unsent) };
            if ret == -1 || unsent <= 0 {
                // Sent, or a kernel/transport that cannot say (EOPNOTSUPP).
                return;
            }
            if Instant::now() >= deadline {
                tracing::warn!("{unsent} bytes still unsent after {timeout:?}");
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

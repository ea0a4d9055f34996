//! The host side of vsock: Unix sockets in, vsock streams out.
//!
//! The muxer owns the listening socket, the connections being set up
//! (`CONNECT <port>` lines being read), the live connections, and a queue of
//! control packets for the guest. It never touches virtqueues: the device
//! worker hands it each guest packet ([`Muxer::process_tx`]) and asks it to
//! fill each guest receive buffer ([`Muxer::fill_rx`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use virtio_queue::Writer;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use super::connection::{Connection, State};
use super::packet::{
    rx_payload_room, write_rx_packet, Header, PacketError, OP_CREDIT_REQUEST, OP_CREDIT_UPDATE,
    OP_REQUEST, OP_RESPONSE, OP_RST, OP_RW, OP_SHUTDOWN, SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM,
};
use super::HOST_CID;

/// Live and half-open connections we keep at most; more are refused.
pub const MAX_CONNECTIONS: usize = 1024;
/// Control packets waiting for guest rx buffers. Past this, we stop taking
/// guest tx packets until the guest gives us buffers (back-pressure instead
/// of unbounded memory).
pub const MAX_PENDING_CONTROL: usize = 2048;
/// First port for host-initiated connections, as seen by the guest.
const FIRST_LOCAL_PORT: u32 = 1 << 30;
const MAX_CONNECT_LINE: usize = 32;
/// A guest that neither accepts nor refuses a host connection within this
/// time gets it reset, so the host client is not left hanging.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a host client reads instead of `OK <port>\n` when the guest reset
/// its connection (nothing listens on the port, or its backlog is full).
pub const CONNECT_REFUSED: &[u8] = b"REFUSED\n";
/// ... and when the guest did not answer within [`CONNECT_TIMEOUT`].
pub const CONNECT_TIMED_OUT: &[u8] = b"TIMEOUT\n";

type Key = (u32, u32); // (host-side port, guest port)

struct Control {
    key: Key,
    op: u16,
    flags: u32,
}

struct Handshake {
    stream: UnixStream,
    line: Vec<u8>,
}

pub struct Muxer {
    guest_cid: u64,
    uds_path: PathBuf,
    listener: UnixListener,
    epoll: Epoll,
    handshakes: HashMap<RawFd, Handshake>,
    conns: HashMap<Key, Connection>,
    by_fd: HashMap<RawFd, Key>,
    control: VecDeque<Control>,
    rx_ready: VecDeque<Key>,
    rx_queued: HashSet<Key>,
    /// Connections with a CREDIT_UPDATE waiting in `control`: one is
    /// enough, as it carries our counters when it is sent, not when queued.
    credit_queued: HashSet<Key>,
    next_local_port: u32,
    scratch: Vec<u8>,
}

fn stream_events() -> EventSet {
    EventSet::IN | EventSet::OUT | EventSet::READ_HANG_UP | EventSet::EDGE_TRIGGERED
}

/// Connect to a Unix socket without blocking: a host listener with a full
/// backlog must not stall the device thread.
fn connect_nonblocking(path: &Path) -> io::Result<UnixStream> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket path too long",
        ));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just created and is owned by nothing else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: addr is a valid sockaddr_un and the length matches it.
    let rc = unsafe {
        libc::connect(
            fd,
            &addr as *const libc::sockaddr_un as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(UnixStream::from(owned))
}

impl Muxer {
    pub fn new(guest_cid: u64, uds_path: PathBuf, listener: UnixListener) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let epoll = Epoll::new()?;
        epoll.ctl(
            ControlOperation::Add,
            listener.as_raw_fd(),
            EpollEvent::new(EventSet::IN, listener.as_raw_fd() as u64),
        )?;
        Ok(Self {
            guest_cid,
            uds_path,
            listener,
            epoll,
            handshakes: HashMap::new(),
            conns: HashMap::new(),
            by_fd: HashMap::new(),
            control: VecDeque::new(),
            rx_ready: VecDeque::new(),
            rx_queued: HashSet::new(),
            credit_queued: HashSet::new(),
            next_local_port: FIRST_LOCAL_PORT,
            scratch: vec![0u8; super::packet::MAX_PAYLOAD],
        })
    }

    /// Watch a host stream, edge-triggered, keyed by its fd.
    fn watch(&self, fd: RawFd) -> io::Result<()> {
        self.epoll.ctl(
            ControlOperation::Add,
            fd,
            EpollEvent::new(stream_events(), fd as u64),
        )
    }

    /// The muxer's epoll; the device worker adds its queue eventfds to it.
    pub fn epoll(&self) -> &Epoll {
        &self.epoll
    }

    pub fn into_listener(self) -> UnixListener {
        self.listener
    }

    /// Connections (live or being set up) and control packets not yet
    /// given to the guest.
    pub fn in_flight(&self) -> usize {
        self.conns.len() + self.handshakes.len() + self.control.len()
    }

    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// How long the worker may sleep before [`Self::expire_stale`] has work:
    /// `None` when no host connection awaits the guest's answer.
    pub fn next_timeout(&self, now: Instant) -> Option<Duration> {
        self.conns
            .values()
            .filter(|c| c.state == State::Connecting)
            .map(|c| (c.created + CONNECT_TIMEOUT).saturating_duration_since(now))
            .min()
    }

    /// Reset host connections the guest left unanswered for too long.
    pub fn expire_stale(&mut self, now: Instant) {
        let stale: Vec<Key> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.state == State::Connecting && now.duration_since(c.created) >= CONNECT_TIMEOUT
            })
            .map(|(k, _)| *k)
            .collect();
        for key in stale {
            tracing::debug!(
                "vsock: guest did not answer a connection to port {}; reset",
                key.1
            );
            self.refuse_host(key, CONNECT_TIMED_OUT);
            self.reset(key);
        }
    }

    /// Tell the host client of a connection the guest never accepted why,
    /// before its socket closes: one line instead of the `OK` it waits for.
    /// Best effort: the socket's buffer is empty, so the few bytes fit.
    fn refuse_host(&mut self, key: Key, why: &[u8]) {
        if let Some(c) = self.conns.get_mut(&key) {
            if c.state == State::Connecting {
                let _ = (&c.stream).write(why);
            }
        }
    }

    /// Too many control packets are waiting: stop reading the guest's tx.
    pub fn tx_backpressure(&self) -> bool {
        self.control.len() >= MAX_PENDING_CONTROL
    }

    pub fn has_rx_work(&self) -> bool {
        !self.control.is_empty() || !self.rx_ready.is_empty()
    }

    // ---- host-side events -------------------------------------------------

    /// Handle readiness of one of our fds; returns false if `fd` is not ours.
    pub fn handle_event(&mut self, fd: RawFd, events: EventSet) -> bool {
        if fd == self.listener.as_raw_fd() {
            self.accept_all();
        } else if self.handshakes.contains_key(&fd) {
            self.continue_handshake(fd);
        } else if let Some(&key) = self.by_fd.get(&fd) {
            if events.intersects(
                EventSet::IN | EventSet::HANG_UP | EventSet::READ_HANG_UP | EventSet::ERROR,
            ) {
                if let Some(c) = self.conns.get_mut(&key) {
                    c.readable = true;
                }
                self.enqueue_rx(key);
            }
            if events.contains(EventSet::OUT) {
                self.flush(key);
            }
        } else {
            return false;
        }
        true
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let fd = stream.as_raw_fd();
                    if self.watch(fd).is_err() {
                        continue;
                    }
                    self.handshakes.insert(
                        fd,
                        Handshake {
                            stream,
                            line: Vec::new(),
                        },
                    );
                    self.continue_handshake(fd);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // Out of fds (EMFILE) and the like: the listener stays
                    // readable, so back off briefly instead of spinning.
                    tracing::debug!("vsock: accept on {}: {e}", self.uds_path.display());
                    std::thread::sleep(Duration::from_millis(10));
                    return;
                }
            }
        }
    }

    /// Read the `CONNECT <port>\n` line a byte at a time, so that nothing the
    /// client sends after it is consumed here.
    fn continue_handshake(&mut self, fd: RawFd) {
        let Some(hs) = self.handshakes.get_mut(&fd) else {
            return;
        };
        let mut byte = [0u8; 1];
        let port = loop {
            match hs.stream.read(&mut byte) {
                Ok(0) => break Err("closed before CONNECT"),
                Ok(_) if byte[0] == b'\n' => break parse_connect(&hs.line),
                Ok(_) if hs.line.len() >= MAX_CONNECT_LINE => break Err("CONNECT line too long"),
                Ok(_) => hs.line.push(byte[0]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break Err("read error during CONNECT"),
            }
        };
        let Some(hs) = self.handshakes.remove(&fd) else {
            return;
        };
        match port {
            Err(why) => {
                tracing::debug!("vsock: dropping host connection: {why}");
            }
            Ok(_) if self.conns.len() >= MAX_CONNECTIONS => {
                tracing::warn!("vsock: connection limit reached; refusing host connection");
            }
            Ok(peer_port) => {
                let local_port = self.alloc_local_port();
                let key = (local_port, peer_port);
                let mut conn = Connection::new(hs.stream, State::Connecting, local_port, peer_port);
                conn.readable = true;
                self.by_fd.insert(fd, key);
                self.conns.insert(key, conn);
                self.push_control(key, OP_REQUEST, 0);
            }
        }
    }

    fn alloc_local_port(&mut self) -> u32 {
        loop {
            let p = self.next_local_port;
            self.next_local_port = if p == u32::MAX - 1 {
                FIRST_LOCAL_PORT
            } else {
                p + 1
            };
            if !self.conns.keys().any(|k| k.0 == p) {
                return p;
            }
        }
    }

    fn enqueue_rx(&mut self, key: Key) {
        if self.conns.get(&key).is_some_and(|c| c.wants_rx()) && self.rx_queued.insert(key) {
            self.rx_ready.push_back(key);
        }
    }

    fn pop_control(&mut self) -> Option<Control> {
        let ctl = self.control.pop_front()?;
        if ctl.op == OP_CREDIT_UPDATE {
            self.credit_queued.remove(&ctl.key);
        }
        Some(ctl)
    }

    fn push_control(&mut self, key: Key, op: u16, flags: u32) {
        if op == OP_CREDIT_UPDATE && !self.credit_queued.insert(key) {
            return;
        }
        self.control.push_back(Control { key, op, flags });
    }

    fn remove(&mut self, key: Key) {
        tracing::trace!(port = key.0, "vsock: connection removed");
        if let Some(c) = self.conns.remove(&key) {
            self.by_fd.remove(&c.stream.as_raw_fd());
            // Closing the fd removes it from the epoll set.
        }
        self.rx_queued.remove(&key);
        self.credit_queued.remove(&key);
    }

    /// Reset a connection: tell the guest and forget it.
    fn reset(&mut self, key: Key) {
        self.remove(key);
        self.push_control(key, OP_RST, 0);
    }

    fn flush(&mut self, key: Key) {
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        if let Err(e) = c.flush_tx() {
            tracing::debug!("vsock: host socket of port {} failed: {e}", key.0);
            self.reset(key);
            return;
        }
        let (credit_due, finished) = (c.needs_credit_update(), c.finished());
        if finished {
            self.reset(key);
        } else if credit_due {
            self.push_control(key, OP_CREDIT_UPDATE, 0);
        }
    }

    // ---- guest → host -----------------------------------------------------

    /// Handle one packet the guest sent. Whatever it contains, the worst
    /// outcome is an RST for the connection it names.
    pub fn process_tx(&mut self, hdr: Header, data: Vec<u8>) {
        if hdr.src_cid != self.guest_cid || hdr.dst_cid != HOST_CID {
            tracing::debug!(
                src = hdr.src_cid,
                dst = hdr.dst_cid,
                "vsock: packet with wrong CIDs dropped"
            );
            return;
        }
        let key = (hdr.dst_port, hdr.src_port);
        if hdr.type_ != TYPE_STREAM {
            if hdr.op != OP_RST {
                self.push_control(key, OP_RST, 0);
            }
            return;
        }
        let Some(conn) = self.conns.get_mut(&key) else {
            match hdr.op {
                OP_REQUEST => self.guest_connect(key, &hdr),
                OP_RST => {}
                _ => self.push_control(key, OP_RST, 0),
            }
            return;
        };
        conn.update_peer_credit(hdr.buf_alloc, hdr.fwd_cnt);
        // Any packet's header may reopen the guest's receive window.
        self.enqueue_rx(key);
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        match (hdr.op, conn.state) {
            (OP_RESPONSE, State::Connecting) => {
                conn.state = State::Established;
                let line = format!("OK {}\n", conn.local_port);
                conn.push_host_line(line.as_bytes());
                self.flush(key);
                self.enqueue_rx(key);
            }
            (OP_RW, State::Established) if !conn.peer_shut_send => {
                if let Err(e) = conn.push_tx(&data) {
                    tracing::debug!("vsock: {e}; resetting port {}", key.0);
                    self.reset(key);
                    return;
                }
                self.flush(key);
            }
            (OP_CREDIT_UPDATE, _) => self.enqueue_rx(key),
            (OP_CREDIT_REQUEST, _) => self.push_control(key, OP_CREDIT_UPDATE, 0),
            (OP_SHUTDOWN, State::Established) => {
                tracing::trace!(port = key.0, flags = hdr.flags, "vsock: guest shutdown");
                conn.peer_shut_recv |= hdr.flags & SHUTDOWN_RCV != 0;
                conn.peer_shut_send |= hdr.flags & SHUTDOWN_SEND != 0;
                self.flush(key);
            }
            (OP_RST, _) => {
                self.refuse_host(key, CONNECT_REFUSED);
                self.remove(key);
            }
            _ => {
                tracing::debug!(op = hdr.op, "vsock: unexpected packet; resetting");
                self.reset(key);
            }
        }
    }

    fn guest_connect(&mut self, key: Key, hdr: &Header) {
        if self.conns.len() >= MAX_CONNECTIONS {
            self.push_control(key, OP_RST, 0);
            return;
        }
        let path = super::host::guest_port_path(&self.uds_path, key.0);
        let stream = match connect_nonblocking(&path) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("vsock: guest connect to host port {}: {e}", key.0);
                self.push_control(key, OP_RST, 0);
                return;
            }
        };
        let fd = stream.as_raw_fd();
        if self.watch(fd).is_err() {
            self.push_control(key, OP_RST, 0);
            return;
        }
        let mut conn = Connection::new(stream, State::Established, key.0, key.1);
        conn.update_peer_credit(hdr.buf_alloc, hdr.fwd_cnt);
        conn.readable = true;
        self.by_fd.insert(fd, key);
        self.conns.insert(key, conn);
        self.push_control(key, OP_RESPONSE, 0);
        self.enqueue_rx(key);
    }

    // ---- host → guest -----------------------------------------------------

    fn header_for(&mut self, key: Key, op: u16, flags: u32, len: u32) -> Header {
        let (buf_alloc, fwd_cnt) = self
            .conns
            .get_mut(&key)
            .map_or((0, 0), |c| c.credit_fields());
        Header {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: key.0,
            dst_port: key.1,
            len,
            type_: TYPE_STREAM,
            op,
            flags,
            buf_alloc,
            fwd_cnt,
        }
    }

    /// Fill one guest rx buffer with the next packet. `Ok(None)`: nothing to
    /// send (the caller returns the buffer). An error means the buffer is
    /// unusable (too small or bad memory) and is returned to the guest empty.
    pub fn fill_rx(&mut self, writer: &mut Writer<'_>) -> Result<Option<u32>, PacketError> {
        let room = rx_payload_room(writer)?;
        if let Some(ctl) = self.pop_control() {
            let hdr = self.header_for(ctl.key, ctl.op, ctl.flags, 0);
            return write_rx_packet(writer, &hdr, &[]).map(Some);
        }
        while let Some(key) = self.rx_ready.pop_front() {
            self.rx_queued.remove(&key);
            let Some(conn) = self.conns.get_mut(&key) else {
                continue;
            };
            if !conn.wants_rx() {
                continue;
            }
            if room == 0 {
                // A buffer with room for a header only: hand it back empty
                // and keep this stream queued for the next buffer.
                if self.rx_queued.insert(key) {
                    self.rx_ready.push_front(key);
                }
                return Err(PacketError::SmallRxBuffer(room));
            }
            let max = room.min(conn.peer_credit() as usize);
            let mut buf = std::mem::take(&mut self.scratch);
            let res = conn.read_host(&mut buf[..max]);
            let out = match res {
                Ok(0) => {
                    conn.local_eof = true;
                    let finished = conn.finished();
                    let hdr = self.header_for(key, OP_SHUTDOWN, SHUTDOWN_SEND, 0);
                    if finished {
                        self.reset(key);
                    }
                    Some(write_rx_packet(writer, &hdr, &[]))
                }
                Ok(n) => {
                    conn.record_sent(n);
                    let hdr = self.header_for(key, OP_RW, 0, n as u32);
                    self.enqueue_rx(key);
                    Some(write_rx_packet(writer, &hdr, &buf[..n]))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
                Err(e) => {
                    tracing::debug!("vsock: host socket read: {e}");
                    self.remove(key);
                    let hdr = self.header_for(key, OP_RST, 0, 0);
                    Some(write_rx_packet(writer, &hdr, &[]))
                }
            };
            self.scratch = buf;
            if let Some(r) = out {
                return r.map(Some);
            }
        }
        Ok(None)
    }
}

fn parse_connect(line: &[u8]) -> Result<u32, &'static str> {
    let s = std::str::from_utf8(line).map_err(|_| "CONNECT line is not UTF-8")?;
    let s = s.trim_end_matches('\r');
    let port = s
        .strip_prefix("CONNECT ")
        .ok_or("expected CONNECT <port>")?;
    port.trim().parse().map_err(|_| "bad port in CONNECT line")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn muxer_with_client(dir: &Path) -> (Muxer, UnixStream) {
        let path = dir.join("v.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let mut muxer = Muxer::new(3, path.clone(), listener).unwrap();
        let mut client = UnixStream::connect(&path).unwrap();
        use std::io::Write;
        client.write_all(b"CONNECT 1024\n").unwrap();
        let lfd = muxer.listener.as_raw_fd();
        assert!(muxer.handle_event(lfd, EventSet::IN));
        (muxer, client)
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("isola-muxer-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn host_connect_sends_a_request_to_the_guest() {
        let dir = scratch("req");
        let (muxer, _client) = muxer_with_client(&dir);
        assert_eq!(muxer.connection_count(), 1);
        assert_eq!(muxer.control.len(), 1);
        assert_eq!(muxer.control[0].op, OP_REQUEST);
        assert_eq!(muxer.control[0].key.1, 1024);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn unanswered_host_connect_is_reset_after_the_timeout() {
        let dir = scratch("expire");
        let (mut muxer, mut client) = muxer_with_client(&dir);
        let now = Instant::now();
        assert!(muxer
            .next_timeout(now)
            .is_some_and(|t| t <= CONNECT_TIMEOUT));
        muxer.expire_stale(now);
        assert_eq!(muxer.connection_count(), 1, "not yet stale");
        muxer.expire_stale(now + CONNECT_TIMEOUT + Duration::from_millis(1));
        assert_eq!(muxer.connection_count(), 0);
        assert_eq!(muxer.control.back().map(|c| c.op), Some(OP_RST));
        assert_eq!(muxer.next_timeout(now), None);
        // The host client learns why, then sees its connection closed: no hang.
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got, CONNECT_TIMED_OUT);
        let _ = std::fs::remove_dir_all(dir);
    }

    fn guest_packet(op: u16, src_cid: u64, src_port: u32, dst_port: u32) -> Header {
        Header {
            src_cid,
            dst_cid: HOST_CID,
            src_port,
            dst_port,
            type_: TYPE_STREAM,
            op,
            buf_alloc: 1 << 16,
            ..Default::default()
        }
    }

    #[test]
    fn a_guest_reset_tells_the_host_client_it_was_refused() {
        let dir = scratch("refused");
        let (mut muxer, mut client) = muxer_with_client(&dir);
        let local = muxer.control[0].key.0;
        muxer.process_tx(guest_packet(OP_RST, 3, 1024, local), Vec::new());
        assert_eq!(muxer.connection_count(), 0);
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got, CONNECT_REFUSED);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn guest_accepts_then_data_reaches_the_host_client() {
        let dir = scratch("rw");
        let (mut muxer, mut client) = muxer_with_client(&dir);
        let local = muxer.control[0].key.0;
        muxer.control.clear();
        muxer.process_tx(guest_packet(OP_RESPONSE, 3, 1024, local), Vec::new());
        muxer.process_tx(guest_packet(OP_RW, 3, 1024, local), b"hello".to_vec());
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let want = format!("OK {local}\nhello");
        let mut got = vec![0u8; want.len()];
        client.read_exact(&mut got).unwrap();
        assert_eq!(got, want.as_bytes());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn hostile_guest_packets_cost_at_most_a_reset() {
        let dir = scratch("hostile");
        let (mut muxer, _client) = muxer_with_client(&dir);
        let local = muxer.control[0].key.0;
        muxer.control.clear();
        // Spoofed source CID: dropped without a word.
        muxer.process_tx(guest_packet(OP_RESPONSE, 99, 1024, local), Vec::new());
        assert!(muxer.control.is_empty());
        assert_eq!(muxer.connection_count(), 1);
        // Data for a connection that does not exist: RST.
        muxer.process_tx(guest_packet(OP_RW, 3, 4242, 77), b"x".to_vec());
        assert_eq!(muxer.control.back().map(|c| c.op), Some(OP_RST));
        // Data before the guest accepted: a protocol violation, RST.
        muxer.process_tx(guest_packet(OP_RW, 3, 1024, local), b"early".to_vec());
        assert_eq!(muxer.connection_count(), 0);
        // Unknown op on a fresh port, and a non-stream type: RST, no panic.
        muxer.process_tx(guest_packet(99, 3, 5, 6), Vec::new());
        let mut dgram = guest_packet(OP_REQUEST, 3, 7, 8);
        dgram.type_ = 2;
        muxer.process_tx(dgram, Vec::new());
        assert!(muxer.control.iter().all(|c| c.op == OP_RST));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn one_credit_update_waits_per_connection() {
        let dir = scratch("credit");
        let (mut muxer, _client) = muxer_with_client(&dir);
        let key = muxer.control[0].key;
        muxer.control.clear();
        for _ in 0..3 {
            muxer.process_tx(guest_packet(OP_CREDIT_REQUEST, 3, key.1, key.0), Vec::new());
        }
        let updates = |m: &Muxer| {
            m.control
                .iter()
                .filter(|c| c.op == OP_CREDIT_UPDATE)
                .count()
        };
        assert_eq!(updates(&muxer), 1, "queued updates are not repeated");
        // Once sent, the next one may be queued again.
        assert!(muxer.pop_control().is_some());
        assert_eq!(updates(&muxer), 0);
        muxer.process_tx(guest_packet(OP_CREDIT_REQUEST, 3, key.1, key.0), Vec::new());
        assert_eq!(updates(&muxer), 1);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn connect_lines() {
        assert_eq!(parse_connect(b"CONNECT 1024"), Ok(1024));
        assert_eq!(parse_connect(b"CONNECT 52\r"), Ok(52));
        assert!(parse_connect(b"CONNECT").is_err());
        assert!(parse_connect(b"CONNECT -1").is_err());
        assert!(parse_connect(b"CONNECT 99999999999").is_err());
        assert!(parse_connect(b"HELLO 1").is_err());
        assert!(parse_connect(&[0xff, 0xfe]).is_err());
    }
}

//! One vsock stream: its Unix socket on the host side, the bytes the guest
//! sent that the socket has not taken yet, and both directions' credit.
//!
//! Credit (virtio 1.2 §5.10.6.3): each side advertises `buf_alloc` and how
//! many bytes it has consumed (`fwd_cnt`); a sender may have at most
//! `buf_alloc - (sent - fwd_cnt)` bytes in flight. We hold the guest to the
//! credit we gave (more is a protocol violation and resets the stream) and
//! never send the guest more than it gave us.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::num::Wrapping;
use std::os::unix::net::UnixStream;
use std::time::Instant;

/// How much guest→host data we buffer per connection; also our `buf_alloc`.
pub const TX_BUF_SIZE: u32 = 256 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Host-initiated: REQUEST sent to the guest, awaiting RESPONSE.
    Connecting,
    Established,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("guest sent {got} bytes with only {room} bytes of credit left")]
pub struct CreditViolation {
    pub got: usize,
    pub room: usize,
}

pub struct Connection {
    /// When the connection was set up (to expire unanswered requests).
    pub created: Instant,
    pub stream: UnixStream,
    pub state: State,
    pub local_port: u32,
    pub peer_port: u32,
    txbuf: VecDeque<u8>,
    /// Bytes from the guest handed to the host socket.
    fwd_cnt: Wrapping<u32>,
    /// `fwd_cnt` as last told to the guest.
    fwd_cnt_reported: Wrapping<u32>,
    /// Bytes received from the guest in total.
    recv_cnt: Wrapping<u32>,
    /// Bytes sent to the guest in total.
    rx_cnt: Wrapping<u32>,
    peer_buf_alloc: u32,
    peer_fwd_cnt: Wrapping<u32>,
    /// The guest will send no more (SHUTDOWN with SEND).
    pub peer_shut_send: bool,
    /// The guest will receive no more (SHUTDOWN with RCV).
    pub peer_shut_recv: bool,
    /// The host socket reached EOF and we told the guest.
    pub local_eof: bool,
    /// Edge-triggered readiness: the socket may have data to read.
    pub readable: bool,
    /// Write side of the host socket already shut down.
    host_write_closed: bool,
    /// Bytes at the front of `txbuf` that are ours (the `OK` line), not
    /// the guest's, and so outside credit accounting.
    own_bytes: usize,
}

impl Connection {
    pub fn new(stream: UnixStream, state: State, local_port: u32, peer_port: u32) -> Self {
        Self {
            created: Instant::now(),
            stream,
            state,
            local_port,
            peer_port,
            txbuf: VecDeque::new(),
            fwd_cnt: Wrapping(0),
            fwd_cnt_reported: Wrapping(0),
            recv_cnt: Wrapping(0),
            rx_cnt: Wrapping(0),
            peer_buf_alloc: 0,
            peer_fwd_cnt: Wrapping(0),
            peer_shut_send: false,
            peer_shut_recv: false,
            local_eof: false,
            readable: false,
            host_write_closed: false,
            own_bytes: 0,
        }
    }

    /// Record the guest's credit from any packet's header.
    pub fn update_peer_credit(&mut self, buf_alloc: u32, fwd_cnt: u32) {
        self.peer_buf_alloc = buf_alloc;
        self.peer_fwd_cnt = Wrapping(fwd_cnt);
    }

    /// Bytes we may still send to the guest.
    pub fn peer_credit(&self) -> u32 {
        let in_flight = (self.rx_cnt - self.peer_fwd_cnt).0;
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    /// Whether this stream has something to send and room to send it.
    pub fn wants_rx(&self) -> bool {
        self.state == State::Established
            && self.readable
            && !self.local_eof
            && !self.peer_shut_recv
            && self.peer_credit() > 0
    }

    pub fn record_sent(&mut self, n: usize) {
        self.rx_cnt += Wrapping(n as u32);
    }

    /// Credit fields for a packet we send; the guest learns our `fwd_cnt`.
    pub fn credit_fields(&mut self) -> (u32, u32) {
        self.fwd_cnt_reported = self.fwd_cnt;
        (TX_BUF_SIZE, self.fwd_cnt.0)
    }

    /// True when the guest's view of our free space is low and we have
    /// freed some since we last told it: time for a CREDIT_UPDATE.
    pub fn needs_credit_update(&self) -> bool {
        let guest_view_used = (self.recv_cnt - self.fwd_cnt_reported).0;
        self.fwd_cnt != self.fwd_cnt_reported && guest_view_used > TX_BUF_SIZE / 2
    }

    /// Accept guest→host bytes into the buffer.
    pub fn push_tx(&mut self, data: &[u8]) -> Result<(), CreditViolation> {
        let room = TX_BUF_SIZE as usize - (self.txbuf.len() - self.own_bytes);
        if data.len() > room {
            return Err(CreditViolation {
                got: data.len(),
                room,
            });
        }
        self.txbuf.extend(data);
        self.recv_cnt += Wrapping(data.len() as u32);
        Ok(())
    }

    /// Queue bytes of our own to the host socket (the `OK` line), outside
    /// the guest's credit accounting.
    pub fn push_host_line(&mut self, line: &[u8]) {
        self.txbuf.extend(line);
        self.own_bytes += line.len();
    }

    pub fn tx_pending(&self) -> bool {
        !self.txbuf.is_empty()
    }

    /// Write buffered bytes to the host socket until it would block.
    pub fn flush_tx(&mut self) -> io::Result<()> {
        while !self.txbuf.is_empty() {
            let (a, _) = self.txbuf.as_slices();
            match self.stream.write(a) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.txbuf.drain(..n);
                    let own = n.min(self.own_bytes);
                    self.own_bytes -= own;
                    self.fwd_cnt += Wrapping((n - own) as u32);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.peer_shut_send && !self.host_write_closed {
            self.host_write_closed = true;
            let _ = self.stream.shutdown(std::net::Shutdown::Write);
        }
        Ok(())
    }

    /// Read from the host socket; `Ok(0)` is EOF, `WouldBlock` clears
    /// [`Self::readable`].
    pub fn read_host(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.stream.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Err(e);
                }
                other => return other,
            }
        }
    }

    /// Both directions are done and nothing is left to deliver.
    pub fn finished(&self) -> bool {
        self.peer_shut_send && self.txbuf.is_empty() && (self.local_eof || self.peer_shut_recv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> (Connection, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        (Connection::new(a, State::Established, 1, 2), b)
    }

    #[test]
    fn guest_cannot_exceed_the_credit_we_gave() {
        let (mut c, _peer) = conn();
        c.push_tx(&vec![0; TX_BUF_SIZE as usize]).unwrap();
        assert_eq!(c.push_tx(&[1]), Err(CreditViolation { got: 1, room: 0 }));
    }

    #[test]
    fn credit_towards_guest_follows_its_fwd_cnt_with_wraparound() {
        let (mut c, _peer) = conn();
        c.update_peer_credit(1000, 0);
        c.record_sent(600);
        assert_eq!(c.peer_credit(), 400);
        c.update_peer_credit(1000, 600);
        assert_eq!(c.peer_credit(), 1000);
        // A lying guest (fwd_cnt ahead of what we sent) gets no extra room
        // past buf_alloc, and counters wrap without panicking.
        c.update_peer_credit(1000, 5000);
        assert!(c.peer_credit() <= 1000);
        c.record_sent(u32::MAX as usize);
        let _ = c.peer_credit();
    }

    #[test]
    fn flush_moves_bytes_and_counts_them() {
        let (mut c, mut peer) = conn();
        c.push_tx(b"hello").unwrap();
        c.flush_tx().unwrap();
        let mut buf = [0u8; 5];
        peer.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        assert!(!c.tx_pending());
        assert_eq!(c.credit_fields(), (TX_BUF_SIZE, 5));
    }

    #[test]
    fn credit_update_is_due_only_when_the_guest_runs_low() {
        let (mut c, mut peer) = conn();
        c.push_tx(&[7; 100]).unwrap();
        c.flush_tx().unwrap();
        assert!(!c.needs_credit_update());
        let big = vec![7u8; (TX_BUF_SIZE / 2 + 1) as usize];
        c.push_tx(&big).unwrap();
        // Drain the peer side while flushing so the socket takes it all.
        let t = std::thread::spawn(move || {
            let mut sink = vec![0u8; big.len() + 100];
            peer.read_exact(&mut sink).unwrap();
        });
        while c.tx_pending() {
            c.flush_tx().unwrap();
        }
        t.join().unwrap();
        assert!(c.needs_credit_update());
        c.credit_fields();
        assert!(!c.needs_credit_update());
    }
}

//! One connection: read request frames, answer each with the same id, and
//! carry out what a request leaves for after its reply (raw transfers,
//! power). Works over any [`Stream`], so it is tested over a Unix socket
//! pair.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use isola_protocol::message::pattern_byte;
use isola_protocol::{read_frame, write_frame, Envelope, FrameError, Request, Response};
use sha2::{Digest, Sha256};

use crate::power::Power;
use crate::service::{self, Then};

/// A byte stream to the host whose write side can be closed alone.
pub trait Stream: Read + Write {
    fn shutdown_write(&self) -> io::Result<()>;

    /// A second descriptor for the connection, for a stream handed over to
    /// a process (close-on-exec, like the first).
    fn clone_fd(&self) -> io::Result<OwnedFd>;

    /// Wait (at most `timeout`) until what was written has left the guest.
    /// Used before powering off, so the reply is not lost with the VM.
    /// Streams that cannot tell return at once.
    fn wait_sent(&self, _timeout: Duration) {}
}

impl Stream for UnixStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }

    fn clone_fd(&self) -> io::Result<OwnedFd> {
        self.try_clone().map(OwnedFd::from)
    }
}

/// How long a Shutdown/Reboot reply may take to reach the host before the
/// VM goes down anyway.
const REPLY_DRAIN_TIMEOUT: Duration = Duration::from_millis(500);

/// Why a connection ended, for the log. Nothing here is fatal to the agent.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("reading a request: {0}")]
    Read(#[source] FrameError),
    #[error("writing the reply to request {id}: {source}")]
    Write {
        id: u64,
        #[source]
        source: FrameError,
    },
    #[error("raw transfer for request {id}: {source}")]
    Transfer {
        id: u64,
        #[source]
        source: io::Error,
    },
}

/// Serve requests until the peer closes the connection (`Ok`) or the stream
/// breaks (`Err`).
pub fn serve<S: Stream>(mut stream: S, power: &dyn Power) -> Result<(), ConnError> {
    loop {
        let (id, request) = match read_request(&mut stream) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(e) => return Err(e),
        };
        let (id, mut outcome) = match request {
            Ok(req) => (id, service::handle(req)),
            Err(message) => (id, service::error(message).into()),
        };
        let mut attached = None;
        if let Then::Attach(key, which) = &outcome.then {
            // The stream joins its process *before* the host hears `Ok`:
            // the host starts the process once every stream is attached,
            // and a stream attached after that start would never reach the
            // process, nor ever close (seen: an exec whose stderr never
            // ended).
            let joined = stream
                .clone_fd()
                .map_err(|e| format!("dup: {e}"))
                .and_then(|fd| {
                    let raw = fd.as_raw_fd();
                    crate::container::attach(key, *which, fd).map(|()| raw)
                });
            match joined {
                Ok(raw) => attached = Some(raw),
                Err(e) => outcome = service::error(e).into(),
            }
        }
        if let Err(e) = send(&mut stream, id, outcome.reply) {
            if let (Then::Attach(key, which), Some(raw)) = (&outcome.then, attached) {
                crate::container::detach(key, *which, raw);
            }
            return Err(e);
        }
        match outcome.then {
            Then::Continue => {}
            Then::HashStream(len) => {
                let sha256 = hash_stream(&mut stream, len)
                    .map_err(|source| ConnError::Transfer { id, source })?;
                send(&mut stream, id, Response::Hash { sha256 })?;
            }
            Then::GenerateStream(len) => {
                generate_stream(&mut stream, len)
                    .map_err(|source| ConnError::Transfer { id, source })?;
                // Our side is closed: nothing more can be answered here.
                return Ok(());
            }
            // From here on the connection is the process's stream; the
            // process's table entry holds it.
            // (A refused attach was answered with a plain error instead.)
            Then::Attach(..) => return Ok(()),
            Then::PowerOff => {
                stream.wait_sent(REPLY_DRAIN_TIMEOUT);
                power.power_off();
                return Ok(());
            }
            Then::Reboot => {
                stream.wait_sent(REPLY_DRAIN_TIMEOUT);
                power.reboot();
                return Ok(());
            }
        }
    }
}

/// One request: `Ok(None)` on a clean EOF between frames; `Ok(Some((id,
/// Err)))` for a frame that is intact but not a valid request (answered with
/// an error, the stream is still in sync); `Err` when the stream cannot go on.
#[allow(clippy::type_complexity)]
fn read_request<S: Read>(
    stream: &mut S,
) -> Result<Option<(u64, Result<Request, String>)>, ConnError> {
    // Two steps, so that a request we do not understand is still answered
    // under its own id: frame -> JSON value -> envelope.
    let value: serde_json::Value = match read_frame(stream) {
        Ok(v) => v,
        Err(FrameError::Closed) => return Ok(None),
        // The whole frame was consumed: the stream is still in sync.
        Err(FrameError::Json(e)) => return Ok(Some((0, Err(format!("malformed request: {e}"))))),
        Err(e) => return Err(ConnError::Read(e)),
    };
    let id = value
        .get("id")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    let request = serde_json::from_value::<Envelope<Request>>(value)
        .map(|env| env.body)
        .map_err(|e| format!("malformed request: {e}"));
    Ok(Some((id, request)))
}

fn send<S: Write>(stream: &mut S, id: u64, body: Response) -> Result<(), ConnError> {
    match write_frame(stream, &Envelope { id, body }) {
        // Nothing was written yet (the size is checked before writing), so
        // the host still gets an answer, just not the one it hoped for.
        Err(FrameError::TooLarge(n)) => {
            let body = service::error(format!("reply of {n} bytes exceeds the frame limit"));
            write_frame(stream, &Envelope { id, body })
        }
        other => other,
    }
    .map_err(|source| ConnError::Write { id, source })
}

/// Read exactly `len` bytes and return their sha256, lowercase hex.
fn hash_stream<S: Read>(stream: &mut S, len: u64) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match stream.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("stream ended {left} bytes short of {len}"),
                ))
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// Write `len` bytes of the protocol's pattern, then close our write side.
fn generate_stream<S: Stream>(stream: &mut S, len: u64) -> io::Result<()> {
    let mut buf = vec![0u8; 64 << 10];
    let mut pos = 0u64;
    while pos < len {
        let n = buf
            .len()
            .min(usize::try_from(len - pos).unwrap_or(usize::MAX));
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = pattern_byte(pos + i as u64);
        }
        stream.write_all(&buf[..n])?;
        pos += n as u64;
    }
    stream.flush()?;
    stream.shutdown_write()
}

#[cfg(test)]
mod tests {
    use super::hex;

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(hex(&[]), "");
    }
}

//! The host side of the vsock bridge, for programs that talk to a guest
//! through it (the VMM's `--ping`, the host runtime, tests).

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::muxer::{CONNECT_REFUSED, CONNECT_TIMED_OUT, CONNECT_TIMEOUT};

/// Where a guest's connection to host port `port` arrives: `<uds>_<port>`.
pub fn guest_port_path(uds: &Path, port: u32) -> PathBuf {
    let mut p = uds.as_os_str().to_owned();
    p.push(format!("_{port}"));
    PathBuf::from(p)
}

/// The guest reset a connection to `port`: nothing listens there, or its
/// accept backlog is full. Unlike a bridge that hung up, this can pass.
#[derive(Debug, thiserror::Error)]
#[error("guest port {port} refused the connection")]
pub struct GuestRefused {
    pub port: u32,
}

impl GuestRefused {
    /// Whether `e` is the guest's refusal (see [`connect`]).
    pub fn is(e: &io::Error) -> bool {
        e.get_ref().is_some_and(|inner| inner.is::<Self>())
    }
}

/// Longest `OK <port>\n` line the bridge sends.
const MAX_OK_LINE: usize = 32;

/// Connect to guest port `port` through the bridge at `uds`: write
/// `CONNECT <port>\n`, wait up to `timeout` for `OK <host_port>\n`. The
/// line is read a byte at a time so no stream data is consumed with it.
/// The returned stream keeps `timeout` as its read timeout: the guest
/// controls the other end.
pub fn connect(uds: &Path, port: u32, timeout: Duration) -> io::Result<UnixStream> {
    // The bridge closed the connection without a word (it is shutting
    // down, or at its connection limit): EOF, a reset or a broken pipe.
    let closed = || {
        io::Error::new(
            io::ErrorKind::ConnectionAborted,
            format!("the vsock bridge closed the connection to guest port {port} unanswered"),
        )
    };
    let dropped = |e: io::Error| match e.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => closed(),
        _ => e,
    };
    let mut s = UnixStream::connect(uds)?;
    s.set_read_timeout(Some(timeout))?;
    s.write_all(format!("CONNECT {port}\n").as_bytes())
        .map_err(dropped)?;
    let mut line = Vec::with_capacity(MAX_OK_LINE);
    let mut byte = [0u8; 1];
    while line.last() != Some(&b'\n') {
        if line.len() == MAX_OK_LINE || s.read(&mut byte).map_err(dropped)? == 0 {
            return Err(closed());
        }
        line.push(byte[0]);
    }
    if line == CONNECT_REFUSED {
        return Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            GuestRefused { port },
        ));
    }
    if line == CONNECT_TIMED_OUT {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the guest did not answer a connection to port {port} within {} s",
                CONNECT_TIMEOUT.as_secs()
            ),
        ));
    }
    if !line.starts_with(b"OK ") {
        return Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("vsock bridge answered {:?}", String::from_utf8_lossy(&line)),
        ));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn port_paths() {
        assert_eq!(
            guest_port_path(Path::new("/run/x/v.sock"), 1025),
            PathBuf::from("/run/x/v.sock_1025")
        );
    }

    #[test]
    fn connect_reads_only_the_ok_line() {
        let dir = std::env::temp_dir().join(format!("isola-vsock-host-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("v.sock");
        let _ = std::fs::remove_file(&path);
        let l = UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = [0u8; 13];
            s.read_exact(&mut req).unwrap();
            assert_eq!(&req, b"CONNECT 1024\n");
            s.write_all(b"OK 1073741824\npayload").unwrap();
        });
        let mut s = connect(&path, 1024, Duration::from_secs(5)).unwrap();
        let mut rest = [0u8; 7];
        s.read_exact(&mut rest).unwrap();
        assert_eq!(&rest, b"payload");
        t.join().unwrap();
        // A bridge that closes instead of answering, and the bridge's two
        // reasons for a connection the guest did not take.
        for (name, answer, kind, guest_refused) in [
            ("w.sock", &b""[..], io::ErrorKind::ConnectionAborted, false),
            (
                "x.sock",
                CONNECT_REFUSED,
                io::ErrorKind::ConnectionRefused,
                true,
            ),
            ("y.sock", CONNECT_TIMED_OUT, io::ErrorKind::TimedOut, false),
        ] {
            let l = UnixListener::bind(dir.join(name)).unwrap();
            let t = std::thread::spawn(move || {
                let (mut s, _) = l.accept().unwrap();
                s.write_all(answer).unwrap();
            });
            let e = connect(&dir.join(name), 1, Duration::from_secs(5)).unwrap_err();
            assert_eq!(e.kind(), kind, "{name}: {e}");
            assert_eq!(GuestRefused::is(&e), guest_refused, "{name}: {e}");
            t.join().unwrap();
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

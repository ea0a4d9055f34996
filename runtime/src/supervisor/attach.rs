//! The attach protocol between a CLI and a container's supervisor, over the
//! container's `attach.sock`: frames of `[kind: u8][len: u32 BE][payload]`.
//! Each direction is a stream of frames; output and input never wait on
//! each other because each side reads in its own thread.

use std::io::{self, Read, Write};

/// At most this much payload per frame; bigger writes are split.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// One message on the attach socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// CLI → supervisor: bytes for the container's stdin.
    Stdin(Vec<u8>),
    /// CLI → supervisor: the CLI's stdin ended; close the container's.
    StdinEof,
    /// CLI → supervisor: the terminal's new size.
    Resize {
        rows: u16,
        cols: u16,
    },
    /// CLI → supervisor: the CLI is ready; a container waiting for its
    /// first attach may start (so no early output is lost).
    Ready,
    /// supervisor → CLI: container output.
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// supervisor → CLI: the container's exit status (docker's numbers:
    /// the code, or 128 + signal), sent after clean-up.
    Exit(i32),
    /// supervisor → CLI: why the container ended abnormally (its VM died,
    /// the agent was lost), sent just before `Exit`.
    Failure(String),
}

const STDIN: u8 = 0;
const STDIN_EOF: u8 = 1;
const RESIZE: u8 = 2;
const READY: u8 = 3;
const STDOUT: u8 = 10;
const STDERR: u8 = 11;
const EXIT: u8 = 12;
const FAILURE: u8 = 13;

impl Frame {
    /// Writes the frame as one buffer (one write, so concurrent writers on
    /// a shared socket never interleave inside a frame).
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        let (kind, payload): (u8, Vec<u8>) = match self {
            Frame::Stdin(b) => (STDIN, b.clone()),
            Frame::StdinEof => (STDIN_EOF, Vec::new()),
            Frame::Resize { rows, cols } => {
                (RESIZE, [rows.to_be_bytes(), cols.to_be_bytes()].concat())
            }
            Frame::Ready => (READY, Vec::new()),
            Frame::Stdout(b) => (STDOUT, b.clone()),
            Frame::Stderr(b) => (STDERR, b.clone()),
            Frame::Exit(code) => (EXIT, code.to_be_bytes().to_vec()),
            Frame::Failure(why) => (FAILURE, truncated(why, MAX_PAYLOAD).as_bytes().to_vec()),
        };
        if payload.len() > MAX_PAYLOAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "attach frame too large",
            ));
        }
        let mut buf = Vec::with_capacity(5 + payload.len());
        buf.push(kind);
        buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        buf.extend_from_slice(&payload);
        w.write_all(&buf)
    }

    /// Reads one frame; `Ok(None)` at a clean end of stream. A peer that
    /// sends an unknown kind or an oversized length is an error, never an
    /// allocation of its choosing.
    pub fn read_from(r: &mut impl Read) -> io::Result<Option<Frame>> {
        let mut head = [0u8; 5];
        match r.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(invalid(format!(
                "attach frame of {len} bytes exceeds {MAX_PAYLOAD}"
            )));
        }
        let mut payload = vec![0u8; len];
        r.read_exact(&mut payload)?;
        let fixed = |n: usize| -> io::Result<()> {
            if len == n {
                Ok(())
            } else {
                Err(invalid(format!(
                    "attach frame kind {} with {len} bytes",
                    head[0]
                )))
            }
        };
        Ok(Some(match head[0] {
            STDIN => Frame::Stdin(payload),
            STDIN_EOF => Frame::StdinEof,
            RESIZE => {
                fixed(4)?;
                Frame::Resize {
                    rows: u16::from_be_bytes([payload[0], payload[1]]),
                    cols: u16::from_be_bytes([payload[2], payload[3]]),
                }
            }
            READY => Frame::Ready,
            STDOUT => Frame::Stdout(payload),
            STDERR => Frame::Stderr(payload),
            EXIT => {
                fixed(4)?;
                Frame::Exit(i32::from_be_bytes([
                    payload[0], payload[1], payload[2], payload[3],
                ]))
            }
            FAILURE => Frame::Failure(String::from_utf8_lossy(&payload).into_owned()),
            other => return Err(invalid(format!("unknown attach frame kind {other}"))),
        }))
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn truncated(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_kind() {
        let frames = vec![
            Frame::Stdin(b"in".to_vec()),
            Frame::StdinEof,
            Frame::Resize {
                rows: 40,
                cols: 120,
            },
            Frame::Ready,
            Frame::Stdout(vec![0; MAX_PAYLOAD]),
            Frame::Stderr(Vec::new()),
            Frame::Exit(137),
            Frame::Failure("the container's VM stopped".into()),
        ];
        let mut wire = Vec::new();
        for f in &frames {
            f.write_to(&mut wire).unwrap();
        }
        let mut r = wire.as_slice();
        let mut back = Vec::new();
        while let Some(f) = Frame::read_from(&mut r).unwrap() {
            back.push(f);
        }
        assert_eq!(back, frames);
    }

    #[test]
    fn an_overlong_failure_reason_is_cut_not_dropped() {
        let why = "é".repeat(MAX_PAYLOAD);
        let mut wire = Vec::new();
        Frame::Failure(why).write_to(&mut wire).unwrap();
        match Frame::read_from(&mut wire.as_slice()).unwrap() {
            Some(Frame::Failure(back)) => {
                assert!(back.len() <= MAX_PAYLOAD && back.starts_with("éé"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hostile_frames_are_errors() {
        let huge = [STDOUT, 0xff, 0xff, 0xff, 0xff];
        assert!(Frame::read_from(&mut huge.as_slice()).is_err());
        let unknown = [99u8, 0, 0, 0, 0];
        assert!(Frame::read_from(&mut unknown.as_slice()).is_err());
        let short_resize = [RESIZE, 0, 0, 0, 1, 7];
        assert!(Frame::read_from(&mut short_resize.as_slice()).is_err());
        let truncated = [STDOUT, 0, 0, 0, 9, 1, 2];
        assert!(Frame::read_from(&mut truncated.as_slice()).is_err());
        assert!(
            Frame::write_to(&Frame::Stdout(vec![0; MAX_PAYLOAD + 1]), &mut Vec::new()).is_err()
        );
    }
}

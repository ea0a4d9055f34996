//! Framing: a 4-byte big-endian length, then that many bytes of JSON.
//!
//! The length is checked against [`MAX_FRAME_LEN`] before anything is
//! allocated, so a hostile peer cannot make us reserve gigabytes.

use std::io::{self, Read, Write};

use serde::{de::DeserializeOwned, Serialize};

/// Largest frame either side accepts (16 MiB).
pub const MAX_FRAME_LEN: u32 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed by peer")]
    Closed,
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_LEN}-byte limit")]
    TooLarge(u64),
    #[error("i/o error on the agent stream: {0}")]
    Io(#[from] io::Error),
    #[error("malformed frame: {0}")]
    Json(#[from] serde_json::Error),
}

/// Serialize `msg` and write it as one frame.
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    let body = serde_json::to_vec(msg)?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|l| *l <= MAX_FRAME_LEN)
        .ok_or(FrameError::TooLarge(body.len() as u64))?;
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf)?;
    w.flush()?;
    Ok(())
}

/// Read one frame and deserialize it. A clean EOF before the first length
/// byte is [`FrameError::Closed`]; EOF inside a frame is an I/O error.
pub fn read_frame<R: Read, T: DeserializeOwned>(r: &mut R) -> Result<T, FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_be_bytes(len);
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(len.into()));
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body)?;
    Ok(serde_json::from_slice(&body)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Envelope, Request};

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        let env = Envelope {
            id: 7,
            body: Request::Ping,
        };
        write_frame(&mut buf, &env).unwrap();
        let back: Envelope<Request> = read_frame(&mut buf.as_slice()).unwrap();
        assert_eq!(back.id, 7);
        assert!(matches!(back.body, Request::Ping));
    }

    #[test]
    fn oversized_length_is_rejected_before_allocating() {
        let buf = (MAX_FRAME_LEN + 1).to_be_bytes();
        let err = read_frame::<_, Envelope<Request>>(&mut buf.as_slice()).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge(_)), "{err}");
    }

    #[test]
    fn truncated_and_garbage_frames_are_errors() {
        let mut buf = 10u32.to_be_bytes().to_vec();
        buf.extend_from_slice(b"{\"id\"");
        assert!(matches!(
            read_frame::<_, Envelope<Request>>(&mut buf.as_slice()),
            Err(FrameError::Io(_))
        ));
        let mut buf = 3u32.to_be_bytes().to_vec();
        buf.extend_from_slice(b"}}}");
        assert!(matches!(
            read_frame::<_, Envelope<Request>>(&mut buf.as_slice()),
            Err(FrameError::Json(_))
        ));
        assert!(matches!(
            read_frame::<_, Envelope<Request>>(&mut [].as_slice()),
            Err(FrameError::Closed)
        ));
    }
}

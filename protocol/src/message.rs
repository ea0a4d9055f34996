//! The messages. Every request carries an id that its response echoes, so a
//! client can tell a late answer from the one it waits for.

use serde::{Deserialize, Serialize};

/// Bumped on every incompatible change; the agent reports it in
/// [`Response::Version`] and the host refuses a mismatch.
pub const PROTOCOL_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub id: u64,
    pub body: T,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Liveness check; answered with [`Response::Pong`].
    Ping,
    /// Protocol and agent version; answered with [`Response::Version`].
    Version,
    /// Run a program to completion and collect its output.
    Exec {
        argv: Vec<String>,
        #[serde(default)]
        env: Vec<String>,
        #[serde(default)]
        cwd: Option<String>,
        #[serde(default, with = "crate::message::b64")]
        stdin: Vec<u8>,
    },
    /// Mount a filesystem (for example an attached virtio-blk disk).
    Mount {
        source: String,
        target: String,
        fstype: String,
        #[serde(default)]
        readonly: bool,
    },
    /// Read a whole file (bounded by the frame limit).
    ReadFile { path: String },
    /// Create or replace a file, then fsync it.
    WriteFile {
        path: String,
        #[serde(with = "crate::message::b64")]
        data: Vec<u8>,
    },
    /// After the response, the host sends exactly `len` raw bytes on the same
    /// stream; the agent answers with their sha256 in [`Response::Hash`].
    /// Exercises bulk host→guest transfer without frame limits.
    HashStream { len: u64 },
    /// After the response, the agent sends `len` raw bytes of a deterministic
    /// pattern (see [`pattern_byte`]) and closes its side.
    GenerateStream { len: u64 },
    /// Open a vsock connection from the guest to the host (CID 2) on `port`,
    /// write `payload`, and close it.
    ConnectHost {
        port: u32,
        #[serde(with = "crate::message::b64")]
        payload: Vec<u8>,
    },
    /// Sync filesystems, answer, then power the VM off.
    Shutdown,
    /// Sync, answer, then reboot (the VMM ends the VM on reset).
    Reboot,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExecResult {
    /// Exit code, or 128 + signal number when the process was killed.
    pub status: i32,
    #[serde(with = "crate::message::b64")]
    pub stdout: Vec<u8>,
    #[serde(with = "crate::message::b64")]
    pub stderr: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    Pong,
    Version {
        protocol: u32,
        agent: String,
    },
    Exec(ExecResult),
    File {
        #[serde(with = "crate::message::b64")]
        data: Vec<u8>,
    },
    Hash {
        sha256: String,
    },
    /// The request was carried out and has nothing else to say.
    Ok,
    /// The request failed; `message` says why.
    Error {
        message: String,
    },
}

/// Byte `i` of the pattern [`Request::GenerateStream`] produces.
pub fn pattern_byte(i: u64) -> u8 {
    (i.wrapping_mul(2654435761) >> 13) as u8
}

/// Binary payloads travel as base64 strings: JSON arrays of numbers would be
/// four times larger.
pub(crate) mod b64 {
    use base64::{engine::general_purpose::STANDARD, Engine};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

//! The messages. Every request carries an id that its response echoes, so a
//! client can tell a late answer from the one it waits for.

use serde::{Deserialize, Serialize};

/// Bumped on every incompatible change; the agent reports it in
/// [`Response::Version`] and the host refuses a mismatch.
pub const PROTOCOL_VERSION: u32 = 3;

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
    /// Prepare container `id`: its root filesystem, its bundle (`spec`, the
    /// very config.json of the process level; the agent points `root.path`
    /// at the guest rootfs), and the `files` its bind mounts name. Its init
    /// is then a [`ProcessKey`] with `exec_id` None.
    ///
    /// The root is either an overlay of the image disk `image_device` and a
    /// writable layer (`isola run`), or, with `root_share`, a host directory
    /// shared over virtio-fs under that tag and used as it is (a bundle an
    /// OCI runtime caller such as podman prepared). Exactly one is given.
    CreateContainer {
        id: String,
        spec: String,
        #[serde(default)]
        image_device: Option<String>,
        #[serde(default)]
        root_share: Option<String>,
        /// A disk (ext4) for the writable layer; guest memory without one.
        #[serde(default)]
        scratch_device: Option<String>,
        #[serde(default)]
        files: Vec<GuestFile>,
        /// Host directories shared over virtio-fs, for the spec's bind
        /// mounts that name them.
        #[serde(default)]
        volumes: Vec<GuestVolume>,
        #[serde(default)]
        terminal: bool,
        #[serde(default)]
        stdin: bool,
    },
    /// Prepare an extra process in a running container; `process` is an OCI
    /// process JSON, as `runc exec --process` takes it.
    CreateExec {
        id: String,
        exec_id: String,
        process: String,
        #[serde(default)]
        terminal: bool,
        #[serde(default)]
        stdin: bool,
    },
    /// After the `Ok`, this connection *is* one standard stream of the
    /// process: raw bytes, no frames. Stdin's end of file is the host
    /// closing the connection. Must come before `StartProcess`.
    AttachStdio {
        #[serde(flatten)]
        key: ProcessKey,
        stream: StdioStream,
    },
    /// Start a prepared process (the container's init or an exec).
    StartProcess {
        #[serde(flatten)]
        key: ProcessKey,
    },
    /// Answered with [`Response::Exited`] once the process has ended; for
    /// the init, once the container is gone too.
    WaitProcess {
        #[serde(flatten)]
        key: ProcessKey,
    },
    /// Send `signal` (a name or number) to the container's init, or with
    /// `all` to every process of the container.
    SignalContainer {
        id: String,
        signal: String,
        #[serde(default)]
        all: bool,
    },
    /// Send signal `signal` (a number) to one process: an exec, whose host
    /// side was signalled (podman's exec timeouts, containerd's exec kill).
    SignalProcess {
        #[serde(flatten)]
        key: ProcessKey,
        signal: i32,
    },
    /// Freeze (`paused`) or thaw every process of the container, by the
    /// guest runner's `pause`/`resume` (its cgroup's freezer).
    FreezeContainer { id: String, paused: bool },
    /// New limits for the container's cgroup: a runtime-spec
    /// `linux.resources` JSON document, which the guest runner's `update
    /// --resources -` applies as the host's runner does at the process
    /// level. The VM's own memory and vCPUs stay as they were booted.
    UpdateContainer { id: String, resources: String },
    /// Set the size of a process's terminal.
    ResizeTerminal {
        #[serde(flatten)]
        key: ProcessKey,
        rows: u16,
        cols: u16,
    },
    /// The container's cgroup figures, as `runc events --stats` prints them;
    /// answered with [`Response::Stats`].
    ContainerStats { id: String },
    /// The first request to a guest started from a snapshot rather than
    /// booted: set the wall clock (the snapshot's is stale), mix host
    /// entropy into the kernel's RNG and reseed it (so that guests started
    /// from one snapshot do not share random streams), and drop the block
    /// devices' cached blocks (read from the snapshot's own disks).
    Restored {
        unix_time_ns: u64,
        #[serde(with = "crate::message::b64")]
        entropy: Vec<u8>,
    },
    /// Sync filesystems, answer, then power the VM off.
    Shutdown,
    /// Sync, answer, then reboot (the VMM ends the VM on reset).
    Reboot,
}

/// Which process of which container: the init when `exec_id` is None.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct ProcessKey {
    pub id: String,
    #[serde(default)]
    pub exec_id: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum StdioStream {
    Stdin,
    Stdout,
    Stderr,
}

/// A small host file a bind mount of the bundle names (hosts, resolv.conf,
/// hostname): shipped in the request and written in the guest at `path`
/// (the same path the spec names, under the agent's bundle directory).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GuestFile {
    pub source: String,
    #[serde(with = "crate::message::b64")]
    pub data: Vec<u8>,
}

/// A host directory the VM has as a virtio-fs device `tag`; the agent
/// mounts it and points the spec's bind mounts of `source` (the host path,
/// as config.json names it) at that mount.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GuestVolume {
    pub tag: String,
    pub source: String,
    #[serde(default)]
    pub read_only: bool,
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
    /// A process ended: its exit code (128 + signal when killed), and
    /// whether its container's cgroup saw the OOM killer.
    Exited {
        code: i32,
        #[serde(default)]
        oom_killed: bool,
    },
    Stats {
        json: String,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_keys_flatten_into_the_request() {
        let req = Request::AttachStdio {
            key: ProcessKey {
                id: "c1".into(),
                exec_id: Some("e1".into()),
            },
            stream: StdioStream::Stderr,
        };
        let json = serde_json::to_value(&req).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "attach_stdio", "id": "c1", "exec_id": "e1", "stream": "stderr"})
        );
        let back: Request = serde_json::from_value(json).unwrap();
        assert!(
            matches!(back, Request::AttachStdio { key, .. } if key.exec_id.as_deref() == Some("e1"))
        );
        // The init: no exec_id at all.
        let init: Request = serde_json::from_str(r#"{"type":"wait_process","id":"c1"}"#).unwrap();
        assert!(matches!(init, Request::WaitProcess { key } if key.exec_id.is_none()));
    }
}

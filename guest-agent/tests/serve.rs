//! The per-connection service over a Unix socket pair: every request type,
//! malformed input, and many connections at once. Nothing here needs root
//! or a VM (the one root-only check skips itself otherwise).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use isola_agent::exec::OUTPUT_CAP;
use isola_agent::power::Power;
use isola_agent::serve::{serve, ConnError};
use isola_protocol::message::pattern_byte;
use isola_protocol::{
    read_frame, write_frame, AgentClient, ClientError, Envelope, Request, Response,
    PROTOCOL_VERSION,
};
use sha2::{Digest, Sha256};

#[derive(Default)]
struct FakePower {
    power_offs: AtomicUsize,
    reboots: AtomicUsize,
}

impl Power for FakePower {
    fn power_off(&self) {
        self.power_offs.fetch_add(1, Ordering::SeqCst);
    }
    fn reboot(&self) {
        self.reboots.fetch_add(1, Ordering::SeqCst);
    }
}

struct Agent {
    client: AgentClient<UnixStream>,
    server: JoinHandle<Result<(), ConnError>>,
    power: Arc<FakePower>,
}

fn agent() -> Agent {
    let (client, server) = UnixStream::pair().expect("socketpair");
    let power = Arc::new(FakePower::default());
    let p = Arc::clone(&power);
    let server = std::thread::spawn(move || serve(server, p.as_ref()));
    Agent {
        client: AgentClient::new(client),
        server,
        power,
    }
}

fn exec(client: &mut AgentClient<UnixStream>, argv: &[&str], stdin: &[u8]) -> Response {
    client
        .call(Request::Exec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: vec!["PATH=/usr/bin:/bin".into()],
            cwd: None,
            stdin: stdin.to_vec(),
        })
        .expect("exec reply")
}

fn exec_ok(
    client: &mut AgentClient<UnixStream>,
    argv: &[&str],
    stdin: &[u8],
) -> (i32, Vec<u8>, Vec<u8>) {
    match exec(client, argv, stdin) {
        Response::Exec(r) => (r.status, r.stdout, r.stderr),
        other => panic!("unexpected {other:?}"),
    }
}

fn agent_error(r: Result<Response, ClientError>) -> String {
    match r {
        Err(ClientError::Agent(m)) => m,
        other => panic!("expected an agent error, got {other:?}"),
    }
}

fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("isola-agent-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[test]
fn ping_version_and_clean_close() {
    let Agent {
        mut client, server, ..
    } = agent();
    client.ping().expect("ping");
    assert_eq!(
        client.handshake().expect("version"),
        env!("CARGO_PKG_VERSION")
    );
    match client.call(Request::Version).expect("version") {
        Response::Version { protocol, .. } => assert_eq!(protocol, PROTOCOL_VERSION),
        other => panic!("{other:?}"),
    }
    drop(client);
    server.join().expect("join").expect("clean close is Ok");
}

#[test]
fn exec_status_output_and_stdin() {
    let Agent { mut client, .. } = agent();
    let (status, out, err) = exec_ok(
        &mut client,
        &["sh", "-c", "echo out; echo err >&2; exit 3"],
        b"",
    );
    assert_eq!(
        (status, &out[..], &err[..]),
        (3, &b"out\n"[..], &b"err\n"[..])
    );

    // stdin is fed; a large stdin and large output at once must not deadlock.
    let input: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
    let (status, out, _) = exec_ok(&mut client, &["cat"], &input);
    assert_eq!(status, 0);
    assert_eq!(out, input);

    // Killed by a signal: 128 + signo.
    let (status, _, _) = exec_ok(&mut client, &["sh", "-c", "kill -9 $$"], b"");
    assert_eq!(status, 128 + 9);

    // env is exactly what was given; cwd is honoured.
    let r = client
        .call(Request::Exec {
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                "echo \"$FOO:$HOME:$(pwd)\"".into(),
            ],
            env: vec!["FOO=bar".into()],
            cwd: Some("/tmp".into()),
            stdin: vec![],
        })
        .expect("exec");
    match r {
        Response::Exec(r) => assert_eq!(r.stdout, b"bar::/tmp\n"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn exec_output_is_capped_and_interleaved_streams_do_not_block() {
    let Agent { mut client, .. } = agent();
    // 6 MiB on each stream, written alternately: a collector that read one
    // stream to EOF before the other would deadlock here.
    let script = "i=0; while [ $i -lt 6 ]; do head -c 1048576 /dev/zero; head -c 1048576 /dev/zero >&2; i=$((i+1)); done";
    let (status, out, err) = exec_ok(&mut client, &["sh", "-c", script], b"");
    assert_eq!(status, 0);
    assert_eq!(out.len(), OUTPUT_CAP);
    assert_eq!(err.len(), OUTPUT_CAP);
}

#[test]
fn exec_failures_are_errors_not_statuses() {
    let Agent { mut client, .. } = agent();
    let m = agent_error(client.call(Request::Exec {
        argv: vec!["no-such-program-xyz".into()],
        env: vec![],
        cwd: None,
        stdin: vec![],
    }));
    assert!(
        m.contains("no-such-program-xyz") && m.contains("No such file"),
        "{m}"
    );

    let m = agent_error(client.call(Request::Exec {
        argv: vec!["true".into()],
        env: vec!["PATH=/bin".into()],
        cwd: Some("/no/such/dir".into()),
        stdin: vec![],
    }));
    assert!(m.contains("/no/such/dir"), "{m}");

    let m = agent_error(client.call(Request::Exec {
        argv: vec![],
        env: vec![],
        cwd: None,
        stdin: vec![],
    }));
    assert!(m.contains("argv is empty"), "{m}");

    let m = agent_error(client.call(Request::Exec {
        argv: vec!["a\0b".into()],
        env: vec![],
        cwd: None,
        stdin: vec![],
    }));
    assert!(m.contains("NUL"), "{m}");

    // Not executable: permission denied, reported as such.
    let dir = scratch_dir("noexec");
    let file = dir.join("script");
    std::fs::write(&file, "#!/bin/sh\necho hi\n").expect("write");
    let m = agent_error(client.call(Request::Exec {
        argv: vec![file.to_string_lossy().into_owned()],
        env: vec![],
        cwd: None,
        stdin: vec![],
    }));
    assert!(m.contains("Permission denied"), "{m}");

    // The connection is still fine afterwards.
    client.ping().expect("ping after errors");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn exec_returns_when_the_child_exits_even_if_a_background_process_holds_stdout() {
    let Agent { mut client, .. } = agent();
    let started = std::time::Instant::now();
    let (status, out, _) = exec_ok(&mut client, &["sh", "-c", "sleep 30 & echo started"], b"");
    assert_eq!(status, 0);
    assert_eq!(out, b"started\n");
    assert!(
        started.elapsed().as_secs() < 10,
        "exec waited for the background sleep"
    );
}

#[test]
fn read_and_write_files() {
    let Agent { mut client, .. } = agent();
    let dir = scratch_dir("files");
    let path = dir.join("f").to_string_lossy().into_owned();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
    client
        .expect_ok(Request::WriteFile {
            path: path.clone(),
            data: data.clone(),
        })
        .expect("write");
    assert_eq!(client.read_file(&path).expect("read"), data);
    assert_eq!(std::fs::read(&path).expect("read back"), data);

    // A file with no size in its metadata still reads whole.
    let cmdline = client.read_file("/proc/self/status").expect("read /proc");
    assert!(!cmdline.is_empty());

    let m = agent_error(client.call(Request::ReadFile {
        path: "relative/path".into(),
    }));
    assert!(m.contains("not an absolute path"), "{m}");
    let m = agent_error(client.call(Request::ReadFile {
        path: dir.join("missing").to_string_lossy().into_owned(),
    }));
    assert!(m.contains("No such file"), "{m}");
    let m = agent_error(client.call(Request::WriteFile {
        path: "/no/such/dir/f".into(),
        data: vec![1],
    }));
    assert!(m.contains("cannot create"), "{m}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn hash_stream() {
    let Agent { mut client, .. } = agent();
    let len = 5_000_000u64;
    client.expect_ok(Request::HashStream { len }).expect("ok");
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    // Write from another thread: the agent only replies after reading all.
    let mut writer = client.stream().try_clone().expect("clone");
    let expected = format!("{:x}", Sha256::digest(&data));
    let w = std::thread::spawn(move || writer.write_all(&data));
    let reply: Envelope<Response> = read_frame(client.stream()).expect("hash reply");
    w.join().expect("join").expect("write");
    assert_eq!(reply.id, 1);
    match reply.body {
        Response::Hash { sha256 } => assert_eq!(sha256, expected),
        other => panic!("{other:?}"),
    }
    // Zero bytes works too, and the connection goes on.
    client
        .expect_ok(Request::HashStream { len: 0 })
        .expect("ok");
    match client.read_reply(2).expect("hash") {
        Response::Hash { sha256 } => assert_eq!(sha256, format!("{:x}", Sha256::digest([]))),
        other => panic!("{other:?}"),
    }
    client.ping().expect("ping");
}

#[test]
fn generate_stream_then_eof() {
    let Agent {
        mut client, server, ..
    } = agent();
    let len = 3_000_001u64;
    client
        .expect_ok(Request::GenerateStream { len })
        .expect("ok");
    let mut got = Vec::new();
    client.stream().read_to_end(&mut got).expect("read to EOF");
    assert_eq!(got.len() as u64, len);
    assert!(got
        .iter()
        .enumerate()
        .all(|(i, b)| *b == pattern_byte(i as u64)));
    drop(client);
    server.join().expect("join").expect("ok");
}

#[test]
fn malformed_input_is_answered_not_fatal() {
    let (mut c, s) = UnixStream::pair().expect("pair");
    let power = FakePower::default();
    let server = std::thread::spawn(move || serve(s, &power));

    // Not JSON at all: an error under id 0, and the stream stays usable.
    c.write_all(&5u32.to_be_bytes())
        .and_then(|()| c.write_all(b"}}}}}"))
        .expect("write");
    let r: Envelope<Response> = read_frame(&mut c).expect("reply");
    assert_eq!(r.id, 0);
    assert!(matches!(r.body, Response::Error { .. }), "{:?}", r.body);

    // Valid JSON, unknown request type: an error under the request's id.
    write_frame(
        &mut c,
        &serde_json::json!({"id": 42, "body": {"type": "frobnicate"}}),
    )
    .expect("write");
    let r: Envelope<Response> = read_frame(&mut c).expect("reply");
    assert_eq!(r.id, 42);
    match r.body {
        Response::Error { message } => assert!(message.contains("frobnicate"), "{message}"),
        other => panic!("{other:?}"),
    }

    // Wrong field types.
    write_frame(
        &mut c,
        &serde_json::json!({"id": 43, "body": {"type": "read_file", "path": 7}}),
    )
    .expect("write");
    let r: Envelope<Response> = read_frame(&mut c).expect("reply");
    assert_eq!(r.id, 43);
    assert!(matches!(r.body, Response::Error { .. }));

    // Bad base64 in a binary field.
    write_frame(&mut c, &serde_json::json!({"id": 44, "body": {"type": "write_file", "path": "/tmp/x", "data": "!!!"}})).expect("write");
    let r: Envelope<Response> = read_frame(&mut c).expect("reply");
    assert_eq!(r.id, 44);
    assert!(matches!(r.body, Response::Error { .. }));

    // Still serving.
    write_frame(
        &mut c,
        &Envelope {
            id: 45,
            body: Request::Ping,
        },
    )
    .expect("write");
    let r: Envelope<Response> = read_frame(&mut c).expect("reply");
    assert_eq!(r.id, 45);
    assert!(matches!(r.body, Response::Pong));

    // An oversized length cannot be skipped: the connection ends (with an
    // error for the log), without allocating.
    c.write_all(&u32::MAX.to_be_bytes()).expect("write");
    assert!(server.join().expect("join").is_err());
}

#[test]
fn truncated_frame_ends_the_connection() {
    let (mut c, s) = UnixStream::pair().expect("pair");
    let power = FakePower::default();
    let server = std::thread::spawn(move || serve(s, &power));
    c.write_all(&100u32.to_be_bytes())
        .and_then(|()| c.write_all(b"{\"id\":1"))
        .expect("write");
    drop(c);
    assert!(server.join().expect("join").is_err());
}

#[test]
fn shutdown_and_reboot_reply_first() {
    let Agent {
        mut client,
        server,
        power,
    } = agent();
    client.expect_ok(Request::Shutdown).expect("shutdown ok");
    server.join().expect("join").expect("ok");
    assert_eq!(power.power_offs.load(Ordering::SeqCst), 1);

    let Agent {
        mut client,
        server,
        power,
    } = agent();
    client.expect_ok(Request::Reboot).expect("reboot ok");
    server.join().expect("join").expect("ok");
    assert_eq!(power.reboots.load(Ordering::SeqCst), 1);
    assert_eq!(power.power_offs.load(Ordering::SeqCst), 0);
}

#[test]
fn mount_validates_input() {
    let Agent { mut client, .. } = agent();
    let m = agent_error(client.call(Request::Mount {
        source: "tmpfs".into(),
        target: "relative".into(),
        fstype: "tmpfs".into(),
        readonly: false,
    }));
    assert!(m.contains("not an absolute path"), "{m}");
    let m = agent_error(client.call(Request::Mount {
        source: "".into(),
        target: "/mnt".into(),
        fstype: "tmpfs".into(),
        readonly: false,
    }));
    assert!(m.contains("source is empty"), "{m}");
    let m = agent_error(client.call(Request::Mount {
        source: "tmpfs".into(),
        target: "/mnt".into(),
        fstype: "".into(),
        readonly: false,
    }));
    assert!(m.contains("type is empty"), "{m}");
}

/// Real mounts need root. The serving thread moves into a private mount
/// namespace first, so nothing it mounts is visible on (or left behind on)
/// the host; skips itself when not root.
#[test]
fn mount_tmpfs_readonly_and_readwrite_as_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = scratch_dir("mount");
    let (c, s) = UnixStream::pair().expect("pair");
    let server = std::thread::spawn(move || {
        // SAFETY: unshare only affects this thread's mount namespace (and
        // its own fs struct, which CLONE_NEWNS unshares with it).
        if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
        isola_agent::sys::mount("none", "/", "", libc::MS_REC | libc::MS_PRIVATE, None)
            .map_err(|e| e.to_string())?;
        serve(s, &FakePower::default()).map_err(|e| e.to_string())
    });
    let mut client = AgentClient::new(c);
    let ro = dir.join("ro").to_string_lossy().into_owned();
    let rw = dir.join("a/b/rw").to_string_lossy().into_owned();
    let mount = |client: &mut AgentClient<UnixStream>, target: &str, readonly| {
        client.expect_ok(Request::Mount {
            source: "tmpfs".into(),
            target: target.into(),
            fstype: "tmpfs".into(),
            readonly,
        })
    };
    if let Err(e) = mount(&mut client, &ro, true) {
        drop(client);
        eprintln!("skipped: cannot mount here ({e}; {:?})", server.join());
        return;
    }
    mount(&mut client, &rw, false).expect("mount rw (creating parents)");
    let m = agent_error(client.call(Request::WriteFile {
        path: format!("{ro}/f"),
        data: vec![1],
    }));
    assert!(m.contains("Read-only"), "{m}");
    client
        .expect_ok(Request::WriteFile {
            path: format!("{rw}/f"),
            data: vec![1],
        })
        .expect("write on rw tmpfs");
    // Not visible outside the private namespace.
    assert!(!std::path::Path::new(&format!("{rw}/f")).exists());
    let m = agent_error(client.call(Request::Mount {
        source: "none".into(),
        target: format!("{rw}/x"),
        fstype: "no-such-fs".into(),
        readonly: false,
    }));
    assert!(m.contains("no-such-fs"), "{m}");
    drop(client);
    server.join().expect("join").expect("serve");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn connect_host_without_vsock_is_an_error() {
    let Agent { mut client, .. } = agent();
    // Outside a VM the host CID is unreachable (or AF_VSOCK is missing):
    // either way an error reply, never a crash.
    match client.call(Request::ConnectHost {
        port: 9,
        payload: b"x".to_vec(),
    }) {
        Err(ClientError::Agent(m)) => assert!(m.contains("vsock port 9"), "{m}"),
        Ok(Response::Ok) => {} // a host with a vsock loopback listener on 9
        other => panic!("{other:?}"),
    }
    client.ping().expect("ping");
}

#[test]
fn many_concurrent_connections_with_exec() {
    let handles: Vec<_> = (0..100)
        .map(|i| {
            std::thread::spawn(move || {
                let Agent { mut client, .. } = agent();
                client.ping().expect("ping");
                let (status, out, _) = exec_ok(
                    &mut client,
                    &["sh", "-c", &format!("echo {i}; exit {}", i % 7)],
                    b"",
                );
                assert_eq!(status, i % 7);
                assert_eq!(out, format!("{i}\n").into_bytes());
            })
        })
        .collect();
    for h in handles {
        h.join().expect("connection thread");
    }
}

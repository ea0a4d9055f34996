//! `isola-vmm` on this host's own /dev/kvm, driven by the tiny guest
//! (`tests/tiny-guest/`): boot path, exit paths, virtio-blk, virtio-vsock,
//! malformed descriptor chains, signals and bad input.
//!
//! These run directly on whatever /dev/kvm the host has: the tiny guest is
//! bare-metal code that even kvm_pvm runs (with `--force`). Needs
//! `cargo build --workspace` first, for the `isola-vmm` binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use isola_tests::bin;

const TINY_GUEST: &str = env!("TINY_GUEST_ELF");
/// Every VMM run is killed (and the test failed) after this long.
const TIMEOUT: Duration = Duration::from_secs(60);

// ---- running the VMM ---------------------------------------------------------

/// A scratch directory under /tmp (short paths: Unix socket names are
/// limited to 108 bytes), removed when the test passes.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("isola-tiny-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// `isola-vmm --force --kernel <tiny> --no-initramfs --console stdout ARGS
/// [--cmdline-extra EXTRA]`.
fn tiny(extra: &str, args: &[&str]) -> Command {
    let mut c = Command::new(bin("isola-vmm"));
    c.args([
        "--force",
        "--kernel",
        TINY_GUEST,
        "--no-initramfs",
        "--console",
        "stdout",
    ]);
    c.args(args);
    if !extra.is_empty() {
        c.args(["--cmdline-extra", extra]);
    }
    c
}

struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Output {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Lines the guest printed, without the "TINY: " prefix.
    fn tiny_lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix("TINY: "))
            .collect()
    }

    fn has_line(&self, want: &str) -> bool {
        self.tiny_lines().contains(&want)
    }

    fn describe(&self) -> String {
        format!(
            "status {}\n--- stdout\n{}--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }

    fn assert_line(&self, want: &str) {
        assert!(
            self.has_line(want),
            "guest did not print {want:?}\n{}",
            self.describe()
        );
    }

    fn assert_code(&self, want: i32) {
        assert_eq!(
            self.code(),
            Some(want),
            "wrong exit status\n{}",
            self.describe()
        );
    }

    fn assert_no_panic(&self) {
        assert!(
            !self.stderr.contains("panicked"),
            "the VMM panicked\n{}",
            self.describe()
        );
    }
}

/// A running VMM whose stdout lines arrive on a channel.
struct Running {
    child: Child,
    lines: Receiver<String>,
    stdout_seen: Vec<String>,
    stdout_thread: Option<JoinHandle<()>>,
    stderr_thread: Option<JoinHandle<String>>,
}

impl Running {
    fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn isola-vmm");
        let out = child.stdout.take().expect("stdout");
        let mut err = child.stderr.take().expect("stderr");
        let (tx, lines) = channel();
        let stdout_thread = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        });
        let stderr_thread = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Running {
            child,
            lines,
            stdout_seen: Vec::new(),
            stdout_thread: Some(stdout_thread),
            stderr_thread: Some(stderr_thread),
        }
    }

    /// Wait until the guest prints `TINY: <want>`.
    fn wait_line(&mut self, want: &str) {
        let deadline = Instant::now() + TIMEOUT;
        let full = format!("TINY: {want}");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let done = l == full;
                    self.stdout_seen.push(l);
                    if done {
                        return;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    let out = self.finish();
                    panic!("guest never printed {full:?}\n{}", out.describe());
                }
            }
        }
    }

    /// Wait for the VMM to exit, killing it (and failing) after TIMEOUT.
    fn wait(mut self) -> Output {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match self.child.try_wait().expect("try_wait") {
                Some(_) => return self.finish(),
                None if Instant::now() > deadline => {
                    let _ = self.child.kill();
                    let out = self.finish();
                    panic!(
                        "isola-vmm still running after {} s; killed\n{}",
                        TIMEOUT.as_secs(),
                        out.describe()
                    );
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }

    fn finish(&mut self) -> Output {
        let status = self.child.wait().expect("wait");
        if let Some(t) = self.stdout_thread.take() {
            let _ = t.join();
        }
        let stderr = self
            .stderr_thread
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default();
        let mut stdout = String::new();
        for l in self.stdout_seen.drain(..).chain(self.lines.try_iter()) {
            stdout.push_str(&l);
            stdout.push('\n');
        }
        Output {
            status,
            stdout,
            stderr,
        }
    }
}

fn run(cmd: Command) -> Output {
    let out = Running::spawn(cmd).wait();
    out.assert_no_panic();
    out
}

// ---- boot and exit paths -------------------------------------------------------

#[test]
fn marker_and_poweroff_exit_0() {
    let out = run(tiny("", &[]));
    out.assert_line("hello");
    out.assert_line("exit poweroff");
    out.assert_code(0);
    // The explicit form behaves the same, and the guest saw our command line.
    let out = run(tiny("tiny.exit=poweroff", &[]));
    out.assert_line("hello");
    out.assert_code(0);
    assert!(
        out.stderr.is_empty() || !out.stderr.contains("error"),
        "{}",
        out.describe()
    );
}

#[test]
fn i8042_reset_exits_3() {
    let out = run(tiny("tiny.exit=reset", &[]));
    out.assert_line("exit reset");
    out.assert_code(3);
    assert!(out.stderr.contains("reset"), "{}", out.describe());
}

#[test]
fn triple_fault_exits_3() {
    let out = run(tiny("tiny.exit=triple", &[]));
    out.assert_line("exit triple");
    out.assert_code(3);
}

// ---- virtio-blk -------------------------------------------------------------------

const SECTOR0_TEXT: &[u8] = b"isola-tiny-disk!and more text past the first sixteen bytes";
const SECTOR1_TEXT: &[u8] = b"sector one, untouched";

/// A 1 MiB disk image with known text in sectors 0 and 1.
fn disk_image(dir: &Scratch) -> PathBuf {
    let p = dir.path("disk.img");
    let f = std::fs::File::create(&p).expect("create disk image");
    f.set_len(1 << 20).expect("size disk image");
    f.write_all_at(SECTOR0_TEXT, 0).expect("write sector 0");
    f.write_all_at(SECTOR1_TEXT, 512).expect("write sector 1");
    p
}

fn sector(path: &Path, n: u64) -> Vec<u8> {
    let f = std::fs::File::open(path).expect("open disk image");
    let mut buf = vec![0u8; 512];
    f.read_exact_at(&mut buf, n * 512).expect("read sector");
    buf
}

#[test]
fn blk_reads_sector_0_and_reports_capacity() {
    let dir = Scratch::new("blk-read");
    let img = disk_image(&dir);
    let out = run(tiny("tiny.blk=1", &["--disk", img.to_str().unwrap()]));
    out.assert_line("blk device at 0xd0000000");
    out.assert_line("blk capacity=2048");
    out.assert_line("blk sector0: isola-tiny-disk!");
    out.assert_code(0);
}

#[test]
fn blk_write_reaches_the_image_file() {
    let dir = Scratch::new("blk-write");
    let img = disk_image(&dir);
    let out = run(tiny(
        "tiny.blk=1 tiny.blkwrite=1",
        &["--disk", img.to_str().unwrap()],
    ));
    out.assert_line("blk write status=0");
    out.assert_line("blk flush status=0");
    out.assert_code(0);
    let mut want = b"tiny-guest-was-here".to_vec();
    want.resize(512, 0);
    assert_eq!(sector(&img, 1), want, "sector 1 after the guest's write");
    assert!(
        sector(&img, 0).starts_with(SECTOR0_TEXT),
        "sector 0 untouched"
    );
}

#[test]
fn blk_write_refused_on_read_only_disk() {
    let dir = Scratch::new("blk-ro");
    let img = disk_image(&dir);
    let arg = format!("{},ro", img.display());
    let out = run(tiny("tiny.blk=1 tiny.blkwrite=1", &["--disk", &arg]));
    out.assert_line("blk sector0: isola-tiny-disk!");
    // VIRTIO_BLK_S_IOERR
    out.assert_line("blk write status=1");
    out.assert_code(0);
    assert!(
        sector(&img, 1).starts_with(SECTOR1_TEXT),
        "read-only image was modified"
    );
}

#[test]
fn blk_get_id_names_the_disk() {
    let dir = Scratch::new("blk-id");
    let img = disk_image(&dir);
    let out = run(tiny("tiny.blk=1", &["--disk", img.to_str().unwrap()]));
    out.assert_line("blk id status=0 id: isola-disk0");
    out.assert_code(0);
}

#[test]
fn blk_hostile_chains_all_survived() {
    let dir = Scratch::new("blk-hostile");
    let img = disk_image(&dir);
    let out = run(tiny(
        "tiny.blk=1 tiny.hostile=1",
        &["--disk", img.to_str().unwrap()],
    ));
    for name in [
        "oob-addr",
        "past-ram",
        "loop",
        "status-ro",
        "header-only",
        "past-end",
    ] {
        out.assert_line(&format!("hostile {name} survived"));
    }
    // A read past the end of the disk is a well-formed request: IOERR.
    out.assert_line("hostile past-end used len=1 status=1");
    // Chains the device cannot use at all get no status byte.
    for name in ["oob-addr", "past-ram", "header-only"] {
        out.assert_line(&format!("hostile {name} used len=0 status=255"));
    }
    out.assert_line("hostile done");
    out.assert_code(0);
    assert!(sector(&img, 0).starts_with(SECTOR0_TEXT), "image damaged");
}

// ---- virtio-vsock -----------------------------------------------------------------

const VSOCK_PORT: u32 = 1234;
const GUEST_HELLO: &[u8] = b"hello from tiny guest";
const HOST_REPLY: &str = "reply from the host";

/// Play the host side of one guest-initiated connection on `<uds>_PORT`:
/// read the guest's hello, answer, read to EOF. Returns what the guest sent.
fn serve_one(listener: UnixListener) -> JoinHandle<Result<Vec<u8>, String>> {
    std::thread::spawn(move || {
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + TIMEOUT;
        let mut s: UnixStream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return Err("the guest never connected".into());
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(format!("accept: {e}")),
            }
        };
        s.set_nonblocking(false).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        let mut got = vec![0u8; GUEST_HELLO.len()];
        s.read_exact(&mut got)
            .map_err(|e| format!("reading the guest's hello: {e}"))?;
        s.write_all(HOST_REPLY.as_bytes())
            .map_err(|e| format!("replying: {e}"))?;
        // The guest shuts the stream down next: we see EOF, nothing more.
        let mut rest = Vec::new();
        s.read_to_end(&mut rest)
            .map_err(|e| format!("waiting for EOF: {e}"))?;
        got.extend(rest);
        Ok(got)
    })
}

fn vsock_run(name: &str, extra: &str) -> Output {
    let dir = Scratch::new(name);
    let uds = dir.path("v.sock");
    let listener =
        UnixListener::bind(format!("{}_{VSOCK_PORT}", uds.display())).expect("bind host port");
    let host = serve_one(listener);
    let out = run(tiny(
        &format!("tiny.vsock={VSOCK_PORT} {extra}"),
        &["--vsock-uds", uds.to_str().unwrap()],
    ));
    let got = host.join().expect("host thread");
    assert_eq!(
        got.as_deref(),
        Ok(GUEST_HELLO),
        "host side\n{}",
        out.describe()
    );
    out.assert_line("vsock connected");
    out.assert_line(&format!("vsock got: {HOST_REPLY}"));
    out.assert_line("vsock done");
    out.assert_code(0);
    assert!(!uds.exists(), "the VMM left its vsock socket behind");
    out
}

#[test]
fn vsock_round_trip_with_host_listener() {
    vsock_run("vsock", "");
}

#[test]
fn vsock_hostile_packets_then_normal_flow() {
    let out = vsock_run("vsock-hostile", "tiny.vsockhostile=1");
    for name in [
        "rw-huge-len",
        "unknown-op",
        "wrong-cid",
        "zero-length",
        "oob-addr",
        "short-header",
    ] {
        out.assert_line(&format!("vsockhostile {name} consumed"));
    }
}

// ---- signals --------------------------------------------------------------------------

#[test]
fn sigterm_exits_143_and_removes_the_vsock_socket() {
    let dir = Scratch::new("sigterm");
    let uds = dir.path("v.sock");
    let mut vm = Running::spawn(tiny(
        "tiny.exit=spin",
        &["--vsock-uds", uds.to_str().unwrap()],
    ));
    vm.wait_line("spinning");
    assert!(uds.exists(), "vsock socket exists while the VM runs");
    let pid = libc::pid_t::try_from(vm.child.id()).expect("pid");
    // SAFETY: kill(2) on our own child's pid; it has not been reaped yet.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let out = vm.wait();
    out.assert_no_panic();
    assert_eq!(
        out.status.signal(),
        None,
        "killed outright instead of exiting\n{}",
        out.describe()
    );
    out.assert_code(128 + libc::SIGTERM);
    assert!(!uds.exists(), "vsock socket left behind after SIGTERM");
}

// ---- bad input -----------------------------------------------------------------------

/// A clear one-line error from the VMM, no panic, exit status `code`.
fn assert_clean_error(out: &Output, code: i32, needle: &str) {
    out.assert_no_panic();
    out.assert_code(code);
    assert!(
        out.stderr.contains(needle),
        "stderr should mention {needle:?}\n{}",
        out.describe()
    );
    // Said once: no cause repeated along the error chain.
    for line in out.stderr.lines() {
        let parts: Vec<&str> = line.split(": ").filter(|p| p.len() >= 20).collect();
        for (i, p) in parts.iter().enumerate() {
            assert!(
                !parts[i + 1..].contains(p),
                "stderr repeats {p:?}\n{}",
                out.describe()
            );
        }
    }
    assert!(
        out.tiny_lines().is_empty(),
        "the guest ran despite bad input\n{}",
        out.describe()
    );
}

fn vmm(args: &[&str]) -> Output {
    let mut c = Command::new(bin("isola-vmm"));
    c.args(args);
    run(c)
}

#[test]
fn missing_kernel_file_is_a_clear_error() {
    let out = vmm(&[
        "--force",
        "--no-initramfs",
        "--kernel",
        "/nonexistent/vmlinux",
    ]);
    assert_clean_error(&out, 1, "cannot open kernel /nonexistent/vmlinux");
}

#[test]
fn non_elf_kernel_is_a_clear_error() {
    let dir = Scratch::new("non-elf");
    let k = dir.path("not-a-kernel");
    std::fs::write(&k, b"#!/bin/sh\necho this is not an ELF file\n").unwrap();
    let out = vmm(&["--force", "--no-initramfs", "--kernel", k.to_str().unwrap()]);
    assert_clean_error(&out, 1, "cannot load kernel");
}

#[test]
fn missing_disk_is_a_clear_error() {
    let out = run(tiny("", &["--disk", "/nonexistent/disk.img"]));
    assert_clean_error(&out, 1, "cannot open disk image /nonexistent/disk.img");
}

#[test]
fn zero_cpus_is_a_clear_error() {
    let out = run(tiny("", &["--cpus", "0"]));
    assert_clean_error(&out, 1, "--cpus must be");
}

#[test]
fn one_mib_of_memory_is_a_clear_error() {
    let out = run(tiny("", &["--mem", "1"]));
    assert_clean_error(&out, 1, "guest memory of 1 MiB");
}

#[test]
fn usage_errors_exit_2() {
    let out = run(tiny("", &["--cpus", "lots"]));
    assert_clean_error(&out, 2, "invalid value 'lots'");
    let out = run(tiny("", &["--no-such-flag"]));
    assert_clean_error(&out, 2, "--no-such-flag");
}

// ---- the host check -----------------------------------------------------------------

#[test]
fn without_force_refuses_exactly_when_kvm_cannot_run_linux() {
    let t0 = Instant::now();
    let out = vmm(&[
        "--kernel",
        TINY_GUEST,
        "--no-initramfs",
        "--console",
        "stdout",
    ]);
    if isola_vmm::host_check::host_runs_linux_guests() {
        // Hardware KVM: --force is not needed and the guest runs.
        out.assert_line("hello");
        out.assert_code(0);
    } else {
        assert_clean_error(&out, 1, "test host");
        assert!(out.stderr.contains("--force"), "{}", out.describe());
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "refusing took {:?}",
            t0.elapsed()
        );
    }
}

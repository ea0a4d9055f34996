//! End-to-end tests of the `isola-testhost` binary: each boots the real test host (QEMU TCG
//! with Debian's kernel, prepared by `tests/testhost/prepare.sh`), one at a time.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Two TCG guests at once on a two-core machine only make both slow.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn testhost() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_isola-testhost"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("--log-level")
        .arg("error")
        // These tests break the test host on purpose and expect to see it.
        .arg("--retries")
        .arg("0");
    cmd
}

fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let after_comm = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        let ppid = after_comm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// Starts a command that prints "started" once it runs in the test host, waits for that
/// line, and returns the test host process and its QEMU's pid.
fn start_long_command(extra: &[&str]) -> (Child, u32) {
    let mut child = testhost()
        .args(extra)
        .args(["--", "sh", "-c", "echo started; sleep 300"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn isola-testhost");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    BufReader::new(stdout).read_line(&mut line).expect("read");
    assert_eq!(line, "started\n", "the command did not start");
    let qemu = children_of(child.id());
    assert_eq!(qemu.len(), 1, "expected one QEMU child, found {qemu:?}");
    (child, qemu[0])
}

fn process_exists(pid: u32) -> bool {
    // A zombie has been killed; only a live process counts.
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[test]
fn runs_a_command_and_brings_back_output_status_and_files() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let probe = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("testhost-probe");
    let _ = fs::remove_file(&probe);
    let started = Instant::now();
    let out = testhost()
        .env("ISOLA_TEST_PASSTHROUGH", "it's passed")
        .args(["--", "sh", "-c"])
        .arg(
            r#"set -e
               test -c /dev/kvm
               test "$ISOLA_IN_TESTHOST" = 1
               echo "$ISOLA_TEST_PASSTHROUGH $(pwd)"
               echo to-stderr >&2
               echo written-inside > "$1"
               exit 7"#,
        )
        .arg("sh")
        .arg(&probe)
        .output()
        .expect("run isola-testhost");
    eprintln!("round trip: {:.1}s", started.elapsed().as_secs_f64());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(7),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert_eq!(
        stdout,
        format!("it's passed {}\n", env!("CARGO_MANIFEST_DIR")),
        "stderr: {stderr}"
    );
    assert_eq!(stderr, "to-stderr\n");
    assert_eq!(
        fs::read_to_string(&probe).expect("the probe file reached the host"),
        "written-inside\n"
    );
    let _ = fs::remove_file(&probe);
}

#[test]
fn a_frozen_guest_is_a_stall() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (child, qemu) = start_long_command(&["--stall-timeout", "3"]);
    // SIGSTOP freezes QEMU and so the guest: no more heartbeats.
    // SAFETY: kill(2) on the pid of a live grandchild; no memory is involved.
    assert_eq!(unsafe { libc::kill(qemu as libc::pid_t, libc::SIGSTOP) }, 0);
    let stopped = Instant::now();
    let out = child.wait_with_output().expect("wait");
    let took = stopped.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(124), "stderr: {stderr}");
    assert!(stderr.contains("stalled"), "stderr: {stderr}");
    assert!(
        stderr.contains("test host console"),
        "no console tail: {stderr}"
    );
    assert!(
        took < Duration::from_secs(20),
        "stall noticed after {took:?}"
    );
    assert!(!process_exists(qemu), "QEMU {qemu} is still there");
}

#[test]
fn a_dead_qemu_is_reported() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (child, qemu) = start_long_command(&[]);
    // SAFETY: kill(2) on the pid of a live grandchild; no memory is involved.
    assert_eq!(unsafe { libc::kill(qemu as libc::pid_t, libc::SIGKILL) }, 0);
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "stderr: {stderr}");
    assert!(
        stderr.contains("QEMU exited") && stderr.contains("before the command finished"),
        "stderr: {stderr}"
    );
}

/// Runs isola-testhost with `args` to its end (one test host at a time).
fn run_to_end(args: &[&str]) -> (Option<i32>, String) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = testhost().args(args).output().expect("run isola-testhost");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_silent_command_is_not_a_stall() {
    let (code, stderr) = run_to_end(&["--stall-timeout", "3", "--", "sleep", "10"]);
    assert_eq!(code, Some(0), "stderr: {stderr}");
}

#[test]
fn a_command_past_its_time_limit_is_stopped_with_124() {
    let (code, stderr) = run_to_end(&["--time-limit", "5", "--", "sleep", "600"]);
    assert_eq!(code, Some(124), "stderr: {stderr}");
    assert!(stderr.contains("--time-limit 5s"), "stderr: {stderr}");
}

//! podman drives our binary as its OCI runtime (`--runtime`): run --rm,
//! exec, stop, kill, rm, a terminal, volumes, with a private podman storage
//! per test. Every test runs at the process level, then again with the same
//! assertions at the vm level (`--annotation io.isola.isolation=vm`, in the
//! nested test host here).

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use common::{at_vm, make_busybox_rootfs, Env, RUNTIME};

/// podman with its own storage, our runtime, cgroupfs (no systemd here)
/// and the rlimits this sandbox allows.
struct Podman {
    storage: PathBuf,
    run: PathBuf,
    image: String,
}

impl Podman {
    fn new(env: &Env) -> Self {
        let version = Command::new("podman").arg("--version").output();
        assert!(
            version.is_ok_and(|o| o.status.success()),
            "podman is not installed (apt-get install podman); this test must not be skipped"
        );
        let p = Self {
            storage: env.dir.join("storage"),
            run: env.dir.join("runroot"),
            image: format!("localhost/isola-test-{}:latest", env.name),
        };
        let rootfs = env.dir.join("image-rootfs");
        make_busybox_rootfs(&rootfs);
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .expect("run tar");
        let out = p
            .cmd()
            .args(["import", "-", &p.image])
            .stdin(tar.stdout.take().expect("tar stdout"))
            .output()
            .expect("podman import");
        assert!(
            tar.wait().is_ok_and(|s| s.success()),
            "tar of the rootfs failed"
        );
        assert!(
            out.status.success(),
            "podman import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        p
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(&self.storage)
            .arg("--runroot")
            .arg(&self.run)
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "file", "--runtime", RUNTIME]);
        c
    }

    fn podman(&self, args: &[&str]) -> Output {
        self.cmd()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run podman")
    }

    fn run_args(&self) -> Vec<&str> {
        let mut args = vec![
            "--network",
            "none",
            "--ulimit",
            "nofile=20000:20000",
            "--ulimit",
            "nproc=32768:32768",
        ];
        if at_vm() {
            args.extend(["--annotation", "io.isola.isolation=vm"]);
        }
        args
    }

    /// `podman run --rm` of `command` with the test's flags and `extra`.
    fn run_rm(&self, extra: &[&str], command: &[&str]) -> Output {
        let mut args = vec!["run", "--rm"];
        args.extend(self.run_args());
        args.extend(extra);
        args.push(self.image.as_str());
        args.extend(command);
        self.podman(&args)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "--all", "--force", "--time", "0"]);
        let _ = self.podman(&["rmi", "--all", "--force"]);
    }
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_same_tests_at_the_vm_level() {
    common::rerun_at_the_vm_level("the_same_tests_at_the_vm_level");
}

#[test]
fn podman_run_rm() {
    let env = Env::new("podman-run");
    let p = Podman::new(&env);
    let mut args = vec!["run", "--rm"];
    args.extend(p.run_args());
    args.extend([
        p.image.as_str(),
        "sh",
        "-c",
        "echo hello from podman; cat /proc/1/comm; exit 5",
    ]);
    let out = p.podman(&args);
    assert_eq!(
        out.status.code(),
        Some(5),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text(&out), "hello from podman\nsh\n");
    let left = p.podman(&["ps", "--all", "--quiet"]);
    assert_eq!(text(&left), "", "--rm left a container");
}

#[test]
fn podman_exec_and_stop() {
    let env = Env::new("podman-exec");
    let p = Podman::new(&env);
    let name = env.id("c");
    let mut args = vec!["run", "--detach", "--name", &name];
    args.extend(p.run_args());
    args.extend([
        p.image.as_str(),
        "sh",
        "-c",
        "trap 'exit 0' TERM; while true; do sleep 0.1; done",
    ]);
    let out = p.podman(&args);
    assert!(
        out.status.success(),
        "run -d: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cid = text(&out).trim().to_owned();

    let out = p.podman(&[
        "exec",
        &name,
        "sh",
        "-c",
        "echo exec ok; cat /proc/1/comm; echo x > /made-by-exec; exit 4",
    ]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text(&out), "exec ok\nsh\n");

    // Pause and unpause, as podman reads them back from the runtime's
    // state (at the vm level the guest's runner freezes the container).
    for (verb, status) in [("pause", "paused"), ("unpause", "running")] {
        let out = p.podman(&[verb, &name]);
        assert!(
            out.status.success(),
            "{verb}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = p.podman(&["inspect", "--format", "{{.State.Status}}", &name]);
        assert_eq!(text(&out).trim(), status, "after {verb}");
    }

    // The cgroup podman asked for exists while the container runs: on the
    // host at the process level, in the guest only at the vm level.
    let cgroup = PathBuf::from(format!("/sys/fs/cgroup/pids/libpod_parent/libpod-{cid}"));
    assert_eq!(cgroup.exists(), !at_vm(), "{}", cgroup.display());

    let out = p.podman(&["stop", "--time", "20", &name]);
    assert!(
        out.status.success(),
        "stop: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = p.podman(&[
        "inspect",
        "--format",
        "{{.State.Status}} {{.State.ExitCode}}",
        &name,
    ]);
    assert_eq!(
        text(&out).trim(),
        "exited 0",
        "the trap's exit 0 means TERM reached it"
    );

    // What the container wrote is in podman's layer, at both levels (the
    // vm level shares podman's rootfs directory with the guest).
    let out = p.podman(&["diff", &name]);
    assert!(
        text(&out).lines().any(|l| l == "A /made-by-exec"),
        "diff: {}",
        text(&out)
    );

    let out = p.podman(&["rm", &name]);
    assert!(
        out.status.success(),
        "rm: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!cgroup.exists(), "cgroup left behind");
}

#[test]
fn podman_kill_reports_137() {
    let env = Env::new("podman-kill");
    let p = Podman::new(&env);
    let name = env.id("k");
    let mut args = vec!["run", "--detach", "--name", &name];
    args.extend(p.run_args());
    args.extend([p.image.as_str(), "sleep", "1000"]);
    let out = p.podman(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = p.podman(&["kill", &name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = p.podman(&["wait", &name]);
    assert_eq!(
        text(&out).trim(),
        "137",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = p.podman(&["rm", &name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text(&p.podman(&["ps", "--all", "--quiet"])), "");
}

#[test]
fn podman_run_with_a_terminal() {
    let env = Env::new("podman-tty");
    let p = Podman::new(&env);
    let out = p.run_rm(&["-t"], &["sh", "-c", "tty; echo tty-ok; exit 6"]);
    assert_eq!(
        out.status.code(),
        Some(6),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The terminal turns newlines into CRLF, at both levels alike.
    assert_eq!(text(&out), "/dev/pts/0\r\ntty-ok\r\n");
}

#[test]
fn podman_volumes_both_ways_and_the_kernel_each_level_shows() {
    let env = Env::new("podman-vol");
    let p = Podman::new(&env);
    let vol = env.dir.join("vol");
    std::fs::create_dir_all(&vol).expect("volume dir");
    std::fs::write(vol.join("in"), "from the host\n").expect("write");
    let spec = format!("{}:/vol", vol.display());
    let out = p.run_rm(
        &["-v", &spec],
        &[
            "sh",
            "-c",
            "cat /vol/in; echo from the container > /vol/out; uname -r",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = text(&out);
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("from the host"));
    assert_eq!(
        std::fs::read_to_string(vol.join("out")).expect("the container's write"),
        "from the container\n"
    );
    let host_kernel = Command::new("uname").arg("-r").output().expect("uname");
    let host_kernel = text(&host_kernel);
    let kernel = lines.next().unwrap_or_default();
    // The same image sees the host's kernel at the process level and its
    // own guest kernel at the vm level.
    assert_eq!(
        kernel == host_kernel.trim(),
        !at_vm(),
        "{kernel} vs {host_kernel}"
    );
}

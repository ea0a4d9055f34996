//! podman drives our binary as its OCI runtime (`--runtime`): run --rm,
//! exec, stop, rm, with a private podman storage per test.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use common::{make_busybox_rootfs, Env, RUNTIME};

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
        vec![
            "--network",
            "none",
            "--ulimit",
            "nofile=20000:20000",
            "--ulimit",
            "nproc=32768:32768",
        ]
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
        "echo exec ok; cat /proc/1/comm; exit 4",
    ]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text(&out), "exec ok\nsh\n");

    // The cgroup podman asked for exists while the container runs.
    let cgroup = PathBuf::from(format!("/sys/fs/cgroup/pids/libpod_parent/libpod-{cid}"));
    assert!(cgroup.exists(), "{} missing", cgroup.display());

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

    let out = p.podman(&["rm", &name]);
    assert!(
        out.status.success(),
        "rm: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!cgroup.exists(), "cgroup left behind");
}

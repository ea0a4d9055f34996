//! containerd 1.6's runc shim (io.containerd.runc.v2) drives our binary as
//! its runc, through `ctr`, against a private containerd this test starts.
//! Every test runs at the process level, then again with the same
//! assertions at the vm level (`ctr run --annotation io.isola.isolation=vm`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{at_vm, make_busybox_rootfs, Env, RUNTIME};

struct Containerd {
    child: Child,
    address: PathBuf,
    rootfs: PathBuf,
}

impl Containerd {
    fn start(env: &Env) -> Self {
        let dir = &env.dir;
        let address = dir.join("containerd.sock");
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{address}"
[ttrpc]
  address = "{address}.ttrpc"
[debug]
  address = "{debug}"
[metrics]
  address = ""
"#,
            root = dir.join("root").display(),
            state = dir.join("cstate").display(),
            address = address.display(),
            debug = dir.join("debug.sock").display(),
        );
        let config_path = dir.join("containerd.toml");
        std::fs::write(&config_path, config).expect("write containerd config");
        let log = std::fs::File::create(dir.join("containerd.log")).expect("log file");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config_path)
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("containerd is not installed (apt-get install containerd); this test must not be skipped");
        let rootfs = dir.join("rootfs");
        make_busybox_rootfs(&rootfs);
        let mut c = Self {
            child,
            address,
            rootfs,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !c.ctr(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "containerd did not come up: {}",
                std::fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
            );
            if let Ok(Some(status)) = c.child.try_wait() {
                panic!("containerd exited: {status}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("--address")
            .arg(&self.address)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ctr is not installed (apt-get install containerd)")
    }

    /// `ctr run` of our busybox rootfs with our binary as the runc.
    fn run(&self, extra: &[&str], id: &str, argv: &[&str]) -> Output {
        let mut args = vec![
            "run",
            "--rootfs",
            "--runc-binary",
            RUNTIME,
            "--env",
            "PATH=/bin",
        ];
        if at_vm() {
            args.extend(["--annotation", "io.isola.isolation=vm"]);
        }
        args.extend(extra);
        args.push(path_str(&self.rootfs));
        args.push(id);
        args.extend(argv);
        self.ctr(&args)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_same_tests_at_the_vm_level() {
    common::rerun_at_the_vm_level("the_same_tests_at_the_vm_level");
}

#[test]
fn ctr_run_rm() {
    let env = Env::new("ctr-run");
    let c = Containerd::start(&env);
    let id = env.id("c");
    let out = c.run(
        &["--rm"],
        &id,
        &["sh", "-c", "echo hello from ctr; cat /proc/1/comm; exit 3"],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text(&out), "hello from ctr\nsh\n");
    assert_eq!(text(&c.ctr(&["containers", "list", "--quiet"])), "");
}

#[test]
fn ctr_exec_kill_delete() {
    let env = Env::new("ctr-exec");
    let c = Containerd::start(&env);
    let id = env.id("c");
    let script = "trap 'exit 9' TERM; while true; do sleep 0.1; done";
    let out = c.run(&["--detach"], &id, &["sh", "-c", script]);
    assert!(
        out.status.success(),
        "run -d: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tasks = text(&c.ctr(&["task", "list"]));
    assert!(tasks.contains(&id) && tasks.contains("RUNNING"), "{tasks}");

    let out = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        &id,
        "sh",
        "-c",
        "echo exec ok; exit 2",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text(&out), "exec ok\n");

    // At the vm level the guest's runner freezes the container's cgroup.
    let out = c.ctr(&["task", "pause", &id]);
    assert!(
        out.status.success(),
        "pause: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text(&c.ctr(&["task", "list"])).contains("PAUSED"));
    let out = c.ctr(&["task", "resume", &id]);
    assert!(
        out.status.success(),
        "resume: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text(&c.ctr(&["task", "list"])).contains("RUNNING"));

    let out = c.ctr(&["task", "kill", "--signal", "SIGTERM", &id]);
    assert!(
        out.status.success(),
        "kill: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !text(&c.ctr(&["task", "list"])).contains("STOPPED") {
        assert!(Instant::now() < deadline, "task did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = c.ctr(&["task", "delete", &id]);
    assert!(
        out.status.success(),
        "task delete: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // containerd reports the exit status our trap chose: TERM reached it.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("exit code 9"), "task delete: {stderr}");
    let out = c.ctr(&["containers", "delete", &id]);
    assert!(
        out.status.success(),
        "container delete: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text(&c.ctr(&["task", "list", "--quiet"])), "");
}

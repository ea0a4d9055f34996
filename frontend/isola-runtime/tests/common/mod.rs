//! Shared helpers for the integration tests: busybox bundles, a private
//! state root per test, and running our binary.

#![allow(dead_code)] // each test file uses its own subset

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Our binary.
pub const RUNTIME: &str = env!("CARGO_BIN_EXE_isola-runtime");

/// Set to `vm` for a run whose bundles all ask for the vm level.
pub const LEVELS_ENV: &str = "ISOLA_TEST_LEVELS";

/// Whether this run's bundles ask for the vm level (the re-run of a test
/// binary by [`rerun_at_the_vm_level`]); else they run at the process level.
pub fn at_vm() -> bool {
    std::env::var(LEVELS_ENV).as_deref() == Ok("vm")
}

/// The same tests again at the vm level, in this very binary, with the same
/// assertions: here when this host's KVM runs Linux guests, else inside the
/// nested test host. Never skipped: a host that can do neither fails here.
/// `me` is the calling test, which the re-run leaves out.
pub fn rerun_at_the_vm_level(me: &str) {
    if at_vm() {
        return;
    }
    let exe = std::env::current_exe().expect("this test binary");
    let args = ["--skip", me, "--test-threads=1"];
    let mut command = match isola_vmm::host_check::kvm_capability() {
        isola_vmm::host_check::KvmCapability::Hardware => {
            let mut c = Command::new(&exe);
            c.env(LEVELS_ENV, "vm");
            c
        }
        isola_vmm::host_check::KvmCapability::NoHardware(why) => {
            eprintln!("note: {why}; the vm-level run goes inside the nested test host");
            let mut c = Command::new(Path::new(RUNTIME).with_file_name("isola-testhost"));
            // A hung test fails with the console's tail instead of eating
            // CI's whole budget.
            c.args(["--mem", "6144", "--time-limit", "1800", "-e"])
                .arg(format!("{LEVELS_ENV}=vm"))
                .arg("--")
                .arg(&exe);
            c
        }
    };
    let status = command.args(args).status().expect("run the vm-level tests");
    assert!(status.success(), "the vm-level run failed: {status}");
}

/// Where each test's files go; removed when the test's `Env` drops.
fn scratch() -> PathBuf {
    PathBuf::from("/tmp/isola-runtime-tests")
}

/// One test's world: its state root, its bundles, its container IDs. Every
/// container it made is force-deleted and every file removed on drop.
pub struct Env {
    pub name: String,
    pub dir: PathBuf,
    pub root: PathBuf,
}

impl Env {
    pub fn new(name: &str) -> Self {
        assert!(
            nix_is_root(),
            "the integration tests need root (namespaces, cgroups, mounts)"
        );
        let name = format!("{name}-{}", std::process::id());
        let dir = scratch().join(&name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create test dir");
        let root = dir.join("state");
        Self { name, dir, root }
    }

    /// A unique container ID for this test.
    pub fn id(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.name)
    }

    /// Our binary with `--root` set to this test's state root.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(RUNTIME);
        c.arg("--root").arg(&self.root);
        c
    }

    /// Runs our binary to completion with empty stdin.
    pub fn rt(&self, args: &[&str]) -> Output {
        self.cmd()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run isola-runtime")
    }

    /// Like `rt`, but the command must succeed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.rt(args);
        assert!(
            out.status.success(),
            "isola-runtime {args:?} failed ({:?}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `create` + `start` with the container's stdio sent to files in the
    /// bundle (a pipe would keep `output()` waiting for the container).
    pub fn start_detached(&self, id: &str, bundle: &Bundle) {
        self.create(id, bundle);
        self.ok(&["start", id]);
    }

    /// `create`, the container's stdio sent to files in the bundle.
    pub fn create(&self, id: &str, bundle: &Bundle) {
        let out = File::create(bundle.dir.join("stdout")).expect("stdout file");
        let err = File::create(bundle.dir.join("stderr")).expect("stderr file");
        let status = self
            .cmd()
            .args(["create", "--bundle"])
            .arg(&bundle.dir)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .expect("run create");
        assert!(status.success(), "create {id} failed: {}", bundle.stderr());
    }

    /// The container's OCI state.
    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).expect("state is JSON")
    }

    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits (up to a generous deadline, never as an assertion on speed)
    /// until the container reports `want`.
    pub fn wait_status(&self, id: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.status(id);
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{id} stayed {got}, wanted {want}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// IDs of the containers under this test's root.
    pub fn listed(&self) -> Vec<String> {
        self.ok(&["list", "-q"])
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for e in entries.flatten() {
                if let Some(id) = e.file_name().to_str() {
                    let _ = self.rt(&["delete", "--force", id]);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A bundle whose rootfs is busybox-static and its applets.
pub struct Bundle {
    pub dir: PathBuf,
    pub config: Value,
}

impl Bundle {
    /// A bundle running `args`, with runc's default spec otherwise, its
    /// cgroup at `/isola-test/<id>`.
    pub fn busybox(env: &Env, id: &str, args: &[&str]) -> Self {
        let dir = env.dir.join(format!("bundle-{id}"));
        let rootfs = dir.join("rootfs");
        make_busybox_rootfs(&rootfs);
        let out = Command::new(RUNTIME)
            .args(["spec", "--bundle"])
            .arg(&dir)
            .output()
            .expect("run spec");
        assert!(
            out.status.success(),
            "spec: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(dir.join("config.json")).expect("read config");
        let mut config: Value = serde_json::from_str(&text).expect("config is JSON");
        config["process"]["terminal"] = json!(false);
        // runc's default spec has a read-only rootfs; tests that want one
        // say so.
        config["root"]["readonly"] = json!(false);
        config["process"]["args"] = json!(args);
        config["linux"]["cgroupsPath"] = json!(format!("/isola-test/{id}"));
        if at_vm() {
            config["annotations"] = json!({"io.isola.isolation": "vm"});
        }
        let b = Self { dir, config };
        b.save();
        b
    }

    /// Sets a value at a JSON pointer (creating objects on the way) and
    /// writes config.json.
    pub fn set(&mut self, pointer: &str, value: Value) -> &mut Self {
        let mut cur = &mut self.config;
        for key in pointer.trim_start_matches('/').split('/') {
            if cur.get(key).is_none() {
                cur[key] = json!({});
            }
            cur = &mut cur[key];
        }
        *cur = value;
        self.save();
        self
    }

    pub fn save(&self) {
        let text = serde_json::to_string_pretty(&self.config).expect("serialize config");
        let mut f = File::create(self.dir.join("config.json")).expect("write config");
        f.write_all(text.as_bytes()).expect("write config");
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.join("stdout")).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }
}

/// busybox-static as /bin/busybox plus a symlink per applet.
pub fn make_busybox_rootfs(rootfs: &Path) {
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin).expect("create rootfs/bin");
    for d in ["proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(rootfs.join(d)).expect("create rootfs dir");
    }
    std::fs::copy("/bin/busybox", bin.join("busybox"))
        .expect("copy /bin/busybox (apt package busybox-static)");
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("applet symlink");
        }
    }
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
}

/// Runs a bundle in the foreground: returns (exit code, stdout, stderr).
pub fn run(env: &Env, id: &str, bundle: &Bundle, stdin: &[u8]) -> (i32, String, String) {
    let mut child = env
        .cmd()
        .args(["run", "--bundle"])
        .arg(&bundle.dir)
        .arg(id)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn run");
    if let Some(mut i) = child.stdin.take() {
        i.write_all(stdin).expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait for run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The directory of a v1 controller's cgroup for `/isola-test/<id>`.
pub fn cgroup_dir(controller: &str, id: &str) -> PathBuf {
    PathBuf::from(format!("/sys/fs/cgroup/{controller}/isola-test/{id}"))
}

pub fn read_trim(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// The receiving end of `--console-socket`: the runtime sends the
/// terminal's master fd over it.
pub struct ConsoleSocket {
    pub path: PathBuf,
    listener: std::os::unix::net::UnixListener,
}

impl ConsoleSocket {
    pub fn new(env: &Env, name: &str) -> Self {
        let path = env.dir.join(format!("{name}.sock"));
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind console socket");
        Self { path, listener }
    }

    /// Accepts the runtime's connection and returns the master as a File.
    pub fn receive_master(&self) -> File {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        use std::os::fd::{AsRawFd, FromRawFd};
        let (stream, _) = self.listener.accept().expect("accept console socket");
        let mut buf = [0u8; 4096];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        )
        .expect("recvmsg on console socket");
        for c in msg.cmsgs().expect("control messages") {
            if let ControlMessageOwned::ScmRights(fds) = c {
                if let Some(&fd) = fds.first() {
                    // SAFETY: SCM_RIGHTS just gave us this fd; nothing else owns it.
                    return unsafe { File::from_raw_fd(fd) };
                }
            }
        }
        panic!("no fd received on the console socket");
    }
}

//! Shared by the container tests: a store holding the local test images,
//! a way to run `isola` against it, and leak checks. Each test has its own
//! root under /tmp.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub use crate::common::{text, ISOLA};

/// Names the levels this run of the suite is at (comma-separated); the
/// process level when unset. `the_same_suite_at_the_vm_level` sets it to
/// `vm` for its run of this very binary, where KVM runs Linux guests.
pub const LEVELS_ENV: &str = "ISOLA_TEST_LEVELS";

/// The isolation levels every table runs at, with the same assertions.
pub fn levels() -> Vec<&'static str> {
    match std::env::var(LEVELS_ENV).as_deref() {
        Ok("vm") => vec!["vm"],
        Ok("process,vm") => vec!["process", "vm"],
        _ => vec!["process"],
    }
}

/// The local images as oci-archives, made once per test binary.
fn archives() -> &'static (PathBuf, PathBuf) {
    static ARCHIVES: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    ARCHIVES.get_or_init(|| {
        let layout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../build/images/oci");
        assert!(
            layout.join("index.json").is_file(),
            "{} is missing: run images/build.sh (./build.sh does) before the tests",
            layout.display()
        );
        let dir = std::env::temp_dir().join(format!("isola-run-archives-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let make = |name: &str, file: &str| {
            let out = dir.join(file);
            let status = Command::new("skopeo")
                .args(["copy", "-q"])
                .arg(format!("oci:{}:{name}", layout.display()))
                .arg(format!("oci-archive:{}:{name}", out.display()))
                .status()
                .expect("skopeo is not installed (./build.sh installs it)");
            assert!(status.success(), "skopeo copy {name}");
            out
        };
        (
            make("busybox:latest", "busybox.tar"),
            make("debian:bookworm", "debian.tar"),
        )
    })
}

/// A store root with busybox (and optionally Debian) loaded.
pub struct Store {
    pub root: tempfile::TempDir,
}

/// A test that fails half-way must not leave its containers running (a
/// busy loop would slow every test after it) nor their mounts under the
/// root, which would keep the directory from going.
impl Drop for Store {
    fn drop(&mut self) {
        let Ok(out) = self.isola().args(["ps", "-aq", "--no-trunc"]).output() else {
            return;
        };
        let ids = String::from_utf8_lossy(&out.stdout).into_owned();
        for id in ids.split_whitespace() {
            let _ = self.isola().args(["rm", "-f", id]).output();
        }
    }
}

impl Store {
    pub fn new() -> Store {
        Store::with_images(false)
    }

    pub fn with_images(debian: bool) -> Store {
        let root = tempfile::Builder::new()
            .prefix("ir")
            .tempdir_in("/tmp")
            .unwrap();
        let store = Store { root };
        let (busybox, deb) = archives();
        store.ok(&["load", "-q", "-i", busybox.to_str().unwrap()]);
        if debian {
            store.ok(&["load", "-q", "-i", deb.to_str().unwrap()]);
        }
        store
    }

    pub fn path(&self) -> &Path {
        self.root.path()
    }

    pub fn isola(&self) -> Command {
        let mut c = Command::new(ISOLA);
        c.arg("--root").arg(self.root.path()).stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.isola().args(args).output().unwrap()
    }

    /// Runs isola, asserting success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "isola {args:?} failed:\n{}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `run -d --name NAME busybox sh -c SCRIPT` at `level`; returns the
    /// container's ID once the script has printed `ready`.
    pub fn start_script(&self, level: &str, name: &str, script: &str) -> String {
        let id = self.ok(&[
            "run",
            "-d",
            "--isolation",
            level,
            "--name",
            name,
            "busybox",
            "sh",
            "-c",
            script,
        ]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !self.ok(&["logs", name]).contains("ready") {
            assert!(
                std::time::Instant::now() < deadline,
                "{name} never printed ready"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        id.trim().to_string()
    }

    /// `isola run --rm --isolation LEVEL ARGS...`, which must succeed; its
    /// stdout.
    pub fn ok_rm(&self, level: &str, args: &[&str]) -> String {
        let mut all = vec!["run", "--rm", "--isolation", level];
        all.extend_from_slice(args);
        self.ok(&all)
    }

    /// The full ID of a container.
    pub fn id_of(&self, name: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(&self.ok(&["inspect", name])).unwrap();
        v[0]["Id"].as_str().unwrap().to_string()
    }

    /// The container's state.json as the host runtime wrote it.
    pub fn state(&self, id: &str) -> serde_json::Value {
        let path = self
            .root
            .path()
            .join("containers")
            .join(id)
            .join("state.json");
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    /// Asserts nothing of container `id` is left on the host: state, name,
    /// runner state, mounts, cgroups, processes.
    pub fn assert_gone(&self, id: &str) {
        let root = self.root.path();
        assert!(
            !root.join("containers").join(id).exists(),
            "state of {id} left"
        );
        assert!(
            !root.join("runner").join(id).exists(),
            "runner state of {id} left"
        );
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(id), "a mount of {id} left:\n{mounts}");
        for cgroup in cgroup_dirs(id) {
            assert!(!cgroup.exists(), "cgroup {} left", cgroup.display());
        }
        assert!(
            processes_mentioning(id).is_empty(),
            "processes of {id} left"
        );
    }

    /// Asserts the whole root holds no container any more.
    pub fn assert_empty(&self) {
        let root = self.root.path();
        let count = |d: &str| std::fs::read_dir(root.join(d)).map_or(0, |e| e.count());
        assert_eq!(count("containers"), 0, "container state left");
        assert_eq!(count("names"), 0, "names left");
        assert_eq!(count("runner"), 0, "runner state left");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root_s = root.to_str().unwrap();
        assert!(!mounts.contains(root_s), "mounts under the root left");
        let sup = processes_mentioning(root_s);
        assert!(sup.is_empty(), "supervisors left: {sup:?}");
        let zombies = zombies_of(root_s);
        assert!(zombies.is_empty(), "children nobody reaped: {zombies:?}");
    }
}

/// Cgroup directories a container named `id` would have (v1 and v2).
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    ["memory", "pids", "cpu", "cpuset", "freezer", "devices", ""]
        .iter()
        .map(|c| Path::new("/sys/fs/cgroup").join(c).join("isola").join(id))
        .collect()
}

/// Zombies whose parent is a process of ours (its command line mentions
/// `needle`): a supervisor or CLI that failed to reap a child.
pub fn zombies_of(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let mut after = stat
                .rsplit(')')
                .next()
                .unwrap_or_default()
                .split_whitespace();
            let zombie = after.next() == Some("Z");
            let parent = after.next().unwrap_or_default();
            let parent_cmd = std::fs::read(format!("/proc/{parent}/cmdline")).unwrap_or_default();
            zombie && String::from_utf8_lossy(&parent_cmd).contains(needle)
        })
        .collect()
}

/// PIDs of live processes whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit(')')
                .next()
                .is_some_and(|s| s.trim_start().starts_with('Z'));
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            !zombie && String::from_utf8_lossy(&cmdline).contains(needle)
        })
        .collect()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

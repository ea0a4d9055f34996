//! The runner on a pure cgroup v2 hierarchy, the guest kernel's kind. This
//! host is v1 hybrid, so where /sys/fs/cgroup is not cgroup2 the binary
//! re-runs itself inside the test host, whose outer Linux mounts cgroup2
//! alone; never skipped. Each test builds a busybox bundle, runs it with
//! `isola-runtime`, and reads the limits back from the v2 files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use isola_tests::testhost::run_where;
use isola_tests::{check, TestResult};
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::{json, Value};

fn unified_here() -> Result<(), String> {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        Ok(())
    } else {
        Err("this host's /sys/fs/cgroup is not a pure cgroup v2 hierarchy".into())
    }
}

/// Where the busybox bundle umoci unpacked lives: under the test scratch
/// folder, which the test host shares read-write at the same path. It is
/// made on this host before any re-run, because Go programs such as umoci
/// can block for minutes on an emulated guest's entropy at start-up.
fn shared_bundle() -> PathBuf {
    isola_tests::profile_dir().join("test-scratch/cgroup-v2-busybox")
}

fn unpack_shared_bundle() {
    let dir = shared_bundle();
    if dir.join("rootfs/bin/busybox").exists() {
        return;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let layout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../build/images/oci");
    let out = Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:busybox:latest", layout.display()))
        .arg(&dir)
        .output()
        .expect("umoci is not installed (./build.sh installs it)");
    assert!(out.status.success(), "umoci unpack: {}", text(&out));
}

/// A bundle in a fresh directory: umoci's config with `args` and
/// `resources`, over the shared busybox rootfs (read-only, so containers
/// can share it).
fn bundle(name: &str, args: &[&str], resources: Value) -> Result<(PathBuf, String), Failed> {
    let dir = std::env::temp_dir().join(format!("isola-v2-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let shared = shared_bundle();
    let mut config: Value = serde_json::from_slice(&std::fs::read(shared.join("config.json"))?)?;
    config["root"] = json!({"path": shared.join("rootfs"), "readonly": true});
    config["process"]["args"] = json!(args);
    config["process"]["terminal"] = json!(false);
    let id = format!("v2-{name}-{}", std::process::id());
    config["linux"]["cgroupsPath"] = json!(format!("/isola-v2-test/{id}"));
    config["linux"]["resources"] = resources;
    std::fs::write(dir.join("config.json"), serde_json::to_vec(&config)?)?;
    Ok((dir, id))
}

fn runtime(args: &[&str]) -> Result<Output, Failed> {
    Ok(Command::new(isola_tests::bin("isola-runtime"))
        .args(["--root", "/run/isola-v2-test"])
        .args(args)
        .output()?)
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn cgroup_file(id: &str, file: &str) -> Result<String, Failed> {
    let path = Path::new("/sys/fs/cgroup/isola-v2-test")
        .join(id)
        .join(file);
    Ok(std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?)
}

fn limits_land_in_the_v2_files() -> TestResult {
    let resources = json!({
        "memory": {"limit": 67108864},
        "pids": {"limit": 20},
        "cpu": {"quota": 50000, "period": 100000},
    });
    let (dir, id) = bundle("limits", &["true"], resources)?;
    // A created container's init holds the stdio it was given until it
    // runs, so create's output goes to a file, not to pipes we would wait on.
    let log = dir.join("create.log");
    let status = Command::new(isola_tests::bin("isola-runtime"))
        .args(["--root", "/run/isola-v2-test", "create", "-b"])
        .arg(&dir)
        .arg(&id)
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::fs::File::create(dir.join("create.err"))?)
        .status()?;
    let err = std::fs::read_to_string(dir.join("create.err")).unwrap_or_default();
    check(status.success(), format!("create: {status}: {err}"))?;
    let memory = cgroup_file(&id, "memory.max")?;
    let pids = cgroup_file(&id, "pids.max")?;
    let cpu = cgroup_file(&id, "cpu.max")?;
    let out = runtime(&["delete", "--force", &id])?;
    check(out.status.success(), format!("delete: {}", text(&out)))?;
    check(memory.trim() == "67108864", format!("memory.max {memory}"))?;
    check(pids.trim() == "20", format!("pids.max {pids}"))?;
    check(cpu.trim() == "50000 100000", format!("cpu.max {cpu}"))?;
    check(
        !Path::new("/sys/fs/cgroup/isola-v2-test").join(&id).exists(),
        "delete leaves no cgroup",
    )?;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

fn the_oom_killer_holds_the_memory_limit() -> TestResult {
    // busybox's tail buffers /dev/zero's endless line until killed.
    let (dir, id) = bundle(
        "oom",
        &["tail", "/dev/zero"],
        json!({"memory": {"limit": 16777216, "swap": 16777216}}),
    )?;
    let out = runtime(&["run", "-b", dir.to_str().unwrap_or_default(), &id])?;
    let _ = runtime(&["delete", "--force", &id]);
    check(
        out.status.code() == Some(137),
        format!("OOM-killed (137): {}", text(&out)),
    )?;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

fn a_pids_limit_stops_a_fork_bomb() -> TestResult {
    let script = "for i in $(seq 50); do sleep 5 & done; echo all-started";
    let (dir, id) = bundle(
        "pids",
        &["sh", "-c", script],
        json!({"pids": {"limit": 10}}),
    )?;
    let out = runtime(&["run", "-b", dir.to_str().unwrap_or_default(), &id])?;
    let _ = runtime(&["delete", "--force", &id]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    check(
        !stdout.contains("all-started") && stderr.contains("fork"),
        format!("the 11th process cannot be forked: {}", text(&out)),
    )?;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

fn main() {
    if std::env::var_os(isola_tests::testhost::IN_TESTHOST_ENV).is_none()
        && !std::env::args().any(|a| a == "--list")
    {
        unpack_shared_bundle();
    }
    run_where(unified_here, "cgroup v2 tests");
    let args = Arguments::from_args();
    let tests = vec![
        Trial::test("limits_land_in_the_v2_files", limits_land_in_the_v2_files),
        Trial::test(
            "the_oom_killer_holds_the_memory_limit",
            the_oom_killer_holds_the_memory_limit,
        ),
        Trial::test(
            "a_pids_limit_stops_a_fork_bomb",
            a_pids_limit_stops_a_fork_bomb,
        ),
    ];
    libtest_mimic::run(&args, tests).exit();
}

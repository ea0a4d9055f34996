//! The lifecycle through our CLI alone: exit codes, stdio, signals, states,
//! exec, ps, pause/resume, list, a terminal, and nothing left behind. Every
//! test runs at the process level, then again with the same assertions at
//! the vm level (`the_same_tests_at_the_vm_level`); where the levels differ
//! on purpose (the container's cgroups and processes are the guest's, not
//! the host's), the test says so.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::{at_vm, cgroup_dir, run, Bundle, ConsoleSocket, Env};
use serde_json::{json, Value};

#[test]
fn the_same_tests_at_the_vm_level() {
    common::rerun_at_the_vm_level("the_same_tests_at_the_vm_level");
}

#[test]
fn run_passes_stdio_and_the_exit_code() {
    let env = Env::new("run-stdio");
    let id = env.id("c");
    let b = Bundle::busybox(
        &env,
        &id,
        &["sh", "-c", "read x; echo out:$x; echo err:$x >&2; exit 3"],
    );
    let (code, out, err) = run(&env, &id, &b, b"hello\n");
    assert_eq!(code, 3, "stderr: {err}");
    assert_eq!(out, "out:hello\n");
    assert!(err.contains("err:hello"), "stderr: {err}");
    // `run` without --keep deletes the container and its cgroup.
    assert!(env.listed().is_empty());
    assert!(!cgroup_dir("memory", &id).exists());
}

#[test]
fn run_reports_a_signal_death_as_128_plus_signal() {
    let env = Env::new("run-signal");
    let id = env.id("c");
    // Without a pid namespace of its own, the shell is not an init that
    // the kernel shields from its own signals.
    let mut b = Bundle::busybox(&env, &id, &["sh", "-c", "kill -KILL $$"]);
    let namespaces: Vec<Value> = b.config["linux"]["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .filter(|n| n["type"] != "pid")
        .cloned()
        .collect();
    b.set("/linux/namespaces", Value::from(namespaces));
    let (code, _, err) = run(&env, &id, &b, b"");
    assert_eq!(code, 137, "stderr: {err}");
}

#[test]
fn run_forwards_signals_to_the_container() {
    let env = Env::new("run-forward");
    let id = env.id("c");
    let script = "trap 'echo got TERM; exit 7' TERM; echo ready; while true; do sleep 0.1; done";
    let b = Bundle::busybox(&env, &id, &["sh", "-c", script]);
    let mut child = env
        .cmd()
        .args(["run", "--bundle"])
        .arg(&b.dir)
        .arg(&id)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn run");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut seen = Vec::new();
    let mut buf = [0u8; 64];
    while !String::from_utf8_lossy(&seen).contains("ready") {
        let n = stdout.read(&mut buf).expect("read stdout");
        assert!(n > 0, "container ended before it was ready");
        seen.extend_from_slice(&buf[..n]);
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal run");
    stdout.read_to_end(&mut seen).expect("read stdout");
    let status = child.wait().expect("wait run");
    assert_eq!(status.code(), Some(7));
    assert!(String::from_utf8_lossy(&seen).contains("got TERM"));
    assert!(env.listed().is_empty());
}

#[test]
fn create_start_state_term_delete() {
    let env = Env::new("lifecycle");
    let id = env.id("c");
    let script = "trap 'echo got TERM; exit 42' TERM; echo ready; while true; do sleep 0.1; done";
    let b = Bundle::busybox(&env, &id, &["sh", "-c", script]);

    let out = std::fs::File::create(b.dir.join("stdout")).expect("stdout file");
    let status = env
        .cmd()
        .args(["create", "--bundle"])
        .arg(&b.dir)
        .args(["--pid-file"])
        .arg(b.dir.join("pid"))
        .arg(&id)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .status()
        .expect("create");
    assert!(status.success());
    let state = env.state(&id);
    assert_eq!(state["status"], "created");
    assert_eq!(state["id"], json!(id));
    let pid = state["pid"].as_i64().expect("pid");
    assert!(pid > 0);
    let pid_file = std::fs::read_to_string(b.dir.join("pid")).expect("pid file");
    assert_eq!(pid_file.trim(), pid.to_string());
    assert_eq!(env.listed(), vec![id.clone()]);

    env.ok(&["start", &id]);
    assert_eq!(env.status(&id), "running");
    // A second start is refused.
    assert!(!env.rt(&["start", &id]).status.success());

    wait_for(|| b.stdout().contains("ready"));
    env.ok(&["kill", &id, "TERM"]);
    env.wait_status(&id, "stopped");
    assert!(b.stdout().contains("got TERM"), "stdout: {}", b.stdout());
    assert_eq!(env.state(&id)["pid"], 0);

    // At the vm level the container's cgroups are in its guest only.
    assert_eq!(cgroup_dir("memory", &id).exists(), !at_vm());
    env.ok(&["delete", &id]);
    assert!(env.listed().is_empty());
    assert!(!env.rt(&["state", &id]).status.success());
    for c in ["memory", "pids", "cpu", "freezer", "devices"] {
        assert!(!cgroup_dir(c, &id).exists(), "{c} cgroup left behind");
    }
    assert!(!env.root.join(&id).exists());
}

#[test]
fn kill_9_and_delete_force_of_a_running_container() {
    let env = Env::new("kill9");
    let (a, b_id) = (env.id("a"), env.id("b"));
    let ba = Bundle::busybox(&env, &a, &["sleep", "1000"]);
    let bb = Bundle::busybox(&env, &b_id, &["sleep", "1000"]);
    env.start_detached(&a, &ba);
    env.start_detached(&b_id, &bb);

    env.ok(&["kill", &a, "9"]);
    env.wait_status(&a, "stopped");
    env.ok(&["delete", &a]);

    // delete without --force refuses a running container; --force kills it.
    assert!(!env.rt(&["delete", &b_id]).status.success());
    assert_eq!(env.status(&b_id), "running");
    env.ok(&["delete", "--force", &b_id]);
    assert!(env.listed().is_empty());
    // --force on a container that is gone is not an error (as runc).
    env.ok(&["delete", "--force", &b_id]);
}

#[test]
fn the_containers_process_killed_from_outside_is_stopped_and_deleted() {
    let env = Env::new("killed");
    let id = env.id("c");
    let b = Bundle::busybox(&env, &id, &["sleep", "1000"]);
    env.start_detached(&id, &b);
    // The pid the caller knows: the init at the process level, the shim
    // holding the VM (the VMM) at the vm level.
    let pid = env.state(&id)["pid"].as_i64().expect("pid") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
    env.wait_status(&id, "stopped");
    env.ok(&["delete", &id]);
    assert!(env.listed().is_empty());
    assert!(!env.root.join(&id).exists());
    wait_for(|| !std::path::Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid as i64));
}

#[test]
fn a_created_container_ends_on_kill() {
    let env = Env::new("kill-created");
    let id = env.id("c");
    let b = Bundle::busybox(&env, &id, &["sleep", "1000"]);
    env.create(&id, &b);
    // Its init is the pid namespace's init, waiting for `start`: a signal
    // it has no handler for does nothing, at both levels; KILL ends it.
    env.ok(&["kill", &id, "TERM"]);
    assert_eq!(env.status(&id), "created");
    env.ok(&["kill", &id, "KILL"]);
    env.wait_status(&id, "stopped");
    // A stopped container takes no signal.
    assert!(!env.rt(&["kill", &id, "TERM"]).status.success());
    env.ok(&["delete", &id]);
    assert!(env.listed().is_empty());
}

#[test]
fn a_detached_exec_is_signalled_through_its_pid_file() {
    let env = Env::new("exec-signal");
    let id = env.id("c");
    let b = Bundle::busybox(&env, &id, &["sleep", "1000"]);
    env.start_detached(&id, &b);
    let process = json!({
        "args": ["sh", "-c", "trap 'exit 3' TERM; while true; do sleep 0.1; done"],
        "env": ["PATH=/bin"],
        "cwd": "/",
        "user": {"uid": 0, "gid": 0},
        "terminal": false
    });
    let pfile = b.dir.join("process.json");
    std::fs::write(&pfile, process.to_string()).expect("process.json");
    let pid_file = b.dir.join("exec.pid");
    let status = env
        .cmd()
        .args(["exec", "--detach", "--pid-file"])
        .arg(&pid_file)
        .arg("--process")
        .arg(&pfile)
        .arg(&id)
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(b.dir.join("exec.out")).expect("file"))
        .stderr(std::fs::File::create(b.dir.join("exec.err")).expect("file"))
        .status()
        .expect("exec --detach");
    assert!(
        status.success(),
        "exec --detach: {}",
        std::fs::read_to_string(b.dir.join("exec.err")).unwrap_or_default()
    );
    let listed = |env: &Env| env.ok(&["exec", &id, "ps", "-o", "args"]);
    wait_for(|| listed(&env).contains("trap"));
    // The pid the caller knows: the process at the process level, its exec
    // shim at the vm level; either way the process gets the signal.
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal the exec");
    wait_for(|| !listed(&env).contains("trap"));
    env.ok(&["delete", "--force", &id]);
}

#[test]
fn a_container_whose_init_died_is_stopped() {
    let env = Env::new("init-died");
    let id = env.id("c");
    let b = Bundle::busybox(&env, &id, &["sh", "-c", "exit 0"]);
    env.start_detached(&id, &b);
    env.wait_status(&id, "stopped");
    env.ok(&["delete", &id]);
}

#[test]
fn exec_ps_pause_resume() {
    let env = Env::new("exec");
    let id = env.id("c");
    let b = Bundle::busybox(&env, &id, &["sleep", "1000"]);
    env.start_detached(&id, &b);

    let out = env.rt(&[
        "exec",
        "--env",
        "X=42",
        "--cwd",
        "/tmp",
        &id,
        "sh",
        "-c",
        "echo $X $(pwd); cat /proc/1/comm; exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "42 /tmp\nsleep\n");

    // The process JSON form, as containerd and podman send it.
    let process = json!({
        "args": ["sh", "-c", "id -u; echo $Y"],
        "env": ["PATH=/bin", "Y=from-json"],
        "cwd": "/",
        "user": {"uid": 1000, "gid": 1000},
        "terminal": false
    });
    let pfile = b.dir.join("process.json");
    std::fs::write(&pfile, process.to_string()).expect("process.json");
    let out = env.ok(&[
        "exec",
        "--process",
        pfile.to_str().expect("utf-8 path"),
        &id,
    ]);
    assert_eq!(out, "1000\nfrom-json\n");

    if at_vm() {
        // The guest's processes are not the host's to list: `ps` says so.
        let out = env.rt(&["ps", &id]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("runs at the vm level"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(env.status(&id), "running");
        // Pause and resume: the guest's runner freezes the container's
        // cgroup (v2 there). Frozen, it takes no exec; thawed, it does.
        env.ok(&["pause", &id]);
        assert_eq!(env.status(&id), "paused");
        let out = env.rt(&["exec", &id, "true"]);
        assert_ne!(out.status.code(), Some(0), "exec into a paused container");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("paused"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = env.rt(&["delete", &id]);
        assert_ne!(out.status.code(), Some(0), "delete of a paused container");
        assert!(
            env.rt(&["pause", &id]).status.code() != Some(0),
            "paused twice"
        );
        env.ok(&["resume", &id]);
        assert_eq!(env.status(&id), "running");
        assert!(
            env.rt(&["resume", &id]).status.code() != Some(0),
            "resumed twice"
        );
        assert_eq!(env.ok(&["exec", &id, "cat", "/proc/1/comm"]), "sleep\n");
        // A paused container can still be killed and deleted.
        env.ok(&["pause", &id]);
        env.ok(&["delete", "--force", &id]);
        assert!(env.listed().is_empty());
        return;
    }
    let pids: Vec<i32> =
        serde_json::from_str(&env.ok(&["ps", "--format", "json", &id])).expect("ps json");
    let init = env.state(&id)["pid"].as_i64().expect("pid") as i32;
    assert_eq!(pids, vec![init]);
    let table = env.ok(&["ps", &id]);
    assert!(
        table.lines().count() == 2 && table.contains("sleep 1000"),
        "{table}"
    );

    env.ok(&["pause", &id]);
    assert_eq!(env.status(&id), "paused");
    assert_eq!(
        common::read_trim(&cgroup_dir("freezer", &id).join("freezer.state")),
        "FROZEN"
    );
    env.ok(&["resume", &id]);
    assert_eq!(env.status(&id), "running");
    assert_eq!(
        common::read_trim(&cgroup_dir("freezer", &id).join("freezer.state")),
        "THAWED"
    );

    // A paused container can still be killed and deleted.
    env.ok(&["pause", &id]);
    env.ok(&["delete", "--force", &id]);
    assert!(!cgroup_dir("freezer", &id).exists());
}

/// `events --stats` reads the container's own cgroup: the host's (v1 here)
/// at the process level, the guest's (v2) at the vm level, the same figures;
/// `update` changes that cgroup's limits, by runc's flags or by containerd's
/// resources document on stdin.
#[test]
fn events_and_update_read_and_set_the_containers_cgroup() {
    let env = Env::new("stats");
    let id = env.id("c");
    let mut b = Bundle::busybox(&env, &id, &["sh", "-c", "sleep 1000 & wait"]);
    let limit: u64 = 48 << 20;
    b.set("/linux/resources/memory", json!({"limit": limit}));
    b.set("/linux/resources/pids", json!({"limit": 50}));
    env.start_detached(&id, &b);
    // The shell's sleep may not be forked yet when start returns.
    wait_for(|| env.rt(&["exec", &id, "pidof", "sleep"]).status.success());
    // A second or two of CPU work in the container's cgroup, so that the
    // time's unit shows: runc's nanoseconds on either cgroup version.
    env.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "end=$(($(date +%s)+2)); while [ $(date +%s) -lt $end ]; do :; done",
    ]);

    let line = env.ok(&["events", "--stats", &id]);
    assert_eq!(line.lines().count(), 1, "one sample: {line}");
    let stats: Value = serde_json::from_str(&line).expect("events json");
    assert_eq!(stats["type"], "stats", "{stats}");
    assert_eq!(stats["id"], id.as_str(), "{stats}");
    let data = &stats["data"];
    assert_eq!(data["pids"]["limit"], 50, "{stats}");
    assert!(
        data["pids"]["current"].as_u64().is_some_and(|n| n >= 2),
        "sh and sleep: {stats}"
    );
    assert_eq!(data["memory"]["memory"]["limit"], limit, "{stats}");
    assert!(
        data["memory"]["memory"]["usage"]
            .as_u64()
            .is_some_and(|n| n > 0 && n < limit),
        "{stats}"
    );
    // At least 0.1 s, in nanoseconds (in microseconds it would read 10⁵).
    assert!(
        data["cpu"]["usage"]["usage_total"]
            .as_u64()
            .is_some_and(|n| n >= 100_000_000),
        "{stats}"
    );

    let sample = || -> Value {
        serde_json::from_str(&env.ok(&["events", "--stats", &id])).expect("events json")
    };
    env.ok(&["update", "--pids-limit", "7", "--memory", "64m", &id]);
    let data = &sample()["data"];
    assert_eq!(data["pids"]["limit"], 7, "{data}");
    assert_eq!(data["memory"]["memory"]["limit"], 64u64 << 20, "{data}");
    // containerd's form: a resources document on stdin.
    let update_from_stdin = |document: &[u8]| {
        let mut child = env
            .cmd()
            .args(["update", "--resources", "-", &id])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("update");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), document)
            .expect("write resources");
        child.wait().expect("wait update").success()
    };
    assert!(update_from_stdin(
        json!({"pids": {"limit": 9}}).to_string().as_bytes()
    ));
    assert_eq!(sample()["data"]["pids"]["limit"], 9);
    // A malformed document changes nothing.
    assert!(!update_from_stdin(b"{\"pids\": ["));
    assert_eq!(sample()["data"]["pids"]["limit"], 9);

    env.ok(&["delete", "--force", &id]);
    let out = env.rt(&["events", "--stats", &id]);
    assert_ne!(out.status.code(), Some(0), "events of a deleted container");
    let out = env.rt(&["update", "--pids-limit", "5", &id]);
    assert_ne!(out.status.code(), Some(0), "update of a deleted container");
}

#[test]
fn terminal_through_the_console_socket() {
    let env = Env::new("tty");
    let id = env.id("c");
    let mut b = Bundle::busybox(&env, &id, &["sh", "-c", "tty; echo tty-ok"]);
    b.set("/process/terminal", json!(true));
    let sock = ConsoleSocket::new(&env, "console");
    let path = sock.path.to_str().expect("utf-8 path").to_owned();
    let bundle = b.dir.to_str().expect("utf-8 path").to_owned();
    let receiver = std::thread::spawn(move || {
        let mut master = sock.receive_master();
        let mut text = String::new();
        let mut buf = [0u8; 1024];
        // Read until the pty reports EIO (the child side closed).
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            if text.contains("tty-ok") {
                break;
            }
        }
        text
    });
    env.ok(&[
        "create",
        "--bundle",
        &bundle,
        "--console-socket",
        &path,
        &id,
    ]);
    env.ok(&["start", &id]);
    let text = receiver.join().expect("console reader");
    assert!(text.contains("/dev/pts/0"), "terminal output: {text:?}");
    assert!(text.contains("tty-ok"), "terminal output: {text:?}");
}

#[test]
fn list_spec_features() {
    let env = Env::new("list-spec");
    let (a, b_id) = (env.id("a"), env.id("b"));
    let ba = Bundle::busybox(&env, &a, &["sleep", "1000"]);
    let bb = Bundle::busybox(&env, &b_id, &["sleep", "1000"]);
    env.create(&a, &ba);
    env.start_detached(&b_id, &bb);
    let list: Value =
        serde_json::from_str(&env.ok(&["list", "--format", "json"])).expect("list json");
    let statuses: Vec<(String, String)> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap_or("").to_owned(),
                s["status"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            (a.clone(), "created".into()),
            (b_id.clone(), "running".into())
        ]
    );
    assert!(env.ok(&["list"]).contains("STATUS"));

    // `spec` refuses to overwrite a bundle's config.
    assert!(!env
        .rt(&["spec", "--bundle", ba.dir.to_str().expect("utf-8")])
        .status
        .success());

    let features: Value = serde_json::from_str(&env.ok(&["features"])).expect("features json");
    assert_eq!(features["ociVersionMin"], "1.0.0");
    assert!(features["linux"]["namespaces"]
        .as_array()
        .is_some_and(|n| n.len() >= 7));
    assert_eq!(features["linux"]["seccomp"]["enabled"], true);
}

#[test]
fn errors_go_to_the_log_file_in_json() {
    let env = Env::new("log-json");
    let log = env.dir.join("log.json");
    let out = env
        .cmd()
        .arg("--log")
        .arg(&log)
        .args(["--log-format", "json", "state", "no-such-container"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let text = std::fs::read_to_string(&log).expect("log file");
    let last: Value =
        serde_json::from_str(text.lines().last().expect("a log line")).expect("json line");
    assert_eq!(last["level"], "error");
    assert!(
        last["msg"]
            .as_str()
            .is_some_and(|m| m.contains("does not exist")),
        "{last}"
    );
    assert!(last["time"].is_string());
    // runc prints the error to stderr too.
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

fn wait_for(mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "condition not reached");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn delete_force_recovers_from_a_torn_state_file() {
    let env = Env::new("torn-state");
    let id = env.id("c");
    let b = Bundle::busybox(&env, &id, &["sleep", "1000"]);
    env.start_detached(&id, &b);
    let pid = env.state(&id)["pid"].as_i64().expect("pid");
    if at_vm() {
        // The vm level's record is written whole, never torn; one broken
        // by hand is unreadable, yet delete --force still cleans up, and
        // the shim (with its VM) ends once its directory is gone.
        std::fs::write(env.root.join(&id).join("isola-vm.json"), "{\"id\": ").expect("break");
        assert!(!env.rt(&["state", &id]).status.success());
        env.ok(&["delete", "--force", &id]);
        assert!(!env.root.join(&id).exists());
        wait_for(|| !std::path::Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid));
        return;
    }
    // What a runtime killed in the middle of libcontainer's state write
    // leaves behind: the last complete state is put back.
    let state_file = env.root.join(&id).join("state.json");
    std::fs::write(&state_file, "{\"id\": ").expect("tear state");
    assert_eq!(
        env.state(&id)["status"],
        "running",
        "restored from the last complete state"
    );
    // Torn with no complete copy left (a crash before the first one was
    // kept): unreadable, yet delete --force still cleans up.
    std::fs::write(&state_file, "").expect("truncate state");
    std::fs::remove_file(env.root.join(&id).join("state.complete.json"))
        .expect("the complete copy");
    assert!(!env.rt(&["state", &id]).status.success());
    env.ok(&["delete", "--force", &id]);
    assert!(!env.root.join(&id).exists());
    assert!(!cgroup_dir("pids", &id).exists());
    wait_for(|| !std::path::Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid));
}

fn is_zombie(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

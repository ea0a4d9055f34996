//! cgroup limits hold: the files say so and the workload feels it.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{cgroup_dir, read_trim, Bundle, Env};
use serde_json::json;

#[test]
fn memory_limit_triggers_the_oom_killer() {
    let env = Env::new("oom");
    let id = env.id("c");
    // busybox tail buffers its whole input when it never sees a newline.
    let mut b = Bundle::busybox(&env, &id, &["sh", "-c", "head -c 512m /dev/zero | tail"]);
    let limit = 32 << 20;
    b.set(
        "/linux/resources/memory",
        json!({"limit": limit, "swap": limit}),
    );
    let out = env
        .cmd()
        .args(["run", "--keep", "--bundle"])
        .arg(&b.dir)
        .arg(&id)
        .stdin(Stdio::null())
        .output()
        .expect("run");
    // sh reports its pipeline's last command killed by SIGKILL.
    assert_eq!(
        out.status.code(),
        Some(137),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mem = cgroup_dir("memory", &id);
    assert_eq!(
        read_trim(&mem.join("memory.limit_in_bytes")),
        limit.to_string()
    );
    let oom = read_trim(&mem.join("memory.oom_control"));
    let kills: u64 = oom
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(kills >= 1, "no OOM kill recorded: {oom}");
    env.ok(&["delete", &id]);
    assert!(!mem.exists());
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    let env = Env::new("pids");
    let id = env.id("c");
    let mut b = Bundle::busybox(&env, &id, &["sleep", "1000"]);
    b.set("/linux/resources/pids", json!({"limit": 16}));
    env.start_detached(&id, &b);
    // Bounded, so a broken limit cannot hurt the host; busybox sh gives up
    // at the first fork the kernel refuses. The sleeps must not hold our
    // stdout pipe open.
    let bomb = "i=0; while [ $i -lt 64 ]; do sleep 1000 >/dev/null 2>&1 & i=$((i+1)); done; echo all 64 forked";
    let out = env.rt(&["exec", &id, "sh", "-c", bomb]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("can't fork"), "stderr: {stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("all 64"));
    let pids = cgroup_dir("pids", &id);
    assert_eq!(read_trim(&pids.join("pids.max")), "16");
    let current: u32 = read_trim(&pids.join("pids.current"))
        .parse()
        .expect("pids.current");
    assert!(current <= 16, "{current} processes under a limit of 16");
    // The bomb got as far as the limit: init plus its surviving sleeps.
    let listed: Vec<i32> =
        serde_json::from_str(&env.ok(&["ps", "--format", "json", &id])).expect("ps");
    assert!(
        (14..=16).contains(&listed.len()),
        "{} processes",
        listed.len()
    );
    env.ok(&["delete", "--force", &id]);
    assert!(!pids.exists());
}

#[test]
fn cpu_quota_holds_a_busy_loop_near_its_share() {
    let env = Env::new("cpu");
    let id = env.id("c");
    let mut b = Bundle::busybox(&env, &id, &["sh", "-c", "while :; do :; done"]);
    // `--cpus 0.1`: 10 ms every 100 ms.
    b.set(
        "/linux/resources/cpu",
        json!({"quota": 10000, "period": 100000, "shares": 512}),
    );
    env.start_detached(&id, &b);
    let cpu = cgroup_dir("cpu", &id);
    assert_eq!(read_trim(&cpu.join("cpu.cfs_quota_us")), "10000");
    assert_eq!(read_trim(&cpu.join("cpu.cfs_period_us")), "100000");
    assert_eq!(read_trim(&cpu.join("cpu.shares")), "512");

    // The loop is the shell itself (`:` is a builtin): its own CPU time.
    let pid = env.state(&id)["pid"].as_i64().expect("pid");
    let ticks = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .expect("comm")
            .1
            .split_whitespace()
            .collect();
        // utime and stime are fields 14 and 15 (1-based), 12 and 13 after comm.
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) } as f64;
    let (t0, c0) = (Instant::now(), ticks());
    std::thread::sleep(Duration::from_secs(2));
    let (t1, c1) = (Instant::now(), ticks());
    let share = (c1 - c0) as f64 / hz / (t1 - t0).as_secs_f64();
    assert!(
        share < 0.30,
        "busy loop used {:.0}% of a CPU under a 10% quota",
        share * 100.0
    );
    assert!(
        share > 0.01,
        "busy loop did not run ({:.1}%)",
        share * 100.0
    );
    env.ok(&["delete", "--force", &id]);
    assert!(!cpu.exists());
}

#[test]
fn cpuset_pins_the_container() {
    let env = Env::new("cpuset");
    let id = env.id("c");
    let mut b = Bundle::busybox(
        &env,
        &id,
        &["sh", "-c", "grep Cpus_allowed_list /proc/self/status"],
    );
    b.set("/linux/resources/cpu", json!({"cpus": "0", "mems": "0"}));
    let (code, out, err) = common::run(&env, &id, &b, b"");
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out.split_whitespace().last(), Some("0"), "{out}");
}

#[test]
fn update_changes_limits_of_a_running_container() {
    let env = Env::new("update");
    let id = env.id("c");
    let mut b = Bundle::busybox(&env, &id, &["sleep", "1000"]);
    b.set("/linux/resources/pids", json!({"limit": 100}));
    env.start_detached(&id, &b);
    env.ok(&["update", "--pids-limit", "7", "--memory", "64m", &id]);
    assert_eq!(read_trim(&cgroup_dir("pids", &id).join("pids.max")), "7");
    assert_eq!(
        read_trim(&cgroup_dir("memory", &id).join("memory.limit_in_bytes")),
        (64 << 20).to_string()
    );

    // containerd's form: runtime-spec resources JSON on stdin.
    let mut child = env
        .cmd()
        .args(["update", "--resources", "-", &id])
        .stdin(Stdio::piped())
        .spawn()
        .expect("update");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(json!({"cpu": {"shares": 256}}).to_string().as_bytes())
        .expect("write resources");
    assert!(child.wait().expect("wait update").success());
    assert_eq!(read_trim(&cgroup_dir("cpu", &id).join("cpu.shares")), "256");

    let stats: serde_json::Value =
        serde_json::from_str(&env.ok(&["events", "--stats", &id])).expect("events json");
    assert_eq!(stats["type"], "stats");
    assert!(
        stats["data"]["pids"]["current"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{stats}"
    );
    env.ok(&["delete", "--force", &id]);
}

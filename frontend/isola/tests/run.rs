//! `isola run` and the container lifecycle, end to end with real images on
//! the real kernel: every flag observed from inside the container, exit
//! codes, signals, stdio, terminals, detached containers with logs, exec,
//! stop and wait, a killed supervisor, name races, many containers at once,
//! and bad input. Each table runs at every level `levels()` names; the last
//! test runs this whole binary again at the vm level.

mod common;
mod run_support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use run_support::{levels, processes_mentioning, stdout, text, Store};

/// One row: run flags, the command, and what must come back.
struct Case {
    what: &'static str,
    flags: &'static [&'static str],
    command: &'static [&'static str],
    code: i32,
    stdout: &'static str,
}

/// A container that panics its guest kernel (vm level only: at the process
/// level the kernel is the host's). Only that container ends, reported with
/// the reason; a neighbour VM keeps running; `rm` cleans up.
#[test]
fn a_guest_kernel_panic_ends_only_its_container() {
    if !levels().contains(&"vm") {
        return;
    }
    let store = Store::new();
    let neighbour = store.ok(&[
        "run",
        "-d",
        "--isolation",
        "vm",
        "--name",
        "neighbour",
        "busybox",
        "sleep",
        "600",
    ]);
    // panic_on_oom=2 panics the kernel on any OOM, a memory cgroup's too;
    // --privileged makes /proc/sys writable, in the guest only.
    let out = store.run(&[
        "run",
        "--isolation",
        "vm",
        "--privileged",
        "--memory",
        "32m",
        "--name",
        "boom",
        "busybox",
        "sh",
        "-c",
        "echo 2 > /proc/sys/vm/panic_on_oom && tail /dev/zero",
    ]);
    assert_eq!(out.status.code(), Some(137), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("isola: the container's VM stopped: guest kernel panicked"),
        "the CLI says why: {}",
        text(&out)
    );
    let inspect: serde_json::Value = serde_json::from_str(&store.ok(&["inspect", "boom"])).unwrap();
    let error = inspect[0]["State"]["Error"].as_str().unwrap_or_default();
    assert!(error.contains("panicked"), "the reason is given: {inspect}");
    assert_eq!(inspect[0]["State"]["Status"], "exited", "{inspect}");
    let out = store.ok(&["exec", "neighbour", "echo", "still here"]);
    assert_eq!(out, "still here\n");
    let id = store.id_of("boom");
    store.ok(&["rm", "boom"]);
    store.assert_gone(&id);
    store.ok(&["rm", "-f", neighbour.trim()]);
    store.assert_empty();
}

const FLAG_CASES: &[Case] = &[
    Case { what: "plain output", flags: &[], command: &["echo", "hello"], code: 0, stdout: "hello\n" },
    Case { what: "exit code", flags: &[], command: &["sh", "-c", "exit 42"], code: 42, stdout: "" },
    Case { what: "killed by a signal", flags: &[], command: &["sh", "-c", "sleep 5 & kill -9 $!; wait $!; exit $?"], code: 137, stdout: "" },
    Case { what: "-e", flags: &["-e", "GREETING=hi there"], command: &["sh", "-c", "echo $GREETING"], code: 0, stdout: "hi there\n" },
    Case { what: "-w", flags: &["-w", "/tmp"], command: &["pwd"], code: 0, stdout: "/tmp\n" },
    Case { what: "-u uid", flags: &["-u", "65534"], command: &["id", "-u"], code: 0, stdout: "65534\n" },
    Case { what: "-u name:group", flags: &["-u", "nobody:nogroup"], command: &["id", "-un"], code: 0, stdout: "nobody\n" },
    Case { what: "--entrypoint", flags: &["--entrypoint", "echo"], command: &["from", "entrypoint"], code: 0, stdout: "from entrypoint\n" },
    Case { what: "--hostname", flags: &["--hostname", "box1"], command: &["hostname"], code: 0, stdout: "box1\n" },
    Case { what: "--read-only", flags: &["--read-only"], command: &["sh", "-c", "touch /x 2>/dev/null || echo refused"], code: 0, stdout: "refused\n" },
    Case { what: "writable by default", flags: &[], command: &["sh", "-c", "touch /x && echo written"], code: 0, stdout: "written\n" },
    Case { what: "--tmpfs", flags: &["--tmpfs", "/scratch"], command: &["sh", "-c", "grep ' /scratch ' /proc/mounts | cut -d' ' -f3"], code: 0, stdout: "tmpfs\n" },
    Case { what: "--memory", flags: &["--memory", "64m"], command: &["sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"], code: 0, stdout: "67108864\n" },
    Case { what: "--pids-limit", flags: &["--pids-limit", "20"], command: &["sh", "-c", "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max"], code: 0, stdout: "20\n" },
    Case { what: "--cpus", flags: &["--cpus", "0.5"], command: &["sh", "-c", "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cut -d' ' -f1 /sys/fs/cgroup/cpu.max"], code: 0, stdout: "50000\n" },
    Case { what: "--network none: only lo", flags: &["--network", "none"], command: &["ls", "/sys/class/net"], code: 0, stdout: "lo\n" },
    Case { what: "own pid namespace", flags: &[], command: &["sh", "-c", "echo $$"], code: 0, stdout: "1\n" },
    Case { what: "masked /proc/timer_list", flags: &[], command: &["sh", "-c", "wc -c < /proc/timer_list"], code: 0, stdout: "0\n" },
    Case { what: "read-only /proc/sys", flags: &[], command: &["sh", "-c", "echo 1 > /proc/sys/kernel/domainname 2>/dev/null || echo refused"], code: 0, stdout: "refused\n" },
    Case { what: "seccomp denies unshare", flags: &[], command: &["sh", "-c", "unshare -U true 2>/dev/null || echo denied"], code: 0, stdout: "denied\n" },
    Case { what: "--privileged: CAP_SYS_ADMIN, no seccomp, /proc/sys writable, timer_list unmasked", flags: &["--privileged"], command: &["sh", "-c", "c=$(grep CapEff /proc/self/status | cut -f2); [ $(( 0x$c >> 21 & 1 )) = 1 ] && echo admin; grep Seccomp: /proc/self/status | cut -f2; grep -c ' /proc/sys ' /proc/self/mountinfo; [ $(head -c 9 /proc/timer_list | wc -c) = 9 ] && echo unmasked"], code: 0, stdout: "admin\n0\n0\nunmasked\n" },
    Case { what: "command not found", flags: &[], command: &["no-such-program"], code: 127, stdout: "" },
    Case { what: "not executable", flags: &[], command: &["/etc/passwd"], code: 126, stdout: "" },
];

#[test]
fn flags_are_observable_inside_the_container() {
    let store = Store::new();
    for level in levels() {
        for case in FLAG_CASES {
            let mut args = vec!["run", "--rm", "--isolation", level];
            args.extend(case.flags);
            args.push("busybox");
            args.extend(case.command);
            let out = store.run(&args);
            assert_eq!(
                out.status.code(),
                Some(case.code),
                "[{level}] {}: {}",
                case.what,
                text(&out)
            );
            assert_eq!(
                stdout(&out),
                case.stdout,
                "[{level}] {}: {}",
                case.what,
                text(&out)
            );
        }
    }
    store.assert_empty();
}

#[test]
fn env_file_volumes_and_host_network() {
    let store = Store::new();
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("env");
    std::fs::write(&env_file, "# comment\nA=1\n\nB=two words\n").unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("from-host"), "host data\n").unwrap();
    for level in levels() {
        let out = store.ok_rm(
            level,
            &[
                "--env-file",
                env_file.to_str().unwrap(),
                "busybox",
                "sh",
                "-c",
                "echo $A-$B",
            ],
        );
        assert_eq!(out, "1-two words\n");

        let rw = format!("{}:/data", shared.display());
        let out = store.ok_rm(
            level,
            &[
                "-v",
                &rw,
                "busybox",
                "sh",
                "-c",
                "cat /data/from-host; echo container data > /data/from-container",
            ],
        );
        assert_eq!(out, "host data\n");
        assert_eq!(
            std::fs::read_to_string(shared.join("from-container")).unwrap(),
            "container data\n"
        );
        std::fs::remove_file(shared.join("from-container")).unwrap();

        // Both ways while the container runs: it writes a question, the
        // host answers, the container reads the answer.
        let _ = std::fs::remove_file(shared.join("pong"));
        let mut talk = store.isola();
        talk.args(["run", "--rm", "--isolation", level, "-v", &rw, "busybox", "sh", "-c"])
            .arg("echo ping > /data/ping; i=0; while [ ! -s /data/pong ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; cat /data/pong")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let child = talk.spawn().unwrap();
        wait_for(|| shared.join("ping").exists());
        std::fs::write(shared.join("pong"), "pong from the host\n").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(stdout(&out), "pong from the host\n");
        std::fs::remove_file(shared.join("ping")).unwrap();
        std::fs::remove_file(shared.join("pong")).unwrap();

        let ro = format!("{}:/data:ro", shared.display());
        let out = store.ok_rm(
            level,
            &[
                "-v",
                &ro,
                "busybox",
                "sh",
                "-c",
                "cat /data/from-host; echo x > /data/nope 2>/dev/null || echo refused",
            ],
        );
        assert_eq!(out, "host data\nrefused\n");
        assert!(!shared.join("nope").exists());
        // A volume's file server (virtiofsd, at the vm level) ends with
        // its container.
        wait_for(|| processes_mentioning(shared.to_str().unwrap()).is_empty());

        if level == "vm" {
            // virtio-fs shares directories; a file volume is refused up
            // front, clearly, with nothing left behind.
            let file = format!("{}:/f", env_file.display());
            let out = store.run(&[
                "run",
                "--rm",
                "--isolation",
                level,
                "-v",
                &file,
                "busybox",
                "true",
            ]);
            assert_eq!(out.status.code(), Some(125), "{}", text(&out));
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("must be directories"),
                "{}",
                text(&out)
            );
            // The VM's network is the VM's: a guest with no NIC has lo.
            let out = store.ok_rm(
                level,
                &["--network", "host", "busybox", "ls", "/sys/class/net"],
            );
            assert_eq!(out, "lo\n");
            continue;
        }
        let host_links = std::fs::read_dir("/sys/class/net").unwrap().count();
        let out = store.ok_rm(
            level,
            &["--network", "host", "busybox", "ls", "/sys/class/net"],
        );
        assert_eq!(
            out.lines().count(),
            host_links,
            "--network host sees the host's links: {out}"
        );
    }
    store.assert_empty();
}

#[test]
fn stdio_streams_stay_apart_and_stdin_reaches_the_container() {
    let store = Store::new();
    for level in levels() {
        let out = store.run(&[
            "run",
            "--rm",
            "--isolation",
            level,
            "busybox",
            "sh",
            "-c",
            "echo out; echo err >&2",
        ]);
        assert_eq!(stdout(&out), "out\n");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");

        let mut child = store
            .isola()
            .args([
                "run",
                "--rm",
                "-i",
                "--isolation",
                level,
                "busybox",
                "sh",
                "-c",
                "tr a-z A-Z; echo done",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"piped input\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            stdout(&out),
            "PIPED INPUT\ndone\n",
            "stdin EOF must reach the container"
        );

        // Without -i the container's stdin is empty, not the caller's.
        let out = store.run(&[
            "run",
            "--rm",
            "--isolation",
            level,
            "busybox",
            "sh",
            "-c",
            "cat; echo eof",
        ]);
        assert_eq!(stdout(&out), "eof\n");
    }
}

#[test]
fn a_terminal_through_a_real_pty() {
    let store = Store::new();
    for level in levels() {
        // `script` gives isola a real pty sized 33x111.
        let cmd = format!(
            "stty rows 33 cols 111; {} --root {} run --rm -it --isolation {level} busybox sh -c 'tty; stty size'",
            run_support::ISOLA,
            store.path().display()
        );
        let out = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let s = stdout(&out);
        assert!(
            s.contains("/dev/pts/0"),
            "[{level}] no terminal inside: {}",
            text(&out)
        );
        assert!(
            s.contains("33 111"),
            "[{level}] size not propagated: {}",
            text(&out)
        );

        // exec -t into a running container: a terminal of the caller's size
        // (set just after the process starts, as docker's exec does; the
        // second lets that land first).
        let name = format!("tty-{level}");
        let id = store.start_script(level, &name, "echo ready; while true; do sleep 0.1; done");
        let cmd = format!(
            "stty rows 21 cols 77; {} --root {} exec -t {name} sh -c 'tty; sleep 1; stty size'",
            run_support::ISOLA,
            store.path().display()
        );
        let out = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let s = stdout(&out);
        assert!(
            s.contains("/dev/pts/"),
            "[{level}] exec -t: no terminal: {}",
            text(&out)
        );
        assert!(
            s.contains("21 77"),
            "[{level}] exec -t: size not propagated: {}",
            text(&out)
        );
        store.ok(&["rm", "-f", &name]);
        store.assert_gone(&id);
    }
    store.assert_empty();
}

#[test]
fn ctrl_c_in_a_terminal_goes_to_the_container() {
    use std::io::{BufRead, BufReader};
    let store = Store::new();
    for level in levels() {
        let cmd = format!(
            "exec {} --root {} run --rm -it --isolation {level} busybox sh -c 'trap \"echo got INT; exit 3\" INT; echo ready; while true; do sleep 0.1; done'",
            run_support::ISOLA,
            store.path().display()
        );
        let mut script = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(script.stdout.take().unwrap()).lines();
        assert!(
            lines.any(|l| l.is_ok_and(|l| l.contains("ready"))),
            "[{level}] never ready"
        );
        let mut stdin = script.stdin.take().unwrap();
        stdin.write_all(b"\x03").unwrap();
        assert!(
            lines.any(|l| l.is_ok_and(|l| l.contains("got INT"))),
            "[{level}] ^C did not reach the container"
        );
        drop(stdin);
        assert_eq!(
            script.wait().unwrap().code(),
            Some(3),
            "[{level}] the container's status"
        );
    }
    store.assert_empty();
}

#[test]
fn a_terminal_resize_reaches_the_container() {
    let store = Store::new();
    for level in levels() {
        // tmux owns the outer terminal, so the test can resize it.
        let session = format!("isola-resize-{}-{level}", std::process::id());
        let cmd = format!(
            "exec {} --root {} run --rm -it --isolation {level} busybox sh -c 'trap \"stty size\" WINCH; stty size; while true; do sleep 0.1; done'",
            run_support::ISOLA,
            store.path().display()
        );
        let tmux = |args: &[&str]| {
            Command::new("tmux")
                .args(args)
                .output()
                .expect("tmux is not installed (./build.sh installs it)")
        };
        let out = tmux(&[
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "80",
            "-y",
            "24",
            &cmd,
        ]);
        assert!(out.status.success(), "{}", text(&out));
        let pane = || stdout(&tmux(&["capture-pane", "-t", &session, "-p"]));
        wait_for(|| pane().contains("24 80"));
        tmux(&["resize-window", "-t", &session, "-x", "100", "-y", "40"]);
        wait_for(|| pane().contains("40 100"));
        let cli: i32 = stdout(&tmux(&["list-panes", "-t", &session, "-F", "#{pane_pid}"]))
            .trim()
            .parse()
            .expect("tmux names the pane's process");
        tmux(&["kill-session", "-t", &session]);
        // The hung-up CLI exits on its own time; only then is the store
        // checked for leftovers.
        wait_for(|| !std::path::Path::new(&format!("/proc/{cli}")).exists());
        // As with docker, a CLI that goes away leaves its container running.
        let running = store.ok(&["ps", "-q"]);
        assert_eq!(running.lines().count(), 1, "{running}");
        store.ok(&["rm", "-f", running.trim()]);
    }
    store.assert_empty();
}

#[test]
fn detached_logs_exec_stop_wait() {
    let store = Store::new();
    for level in levels() {
        let name = format!("web-{level}");
        let id = store.start_script(
            level,
            &name,
            "trap 'echo got TERM; exit 7' TERM; echo ready; echo warn >&2; while true; do sleep 0.1; done",
        );
        assert_eq!(id.len(), 64, "run -d prints the full ID");
        let ps = store.ok(&["ps"]);
        assert!(ps.contains(&id[..12]) && ps.contains("Up "), "{ps}");
        assert!(store.ok(&["ps", "-q"]).lines().any(|l| l == &id[..12]));

        let out = store.run(&["logs", "-t", &name]);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("warn"),
            "stderr stays stderr in logs"
        );
        assert!(
            stdout(&out)
                .split_whitespace()
                .next()
                .is_some_and(|t| t.ends_with('Z')),
            "-t timestamps"
        );

        let out = store.ok(&[
            "exec",
            "-e",
            "X=1",
            "-w",
            "/tmp",
            &name,
            "sh",
            "-c",
            "echo $X $(pwd) $(hostname)",
        ]);
        assert_eq!(out, format!("1 /tmp {}\n", &id[..12]));
        let out = store.run(&["exec", &id[..8], "sh", "-c", "exit 5"]);
        assert_eq!(
            out.status.code(),
            Some(5),
            "exec's status, container found by ID prefix"
        );
        let out = store.ok(&["exec", "-u", "nobody", &name, "id", "-u"]);
        assert_eq!(out, "65534\n");
        store.ok(&["exec", &name, "sh", "-c", "echo kept > /kept"]);

        let follower = store
            .isola()
            .args(["logs", "-f", &name])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        store.ok(&["stop", "-t", "10", &name]);
        let followed = follower.wait_with_output().unwrap();
        assert!(
            stdout(&followed).contains("got TERM"),
            "logs -f ends with the container: {}",
            text(&followed)
        );
        assert_eq!(store.ok(&["wait", &name]), "7\n");
        let ps = store.ok(&["ps", "-a"]);
        assert!(ps.contains("Exited (7)"), "{ps}");
        let inspect: serde_json::Value =
            serde_json::from_str(&store.ok(&["inspect", &name])).unwrap();
        assert_eq!(inspect[0]["State"]["ExitCode"], 7);
        assert_eq!(inspect[0]["Isolation"], *level);

        // A stopped container starts again, keeping its writable layer.
        store.ok(&["start", &name]);
        wait_for(|| store.ok(&["ps"]).contains(&id[..12]));
        assert_eq!(
            store.ok(&["exec", &name, "cat", "/kept"]),
            "kept\n",
            "[{level}] the writable layer survives a stop and start"
        );
        store.ok(&["rm", "-f", &name]);
        store.assert_gone(&id);
    }
}

/// `stats` reads the container's own cgroup (the host's, or the guest's at
/// the vm level): the limit `run` set, its processes, its memory in use,
/// the CPU it burns; a stopped container has none.
#[test]
fn stats_reads_the_containers_cgroup() {
    let store = Store::new();
    for level in levels() {
        let name = format!("busy-{level}");
        store.ok(&[
            "run",
            "-d",
            "--isolation",
            level,
            "--memory",
            "96m",
            "--name",
            &name,
            "busybox",
            "sh",
            "-c",
            "while :; do :; done & sleep 3600",
        ]);
        let sample: serde_json::Value =
            serde_json::from_str(&store.ok(&["stats", "--no-stream", "--format", "json", &name]))
                .expect("one JSON object");
        assert_eq!(sample["Name"], name.as_str(), "{sample}");
        assert_eq!(sample["MemLimit"], 96u64 << 20, "[{level}] {sample}");
        let used = sample["MemUsage"].as_u64().unwrap_or(0);
        assert!(used > 0 && used < 96 << 20, "[{level}] {sample}");
        assert!(
            sample["PIDs"].as_u64().is_some_and(|n| n >= 2),
            "[{level}] the busy loop's shell and sleep: {sample}"
        );
        // The busy loop holds a CPU (of two; the test host is shared).
        assert!(
            sample["CPUPerc"].as_f64().is_some_and(|p| p > 20.0),
            "[{level}] {sample}"
        );
        let table = store.ok(&["stats", "--no-stream", &name]);
        let mut lines = table.lines();
        assert!(
            lines.next().is_some_and(|h| h.starts_with("CONTAINER ID")),
            "{table}"
        );
        assert!(
            lines
                .next()
                .is_some_and(|l| l.contains(&name) && l.contains("/ 96MiB")),
            "[{level}] {table}"
        );
        store.ok(&["kill", &name]);
        wait_for(|| !store.ok(&["ps"]).contains(&name));
        let out = store.run(&["stats", "--no-stream", &name]);
        assert_ne!(out.status.code(), Some(0), "stats of a stopped container");
        store.ok(&["rm", &name]);
    }
}

#[test]
fn stop_escalates_to_sigkill_after_the_grace_period() {
    let store = Store::new();
    for level in levels() {
        let name = format!("stubborn-{level}");
        let id = store.start_script(
            level,
            &name,
            "trap '' TERM; echo ready; while true; do sleep 0.1; done",
        );
        store.ok(&["stop", "-t", "1", &name]);
        assert_eq!(store.ok(&["wait", &name]), "137\n");
        store.ok(&["rm", &name]);
        store.assert_gone(&id);
    }
}

#[test]
fn kill_sends_the_signal_and_rm_refuses_a_running_container() {
    let store = Store::new();
    for level in levels() {
        let name = format!("k-{level}");
        let id = store.start_script(
            level,
            &name,
            "trap 'exit 12' USR1; echo ready; while true; do sleep 0.1; done",
        );
        let out = store.run(&["rm", &name]);
        assert!(
            !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("running"),
            "{}",
            text(&out)
        );
        store.ok(&["kill", "-s", "USR1", &name]);
        assert_eq!(store.ok(&["wait", &name]), "12\n");
        // restart: the same container runs its program again.
        store.ok(&["restart", "-t", "1", &name]);
        wait_for(|| store.ok(&["logs", &name]).matches("ready").count() == 2);
        store.ok(&["kill", "-s", "USR1", &name]);
        assert_eq!(store.ok(&["wait", &name]), "12\n");
        store.ok(&["rm", &name]);
        store.assert_gone(id.trim());
    }
}

#[test]
fn the_oom_killer_is_reported_and_the_supervisor_survives() {
    let store = Store::new();
    for level in levels() {
        let name = format!("oom-{level}");
        // One line of 256 MiB: busybox tail holds it all, far past 32 MiB.
        let out = store.run(&[
            "run",
            "--name",
            &name,
            "--isolation",
            level,
            "--memory",
            "32m",
            "busybox",
            "sh",
            "-c",
            "head -c 268435456 /dev/zero | tail > /dev/null",
        ]);
        assert_eq!(out.status.code(), Some(137), "[{level}] {}", text(&out));
        let inspect: serde_json::Value =
            serde_json::from_str(&store.ok(&["inspect", &name])).unwrap();
        assert_eq!(
            inspect[0]["State"]["OOMKilled"], true,
            "[{level}] {inspect}"
        );
        assert_eq!(inspect[0]["State"]["ExitCode"], 137);
        // The same container runs again: nothing of its keeper was lost.
        store.ok(&["start", &name]);
        assert_eq!(store.ok(&["wait", &name]), "137\n");
        store.ok(&["rm", &name]);
    }
    store.assert_empty();
}

/// The template directories (64 hex digits) under the store's root.
fn templates(store: &Store) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(store.path().join("vm-templates")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n.len() == 64))
        .collect()
}

/// A vm container's VM starts from a template (a snapshot of the booted
/// guest, made by the first container of its kind) and is still a guest of
/// its own: its own boot ID and random numbers, the host's wall clock. A
/// damaged template is dropped, the VM boots, and the next container makes
/// it again. The process level makes no templates.
#[test]
fn vm_containers_start_from_a_template_each_its_own_guest() {
    let store = Store::new();
    let script =
        "cat /proc/sys/kernel/random/boot_id; head -c 16 /dev/urandom | od -An -tx1; date +%s";
    for level in levels() {
        if level != "vm" {
            store.ok_rm(level, &["busybox", "sh", "-c", script]);
            assert!(templates(&store).is_empty(), "[process] no VM templates");
            continue;
        }
        // Two containers of one kind (detached: image disk and a scratch
        // disk): the first makes the template, both start from it.
        let mut outs = Vec::new();
        for name in ["first", "second"] {
            let out = store.run(&[
                "--log-level",
                "debug",
                "run",
                "-d",
                "--isolation",
                "vm",
                "--name",
                name,
                "busybox",
                "sh",
                "-c",
                script,
            ]);
            assert!(out.status.success(), "{}", text(&out));
            assert_eq!(store.ok(&["wait", name]), "0\n");
            let id = store.id_of(name);
            let log = std::fs::read_to_string(
                store
                    .path()
                    .join("containers")
                    .join(&id)
                    .join("supervisor.log"),
            )
            .unwrap_or_default();
            assert!(
                log.contains("VM restored from"),
                "[vm] {name} was not restored:\n{log}"
            );
            assert_eq!(
                log.contains("made a VM template"),
                name == "first",
                "[vm] only the first makes the template:\n{log}"
            );
            outs.push(store.ok(&["logs", name]));
            store.ok(&["rm", name]);
        }
        let made = templates(&store);
        assert_eq!(made.len(), 1, "[vm] one template for both");
        assert!(made[0].join("vm.json").is_file() && made[0].join("memory").is_file());
        let (a, b): (Vec<&str>, Vec<&str>) = (outs[0].lines().collect(), outs[1].lines().collect());
        assert_eq!((a.len(), b.len()), (3, 3), "[vm] {outs:?}");
        assert_ne!(
            a[0], b[0],
            "[vm] two guests from one template share a boot ID"
        );
        assert_ne!(
            a[1], b[1],
            "[vm] two guests from one template share random numbers"
        );
        let host = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        for out in [&a, &b] {
            let guest: u64 = out[2].trim().parse().unwrap();
            assert!(
                guest.abs_diff(host) < 120,
                "[vm] guest clock {guest}, host {host}"
            );
        }

        // A --rm container has no scratch disk: another kind of VM, another
        // template.
        store.ok_rm(level, &["busybox", "true"]);
        let both = templates(&store);
        assert_eq!(both.len(), 2, "[vm] a template per kind of VM");
        let rm_kind: Vec<_> = both.into_iter().filter(|t| !made.contains(t)).collect();

        // Damage it: the next container still runs (booted), and the one
        // after makes a sound template again.
        std::fs::OpenOptions::new()
            .write(true)
            .open(rm_kind[0].join("memory"))
            .unwrap()
            .set_len(4096)
            .unwrap();
        let out = store.ok_rm(level, &["busybox", "echo", "booted"]);
        assert_eq!(out, "booted\n");
        store.ok_rm(level, &["busybox", "true"]);
        assert_eq!(
            templates(&store).len(),
            2,
            "[vm] the template was made again"
        );
        let len = std::fs::metadata(rm_kind[0].join("memory")).unwrap().len();
        assert!(len > 4096, "[vm] the new template is whole ({len} bytes)");
    }
    store.assert_empty();
}

/// What differs between the levels on purpose: a vm container has its own
/// kernel and only its VM's memory; at the process level both are the
/// host's. Either way the host's processes are out of sight.
#[test]
fn isolation_facts_differ_on_purpose() {
    let store = Store::new();
    let host_kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let host_mem_kib = meminfo_total_kib(&std::fs::read_to_string("/proc/meminfo").unwrap());
    // A host process the containers must not see.
    let mut marker = Command::new("sleep").arg("3131").spawn().unwrap();
    for level in levels() {
        let out = store.ok_rm(level, &[
            "--memory",
            "64m",
            "busybox",
            "sh",
            "-c",
            "uname -r; grep MemTotal /proc/meminfo; ps -o args | grep -c '[s]leep 3131' || true",
        ]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "[{level}] {out}");
        let mem_kib = meminfo_total_kib(lines[1]);
        if level == "vm" {
            assert_ne!(lines[0], host_kernel.trim(), "[vm] the guest's own kernel");
            // 64 MiB plus the VM's fixed overhead, less what its kernel keeps.
            assert!(mem_kib < 200 * 1024, "[vm] VM-sized memory: {mem_kib} KiB");
        } else {
            assert_eq!(lines[0], host_kernel.trim(), "[process] the host's kernel");
            assert_eq!(mem_kib, host_mem_kib, "[process] the host's memory");
        }
        assert_eq!(lines[2], "0", "[{level}] a host process is visible: {out}");
    }
    let _ = marker.kill();
    let _ = marker.wait();
    store.assert_empty();
}

/// Resident memory of process `pid` in KiB, leaving out guest RAM (the
/// one mapping of 64 MiB or more, present only at the vm level): the guest
/// may touch its own memory as it likes; what must stay bounded is ours.
fn rss_beyond_guest_kib(pid: i64) -> u64 {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let (mut total, mut guest, mut size) = (0u64, 0u64, 0u64);
    let mut biggest = 0u64;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let (Some(key), Some(value)) = (words.next(), words.next()) else {
            continue;
        };
        let value: u64 = value.parse().unwrap_or(0);
        match key {
            "Size:" => size = value,
            "Rss:" => {
                total += value;
                if size >= 64 * 1024 && size > biggest {
                    biggest = size;
                    guest = value;
                }
            }
            _ => {}
        }
    }
    total - guest
}

fn meminfo_total_kib(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no MemTotal in {text:?}"))
}

/// A container that writes as fast as it can: the logs rotate at their
/// cap and the supervisor's (at the vm level: the VMM's) memory does not
/// grow with the output.
#[test]
fn a_flood_of_output_keeps_memory_and_logs_bounded() {
    let store = Store::new();
    for level in levels() {
        let name = format!("flood-{level}");
        let id = store.start_script(level, &name, "echo ready; yes 0123456789abcdef");
        let record: serde_json::Value = store.state(&id);
        let pid = record["supervisor_pid"].as_i64().unwrap();
        let rss = || rss_beyond_guest_kib(pid);
        std::thread::sleep(Duration::from_secs(2));
        let early = rss();
        std::thread::sleep(Duration::from_secs(6));
        let late = rss();
        assert!(
            late < early + 16 * 1024,
            "[{level}] the supervisor grew from {early} to {late} KiB under a flood"
        );
        let dir = store.path().join("containers").join(&id);
        let log_bytes: u64 = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("container.log"))
            .map(|e| e.metadata().unwrap().len())
            .sum();
        assert!(
            log_bytes <= 3 * 10 * 1024 * 1024 + 64 * 1024,
            "[{level}] logs: {log_bytes}"
        );
        store.ok(&["rm", "-f", &name]);
        store.assert_gone(&id);
    }
}

#[test]
fn rm_leaves_nothing_behind() {
    let store = Store::new();
    for level in levels() {
        let id = store.ok(&[
            "run",
            "-d",
            "--rm",
            "--isolation",
            level,
            "--memory",
            "32m",
            "busybox",
            "sh",
            "-c",
            "echo x > /written; exit 0",
        ]);
        let id = id.trim();
        wait_for(|| !store.path().join("containers").join(id).exists());
        store.assert_gone(id);
    }
    store.assert_empty();
}

#[test]
fn a_killed_supervisor_is_detected_and_cleaned_up() {
    let store = Store::new();
    let volume = tempfile::tempdir().unwrap();
    let bind = format!("{}:/data", volume.path().display());
    for level in levels() {
        let name = format!("orphan-{level}");
        let id = store.ok(&[
            "run",
            "-d",
            "--isolation",
            level,
            "--name",
            &name,
            "-v",
            &bind,
            "busybox",
            "sleep",
            "600",
        ]);
        let id = id.trim().to_string();
        let supervisor = store.state(&id)["supervisor_pid"].as_i64().unwrap() as i32;
        let status = Command::new("kill")
            .args(["-9", &supervisor.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        wait_for(|| {
            !std::path::Path::new(&format!("/proc/{supervisor}/cmdline")).exists()
                || std::fs::read(format!("/proc/{supervisor}/cmdline"))
                    .map_or(true, |c| c.is_empty())
        });

        let ps = store.ok(&["ps", "-a"]);
        assert!(
            ps.contains("Exited (137)"),
            "the container shows as exited: {ps}"
        );
        let inspect: serde_json::Value =
            serde_json::from_str(&store.ok(&["inspect", &name])).unwrap();
        assert!(
            inspect[0]["State"]["Error"]
                .as_str()
                .unwrap()
                .contains("supervisor"),
            "{inspect}"
        );
        store.ok(&["rm", &name]);
        store.assert_gone(&id);
        // The volume's file server (virtiofsd at the vm level) goes with
        // the VMM it served.
        wait_for(|| processes_mentioning(volume.path().to_str().unwrap()).is_empty());
    }
}

#[test]
fn two_runs_with_one_name_exactly_one_wins() {
    let store = Store::new();
    for level in levels() {
        let name = format!("dup-{level}");
        let spawn = || {
            store
                .isola()
                .args([
                    "run",
                    "-d",
                    "--isolation",
                    level,
                    "--name",
                    &name,
                    "busybox",
                    "sleep",
                    "30",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        let winners = [&a, &b].iter().filter(|o| o.status.success()).count();
        assert_eq!(winners, 1, "{}\n{}", text(&a), text(&b));
        let loser = if a.status.success() { &b } else { &a };
        assert_eq!(loser.status.code(), Some(125));
        assert!(
            String::from_utf8_lossy(&loser.stderr).contains("already in use"),
            "{}",
            text(loser)
        );
        store.ok(&["rm", "-f", &name]);
    }
    store.assert_empty();
}

#[test]
fn many_containers_at_once() {
    let store = Store::new();
    for level in levels() {
        // Ten VMs at once is what two cores of the (emulated) test host
        // hold; fifty processes is cheap.
        let count = if level == "vm" { 10 } else { 50 };
        let children: Vec<_> = (0..count)
            .map(|i| {
                store
                    .isola()
                    .args([
                        "run",
                        "--rm",
                        "--isolation",
                        level,
                        "busybox",
                        "sh",
                        "-c",
                        &format!("echo {i}"),
                    ])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for (i, child) in children.into_iter().enumerate() {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "[{level}] container {i}: {}",
                text(&out)
            );
            assert_eq!(stdout(&out), format!("{i}\n"));
        }
        store.assert_empty();
    }
}

#[test]
fn bad_input_is_refused_with_125_and_leaves_nothing() {
    let store = Store::new();
    let cases: &[(&[&str], &str)] = &[
        (&["run", "--rm", "no-such-image"], "no-such-image"),
        (
            &["run", "--rm", "--memory", "lots", "busybox", "true"],
            "memory",
        ),
        (
            &["run", "--rm", "-v", "/no/such/dir:/data", "busybox", "true"],
            "does not exist",
        ),
        (
            &["run", "--rm", "--network", "bridge", "busybox", "true"],
            "network",
        ),
        (
            &["run", "--rm", "--isolation", "kvm", "busybox", "true"],
            "isolation",
        ),
        (
            &["run", "--rm", "--name", "../x", "busybox", "true"],
            "name",
        ),
        (&["run", "--rm", "-u", "ghost", "busybox", "true"], "ghost"),
        (&["run", "--no-such-flag", "busybox"], "no-such-flag"),
    ];
    // Where KVM cannot run a Linux guest, the vm level says so, as a 125.
    let no_kvm: &[(&[&str], &str)] = &[(
        &["run", "--rm", "--isolation", "vm", "busybox", "true"],
        "needs a KVM that runs Linux guests",
    )];
    let cases = match isola_vmm::host_check::kvm_capability() {
        isola_vmm::host_check::KvmCapability::NoHardware(_) => [cases, no_kvm].concat(),
        isola_vmm::host_check::KvmCapability::Hardware => cases.to_vec(),
    };
    for (args, mentions) in cases {
        let out = store.run(args);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(mentions),
            "{args:?} should mention {mentions:?}: {err}"
        );
    }
    for missing in [
        &["stop", "nobody-here"][..],
        &["rm", "nobody-here"],
        &["logs", "nobody-here"],
    ] {
        let out = store.run(missing);
        assert!(!out.status.success(), "{missing:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("no such container"),
            "{}",
            text(&out)
        );
    }
    store.assert_empty();
}

#[test]
fn the_debian_image_runs_with_its_own_userland() {
    let store = Store::with_images(true);
    for level in levels() {
        let out = store.ok(&["run", "--rm", "--isolation", level, "debian:bookworm", "sh", "-c",
            "cat /etc/debian_version >/dev/null && cat /etc/isola-layer && test ! -e /usr/share/doc/debconf && echo ok"]);
        assert_eq!(
            out, "isola test image, layer 2\nok\n",
            "the upper layer and its whiteout apply"
        );
    }
    store.assert_empty();
}

fn wait_for(mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for a condition"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_image_in_use_cannot_be_removed() {
    let store = Store::new();
    let id = store.ok(&["create", "--name", "holder", "busybox", "true"]);
    let out = store.run(&["rmi", "busybox"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("holder"),
        "{}",
        text(&out)
    );
    store.ok(&["image", "prune"]);
    // The layers survived: the created container still runs.
    store.ok(&["start", "-a", "holder"]);
    store.ok(&["rm", "holder"]);
    store.assert_gone(id.trim());
    store.ok(&["rmi", "busybox"]);
}

#[test]
fn a_relative_root_works() {
    let store = Store::new();
    let parent = store.path().parent().unwrap();
    let relative = store.path().file_name().unwrap();
    let out = Command::new(run_support::ISOLA)
        .current_dir(parent)
        .arg("--root")
        .arg(relative)
        .args(["run", "--rm", "busybox", "echo", "relative ok"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "relative ok\n", "{}", text(&out));
    store.assert_empty();
}

/// The whole suite again at the vm level, in this very binary: here when
/// this host's KVM runs Linux guests, else inside the nested test host.
/// Never skipped: a host that can do neither fails here.
#[test]
fn the_same_suite_at_the_vm_level() {
    if std::env::var_os(run_support::LEVELS_ENV).is_some() {
        // This is the inner run (or a caller chose the levels): the tables
        // above are the test.
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let suite = [
        "--skip".to_string(),
        "the_same_suite_at_the_vm_level".to_string(),
        "--test-threads=1".to_string(),
    ];
    let mut command = match isola_vmm::host_check::kvm_capability() {
        isola_vmm::host_check::KvmCapability::Hardware => {
            let mut c = Command::new(&exe);
            c.env(run_support::LEVELS_ENV, "vm");
            c
        }
        isola_vmm::host_check::KvmCapability::NoHardware(why) => {
            eprintln!("note: {why}; the vm-level suite runs inside the nested test host");
            let testhost =
                std::path::Path::new(run_support::ISOLA).with_file_name("isola-testhost");
            let mut c = Command::new(testhost);
            // A hung test fails with the console's tail instead of eating
            // CI's whole budget (the suite takes about 6 minutes).
            c.args(["--mem", "6144", "--time-limit", "2400", "-e"])
                .arg(format!("{}=vm", run_support::LEVELS_ENV))
                .arg("--")
                .arg(&exe);
            c
        }
    };
    let status = command
        .args(suite)
        .status()
        .expect("run the vm-level suite");
    assert!(status.success(), "the vm-level suite failed: {status}");
}

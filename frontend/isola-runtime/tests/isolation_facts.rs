//! What a process inside the container can observe: its own namespaces,
//! masked and read-only paths, seccomp, capabilities, rlimits, users,
//! mounts, hooks.

mod common;

use common::{run, Bundle, Env};
use serde_json::{json, Value};

/// Runs `script` in a fresh busybox container after `edit` adjusts its
/// config; returns (exit code, stdout, stderr).
fn sh(name: &str, script: &str, edit: impl FnOnce(&mut Bundle)) -> (i32, String, String) {
    let env = Env::new(name);
    let id = env.id("c");
    let mut b = Bundle::busybox(&env, &id, &["sh", "-c", script]);
    edit(&mut b);
    run(&env, &id, &b, b"")
}

#[test]
fn every_namespace_is_its_own() {
    let kinds = ["pid", "mnt", "ipc", "uts", "net", "cgroup", "user"];
    let script = kinds
        .iter()
        .map(|k| format!("readlink /proc/self/ns/{k}"))
        .collect::<Vec<_>>()
        .join("; ");
    let (code, out, err) = sh("namespaces", &format!("{script}; ls /sys/class/net"), |b| {
        let mut ns = b.config["linux"]["namespaces"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        ns.push(json!({"type": "user"}));
        b.set("/linux/namespaces", Value::from(ns));
        b.set(
            "/linux/uidMappings",
            json!([{"containerID": 0, "hostID": 100000, "size": 65536}]),
        );
        b.set(
            "/linux/gidMappings",
            json!([{"containerID": 0, "hostID": 100000, "size": 65536}]),
        );
    });
    assert_eq!(code, 0, "stderr: {err}");
    let lines: Vec<&str> = out.lines().collect();
    for (i, kind) in kinds.iter().enumerate() {
        let host = std::fs::read_link(format!("/proc/self/ns/{kind}")).expect("host ns");
        let inside = lines.get(i).copied().unwrap_or_default();
        assert!(
            inside.starts_with(&format!("{kind}:[")),
            "{kind}: {inside:?}"
        );
        assert_ne!(
            inside,
            host.to_string_lossy(),
            "{kind} namespace is the host's"
        );
    }
    // A new network namespace holds only loopback.
    assert_eq!(lines.get(kinds.len()..), Some(&["lo"][..]), "{out}");
}

#[test]
fn hostname_env_cwd_user_umask() {
    let script = "hostname; echo $GREETING; pwd; id -u; id -g; id -G; umask";
    let (code, out, err) = sh("identity", script, |b| {
        b.set("/hostname", json!("isola-box"));
        b.set("/process/env", json!(["PATH=/bin", "GREETING=hi"]));
        b.set("/process/cwd", json!("/tmp"));
        b.set(
            "/process/user",
            json!({"uid": 1000, "gid": 1001, "additionalGids": [1002], "umask": 63}),
        );
    });
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out, "isola-box\nhi\n/tmp\n1000\n1001\n1001 1002\n0077\n");
}

#[test]
fn masked_and_read_only_paths() {
    let script = "wc -c < /proc/timer_list; wc -c < /proc/keys; \
                  echo 1 > /proc/sys/kernel/domainname && echo WROTE; true";
    let (code, out, err) = sh("masked", script, |b| {
        b.set("/linux/maskedPaths", json!(["/proc/timer_list"]));
        b.set("/linux/readonlyPaths", json!(["/proc/sys"]));
    });
    assert_eq!(code, 0, "stderr: {err}");
    let sizes: Vec<u64> = out.lines().filter_map(|l| l.trim().parse().ok()).collect();
    // The masked file reads empty; its unmasked neighbour does not.
    assert_eq!(sizes.len(), 2, "{out}");
    assert_eq!(sizes[0], 0, "/proc/timer_list not masked: {out}");
    assert!(sizes[1] > 0, "/proc/keys should be readable: {out}");
    assert!(!out.contains("WROTE"), "/proc/sys writable");
    assert!(err.contains("Read-only file system"), "stderr: {err}");
}

#[test]
fn read_only_rootfs() {
    let (code, _, err) = sh("readonly", "touch /new-file", |b| {
        b.set("/root/readonly", json!(true));
    });
    assert_ne!(code, 0);
    assert!(err.contains("Read-only file system"), "stderr: {err}");
    let (code, _, err) = sh("writable", "touch /new-file", |_| {});
    assert_eq!(code, 0, "a writable rootfs refused a write: {err}");
}

#[test]
fn seccomp_denies_a_syscall() {
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    let script = "mkdir /tmp/a && echo MADE";
    let (code, out, err) = sh("seccomp-on", script, |b| {
        b.set("/linux/seccomp", profile);
    });
    assert_ne!(code, 0);
    assert!(!out.contains("MADE"));
    assert!(err.contains("Operation not permitted"), "stderr: {err}");
    // The same command without the profile works: it was seccomp.
    let (code, out, err) = sh("seccomp-off", script, |_| {});
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out, "MADE\n");
}

#[test]
fn capabilities_no_new_privs_rlimits_oom_score_sysctl() {
    let script = "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; ulimit -n; \
                  cat /proc/self/oom_score_adj; cat /proc/sys/net/ipv4/ip_forward";
    let (code, out, err) = sh("caps", script, |b| {
        let caps = json!(["CAP_KILL", "CAP_NET_BIND_SERVICE"]);
        for set in [
            "bounding",
            "effective",
            "permitted",
            "inheritable",
            "ambient",
        ] {
            b.set(&format!("/process/capabilities/{set}"), caps.clone());
        }
        b.set("/process/noNewPrivileges", json!(true));
        b.set(
            "/process/rlimits",
            json!([{"type": "RLIMIT_NOFILE", "hard": 512, "soft": 256}]),
        );
        b.set("/process/oomScoreAdj", json!(500));
        b.set("/linux/sysctl", json!({"net.ipv4.ip_forward": "1"}));
    });
    assert_eq!(code, 0, "stderr: {err}");
    // CAP_KILL is bit 5, CAP_NET_BIND_SERVICE bit 10.
    let want =
        "CapEff:\t0000000000000420\nCapBnd:\t0000000000000420\nNoNewPrivs:\t1\n256\n500\n1\n";
    assert_eq!(out, want);
}

#[test]
fn mounts_and_default_devices() {
    let env = Env::new("mounts");
    let id = env.id("c");
    let shared = env.dir.join("shared");
    std::fs::create_dir_all(&shared).expect("shared dir");
    std::fs::write(shared.join("from-host"), "host data\n").expect("host file");
    let script = "cat /data/from-host; touch /data/x 2>&1; grep ' /scratch ' /proc/mounts; \
                  ls /dev/null /dev/zero /dev/urandom /dev/tty /dev/pts/ptmx; echo x > /dev/null && echo NULL-OK; \
                  head -c 4 /dev/zero | wc -c; mount | grep -c ' /dev/mqueue '";
    let mut b = Bundle::busybox(&env, &id, &["sh", "-c", script]);
    let mut mounts = b.config["mounts"].as_array().cloned().unwrap_or_default();
    mounts.push(json!({"destination": "/data", "type": "bind", "source": shared, "options": ["rbind", "ro"]}));
    mounts.push(json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "size=1m"]}));
    b.set("/mounts", Value::from(mounts));
    let (code, out, err) = run(&env, &id, &b, b"");
    assert_eq!(code, 0, "stderr: {err}");
    assert!(out.starts_with("host data\n"), "{out}");
    assert!(
        out.contains("Read-only file system"),
        "bind mount not read-only: {out}"
    );
    assert!(out.contains("tmpfs /scratch tmpfs"), "{out}");
    assert!(out.contains("NULL-OK\n4\n1\n"), "{out}");
    assert!(!shared.join("x").exists());
}

#[test]
fn hooks_run_in_order_with_the_state() {
    let env = Env::new("hooks");
    let id = env.id("c");
    let log = env.dir.join("hooks.log");
    let mut b = Bundle::busybox(&env, &id, &["true"]);
    let hook = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("echo {name} $(grep -o '\"status\": *\"[a-z]*\"' | tr -d ' ') >> {}", log.display())]});
    b.set(
        "/hooks",
        json!({
            "prestart": [hook("prestart")],
            "createRuntime": [hook("createRuntime")],
            "poststart": [hook("poststart")],
            "poststop": [hook("poststop")],
        }),
    );
    let (code, _, err) = run(&env, &id, &b, b"");
    assert_eq!(code, 0, "stderr: {err}");
    let text = std::fs::read_to_string(&log).expect("hooks ran");
    let names: Vec<&str> = text.lines().filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(
        names,
        ["prestart", "createRuntime", "poststart", "poststop"],
        "{text}"
    );
    assert!(
        text.lines().all(|l| l.contains("\"status\":")),
        "hooks got no state: {text}"
    );
}

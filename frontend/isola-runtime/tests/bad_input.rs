//! Bad input gets a clear error, exit status 1, and leaves nothing behind.

mod common;

use common::{cgroup_dir, Bundle, Env};
use serde_json::json;

/// Runs `create` and expects it to fail with `needle` in the error; then
/// checks no state, no cgroup and no process were left.
fn create_fails(env: &Env, id: &str, bundle: &Bundle, needle: &str) {
    let out = env
        .cmd()
        .args(["create", "--bundle"])
        .arg(&bundle.dir)
        .arg(id)
        .output()
        .expect("run create");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains(needle), "wanted {needle:?} in: {stderr}");
    assert!(env.listed().is_empty(), "state left behind");
    if !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        assert!(!env.root.join(id).exists());
        assert!(!cgroup_dir("memory", id).exists(), "cgroup left behind");
    }
}

#[test]
fn malformed_config_json() {
    let env = Env::new("bad-json");
    let id = env.id("c");
    let b = Bundle::busybox(&env, &id, &["true"]);
    std::fs::write(
        b.dir.join("config.json"),
        "{\"ociVersion\": \"1.0.2\", \"process\": ",
    )
    .expect("write");
    create_fails(&env, &id, &b, "malformed bundle config");
}

#[test]
fn missing_rootfs() {
    let env = Env::new("no-rootfs");
    let id = env.id("c");
    let b = Bundle::busybox(&env, &id, &["true"]);
    std::fs::remove_dir_all(b.dir.join("rootfs")).expect("remove rootfs");
    create_fails(&env, &id, &b, "rootfs");
    assert!(!b.dir.join("rootfs").exists());
}

#[test]
fn unknown_fields() {
    let env = Env::new("unknown-fields");
    let id = env.id("c");
    let mut b = Bundle::busybox(&env, &id, &["true"]);
    b.set("/process/shell", json!("zsh"));
    create_fails(&env, &id, &b, "unknown fields in bundle config");
    let out = env
        .cmd()
        .args(["create", "--bundle"])
        .arg(&b.dir)
        .arg(&id)
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&out.stderr).contains("/process/shell"));
}

#[test]
fn a_program_that_does_not_exist() {
    let env = Env::new("no-program");
    let id = env.id("c");
    let b = Bundle::busybox(&env, &id, &["/no/such/program"]);
    create_fails(&env, &id, &b, "cannot create container");
}

#[test]
fn ids_that_are_paths() {
    let env = Env::new("bad-id");
    let b = Bundle::busybox(&env, "ok", &["true"]);
    for id in ["a/b", "..", "../escape", "", "with space"] {
        create_fails(&env, id, &b, "invalid container id");
        for verb in [
            &["state"][..],
            &["start"],
            &["delete", "--force"],
            &["kill"],
            &["pause"],
        ] {
            let mut args = verb.to_vec();
            args.push(id);
            let out = env.rt(&args);
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("invalid container id"),
                "{args:?}"
            );
        }
    }
    assert!(!env.dir.join("escape").exists());
}

#[test]
fn create_twice_with_one_id() {
    let env = Env::new("twice");
    let id = env.id("c");
    let b = Bundle::busybox(&env, &id, &["sleep", "1000"]);
    env.create(&id, &b);
    let first = env.state(&id);
    let out = env
        .cmd()
        .args(["create", "--bundle"])
        .arg(&b.dir)
        .arg(&id)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    // The first container is untouched.
    assert_eq!(env.state(&id), first);
    env.ok(&["start", &id]);
    assert_eq!(env.status(&id), "running");
    env.ok(&["delete", "--force", &id]);
    assert!(!cgroup_dir("memory", &id).exists());
}

#[test]
fn operations_on_a_container_that_does_not_exist() {
    let env = Env::new("missing");
    for verb in ["state", "start", "kill", "pause", "resume", "delete", "ps"] {
        let out = env.rt(&[verb, "nope"]);
        assert_eq!(out.status.code(), Some(1), "{verb}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("does not exist"),
            "{verb}"
        );
    }
    let out = env.rt(&["kill", "nope", "NOTASIGNAL"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid signal"));
}

/// At the vm level, what a guest cannot be given is refused before any VM
/// boots (so on any host, whatever its KVM), with nothing left behind.
#[test]
fn vm_level_bundles_a_guest_cannot_have_are_refused_before_any_vm() {
    let env = Env::new("bad-vm");
    let vm = || json!({"io.isola.isolation": "vm"});

    let id = env.id("json");
    let mut b = Bundle::busybox(&env, &id, &["true"]);
    b.set("/annotations", vm());
    std::fs::write(
        b.dir.join("config.json"),
        "{\"ociVersion\": \"1.0.2\", \"annotations\": {\"io.isola.isolation\": \"vm\"}, ",
    )
    .expect("write");
    create_fails(&env, &id, &b, "malformed bundle config");

    let id = env.id("rootfs");
    let mut b = Bundle::busybox(&env, &id, &["true"]);
    b.set("/annotations", vm());
    std::fs::remove_dir_all(b.dir.join("rootfs")).expect("remove rootfs");
    create_fails(&env, &id, &b, "rootfs");

    // A device is neither a file to copy in nor a directory to share.
    let id = env.id("mounts");
    let mut b = Bundle::busybox(&env, &id, &["true"]);
    b.set("/annotations", vm());
    b.set(
        "/mounts",
        json!([{"destination": "/null", "type": "bind", "source": "/dev/null", "options": ["bind"]}]),
    );
    create_fails(&env, &id, &b, "must be directories");

    // Bound files are copied into the guest; a big one is refused.
    let big = env.dir.join("big");
    std::fs::write(&big, vec![0u8; 2 << 20]).expect("big file");
    b.set(
        "/mounts",
        json!([{"destination": "/big", "type": "bind", "source": big, "options": ["bind"]}]),
    );
    create_fails(&env, &id, &b, "too large to ship into the guest");

    b.set("/mounts", json!([]));
    let out = env
        .cmd()
        .args(["create", "--preserve-fds", "1", "--bundle"])
        .arg(&b.dir)
        .arg(&id)
        .output()
        .expect("run create");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--preserve-fds is not available"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(env.listed().is_empty());
    assert!(!env.root.join(&id).exists());
}

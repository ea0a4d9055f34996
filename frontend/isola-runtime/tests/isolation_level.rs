//! Choosing the isolation level: the `io.isola.isolation` annotation, the
//! `--isolation` flag and the config file's default. A container given `vm`
//! gets a VM: on a host whose KVM runs Linux guests it is created as one
//! (lifecycle.rs and podman.rs run whole suites there); on one whose KVM
//! cannot (this machine's `kvm_pvm`), create says so and leaves nothing.

mod common;

use common::{cgroup_dir, Bundle, Env};
use serde_json::json;

/// `create`; stderr goes to a file, as a created container's init keeps
/// its stdio open (a pipe would never reach EOF).
fn create(env: &Env, b: &Bundle, id: &str, global: &[&str], flags: &[&str]) -> (i32, String) {
    let err_path = b.dir.join("create.stderr");
    let err = std::fs::File::create(&err_path).expect("stderr file");
    let status = env
        .cmd()
        .args(global)
        .args(["create", "--bundle"])
        .arg(&b.dir)
        .args(flags)
        .arg(id)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(err)
        .status()
        .expect("run create");
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    (status.code().unwrap_or(-1), stderr)
}

/// The container went to the vm level: created as a VM where this host's
/// KVM runs Linux guests, else refused for that reason with nothing left.
fn assert_vm_chosen(env: &Env, id: &str, (code, stderr): (i32, String)) {
    match isola_vmm::host_check::kvm_capability() {
        isola_vmm::host_check::KvmCapability::Hardware => {
            assert_eq!(code, 0, "stderr: {stderr}");
            assert!(env.root.join(id).join("isola-vm.json").exists());
            env.ok(&["delete", "--force", id]);
        }
        isola_vmm::host_check::KvmCapability::NoHardware(_) => {
            assert_eq!(code, 1, "stderr: {stderr}");
            assert!(
                stderr.contains("needs a KVM that runs Linux guests"),
                "stderr: {stderr}"
            );
        }
    }
    assert!(env.listed().is_empty());
    assert!(!env.root.join(id).exists());
    assert!(!cgroup_dir("memory", id).exists());
}

#[test]
fn annotation_flag_and_config_choose_the_level() {
    let env = Env::new("isolation");
    let id = env.id("c");
    let mut b = Bundle::busybox(&env, &id, &["sleep", "1000"]);
    let vm_config = env.dir.join("vm.toml");
    std::fs::write(&vm_config, "isolation = \"vm\"\n").expect("config");
    let process_config = env.dir.join("process.toml");
    std::fs::write(&process_config, "isolation = \"process\"\n").expect("config");
    let vm = ["--config", vm_config.to_str().expect("utf-8")];
    let process = ["--config", process_config.to_str().expect("utf-8")];

    b.set("/annotations", json!({"io.isola.isolation": "vm"}));
    assert_vm_chosen(&env, &id, create(&env, &b, &id, &[], &[]));
    // `run` chooses the same way (stderr to a file: a VM's shim keeps the
    // container's stdio open).
    let err_path = b.dir.join("run.stderr");
    let status = env
        .cmd()
        .args(["run", "--detach", "--bundle"])
        .arg(&b.dir)
        .arg(&id)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .status()
        .expect("run");
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert_vm_chosen(&env, &id, (status.code().unwrap_or(-1), stderr));

    b.set("/annotations", json!({"io.isola.isolation": "process"}));
    assert_vm_chosen(
        &env,
        &id,
        create(&env, &b, &id, &[], &["--isolation", "vm"]),
    );
    // The host's default cannot be lowered by an annotation.
    assert_vm_chosen(&env, &id, create(&env, &b, &id, &vm, &[]));

    b.set("/annotations", json!({"io.isola.isolation": "hypervisor"}));
    let (code, stderr) = create(&env, &b, &id, &[], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("invalid isolation level"), "{stderr}");

    b.set("/annotations", json!({}));
    let (code, stderr) = create(&env, &b, &id, &[], &["--isolation", "kvm"]);
    assert_eq!(code, 2, "clap usage error: {stderr}");

    // process level from every source runs.
    b.set("/annotations", json!({"io.isola.isolation": "process"}));
    let (code, stderr) = create(&env, &b, &id, &process, &["--isolation", "process"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(env.status(&id), "created");
    assert_eq!(
        env.state(&id)["annotations"]["io.isola.isolation"],
        "process"
    );
    env.ok(&["delete", &id]);
}

#[test]
fn a_malformed_config_file_is_an_error() {
    let env = Env::new("bad-config");
    let id = env.id("c");
    let b = Bundle::busybox(&env, &id, &["true"]);
    let config = env.dir.join("config.toml");
    std::fs::write(&config, "isolation = \"sideways\"\n").expect("config");
    let (code, stderr) = create(
        &env,
        &b,
        &id,
        &["--config", config.to_str().expect("utf-8")],
        &[],
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("invalid config"), "{stderr}");
    assert!(env.listed().is_empty());
}

//! config.json from the image's defaults and the user's flags: docker's
//! defaults (namespaces, mounts, capabilities, masked paths) with the
//! flags laid over them.

use std::path::Path;

use oci_spec::runtime::Spec;
use serde_json::{json, Value};

use super::command::command_line;
use super::options::{ImageDefaults, Network, RunOptions};
use super::user::resolve_user;
use super::{privileged, seccomp};
use crate::error::{Error, Result};

/// docker's default capability set.
const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The annotation that carries the isolation level to every runtime.
pub const ISOLATION_ANNOTATION: &str = "io.isola.isolation";

/// CFS period used for `--cpus`, docker's.
const CPU_PERIOD: u64 = 100_000;

/// Builds the spec for container `id` whose root filesystem is already
/// mounted at `rootfs` (users are resolved against it) and whose generated
/// /etc files are in `etc_dir`.
pub fn build_spec(
    id: &str,
    rootfs: &Path,
    etc_dir: &Path,
    image: &ImageDefaults,
    opts: &RunOptions,
) -> Result<Spec> {
    let args = command_line(image, opts).ok_or_else(|| {
        Error::Invalid("no command specified: the image has no Entrypoint or Cmd".into())
    })?;
    let user_spec = opts
        .user
        .clone()
        .or_else(|| image.user.clone())
        .unwrap_or_default();
    let user = resolve_user(rootfs, &user_spec).map_err(Error::Invalid)?;
    let hostname = match (&opts.hostname, opts.network) {
        (Some(h), _) => h.clone(),
        (None, Network::Host) => rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned(),
        (None, Network::None) => id.chars().take(12).collect(),
    };
    let env = environment(image, opts, &hostname, &user.home);
    let cwd = opts
        .workdir
        .clone()
        .or_else(|| image.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(Error::Invalid(format!(
            "the working directory {cwd:?} is not an absolute path"
        )));
    }

    let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .unwrap_or(1 << 20)
        .min(1 << 20);
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "cgroup"}),
    ];
    if opts.network == Network::None {
        namespaces.push(json!({"type": "network"}));
    }

    let capabilities = if opts.privileged {
        privileged::capabilities(&opts.isolation)
    } else {
        CAPABILITIES.to_vec()
    };
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": opts.tty,
            "user": {
                "uid": user.uid,
                "gid": user.gid,
                "additionalGids": user.additional_gids,
            },
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {
                "bounding": capabilities,
                "effective": capabilities,
                "permitted": capabilities,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": nofile, "hard": nofile}],
            // Stricter than docker: setuid binaries cannot raise privileges.
            // It is also what lets the runner install the seccomp filter
            // after dropping CAP_SYS_ADMIN (the kernel demands one or the other).
            "noNewPrivileges": true,
        },
        "root": {"path": rootfs, "readonly": opts.read_only},
        "hostname": hostname,
        "mounts": mounts(etc_dir, opts)?,
        "annotations": {ISOLATION_ANNOTATION: opts.isolation},
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": format!("/isola/{id}"),
            "resources": resources(opts)?,
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
            "seccomp": seccomp::default_profile(),
        },
    });
    if opts.privileged {
        // What docker's --privileged lifts: the filter, the masks, the
        // device list, and no_new_privs (setuid binaries work again).
        spec["process"]["noNewPrivileges"] = json!(false);
        if let Some(linux) = spec["linux"].as_object_mut() {
            linux.remove("seccomp");
            linux.remove("maskedPaths");
            linux.remove("readonlyPaths");
        }
        spec["linux"]["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
    }
    serde_json::from_value(spec)
        .map_err(|e| Error::Invalid(format!("internal error building config.json: {e}")))
}

/// PATH first (the image's, else the default), then the image's variables,
/// then the flags', a later KEY replacing an earlier one in place.
fn environment(
    image: &ImageDefaults,
    opts: &RunOptions,
    hostname: &str,
    home: &str,
) -> Vec<String> {
    let mut env: Vec<String> = Vec::new();
    let mut set = |var: String| {
        let key = var.split('=').next().unwrap_or_default().to_string();
        match env.iter_mut().find(|v| v.split('=').next() == Some(&key)) {
            Some(slot) => *slot = var,
            None => env.push(var),
        }
    };
    set(DEFAULT_PATH.to_string());
    set(format!("HOSTNAME={hostname}"));
    for var in image.env.iter().chain(&opts.env) {
        set(var.clone());
    }
    let has = |k: &str| env.iter().any(|v| v.split('=').next() == Some(k));
    let mut extra = Vec::new();
    if !has("HOME") {
        extra.push(format!("HOME={home}"));
    }
    if opts.tty && !has("TERM") {
        extra.push("TERM=xterm".to_string());
    }
    env.extend(extra);
    env
}

fn mounts(etc_dir: &Path, opts: &RunOptions) -> Result<Vec<Value>> {
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", if opts.privileged { "rw" } else { "ro" }]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    ];
    for file in ["hostname", "hosts", "resolv.conf"] {
        let mut options = vec!["rbind", "rprivate"];
        if opts.read_only {
            options.push("ro");
        }
        mounts.push(
            json!({"destination": format!("/etc/{file}"), "type": "bind",
                           "source": etc_dir.join(file), "options": options}),
        );
    }
    for tmpfs in &opts.tmpfs {
        check_destination(&tmpfs.container)?;
        mounts.push(
            json!({"destination": tmpfs.container, "type": "tmpfs", "source": "tmpfs",
                           "options": tmpfs.options}),
        );
    }
    for volume in &opts.volumes {
        check_destination(&volume.container)?;
        if !volume.host.exists() {
            return Err(Error::Invalid(format!(
                "invalid volume: the host path {} does not exist",
                volume.host.display()
            )));
        }
        let mut options = vec!["rbind", "rprivate"];
        if volume.read_only {
            options.push("ro");
        }
        mounts.push(json!({"destination": volume.container, "type": "bind",
                           "source": volume.host, "options": options}));
    }
    Ok(mounts)
}

/// Mount targets are resolved inside the rootfs by the runner; `..` is
/// refused here so a typo cannot aim outside the intended directory.
fn check_destination(path: &str) -> Result<()> {
    if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
        return Err(Error::Invalid(format!(
            "invalid mount destination {path:?}"
        )));
    }
    Ok(())
}

fn resources(opts: &RunOptions) -> Result<Value> {
    let mut resources = json!({
        // Deny every device but the defaults the runner always allows
        // (null, zero, full, random, urandom, tty, ptmx, pts).
        "devices": [{"allow": false, "access": "rwm"}],
    });
    if let Some(memory) = opts.memory {
        if memory < 6 * 1024 * 1024 {
            return Err(Error::Invalid("minimum memory limit allowed is 6MB".into()));
        }
        // Swap equal to the limit: a memory limit is not to be dodged by swapping.
        resources["memory"] = json!({"limit": memory, "swap": memory});
    }
    if let Some(cpus) = opts.cpus {
        if !(cpus > 0.0 && cpus.is_finite()) {
            return Err(Error::Invalid(format!(
                "invalid --cpus {cpus}: must be a positive number"
            )));
        }
        let quota = (cpus * CPU_PERIOD as f64).round() as i64;
        resources["cpu"] = json!({"quota": quota.max(1000), "period": CPU_PERIOD});
    }
    if let Some(pids) = opts.pids_limit {
        if pids > 0 {
            resources["pids"] = json!({"limit": pids});
        }
    }
    Ok(resources)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{Tmpfs, Volume};

    fn scratch(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("isola-spec-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("rootfs/etc")).unwrap();
        std::fs::write(
            dir.join("rootfs/etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nu:x:7:8::/home/u:/bin/sh\n",
        )
        .unwrap();
        dir
    }

    fn image() -> ImageDefaults {
        ImageDefaults {
            cmd: vec!["sh".into()],
            env: vec!["PATH=/bin".into(), "A=image".into()],
            working_dir: Some("/srv".into()),
            ..Default::default()
        }
    }

    #[test]
    fn flags_override_image_defaults() {
        let dir = scratch("flags");
        let opts = RunOptions {
            args: vec!["echo".into(), "hi".into()],
            env: vec!["A=flag".into(), "B=2".into()],
            user: Some("u".into()),
            tty: true,
            read_only: true,
            memory: Some(64 << 20),
            cpus: Some(0.5),
            pids_limit: Some(20),
            tmpfs: vec![Tmpfs::parse("/scratch").unwrap()],
            volumes: vec![Volume::parse(&format!("{}:/data:ro", dir.display())).unwrap()],
            isolation: "process".into(),
            ..Default::default()
        };
        let spec = build_spec(
            &"ab".repeat(32),
            &dir.join("rootfs"),
            &dir.join("etc"),
            &image(),
            &opts,
        )
        .unwrap();
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(v["process"]["args"], json!(["echo", "hi"]));
        assert_eq!(v["process"]["cwd"], "/srv");
        assert_eq!(v["process"]["user"]["uid"], 7);
        assert_eq!(v["process"]["user"]["gid"], 8);
        let env: Vec<String> = serde_json::from_value(v["process"]["env"].clone()).unwrap();
        assert_eq!(env[0], "PATH=/bin");
        assert!(env.contains(&"A=flag".to_string()) && !env.contains(&"A=image".to_string()));
        assert!(
            env.contains(&"HOME=/home/u".to_string()) && env.contains(&"TERM=xterm".to_string())
        );
        assert_eq!(v["hostname"], "abababababab");
        assert_eq!(v["root"]["readonly"], true);
        assert_eq!(v["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(v["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(v["linux"]["resources"]["pids"]["limit"], 20);
        assert_eq!(v["annotations"][ISOLATION_ANNOTATION], "process");
        let mounts = v["mounts"].as_array().unwrap();
        assert!(mounts.iter().any(|m| m["destination"] == "/data"
            && m["options"].as_array().unwrap().contains(&json!("ro"))));
        assert!(mounts
            .iter()
            .any(|m| m["destination"] == "/scratch" && m["type"] == "tmpfs"));
        let ns = v["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.iter().any(|n| n["type"] == "network"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_input_is_refused_with_a_reason() {
        let dir = scratch("bad");
        let build = |opts: RunOptions| {
            build_spec("x", &dir.join("rootfs"), &dir.join("etc"), &image(), &opts)
                .unwrap_err()
                .to_string()
        };
        let missing = Volume::parse("/nonexistent-isola:/data").unwrap();
        assert!(build(RunOptions {
            volumes: vec![missing],
            ..Default::default()
        })
        .contains("does not exist"));
        assert!(build(RunOptions {
            user: Some("ghost".into()),
            ..Default::default()
        })
        .contains("unable to find user"));
        assert!(build(RunOptions {
            cpus: Some(-1.0),
            ..Default::default()
        })
        .contains("--cpus"));
        assert!(build(RunOptions {
            memory: Some(1024),
            ..Default::default()
        })
        .contains("memory"));
        assert!(build(RunOptions {
            workdir: Some("rel".into()),
            ..Default::default()
        })
        .contains("absolute"));
        let no_cmd = ImageDefaults::default();
        let err = build_spec(
            "x",
            &dir.join("rootfs"),
            &dir.join("etc"),
            &no_cmd,
            &RunOptions::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("no command specified"));
        assert!(Volume::parse("rel:/x").is_err() && Volume::parse("/a:/b:rx").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn host_network_shares_the_namespace_and_hostname() {
        let dir = scratch("host");
        let opts = RunOptions {
            network: Network::Host,
            ..Default::default()
        };
        let spec = build_spec("x", &dir.join("rootfs"), &dir.join("etc"), &image(), &opts).unwrap();
        let v = serde_json::to_value(&spec).unwrap();
        assert!(!v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "network"));
        let host = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        assert_eq!(v["hostname"], host);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

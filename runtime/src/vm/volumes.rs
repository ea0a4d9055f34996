//! Volumes (`-v HOST:CTR[:ro]`) at the vm level: every host directory a
//! bundle bind-mounts is served to the guest by a virtiofsd of its own
//! (sandboxed by virtiofsd to that directory), as a virtio-fs device the
//! agent mounts and binds where config.json asks.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use isola_protocol::GuestVolume;
use isola_vmm::{assets, FsConfig};

use super::files::Shipped;
use crate::error::{Error, Result};
use crate::paths::SocketDir;

/// Each volume is one virtio-mmio device, and each device one interrupt line.
pub const MAX_VOLUMES: usize = 8;

/// How long a virtiofsd may take to put up its socket.
const DAEMON_START: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// The virtio-fs tag; also the guest directory's name.
    pub tag: String,
    /// The host directory, as config.json names it.
    pub host: PathBuf,
    pub read_only: bool,
}

impl Volume {
    pub fn to_guest(&self) -> GuestVolume {
        GuestVolume {
            tag: self.tag.clone(),
            source: self.host.to_string_lossy().into_owned(),
            read_only: self.read_only,
        }
    }
}

/// The bundle's bind mounts of host paths (all but those `shipped` picks,
/// which are copied in instead).
pub fn volumes(spec: &oci_spec::runtime::Spec, shipped: Shipped) -> Result<Vec<Volume>> {
    let mut out: Vec<Volume> = Vec::new();
    for mount in spec.mounts().iter().flatten() {
        let options: Vec<&str> = mount
            .options()
            .iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let is_bind = options.iter().any(|o| *o == "bind" || *o == "rbind")
            || mount.typ().as_deref() == Some("bind");
        let Some(source) = mount.source() else {
            continue;
        };
        if !is_bind || shipped(source) {
            continue;
        }
        let meta = std::fs::metadata(source).map_err(Error::io(source))?;
        if !meta.is_dir() {
            return Err(Error::Invalid(format!(
                "{}: a vm-level container's volumes must be directories (virtio-fs shares \
                 directories); share its parent directory instead",
                source.display()
            )));
        }
        if out.iter().any(|v| v.host == *source) {
            continue;
        }
        if out.len() == MAX_VOLUMES {
            return Err(Error::Invalid(format!(
                "a vm-level container takes at most {MAX_VOLUMES} volumes"
            )));
        }
        out.push(Volume {
            tag: format!("isola-vol{}", out.len()),
            host: source.to_path_buf(),
            read_only: options.contains(&"ro"),
        });
    }
    Ok(out)
}

/// Where the virtiofsd processes of a container write their messages.
pub const DAEMON_LOG: &str = "virtiofsd.log";

fn daemon_log(dir: &Path) -> Result<std::fs::File> {
    let path = dir.join(DAEMON_LOG);
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(Error::io(path))
}

/// The virtiofsd binary, or a clear error before any VM boots.
pub fn daemon_binary() -> Result<PathBuf> {
    assets::default_virtiofsd().ok_or_else(|| {
        Error::Vm(format!(
            "volumes at the vm level need virtiofsd, and none was found (looked in {} and \
             /usr/libexec); run the README's build or set ISOLA_VIRTIOFSD",
            assets::searched()
        ))
    })
}

/// The virtiofsd processes of one VM boot. Each exits by itself when the
/// VMM hangs up; dropping this kills any that have not.
pub struct FsDaemons {
    children: Vec<Child>,
}

impl FsDaemons {
    /// Starts one virtiofsd per volume, its socket in `dir` (the container's
    /// directory), and waits for the sockets; returns them as the VMM's
    /// virtio-fs devices.
    pub fn start(
        dir: &Path,
        sockets: &SocketDir,
        volumes: &[Volume],
    ) -> Result<(FsDaemons, Vec<FsConfig>)> {
        let mut daemons = FsDaemons {
            children: Vec::new(),
        };
        let mut devices = Vec::new();
        if volumes.is_empty() {
            return Ok((daemons, devices));
        }
        let bin = daemon_binary()?;
        for v in volumes {
            let name = format!("{}.sock", v.tag);
            let _ = std::fs::remove_file(dir.join(&name));
            let mut cmd = Command::new(&bin);
            // A relative socket path from the container's directory: its
            // absolute path may be longer than a socket address can be.
            cmd.current_dir(dir)
                .arg("--socket-path")
                .arg(&name)
                .arg("--shared-dir")
                .arg(&v.host)
                .args([
                    "--sandbox",
                    "namespace",
                    "--seccomp",
                    "kill",
                    "--cache",
                    "auto",
                ])
                .args(["--log-level", "error"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                // Not our stderr: at the OCI runtime's vm level that is the
                // container's own.
                .stderr(daemon_log(dir)?);
            if v.read_only {
                cmd.arg("--readonly");
            }
            let child = cmd.spawn().map_err(Error::io(&bin))?;
            daemons.children.push(child);
            daemons.wait_for_socket(&dir.join(&name), &v.host)?;
            devices.push(FsConfig {
                socket: sockets.path(&name),
                tag: v.tag.clone(),
            });
        }
        Ok((daemons, devices))
    }

    fn wait_for_socket(&mut self, socket: &Path, shared: &Path) -> Result<()> {
        let deadline = Instant::now() + DAEMON_START;
        loop {
            if socket.exists() {
                return Ok(());
            }
            if let Some(child) = self.children.last_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(Error::Vm(format!(
                        "virtiofsd for {} exited with {status} before it listened \
                         (its messages are in the container's {DAEMON_LOG})",
                        shared.display()
                    )));
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Vm(format!(
                    "virtiofsd for {} did not listen within {} s",
                    shared.display(),
                    DAEMON_START.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for FsDaemons {
    fn drop(&mut self) {
        for c in &mut self.children {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with(mounts: serde_json::Value) -> oci_spec::runtime::Spec {
        serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "mounts": mounts,
        }))
        .unwrap()
    }

    #[test]
    fn binds_of_host_directories_become_volumes_and_etc_files_do_not() {
        let dir = std::env::temp_dir().join(format!("isola-vols-{}", std::process::id()));
        let etc = dir.join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("hosts"), b"").unwrap();
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let spec = spec_with(serde_json::json!([
            {"destination": "/etc/hosts", "type": "bind", "source": etc.join("hosts"), "options": ["rbind"]},
            {"destination": "/data", "type": "bind", "source": &data, "options": ["rbind", "ro"]},
            {"destination": "/again", "type": "bind", "source": &data, "options": ["rbind"]},
            {"destination": "/proc", "type": "proc", "source": "proc"},
        ]));
        let v = volumes(&spec, &crate::vm::files::under(&etc)).unwrap();
        assert_eq!(
            v,
            vec![Volume {
                tag: "isola-vol0".into(),
                host: data.clone(),
                read_only: true
            }]
        );
        let file = dir.join("file");
        std::fs::write(&file, b"x").unwrap();
        let spec = spec_with(serde_json::json!([
            {"destination": "/f", "type": "bind", "source": &file, "options": ["rbind"]},
        ]));
        let err = volumes(&spec, &crate::vm::files::under(&etc))
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be directories"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

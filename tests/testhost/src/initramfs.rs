//! The outer guest's initramfs: a static busybox, the kernel modules the test host needs
//! (with their dependencies, in load order) and the `/init` script. Built at run time and
//! cached under the test host cache dir, keyed by the sha256 of everything that goes in.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::assets::Assets;
use crate::cpio::CpioWriter;
use crate::kmod::{KmodError, ModuleIndex};

/// The outer guest's PID 1.
pub const INIT_SCRIPT: &str = include_str!("init.sh");

/// Bump when the layout of the archive changes without its inputs changing.
const FORMAT: &str = "isola-testhost-initramfs-v1";

/// Modules the outer guest needs to reach the host, in the order they should load: the
/// virtio transport and console first (so errors can be reported), then fw_cfg (the run
/// spec), 9p and overlay (the root). Listed in `/modules/order`.
pub const WANTED_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_console",
    "qemu_fw_cfg",
    "9pnet_virtio",
    "9p",
    "overlay",
];

/// KVM and what it needs beyond [`WANTED_MODULES`]; listed in `/modules/order.kvm` and loaded
/// in parallel with the others (module signature checks are slow under TCG).
pub const KVM_MODULES: &[&str] = &["kvm_amd"];

#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("resolving kernel modules in {dir}")]
    Modules { dir: PathBuf, source: KmodError },
}

/// One file of the archive, read into memory (a few MiB in all).
struct Input {
    archive_path: String,
    mode: u32,
    data: Vec<u8>,
}

/// The initramfs for `assets`, built if the cache has no archive for these exact inputs.
/// Returns the path of the cached archive.
pub fn build_cached(assets: &Assets, cache: &Path) -> Result<PathBuf, InitramfsError> {
    let inputs = collect_inputs(assets)?;
    let key = cache_key(&inputs);
    let dir = cache.join("initramfs");
    let path = dir.join(format!("{key}.cpio"));
    if path.is_file() {
        tracing::debug!(path = %path.display(), "initramfs cached");
        return Ok(path);
    }
    let write_err = |p: &Path, source| InitramfsError::Write {
        path: p.to_path_buf(),
        source,
    };
    fs::create_dir_all(&dir).map_err(|e| write_err(&dir, e))?;
    let tmp = dir.join(format!(".{key}.{}.tmp", std::process::id()));
    let result = write_archive(&tmp, &inputs).and_then(|()| fs::rename(&tmp, &path));
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(write_err(&path, e));
    }
    tracing::info!(path = %path.display(), "built the test host initramfs");
    remove_stale(&dir, &path);
    Ok(path)
}

fn collect_inputs(assets: &Assets) -> Result<Vec<Input>, InitramfsError> {
    let read = |p: &Path| {
        fs::read(p).map_err(|source| InitramfsError::Read {
            path: p.to_path_buf(),
            source,
        })
    };
    let read_text = |p: &Path| {
        fs::read_to_string(p).map_err(|source| InitramfsError::Read {
            path: p.to_path_buf(),
            source,
        })
    };
    let dep = read_text(&assets.modules_dir.join("modules.dep"))?;
    // modules.builtin may be absent from a hand-made tree; then nothing counts as built in.
    let builtin = read_text(&assets.modules_dir.join("modules.builtin")).unwrap_or_default();
    let modules_err = |source| InitramfsError::Modules {
        dir: assets.modules_dir.clone(),
        source,
    };
    let index = ModuleIndex::parse(&dep, &builtin).map_err(modules_err)?;
    let early = index.resolve(WANTED_MODULES).map_err(modules_err)?;
    let all_wanted: Vec<&str> = WANTED_MODULES.iter().chain(KVM_MODULES).copied().collect();
    let all = index.resolve(&all_wanted).map_err(modules_err)?;
    // resolve() keeps the order of what it is asked for, so `all` starts with `early`.
    let kvm = all.get(early.len()..).unwrap_or_default();

    let mut inputs = vec![
        Input {
            archive_path: "init".into(),
            mode: 0o755,
            data: INIT_SCRIPT.as_bytes().to_vec(),
        },
        Input {
            archive_path: "bin/busybox".into(),
            mode: 0o755,
            data: read(&assets.busybox)?,
        },
    ];
    for (list, order) in [("modules/order", &early[..]), ("modules/order.kvm", kvm)] {
        let mut order_file = String::new();
        for rel in order {
            let file_name = rel.rsplit('/').next().unwrap_or(rel);
            order_file.push_str(file_name);
            order_file.push('\n');
            inputs.push(Input {
                archive_path: format!("modules/{file_name}"),
                mode: 0o644,
                data: read(&assets.modules_dir.join(rel))?,
            });
        }
        inputs.push(Input {
            archive_path: list.into(),
            mode: 0o644,
            data: order_file.into_bytes(),
        });
    }
    Ok(inputs)
}

/// sha256 over the format tag and every input's path, mode and bytes (first 32 hex digits).
fn cache_key(inputs: &[Input]) -> String {
    let mut h = Sha256::new();
    h.update(FORMAT.as_bytes());
    for input in inputs {
        h.update((input.archive_path.len() as u64).to_le_bytes());
        h.update(input.archive_path.as_bytes());
        h.update(input.mode.to_le_bytes());
        h.update((input.data.len() as u64).to_le_bytes());
        h.update(&input.data);
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn write_archive(path: &Path, inputs: &[Input]) -> std::io::Result<()> {
    let file = fs::File::create(path)?;
    let mut w = CpioWriter::new(BufWriter::new(file));
    for dir in [
        "bin", "dev", "lower", "modules", "newroot", "proc", "sys", "tmp", "upper",
    ] {
        w.dir(dir, 0o755)?;
    }
    // The kernel opens /dev/console for PID 1 before anything mounts devtmpfs.
    w.char_dev("dev/console", 0o600, 5, 1)?;
    for input in inputs {
        w.file(&input.archive_path, input.mode, &input.data)?;
    }
    let mut out = w.finish()?;
    out.flush()?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// Archives from other inputs are removed once they are this old: another test host run
/// (from an older or newer build of this binary) may be about to boot the one it built.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Best effort: drop archives built from other inputs that nothing has used for a while.
fn remove_stale(dir: &Path, keep: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let p = entry.path();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_AFTER);
        if p != keep && old && p.extension().is_some_and(|e| e == "cpio") {
            if let Err(e) = fs::remove_file(&p) {
                tracing::debug!(path = %p.display(), error = %e, "could not remove a stale initramfs");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(path: &str, data: &[u8]) -> Input {
        Input {
            archive_path: path.into(),
            mode: 0o644,
            data: data.to_vec(),
        }
    }

    #[test]
    fn cache_key_depends_on_every_input() {
        let base = cache_key(&[input("a", b"1"), input("b", b"2")]);
        assert_eq!(base, cache_key(&[input("a", b"1"), input("b", b"2")]));
        assert_ne!(base, cache_key(&[input("a", b"1"), input("b", b"3")]));
        assert_ne!(base, cache_key(&[input("a", b"1"), input("c", b"2")]));
        // Moving a byte from one file to the next must change the key.
        assert_ne!(base, cache_key(&[input("a", b"12"), input("b", b"")]));
        assert_eq!(base.len(), 32);
    }

    #[test]
    fn init_script_speaks_the_control_protocol() {
        use crate::console::{ERROR_MARKER, EXIT_MARKER, READY_MARKER};
        for marker in [EXIT_MARKER, ERROR_MARKER, READY_MARKER] {
            assert!(INIT_SCRIPT.contains(marker), "{marker} not in init.sh");
        }
        for port in crate::qemu::PORT_NAMES {
            assert!(INIT_SCRIPT.contains(port), "{port} not in init.sh");
        }
        assert!(INIT_SCRIPT.contains(crate::qemu::SPEC_FW_CFG_NAME));
    }
}

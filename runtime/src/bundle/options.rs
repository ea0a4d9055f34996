//! What the user asked for, already parsed from flags (docker's meaning).

use std::path::PathBuf;

/// What the image says about how to run it (its OCI config's `config`
/// object), reduced to what the bundle needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageDefaults {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

/// A bind mount from the host (`-v host:ctr[:ro]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    pub host: PathBuf,
    pub container: String,
    pub read_only: bool,
}

impl Volume {
    /// Parses docker's `HOST:CTR[:ro|rw]`. Both paths must be absolute
    /// (named volumes are not supported).
    pub fn parse(s: &str) -> Result<Volume, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let (host, container, mode) = match parts.as_slice() {
            [h, c] => (*h, *c, "rw"),
            [h, c, m] => (*h, *c, *m),
            _ => {
                return Err(format!(
                    "invalid volume {s:?}: expected HOST:CONTAINER[:ro|rw]"
                ))
            }
        };
        if !host.starts_with('/') || !container.starts_with('/') {
            return Err(format!("invalid volume {s:?}: both paths must be absolute"));
        }
        let read_only = match mode {
            "ro" => true,
            "rw" => false,
            m => return Err(format!("invalid volume mode {m:?} in {s:?}: use ro or rw")),
        };
        Ok(Volume {
            host: host.into(),
            container: container.into(),
            read_only,
        })
    }
}

/// A tmpfs mount (`--tmpfs PATH[:OPTIONS]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Tmpfs {
    pub container: String,
    pub options: Vec<String>,
}

impl Tmpfs {
    /// Parses docker's `PATH[:opt,opt]`; docker's defaults are
    /// `noexec,nosuid,nodev` unless options are given.
    pub fn parse(s: &str) -> Result<Tmpfs, String> {
        let (path, opts) = s.split_once(':').unwrap_or((s, ""));
        if !path.starts_with('/') {
            return Err(format!("invalid tmpfs {s:?}: the path must be absolute"));
        }
        let options = if opts.is_empty() {
            vec!["noexec".into(), "nosuid".into(), "nodev".into()]
        } else {
            opts.split(',').map(str::to_string).collect()
        };
        Ok(Tmpfs {
            container: path.into(),
            options,
        })
    }
}

/// `--network`: at process level, `none` is a fresh network namespace with
/// only `lo`; `host` shares the host's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    #[default]
    None,
    Host,
}

/// Every run flag that shapes `config.json`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The arguments after the image name (replace the image's Cmd).
    pub args: Vec<String>,
    /// `--entrypoint`: `Some("")` clears the image's entrypoint.
    pub entrypoint: Option<String>,
    /// `-e KEY=VAL` and `--env-file`, in order; later ones win.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub read_only: bool,
    pub tty: bool,
    /// Bytes.
    pub memory: Option<i64>,
    /// CPUs as a fraction (`--cpus 0.5`).
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    pub network: Network,
    pub volumes: Vec<Volume>,
    pub tmpfs: Vec<Tmpfs>,
    /// docker's `--privileged` (see `privileged.rs`).
    pub privileged: bool,
    /// `process` or `vm`, recorded as the `io.isola.isolation` annotation.
    pub isolation: String,
}

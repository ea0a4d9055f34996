//! The runner's operations, one method per lifecycle verb.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use libcgroups::common::{
    AnyCgroupManager, CgroupConfig, CgroupManager, ControllerOpt, FreezerState,
};
use libcontainer::config::YoukiConfig;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::state::State;
use libcontainer::container::{Container, ContainerStatus};
use libcontainer::error::LibcontainerError;
use libcontainer::oci_spec::runtime::LinuxResources;
use libcontainer::signal::Signal;
use libcontainer::syscall::syscall::SyscallType;

use crate::lock::Lock;
use crate::state_shadow;
use crate::{id, spec_check, ContainerState, CreateOptions, Error, ExecOptions, Result, Stats};

/// Runs containers whose state lives in directories under one state root
/// (one directory per container, named by its ID).
#[derive(Debug, Clone)]
pub struct Runner {
    root: PathBuf,
}

impl Runner {
    /// Uses (and creates, mode 0700) the state root.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let err = |source| Error::StateRoot {
            path: root.clone(),
            source,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .map_err(err)?;
        let root = fs::canonicalize(&root).map_err(err)?;
        Ok(Self { root })
    }

    /// The state root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates a container from a bundle: its init process is set up and
    /// waits for [`Runner::start`]. On failure nothing is left behind.
    pub fn create(&self, id: &str, bundle: &Path, opts: &CreateOptions) -> Result<ContainerState> {
        let dir = self.dir(id)?;
        let bundle = fs::canonicalize(bundle).map_err(|source| Error::ReadSpec {
            path: bundle.join("config.json"),
            source,
        })?;
        // Refuse bad bundles before anything exists on the host.
        spec_check::load_bundle_spec(&bundle)?;

        // The root lock makes "does it exist? create it" one step.
        let _lock = Lock::exclusive(&self.root)?;
        if dir.exists() {
            return Err(Error::Exists(id.to_owned()));
        }
        match self.build_init(id, &bundle, opts) {
            Ok(container) => {
                state_shadow::save(&dir);
                Ok(ContainerState::from(&container))
            }
            Err(e) => {
                remove_half_created(&dir);
                Err(e)
            }
        }
    }

    fn build_init(&self, id: &str, bundle: &Path, opts: &CreateOptions) -> Result<Container> {
        let container = ContainerBuilder::new(id.to_owned(), SyscallType::default())
            .with_root_path(&self.root)?
            .with_pid_file(opts.pid_file.as_ref())?
            .with_console_socket(opts.console_socket.as_ref())
            .with_preserved_fds(opts.preserve_fds)
            .as_init(bundle)
            .with_systemd(false)
            .with_detach(opts.detach)
            .with_no_pivot(opts.no_pivot)
            .build()?;
        Ok(container)
    }

    /// Lets a created container's init process run the user's program.
    pub fn start(&self, id: &str) -> Result<()> {
        self.exclusive(id, |c| wrong_status(c, "start", |c| c.start()))
    }

    /// The container's state; a container whose init died is `stopped`.
    pub fn state(&self, id: &str) -> Result<ContainerState> {
        self.shared(id, |c| Ok(ContainerState::from(&*c)))
    }

    /// The states of all containers under the root, by ID.
    pub fn list(&self) -> Result<Vec<ContainerState>> {
        let entries = fs::read_dir(&self.root).map_err(|source| Error::StateRoot {
            path: self.root.clone(),
            source,
        })?;
        let mut states = Vec::new();
        for entry in entries.flatten() {
            let Some(id) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            match self.state(&id) {
                Ok(s) => states.push(s),
                // Deleted meanwhile, half-created, or not ours.
                Err(Error::NotFound(_) | Error::InvalidId { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        states.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(states)
    }

    /// Sends a signal (a name like `TERM`/`SIGTERM` or a number) to the init
    /// process, or with `all` to every process in the container's cgroup.
    pub fn kill(&self, id: &str, signal: &str, all: bool) -> Result<()> {
        let sig = Signal::try_from(signal).map_err(|_| Error::InvalidSignal(signal.to_owned()))?;
        self.exclusive(id, |c| {
            let before = c.status();
            wrong_status(c, "kill", |c| c.kill(sig, all))?;
            // libcontainer records `stopped` after any signal; a created or
            // paused container that survived the signal is still what it was.
            if matches!(before, ContainerStatus::Created | ContainerStatus::Paused) {
                c.refresh_status()?;
                if c.status() != ContainerStatus::Stopped {
                    c.set_status(before).save()?;
                }
            }
            Ok(())
        })
    }

    /// Removes a stopped (or, with `force`, any) container: its processes,
    /// cgroup and state directory; runs the poststop hooks.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        // A killed process leaves its cgroup only once the kernel has torn
        // it down, which on a loaded (or emulated) machine can outlast
        // libcontainer's own short retries of the rmdir.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match self.delete_once(id, force) {
                Err(e)
                    if e.to_string().contains("could not delete")
                        && std::time::Instant::now() < deadline =>
                {
                    tracing::debug!(id, "cgroup still busy, retrying: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                other => return other,
            }
        }
    }

    fn delete_once(&self, id: &str, force: bool) -> Result<()> {
        let result = self.exclusive(id, |c| {
            if c.status() == ContainerStatus::Stopped {
                // Without its own pid namespace a container's other processes
                // outlive its init; they must go before its cgroup can.
                if let Ok(sigkill) = Signal::try_from("KILL") {
                    if let Err(e) = c.kill(sigkill, true) {
                        tracing::debug!(id, "no leftover processes to kill: {e}");
                    }
                }
            }
            wrong_status(c, "delete", |c| c.delete(force))
        });
        match result {
            Err(Error::Libcontainer(LibcontainerError::State(e))) if force => {
                tracing::warn!(id, "state unreadable ({e}), removing what is left");
                self.delete_unreadable(id)
            }
            other => other,
        }
    }

    /// A runtime killed while writing the state file leaves it torn
    /// (libcontainer truncates, then writes). `delete --force` must still
    /// clean up: every process in the container's cgroup is killed, then the
    /// cgroup and the state directory are removed.
    fn delete_unreadable(&self, id: &str) -> Result<()> {
        let dir = self.dir(id)?;
        let _lock = Lock::exclusive(&dir)?;
        if let Ok(config) = YoukiConfig::load(&dir) {
            let manager = libcgroups::common::create_cgroup_manager(CgroupConfig {
                cgroup_path: config.cgroup_path,
                systemd_cgroup: false,
                container_name: id.to_owned(),
            })
            .map_err(|e| cgroup_err_id(id, e))?;
            // Frozen, nothing can fork while we kill.
            let _ = manager.freeze(FreezerState::Frozen);
            for pid in manager.get_all_pids().map_err(|e| cgroup_err_id(id, e))? {
                // SAFETY: kill takes plain integers and touches no memory.
                unsafe { libc::kill(pid.as_raw(), libc::SIGKILL) };
            }
            let _ = manager.freeze(FreezerState::Thawed);
            manager.remove().map_err(|e| cgroup_err_id(id, e))?;
        }
        fs::remove_dir_all(&dir).map_err(|source| Error::StateRoot { path: dir, source })
    }

    /// Starts an extra process in a running container and returns its pid;
    /// the caller reaps it (it is the caller's child).
    pub fn exec(&self, id: &str, opts: &ExecOptions) -> Result<i32> {
        self.shared(id, |_| {
            let pid = ContainerBuilder::new(id.to_owned(), SyscallType::default())
                .with_root_path(&self.root)?
                .with_console_socket(opts.console_socket.as_ref())
                .with_pid_file(opts.pid_file.as_ref())?
                .with_preserved_fds(opts.preserve_fds)
                .as_tenant()
                .with_detach(opts.detach)
                .with_cwd(opts.cwd.as_ref())
                .with_env(opts.env.clone())
                .with_process(opts.process.as_ref())
                .with_no_new_privs(opts.no_new_privs)
                .with_container_args(opts.args.clone())
                .with_additional_gids(opts.additional_gids.clone())
                .with_user(opts.user)
                .with_group(opts.group)
                .with_capabilities(opts.capabilities.clone())
                .with_ignore_paused(opts.ignore_paused)
                .with_sub_cgroup(opts.cgroup.clone())
                .build()?;
            Ok(pid.as_raw())
        })
    }

    /// Freezes every process of the container.
    pub fn pause(&self, id: &str) -> Result<()> {
        self.exclusive(id, |c| wrong_status(c, "pause", |c| c.pause()))
    }

    /// Thaws a paused container.
    pub fn resume(&self, id: &str) -> Result<()> {
        self.exclusive(id, |c| wrong_status(c, "resume", |c| c.resume()))
    }

    /// The pids (host namespace) of every process in the container.
    pub fn ps(&self, id: &str) -> Result<Vec<i32>> {
        self.shared(id, |c| {
            let pids = cgroup(c)?.get_all_pids().map_err(|e| cgroup_err(c, e))?;
            Ok(pids.iter().map(|p| p.as_raw()).collect())
        })
    }

    /// Applies new resource limits to a container's cgroup.
    pub fn update(&self, id: &str, resources: &LinuxResources) -> Result<()> {
        self.exclusive(id, |c| {
            cgroup(c)?
                .apply(&ControllerOpt {
                    resources,
                    disable_oom_killer: false,
                    oom_score_adj: None,
                    freezer_state: None,
                })
                .map_err(|e| cgroup_err(c, e))
        })
    }

    /// Resource usage of the container's cgroup, its times in nanoseconds
    /// on either cgroup version (as runc's): libcgroups passes cgroup v2's
    /// microseconds (`cpu.stat`'s `usage_usec`, `throttled_usec`) through
    /// as they are, where v1 gives nanoseconds.
    pub fn stats(&self, id: &str) -> Result<Stats> {
        self.shared(id, |c| {
            let manager = cgroup(c)?;
            let unified = matches!(manager, AnyCgroupManager::V2(_));
            let mut stats = manager.stats().map_err(|e| cgroup_err(c, e))?;
            if unified {
                times_in_nanoseconds(&mut stats);
            }
            Ok(stats)
        })
    }

    fn dir(&self, id: &str) -> Result<PathBuf> {
        id::validate(id)?;
        Ok(self.root.join(id))
    }

    fn exclusive<T>(&self, id: &str, f: impl FnOnce(&mut Container) -> Result<T>) -> Result<T> {
        self.locked(id, true, f)
    }

    fn shared<T>(&self, id: &str, f: impl FnOnce(&mut Container) -> Result<T>) -> Result<T> {
        self.locked(id, false, f)
    }

    fn locked<T>(
        &self,
        id: &str,
        exclusive: bool,
        f: impl FnOnce(&mut Container) -> Result<T>,
    ) -> Result<T> {
        let dir = self.dir(id)?;
        let not_found = || Error::NotFound(id.to_owned());
        let lock = if exclusive {
            Lock::exclusive(&dir)
        } else {
            Lock::shared(&dir)
        };
        let _lock = match lock {
            Ok(l) => l,
            Err(Error::Lock { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(not_found())
            }
            Err(e) => return Err(e),
        };
        // Deleted while we waited for the lock, or still being created.
        if !State::file_path(&dir).exists() {
            return Err(not_found());
        }
        // Atomic renames of identical bytes: safe under a shared lock too.
        state_shadow::restore_if_torn(&dir);
        let mut container = Container::load(dir.clone())?;
        let result = f(&mut container);
        if exclusive && result.is_ok() {
            state_shadow::save(&dir);
        }
        result
    }
}

/// Runs a libcontainer operation, turning its status refusal into ours.
fn wrong_status(
    c: &mut Container,
    action: &'static str,
    op: impl FnOnce(&mut Container) -> std::result::Result<(), LibcontainerError>,
) -> Result<()> {
    match op(c) {
        Err(LibcontainerError::IncorrectStatus(status)) => Err(Error::WrongStatus {
            id: c.id().to_owned(),
            status: crate::Status::from(status).to_string(),
            action,
        }),
        other => Ok(other?),
    }
}

/// cgroup v2's CPU times, in microseconds, as nanoseconds.
fn times_in_nanoseconds(stats: &mut Stats) {
    let usage = &mut stats.cpu.usage;
    for t in [
        &mut usage.usage_total,
        &mut usage.usage_user,
        &mut usage.usage_kernel,
        &mut stats.cpu.throttling.throttled_time,
    ] {
        *t = t.saturating_mul(1000);
    }
}

fn cgroup(c: &Container) -> Result<AnyCgroupManager> {
    let config = CgroupConfig {
        cgroup_path: c.spec()?.cgroup_path,
        systemd_cgroup: false,
        container_name: c.id().to_owned(),
    };
    libcgroups::common::create_cgroup_manager(config).map_err(|e| cgroup_err(c, e))
}

fn cgroup_err(c: &Container, e: impl std::fmt::Display) -> Error {
    cgroup_err_id(c.id(), e)
}

fn cgroup_err_id(id: &str, e: impl std::fmt::Display) -> Error {
    Error::Cgroup {
        id: id.to_owned(),
        message: e.to_string(),
    }
}

/// After a failed create: libcontainer removes what it made once the init
/// process exists; this catches failures before that point (and any
/// cgroup a half-made container still holds).
fn remove_half_created(dir: &Path) {
    if !dir.exists() {
        return;
    }
    if State::file_path(dir).exists() {
        match Container::load(dir.to_owned()).and_then(|mut c| c.delete(true)) {
            Ok(()) => return,
            Err(e) => tracing::warn!(?dir, "cleaning up a failed create: {e}"),
        }
    }
    if let Err(e) = fs::remove_dir_all(dir) {
        tracing::warn!(?dir, "cleaning up a failed create: {e}");
    }
}

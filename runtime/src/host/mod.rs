//! The lifecycle every front-end drives: created → running → stopped →
//! removed. One method per verb, one file per verb.

mod attach;
mod create;
mod exec;
mod images;
mod inspect;
mod reconcile;
mod remove;
mod signal;
mod start;
mod stats;
mod wait;

use std::path::{Path, PathBuf};

use isola_container::Runner;

pub use create::CreateRequest;
pub use exec::{ExecProcess, ExecRequest};
pub use start::Supervisor;

use crate::error::Result;
use crate::id::ContainerId;
use crate::paths::{runner_root, ContainerPaths};
use crate::state::{ContainerRecord, StateStore};

/// The host side of every container under one `--root`.
#[derive(Debug, Clone)]
pub struct Host {
    root: PathBuf,
    store: StateStore,
    runner: Runner,
    images: isola_image::Store,
    /// The binary that serves `__supervise` (the `isola` front-end itself).
    supervisor_exe: PathBuf,
    /// `--log-level` for the supervisors this host starts.
    supervisor_log_level: Option<String>,
}

impl Host {
    /// Opens the state, the runner and the image store under `root`.
    pub fn open(root: &Path, supervisor_exe: PathBuf) -> Result<Host> {
        // Absolute, because config.json, the supervisor and the runner
        // all get paths under it and none of them shares our cwd.
        std::fs::create_dir_all(root).map_err(crate::Error::io(root))?;
        let root = std::fs::canonicalize(root).map_err(crate::Error::io(root))?;
        let root = root.as_path();
        Ok(Host {
            root: root.to_path_buf(),
            store: StateStore::open(root)?,
            runner: Runner::new(runner_root(root))?,
            images: isola_image::Store::open(root)?,
            supervisor_exe,
            supervisor_log_level: None,
        })
    }

    /// The log level supervisors started from here write their
    /// `supervisor.log` at (the front-end's own, usually).
    pub fn with_supervisor_log_level(mut self, level: &str) -> Host {
        self.supervisor_log_level = Some(level.to_owned());
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn images(&self) -> &isola_image::Store {
        &self.images
    }

    /// Finds a container by ID, name or unique ID prefix.
    pub fn resolve(&self, reference: &str) -> Result<ContainerId> {
        self.store.resolve(reference)
    }

    /// A container's record, reconciled with reality (a dead supervisor).
    pub fn record(&self, id: &ContainerId) -> Result<ContainerRecord> {
        let record = self.store.load(id)?;
        Ok(self.reconcile(record))
    }

    /// Every container, oldest first, reconciled.
    pub fn list(&self) -> Result<Vec<ContainerRecord>> {
        Ok(self
            .store
            .list()?
            .into_iter()
            .map(|r| self.reconcile(r))
            .collect())
    }

    /// Where a container's files are.
    pub fn paths(&self, id: &ContainerId) -> ContainerPaths {
        ContainerPaths::new(&self.root, id)
    }
}

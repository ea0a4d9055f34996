//! The state directory: one folder per container holding `state.json`, and a
//! `names/` folder whose entries make names unique.
//!
//! ```text
//! <root>/containers/<id>/state.json   the record, replaced atomically
//! <root>/containers/<id>/lock         flock held while the record changes
//! <root>/names/<name>                 holds <id>; created with O_EXCL
//! ```
//!
//! Name reservation is a single `O_CREAT|O_EXCL` open, so of two `isola run
//! --name x` started at once exactly one wins, with no lock to leak.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::atomic;
use crate::error::{Error, Result};
use crate::id::ContainerId;
use crate::lock::FileLock;
use crate::name;
use crate::state::record::ContainerRecord;

/// Handle on `<root>/containers` and `<root>/names`.
#[derive(Debug, Clone)]
pub struct StateStore {
    containers: PathBuf,
    names: PathBuf,
}

impl StateStore {
    /// Opens (creating if needed) the state under `root`.
    pub fn open(root: &Path) -> Result<StateStore> {
        let containers = root.join("containers");
        let names = root.join("names");
        for dir in [&containers, &names] {
            fs::create_dir_all(dir).map_err(Error::io(dir))?;
        }
        Ok(StateStore { containers, names })
    }

    /// The folder that belongs to one container (its bundle, logs and
    /// sockets live under it too).
    pub fn dir(&self, id: &ContainerId) -> PathBuf {
        self.containers.join(id.as_str())
    }

    fn state_path(&self, id: &ContainerId) -> PathBuf {
        self.dir(id).join("state.json")
    }

    /// Reserves the record's name and writes its first state. Fails with
    /// `NameInUse` if another container holds the name, leaving nothing.
    pub fn create(&self, record: &ContainerRecord) -> Result<()> {
        name::validate(&record.name)?;
        let name_path = self.names.join(&record.name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&name_path)
        {
            Ok(mut f) => f
                .write_all(record.id.as_str().as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(Error::io(&name_path))?,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let id = fs::read_to_string(&name_path).unwrap_or_default();
                return Err(Error::NameInUse {
                    name: record.name.clone(),
                    id,
                });
            }
            Err(e) => return Err(Error::io(&name_path)(e)),
        }
        let dir = self.dir(&record.id);
        let written = fs::create_dir_all(&dir)
            .map_err(Error::io(&dir))
            .and_then(|_| self.write(record));
        if written.is_err() {
            let _ = fs::remove_file(&name_path);
            let _ = fs::remove_dir_all(&dir);
        }
        written
    }

    fn write(&self, record: &ContainerRecord) -> Result<()> {
        let path = self.state_path(&record.id);
        let json = serde_json::to_vec_pretty(record).map_err(|source| Error::CorruptState {
            path: path.clone(),
            source,
        })?;
        atomic::write(&path, &json)
    }

    /// Reads a record as it is now.
    pub fn load(&self, id: &ContainerId) -> Result<ContainerRecord> {
        let path = self.state_path(id);
        let bytes = fs::read(&path).map_err(|e| match e.kind() {
            ErrorKind::NotFound => Error::NotFound(id.to_string()),
            _ => Error::io(&path)(e),
        })?;
        serde_json::from_slice(&bytes).map_err(|source| Error::CorruptState { path, source })
    }

    /// Changes a record under its lock: load, apply `change`, write back.
    pub fn update<T>(
        &self,
        id: &ContainerId,
        change: impl FnOnce(&mut ContainerRecord) -> T,
    ) -> Result<(ContainerRecord, T)> {
        let _lock = self.lock(id)?;
        let mut record = self.load(id)?;
        let out = change(&mut record);
        self.write(&record)?;
        Ok((record, out))
    }

    /// Holds one container's lock (for changes that span more than the record).
    pub fn lock(&self, id: &ContainerId) -> Result<FileLock> {
        let dir = self.dir(id);
        if !dir.is_dir() {
            return Err(Error::NotFound(id.to_string()));
        }
        FileLock::exclusive(&dir.join("lock"))
    }

    /// Every container's record, oldest first. Records that cannot be read
    /// are skipped with a warning rather than hiding every other container.
    pub fn list(&self) -> Result<Vec<ContainerRecord>> {
        let entries = fs::read_dir(&self.containers).map_err(Error::io(&self.containers))?;
        let mut records = Vec::new();
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(id) = file_name
                .to_str()
                .and_then(|s| ContainerId::try_from(s.to_string()).ok())
            else {
                continue;
            };
            match self.load(&id) {
                Ok(record) => records.push(record),
                Err(Error::NotFound(_)) => {} // being created or removed right now
                Err(e) => tracing::warn!(
                    "container {id} has an unreadable record, left out of the list: {e}"
                ),
            }
        }
        records.sort_by_key(|r| r.created_at);
        Ok(records)
    }

    /// Finds a container by full ID, name, or unique ID prefix, the order
    /// docker tries them in.
    pub fn resolve(&self, reference: &str) -> Result<ContainerId> {
        if let Ok(id) = ContainerId::try_from(reference.to_string()) {
            if self.dir(&id).is_dir() {
                return Ok(id);
            }
        }
        if name::validate(reference).is_ok() {
            if let Ok(id) = fs::read_to_string(self.names.join(reference)) {
                if let Ok(id) = ContainerId::try_from(id) {
                    return Ok(id);
                }
            }
        }
        if !ContainerId::is_prefix(reference) {
            return Err(Error::NotFound(reference.to_string()));
        }
        let entries = fs::read_dir(&self.containers).map_err(Error::io(&self.containers))?;
        let mut found = None;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(s) = name.to_str() else { continue };
            if s.starts_with(reference) && ContainerId::is_full(s) {
                if found.is_some() {
                    return Err(Error::Ambiguous(reference.to_string()));
                }
                found = ContainerId::try_from(s.to_string()).ok();
            }
        }
        found.ok_or_else(|| Error::NotFound(reference.to_string()))
    }

    /// Forgets a container: its name, then its folder (bundle, logs, state).
    /// Idempotent, so a `rm` after a crash half way through finishes the job.
    pub fn remove(&self, id: &ContainerId) -> Result<()> {
        if let Ok(record) = self.load(id) {
            let name_path = self.names.join(&record.name);
            if fs::read_to_string(&name_path).is_ok_and(|held| held == id.as_str()) {
                fs::remove_file(&name_path).map_err(Error::io(&name_path))?;
            }
        }
        let dir = self.dir(id);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(Error::io(&dir)(e)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ContainerStatus;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("isola-state-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn record(store: &StateStore, name: &str) -> ContainerRecord {
        let id = ContainerId::generate().unwrap();
        ContainerRecord::new(id.clone(), name.into(), store.dir(&id).join("bundle"))
    }

    #[test]
    fn create_load_update_remove() {
        let root = scratch("cycle");
        let store = StateStore::open(&root).unwrap();
        let rec = record(&store, "web");
        store.create(&rec).unwrap();
        assert_eq!(store.load(&rec.id).unwrap(), rec);
        let (after, _) = store
            .update(&rec.id, |r| {
                r.status = ContainerStatus::Stopped;
                r.exit_code = Some(3);
            })
            .unwrap();
        assert_eq!(store.load(&rec.id).unwrap(), after);
        assert_eq!(store.resolve("web").unwrap(), rec.id);
        assert_eq!(store.resolve(&rec.id.as_str()[..6]).unwrap(), rec.id);
        store.remove(&rec.id).unwrap();
        store.remove(&rec.id).unwrap();
        assert!(matches!(store.resolve("web"), Err(Error::NotFound(_))));
        assert_eq!(fs::read_dir(root.join("names")).unwrap().count(), 0);
        assert_eq!(fs::read_dir(root.join("containers")).unwrap().count(), 0);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn exactly_one_of_many_racing_creates_gets_a_name() {
        let root = scratch("race");
        let store = StateStore::open(&root).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || store.create(&record(&store, "x")).is_ok())
            })
            .collect();
        let winners = threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|ok| *ok)
            .count();
        assert_eq!(winners, 1);
        assert_eq!(store.list().unwrap().len(), 1);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn corrupt_state_is_reported_and_skipped_by_list() {
        let root = scratch("corrupt");
        let store = StateStore::open(&root).unwrap();
        let good = record(&store, "good");
        let bad = record(&store, "bad");
        store.create(&good).unwrap();
        store.create(&bad).unwrap();
        fs::write(store.dir(&bad.id).join("state.json"), b"{not json").unwrap();
        assert!(matches!(
            store.load(&bad.id),
            Err(Error::CorruptState { .. })
        ));
        let listed: Vec<_> = store.list().unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(listed, vec!["good".to_string()]);
        store.remove(&bad.id).unwrap();
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn ambiguous_and_hostile_references() {
        let root = scratch("refs");
        let store = StateStore::open(&root).unwrap();
        for i in 0..40 {
            store.create(&record(&store, &format!("c{i}"))).unwrap();
        }
        // 40 random IDs over 16 first digits: some first digit repeats.
        let digits: Vec<char> = "0123456789abcdef".chars().collect();
        let ambiguous = digits
            .iter()
            .any(|d| matches!(store.resolve(&d.to_string()), Err(Error::Ambiguous(_))));
        assert!(ambiguous);
        for hostile in ["../names", "/etc/passwd", "", "c1/../c2"] {
            assert!(store.resolve(hostile).is_err(), "{hostile}");
        }
        fs::remove_dir_all(&root).unwrap();
    }
}

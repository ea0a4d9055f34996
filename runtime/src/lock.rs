//! Advisory file locks (flock), held for the life of a guard. They serialise
//! concurrent `isola` processes on one container's state, and the kernel
//! drops them when a holder dies, so a killed CLI never wedges the store.

use std::fs::{File, OpenOptions};
use std::path::Path;

use rustix::fs::{flock, FlockOperation};

use crate::error::{Error, Result};

/// An exclusive lock on a file, released on drop.
#[derive(Debug)]
pub struct FileLock {
    file: File,
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Unlock explicitly: a child forked while the lock was held shares
        // the open file description and would otherwise keep it locked.
        let _ = flock(&self.file, FlockOperation::Unlock);
    }
}

impl FileLock {
    /// Blocks until `path` (created if missing) is locked exclusively.
    pub fn exclusive(path: &Path) -> Result<FileLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(Error::io(path))?;
        flock(&file, FlockOperation::LockExclusive)
            .map_err(|e| Error::io(path)(std::io::Error::from(e)))?;
        Ok(FileLock { file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[test]
    fn serialises_holders() {
        let path = std::env::temp_dir().join(format!("isola-lock-{}", std::process::id()));
        let inside = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (path, inside) = (path.clone(), inside.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let _guard = FileLock::exclusive(&path).unwrap();
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                        std::thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        std::fs::remove_file(&path).unwrap();
    }
}

//! Advisory file locks (flock) between concurrent `isola` processes. Locks die
//! with the process, so a crashed pull never leaves the store locked.

use std::fs::{File, OpenOptions};
use std::path::Path;

use rustix::fs::{flock, FlockOperation};

use crate::error::{IoContext, Result};

/// Held until dropped (closing the file releases the lock).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

fn open(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .ctx(|| format!("opening lock {}", path.display()))
}

impl Lock {
    pub fn exclusive(path: &Path) -> Result<Lock> {
        let file = open(path)?;
        flock(&file, FlockOperation::LockExclusive)
            .ctx(|| format!("locking {}", path.display()))?;
        Ok(Lock { _file: file })
    }

    pub fn shared(path: &Path) -> Result<Lock> {
        let file = open(path)?;
        flock(&file, FlockOperation::LockShared).ctx(|| format!("locking {}", path.display()))?;
        Ok(Lock { _file: file })
    }

    /// Ok(None) when someone else holds it.
    pub fn try_exclusive(path: &Path) -> Result<Option<Lock>> {
        let file = open(path)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(Lock { _file: file })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(e).ctx(|| format!("locking {}", path.display())),
        }
    }
}

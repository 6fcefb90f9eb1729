//! The data-directory lock: one store per directory, across processes and
//! within one process.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::error::StorageError;

/// Name of the lock file in the data directory.
pub const LOCK_FILE: &str = "LOCK";

/// An exclusive lock on a data directory, held until dropped (the operating
/// system also releases it when the process dies).
#[derive(Debug)]
pub struct DirLock {
    // Held only for its lock.
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Takes the lock on `dir` without waiting; [`StorageError::Locked`] if
    /// another holder has it.
    pub fn acquire(dir: &Path) -> Result<DirLock, StorageError> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| StorageError::io(&path, source))?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file, path }),
            Err(TryLockError::WouldBlock) => Err(StorageError::Locked { path }),
            Err(TryLockError::Error(source)) => Err(StorageError::io(path, source)),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

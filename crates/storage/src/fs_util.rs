//! Small file-system helpers shared by the WAL, snapshot and meta files.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::StorageError;

/// Fsyncs a directory, making file creations, renames and removals in it durable.
pub fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir).and_then(|handle| handle.sync_all()).map_err(|source| StorageError::io(dir, source))
}

/// Writes `bytes` to `dir/name` atomically: a temporary file, synced, renamed
/// over the target, then the directory synced.
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
    write_parts_atomically(dir, name, &[bytes])
}

/// [`write_atomically`] of a file made of `parts`, one after the other.
pub fn write_parts_atomically(dir: &Path, name: &str, parts: &[&[u8]]) -> Result<(), StorageError> {
    let temporary = dir.join(format!("{name}.tmp"));
    let target = dir.join(name);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temporary)
        .map_err(|source| StorageError::io(&temporary, source))?;
    for part in parts {
        file.write_all(part).map_err(|source| StorageError::io(&temporary, source))?;
    }
    file.sync_all().map_err(|source| StorageError::io(&temporary, source))?;
    drop(file);
    fs::rename(&temporary, &target).map_err(|source| StorageError::io(&target, source))?;
    sync_dir(dir)
}

/// Reads a whole file, or `None` if it does not exist.
pub fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>, StorageError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StorageError::io(path, source)),
    }
}

/// A little-endian cursor over a fixed-layout file; failures carry the offset.
pub struct FieldReader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> FieldReader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> FieldReader<'a> {
        FieldReader { bytes, position: 0 }
    }

    /// Current offset.
    pub fn position(&self) -> u64 {
        self.position as u64
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    /// The next `len` bytes, or (offset, reason) if the file ends first.
    pub fn take(&mut self, len: usize, field: &str) -> Result<&'a [u8], (u64, String)> {
        if len > self.remaining() {
            return Err((
                self.position(),
                format!("file ends inside {field}: needs {len} bytes, {} left", self.remaining()),
            ));
        }
        let slice = &self.bytes[self.position..self.position + len];
        self.position += len;
        Ok(slice)
    }

    /// The next `u32`.
    pub fn u32(&mut self, field: &str) -> Result<u32, (u64, String)> {
        let bytes = self.take(4, field)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// The next `u64`.
    pub fn u64(&mut self, field: &str) -> Result<u64, (u64, String)> {
        let bytes = self.take(8, field)?;
        let mut array = [0; 8];
        array.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(array))
    }
}

//! The bytes of a snapshot a follower receives from its leader, staged in a
//! scratch file chunk by chunk as they arrive (docs/decisions/0090): a snapshot
//! is as large as the state machine, which may be larger than memory.
//!
//! The file is not synced and nothing reads it after a crash: the partial
//! transfer is lost, as the protocol expects (the follower answers its leader
//! from byte 0). When the last chunk is in, the file is mapped and unlinked, so
//! its bytes live in the page cache while the state machine is rebuilt from
//! them, and its disk space goes with the mapping.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use conclave_core::LogIndex;

use crate::error::StorageError;

/// Name of the scratch file in the data directory.
pub const INCOMING_FILE: &str = "snapshot.incoming";

/// A snapshot being staged, at most one at a time.
pub struct IncomingSnapshotFile {
    path: PathBuf,
    /// The transfer being staged: its snapshot's last index, its file, and
    /// the bytes written so far.
    current: Option<(LogIndex, File, u64)>,
    /// Why the current transfer cannot complete (a failed write), if it cannot.
    broken: Option<String>,
}

impl IncomingSnapshotFile {
    /// Stages snapshots in `dir`; removes a file a crash left there.
    pub fn new(dir: &Path) -> Result<IncomingSnapshotFile, StorageError> {
        let path = dir.join(INCOMING_FILE);
        match std::fs::remove_file(&path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(StorageError::io(&path, error)),
            _ => {}
        }
        Ok(IncomingSnapshotFile { path, current: None, broken: None })
    }

    /// Writes one chunk. A chunk at offset 0 starts a new transfer; any other
    /// must continue the current one exactly, or the transfer is broken (and
    /// [`IncomingSnapshotFile::finish`] says why). Failures are kept, not
    /// returned: the transfer fails as a whole at its end.
    pub fn write_chunk(&mut self, index: LogIndex, offset: u64, data: &[u8]) {
        if offset == 0 {
            self.current = None;
            self.broken = None;
            let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&self.path);
            match file {
                Ok(file) => self.current = Some((index, file, 0)),
                Err(error) => {
                    self.broken = Some(format!("cannot create {}: {error}", self.path.display()));
                    return;
                }
            }
        }
        if self.broken.is_some() {
            return;
        }
        let Some((staged_index, file, written)) = &mut self.current else {
            self.broken =
                Some(format!("a chunk at offset {offset} of the snapshot up to index {index} begins no transfer"));
            return;
        };
        if *staged_index != index || *written != offset {
            self.broken = Some(format!(
                "a chunk at offset {offset} of the snapshot up to index {index} does not continue the {written} bytes \
                 staged of the snapshot up to index {staged_index}"
            ));
            return;
        }
        match file.write_all(data) {
            Ok(()) => *written += data.len() as u64,
            Err(error) => self.broken = Some(format!("cannot write {}: {error}", self.path.display())),
        }
    }

    /// The staged bytes of the snapshot up to `index`, which must be exactly
    /// `total_bytes` long: mapped, with the file unlinked. Whatever happens,
    /// the next transfer starts afresh.
    #[allow(unsafe_code)]
    pub fn finish(&mut self, index: LogIndex, total_bytes: u64) -> Result<Bytes, String> {
        let broken = self.broken.take();
        let current = self.current.take();
        let result = match (broken, current) {
            (Some(problem), _) => Err(problem),
            (None, None) => Err(format!("no bytes were staged for the snapshot up to index {index}")),
            (None, Some((staged_index, file, written))) => {
                if staged_index != index || written != total_bytes {
                    Err(format!(
                        "{written} bytes staged of the snapshot up to index {staged_index}; the snapshot up to index \
                         {index} has {total_bytes}"
                    ))
                } else if written == 0 {
                    Ok(Bytes::new())
                } else {
                    // SAFETY: a mapping is sound while nobody changes the file
                    // under it. This file was written only through `file`,
                    // which is dropped at the end of this block, and is
                    // unlinked below before the bytes are used: no name leads
                    // to it any more, and the data directory's lock
                    // (`dir_lock`) keeps other node processes out of it.
                    unsafe { memmap2::Mmap::map(&file) }
                        .map(crate::unlinked_map::bytes_unmapped_off_thread)
                        .map_err(|error| format!("cannot map {}: {error}", self.path.display()))
                }
            }
        };
        let _ = std::fs::remove_file(&self.path);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_in_order_make_the_snapshot_and_leave_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut incoming = IncomingSnapshotFile::new(dir.path()).unwrap();
        incoming.write_chunk(9, 0, b"hello ");
        incoming.write_chunk(9, 6, b"world");
        assert_eq!(&incoming.finish(9, 11).unwrap()[..], b"hello world");
        assert!(!dir.path().join(INCOMING_FILE).exists(), "the scratch file is unlinked");
    }

    #[test]
    fn a_chunk_at_0_starts_over_and_a_gap_or_a_short_transfer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut incoming = IncomingSnapshotFile::new(dir.path()).unwrap();
        incoming.write_chunk(9, 0, b"old");
        incoming.write_chunk(12, 0, b"new ");
        incoming.write_chunk(12, 4, b"one");
        assert_eq!(&incoming.finish(12, 7).unwrap()[..], b"new one");

        incoming.write_chunk(13, 0, b"abc");
        incoming.write_chunk(13, 5, b"gap");
        let error = incoming.finish(13, 8).unwrap_err();
        assert!(error.contains("does not continue"), "{error}");

        incoming.write_chunk(14, 0, b"abc");
        let error = incoming.finish(14, 8).unwrap_err();
        assert!(error.contains("3 bytes staged"), "{error}");
        let error = incoming.finish(14, 3).unwrap_err();
        assert!(error.contains("no bytes were staged"), "{error}");
    }

    #[test]
    fn a_leftover_file_is_removed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(INCOMING_FILE), b"from before a crash").unwrap();
        let _incoming = IncomingSnapshotFile::new(dir.path()).unwrap();
        assert!(!dir.path().join(INCOMING_FILE).exists());
    }
}

//! Storage errors: every variant says what went wrong and where.

use std::io;
use std::path::PathBuf;

use conclave_core::{ClusterId, LogIndex, NodeId};
use thiserror::Error;

/// Why a storage operation failed.
///
/// `Io`, `Failed`, `Corrupt` and `Poisoned` are fatal for the node: its durable state is
/// unknown or damaged and it must stop. The others refuse one request and leave
/// the store as it was.
#[derive(Debug, Error)]
pub enum StorageError {
    /// A file-system call failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// A write or a sync that makes data durable failed (a full disk, an
    /// I/O error): what is on disk is unknown from there on.
    #[error("{operation} of {path} failed: {source}")]
    Failed {
        /// What was being done: `write`, `fsync`.
        operation: &'static str,
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// Durable data is damaged somewhere a crash cannot explain. Never skipped.
    #[error("corrupt data in {file} at byte offset {offset}: {reason}")]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the damaged record or field.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// Another store (in this process or another) holds the data directory.
    #[error("data directory is locked by another process or store: {path}")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The data directory belongs to another cluster.
    #[error("data directory {path} belongs to cluster {found}, not to cluster {expected}")]
    WrongCluster {
        /// The `meta` file.
        path: PathBuf,
        /// The cluster id the caller opened with.
        expected: ClusterId,
        /// The cluster id recorded in the directory.
        found: ClusterId,
    },
    /// The data directory belongs to another node.
    #[error("data directory {path} belongs to node {found}, not to node {expected}")]
    WrongNode {
        /// The `meta` file.
        path: PathBuf,
        /// The node id the caller opened with.
        expected: NodeId,
        /// The node id recorded in the directory.
        found: NodeId,
    },
    /// The requested entries were discarded in favour of a snapshot.
    #[error("entries from index {requested} were compacted: the log now starts at index {first_index}")]
    Compacted {
        /// The first index asked for.
        requested: LogIndex,
        /// The first index still in the log.
        first_index: LogIndex,
    },
    /// The requested entries lie beyond the end of the log.
    #[error("entries up to index {requested} are not in the log, which ends at index {last_index}")]
    Unavailable {
        /// The last index asked for.
        requested: LogIndex,
        /// The last index in the log.
        last_index: LogIndex,
    },
    /// A persist request breaks the log's rules (a hole, non-contiguous
    /// indexes, a term going back, ...). Nothing of the call was written.
    #[error("invalid write: {reason}")]
    InvalidWrite {
        /// Which rule it breaks.
        reason: String,
    },
    /// A snapshot older than the one already saved.
    #[error("snapshot at index {index} is older than the saved snapshot at index {current}")]
    StaleSnapshot {
        /// Index of the refused snapshot.
        index: LogIndex,
        /// Index of the snapshot already saved.
        current: LogIndex,
    },
    /// `compact` was asked to discard entries no snapshot covers.
    #[error("cannot compact up to index {upto_index}: the snapshot only covers up to index {snapshot_index}")]
    CompactBeyondSnapshot {
        /// The requested compaction point.
        upto_index: LogIndex,
        /// Last index covered by the saved snapshot (0 if none).
        snapshot_index: LogIndex,
    },
    /// An earlier write or sync failed, so what is on disk is unknown; the
    /// store refuses all further writes (a failed fsync cannot be retried).
    #[error("store is unusable after an earlier failure: {reason}")]
    Poisoned {
        /// The earlier failure.
        reason: String,
    },
}

impl StorageError {
    /// Builds an [`StorageError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> StorageError {
        StorageError::Io { path: path.into(), source }
    }

    /// Builds a [`StorageError::Failed`]: `operation` of `path` failed.
    pub fn failed(operation: &'static str, path: impl Into<PathBuf>, source: io::Error) -> StorageError {
        StorageError::Failed { operation, path: path.into(), source }
    }

    /// Builds a [`StorageError::Corrupt`].
    pub fn corrupt(file: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> StorageError {
        StorageError::Corrupt { file: file.into(), offset, reason: reason.into() }
    }

    /// Builds a [`StorageError::InvalidWrite`].
    pub fn invalid_write(reason: impl Into<String>) -> StorageError {
        StorageError::InvalidWrite { reason: reason.into() }
    }
}

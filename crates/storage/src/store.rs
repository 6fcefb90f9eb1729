//! The interface every store offers: the [`LogStore`] trait and the
//! [`PersistRequest`] it persists.

use std::ops::Range;

use conclave_core::{Entry, HardState, LogIndex, LogWrite, Output, RestoredState};

use crate::error::StorageError;
use crate::snapshot::Snapshot;

/// What one [`Output`] asks to make durable, borrowed from it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PersistRequest<'a> {
    /// New hard state, if it changed.
    pub hard_state: Option<HardState>,
    /// Log tail rewrite: remove every entry at `first_index` or above, then append.
    pub log_write: Option<&'a LogWrite>,
}

impl<'a> PersistRequest<'a> {
    /// The durable part of `output`.
    pub fn from_output(output: &'a Output) -> PersistRequest<'a> {
        PersistRequest { hard_state: output.hard_state, log_write: output.log_write.as_ref() }
    }

    /// True if there is nothing to persist.
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none() && self.log_write.is_none()
    }
}

impl<'a> From<&'a Output> for PersistRequest<'a> {
    fn from(output: &'a Output) -> PersistRequest<'a> {
        PersistRequest::from_output(output)
    }
}

/// Durable storage for one node: hard state, log and snapshot.
///
/// Every implementation passes [`crate::conformance::run_all`], so the
/// simulator's [`crate::MemoryStore`] and the server's [`crate::Wal`] behave
/// alike.
///
/// # The log's shape
/// The log is the snapshot's base (index `first_index() - 1`, 0 without a
/// snapshot) followed by contiguous entries up to `last_index()`.
pub trait LogStore {
    /// Makes every batch durable, in order, before returning: one write and one
    /// sync for all of them (group commit). Batches are checked first; if any
    /// breaks a rule ([`StorageError::InvalidWrite`]) nothing is written.
    /// With nothing to persist, nothing is written or synced.
    fn persist(&mut self, batches: &[PersistRequest<'_>]) -> Result<(), StorageError>;

    /// The last persisted hard state (all zero for a new store).
    fn hard_state(&self) -> HardState;

    /// First index still in the log: the snapshot's last index + 1.
    fn first_index(&self) -> LogIndex;

    /// Index of the last entry (the snapshot's last index if no entry follows it).
    fn last_index(&self) -> LogIndex;

    /// The entries in `range` (half-open). [`StorageError::Compacted`] if it
    /// starts before [`LogStore::first_index`], [`StorageError::Unavailable`] if
    /// it ends beyond [`LogStore::last_index`].
    fn entries(&self, range: Range<LogIndex>) -> Result<Vec<Entry>, StorageError>;

    /// Durably saves `snapshot`, which becomes the log's base: if the log holds
    /// the entry at `last_included_index` with `last_included_term`, the entries
    /// after it stay; otherwise the whole log is discarded (the snapshot came
    /// from a leader and supersedes it). An older snapshot than the saved one is
    /// refused with [`StorageError::StaleSnapshot`].
    fn save_snapshot(&mut self, snapshot: Snapshot) -> Result<(), StorageError>;

    /// The saved snapshot, if any.
    fn snapshot(&self) -> Option<&Snapshot>;

    /// Reclaims the space of entries up to `upto_index`, which the snapshot must
    /// cover ([`StorageError::CompactBeyondSnapshot`] otherwise). Those entries
    /// already left the log when the snapshot was saved; this only frees storage
    /// (whole WAL segments), so nothing observable changes.
    fn compact(&mut self, upto_index: LogIndex) -> Result<(), StorageError>;

    /// What [`conclave_core::Node::new`] needs to restart this node: the hard
    /// state, the saved snapshot (metadata and data, as
    /// [`conclave_core::Snapshot`]) and the entries after it.
    fn restored_state(&self) -> Result<RestoredState, StorageError>;
}

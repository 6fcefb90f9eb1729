//! The log model both stores share: hard state, snapshot base and the entries
//! after it, with the rules every write must keep.
//!
//! Invariant: `entries[i].index == snapshot_index + 1 + i` (the log is
//! contiguous after the snapshot base).

use std::ops::Range;

use conclave_core::{Entry, HardState, LogIndex, LogWrite, RestoredState, Term};

use crate::error::StorageError;
use crate::snapshot::Snapshot;
use crate::store::PersistRequest;

/// Hard state, snapshot base and the log after it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogState {
    hard_state: HardState,
    snapshot_index: LogIndex,
    snapshot_term: Term,
    entries: Vec<Entry>,
}

impl LogState {
    /// An empty log whose base is a snapshot up to `index` (0 for none).
    pub fn with_base(index: LogIndex, term: Term) -> LogState {
        LogState { snapshot_index: index, snapshot_term: term, ..LogState::default() }
    }

    /// The current hard state.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// Last index the snapshot covers (0 if none).
    pub fn snapshot_index(&self) -> LogIndex {
        self.snapshot_index
    }

    /// First index still held (the snapshot index + 1).
    pub fn first_index(&self) -> LogIndex {
        self.snapshot_index + 1
    }

    /// Index of the last entry (the snapshot index if there is none after it).
    pub fn last_index(&self) -> LogIndex {
        self.snapshot_index + self.entries.len() as u64
    }

    /// Term of the entry at `index`, if the log or the snapshot base knows it.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        let position = index.checked_sub(self.first_index())?;
        self.entries.get(usize::try_from(position).ok()?).map(|entry| entry.term)
    }

    /// Checks that `batches`, applied in order, keep every rule; changes nothing.
    pub fn check_batches(&self, batches: &[PersistRequest<'_>]) -> Result<(), StorageError> {
        let mut term = self.hard_state.term;
        let mut last_index = self.last_index();
        for (position, batch) in batches.iter().enumerate() {
            if let Some(hard_state) = batch.hard_state {
                if hard_state.voted_for == Some(0) {
                    return Err(StorageError::invalid_write(format!(
                        "batch {position}: voted for node 0, which is reserved"
                    )));
                }
                if hard_state.term < term {
                    return Err(StorageError::invalid_write(format!(
                        "batch {position}: term goes back from {term} to {}",
                        hard_state.term
                    )));
                }
                term = hard_state.term;
            }
            if let Some(write) = batch.log_write {
                check_write(write, last_index)
                    .map_err(|reason| StorageError::invalid_write(format!("batch {position}: {reason}")))?;
                last_index = self.snapshot_index.max(write.first_index - 1 + write.entries.len() as u64);
            }
        }
        Ok(())
    }

    /// Records a new hard state.
    pub fn set_hard_state(&mut self, hard_state: HardState) {
        self.hard_state = hard_state;
    }

    /// Applies a log write: drops entries at `first_index` and above, appends
    /// the new ones. Entries the snapshot covers are skipped.
    pub fn apply_write(&mut self, write: &LogWrite) -> Result<(), String> {
        check_write(write, self.last_index())?;
        let keep = write.first_index.max(self.first_index()) - self.first_index();
        self.entries.truncate(keep as usize);
        self.entries.extend(write.entries.iter().filter(|entry| entry.index > self.snapshot_index).cloned());
        debug_assert!(self.is_contiguous());
        Ok(())
    }

    /// Makes a snapshot up to `index` (with that entry's `term`) the log's base.
    /// If the log holds that very entry, the entries after it stay; otherwise the
    /// whole log is discarded. Returns true if it was discarded.
    pub fn apply_snapshot(&mut self, index: LogIndex, term: Term) -> bool {
        let log_discarded = self.term_at(index) != Some(term);
        self.apply_snapshot_marker(index, term, log_discarded);
        log_discarded
    }

    /// Replays a snapshot marker. The base never moves back: a marker older
    /// than the base only discards what it discarded when it was written.
    pub fn apply_snapshot_marker(&mut self, index: LogIndex, term: Term, log_discarded: bool) {
        if log_discarded {
            self.entries.clear();
        } else {
            let covered = index.saturating_sub(self.snapshot_index).min(self.entries.len() as u64);
            self.entries.drain(..covered as usize);
        }
        if index > self.snapshot_index {
            self.snapshot_index = index;
            self.snapshot_term = term;
        }
        debug_assert!(self.is_contiguous());
    }

    /// The entries in `range` (half-open).
    pub fn entries(&self, range: Range<LogIndex>) -> Result<Vec<Entry>, StorageError> {
        if range.start >= range.end {
            return Ok(Vec::new());
        }
        if range.start < self.first_index() {
            return Err(StorageError::Compacted { requested: range.start, first_index: self.first_index() });
        }
        if range.end - 1 > self.last_index() {
            return Err(StorageError::Unavailable { requested: range.end - 1, last_index: self.last_index() });
        }
        let start = (range.start - self.first_index()) as usize;
        let end = (range.end - self.first_index()) as usize;
        Ok(self.entries[start..end].to_vec())
    }

    /// What the core needs to start: the hard state, `snapshot` (the saved one,
    /// which must be this log's base) and the entries after it.
    pub fn restored_state(&self, snapshot: Option<&Snapshot>) -> Result<RestoredState, StorageError> {
        let snapshot_index = snapshot.map_or(0, |snapshot| snapshot.last_included_index);
        if snapshot_index != self.snapshot_index {
            // The log's base moved without the snapshot that moved it: the
            // entries before it are gone and nothing replaces them.
            return Err(StorageError::Compacted { requested: snapshot_index + 1, first_index: self.first_index() });
        }
        Ok(RestoredState {
            hard_state: self.hard_state,
            entries: self.entries.clone(),
            snapshot: snapshot.map(Snapshot::to_core),
        })
    }

    fn is_contiguous(&self) -> bool {
        self.entries.iter().enumerate().all(|(position, entry)| entry.index == self.first_index() + position as u64)
    }
}

/// A write is valid on a log ending at `last_index` if it leaves no hole and its
/// entries run contiguously from `first_index`.
fn check_write(write: &LogWrite, last_index: LogIndex) -> Result<(), String> {
    if write.first_index == 0 {
        return Err("log write at index 0 (indexes start at 1)".into());
    }
    if write.first_index > last_index + 1 {
        return Err(format!("log write at index {} leaves a hole after index {last_index}", write.first_index));
    }
    for (position, entry) in write.entries.iter().enumerate() {
        let expected = write.first_index + position as u64;
        if entry.index != expected {
            return Err(format!("entry {position} of a write at {} has index {}", write.first_index, entry.index));
        }
    }
    Ok(())
}

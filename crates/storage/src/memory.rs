//! [`MemoryStore`]: the in-memory [`LogStore`], for the simulator and tests.
//! Same rules as [`crate::Wal`]; every persist is durable at once.

use std::ops::Range;

use conclave_core::{Entry, HardState, LogIndex, RestoredState};

use crate::error::StorageError;
use crate::log_state::LogState;
use crate::snapshot::Snapshot;
use crate::store::{LogStore, PersistRequest};

/// A store that keeps everything in memory. "Reopening" it is keeping it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryStore {
    state: LogState,
    snapshot: Option<Snapshot>,
    syncs: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// How many non-empty persist calls there were (each is one "sync").
    pub fn syncs(&self) -> u64 {
        self.syncs
    }
}

impl LogStore for MemoryStore {
    fn persist(&mut self, batches: &[PersistRequest<'_>]) -> Result<(), StorageError> {
        self.state.check_batches(batches)?;
        if batches.iter().all(PersistRequest::is_empty) {
            return Ok(());
        }
        for batch in batches {
            if let Some(hard_state) = batch.hard_state {
                self.state.set_hard_state(hard_state);
            }
            if let Some(write) = batch.log_write {
                self.state.apply_write(write).map_err(StorageError::invalid_write)?;
            }
        }
        self.syncs += 1;
        Ok(())
    }

    fn hard_state(&self) -> HardState {
        self.state.hard_state()
    }

    fn first_index(&self) -> LogIndex {
        self.state.first_index()
    }

    fn last_index(&self) -> LogIndex {
        self.state.last_index()
    }

    fn entries(&self, range: Range<LogIndex>) -> Result<Vec<Entry>, StorageError> {
        self.state.entries(range)
    }

    fn save_snapshot(&mut self, snapshot: Snapshot) -> Result<(), StorageError> {
        let index = snapshot.last_included_index;
        if index < self.state.snapshot_index() {
            return Err(StorageError::StaleSnapshot { index, current: self.state.snapshot_index() });
        }
        self.state.apply_snapshot(index, snapshot.last_included_term);
        self.snapshot = Some(snapshot);
        Ok(())
    }

    fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    fn compact(&mut self, upto_index: LogIndex) -> Result<(), StorageError> {
        let snapshot_index = self.state.snapshot_index();
        if upto_index > snapshot_index {
            return Err(StorageError::CompactBeyondSnapshot { upto_index, snapshot_index });
        }
        Ok(())
    }

    fn restored_state(&self) -> Result<RestoredState, StorageError> {
        self.state.restored_state(self.snapshot.as_ref())
    }
}

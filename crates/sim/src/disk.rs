//! The simulated disk: what a node has made durable. Writes reach it only when
//! their batch's fsync completes; a crash loses whatever had not.
//!
//! It is the storage crate's `MemoryStore`, which passes the same conformance
//! suite as the write-ahead log, so the simulator exercises the storage
//! semantics the server ships (a refused write is a bug and stops the run).

use conclave_core::{HardState, LogWrite, RestoredState, Snapshot};
use conclave_storage::{LogStore, MemoryStore, PersistRequest};

/// One node's durable state.
#[derive(Clone, Debug, Default)]
pub struct SimDisk {
    store: MemoryStore,
}

impl SimDisk {
    /// Makes one batch's writes durable: its snapshot first (the batch's hard
    /// state already counts the snapshot's last index as committed), then its
    /// hard state and log write, as `Output`'s contract orders them.
    pub fn persist(
        &mut self,
        snapshot: Option<&Snapshot>,
        hard_state: Option<HardState>,
        log_write: Option<&LogWrite>,
    ) {
        if let Some(snapshot) = snapshot {
            self.save_snapshot(snapshot);
        }
        let request = PersistRequest { hard_state, log_write };
        if let Err(error) = self.store.persist(&[request]) {
            panic!("the store refused a batch the core produced: {error}");
        }
    }

    /// Durably saves a snapshot (the node's own, from compaction, or one it
    /// installed) and reclaims the entries it covers.
    pub fn save_snapshot(&mut self, snapshot: &Snapshot) {
        let stored = conclave_storage::Snapshot::from_core(snapshot);
        let index = stored.last_included_index;
        if let Err(error) = self.store.save_snapshot(stored).and_then(|()| self.store.compact(index)) {
            panic!("the store refused a snapshot the core produced: {error}");
        }
    }

    /// Whether the disk holds the entry at `index` with `term` (a snapshot
    /// covering `index` holds committed entries only: it counts).
    pub fn holds(&self, index: u64, term: u64) -> bool {
        if index <= self.snapshot_index() {
            return true;
        }
        match self.store.entries(index..index + 1) {
            Ok(entries) => entries.first().is_some_and(|entry| entry.term == term),
            Err(_) => false,
        }
    }

    /// Last index of the saved snapshot (0 without one).
    pub fn snapshot_index(&self) -> u64 {
        self.store.first_index() - 1
    }

    /// What a restarting node finds.
    pub fn restore(&self) -> RestoredState {
        match self.store.restored_state() {
            Ok(restored) => restored,
            Err(error) => panic!("the store cannot restore: {error}"),
        }
    }
}

//! The simulated disk: what a node has made durable. Writes reach it only when
//! their batch's fsync completes; a crash loses whatever had not.
//!
//! It is the storage crate's `MemoryStore`, which passes the same conformance
//! suite as the write-ahead log, so the simulator exercises the storage
//! semantics the server ships (a refused write is a bug and stops the run).

use conclave_core::{HardState, LogWrite, RestoredState};
use conclave_storage::{LogStore, MemoryStore, PersistRequest};

/// One node's durable state.
#[derive(Clone, Debug, Default)]
pub struct SimDisk {
    store: MemoryStore,
}

impl SimDisk {
    /// Makes one batch's writes durable.
    pub fn persist(&mut self, hard_state: Option<HardState>, log_write: Option<&LogWrite>) {
        let request = PersistRequest { hard_state, log_write };
        if let Err(error) = self.store.persist(&[request]) {
            panic!("the store refused a batch the core produced: {error}");
        }
    }

    /// What a restarting node finds.
    pub fn restore(&self) -> RestoredState {
        match self.store.restored_state() {
            Ok(restored) => restored,
            Err(error) => panic!("the store cannot restore: {error}"),
        }
    }
}

//! The simulated disk: what a node has made durable. Writes reach it only when
//! their batch's fsync completes; a crash loses whatever had not.

use conclave_core::{Entry, HardState, LogWrite, RestoredState};

/// One node's durable state.
#[derive(Clone, Debug, Default)]
pub struct SimDisk {
    hard_state: HardState,
    entries: Vec<Entry>,
}

impl SimDisk {
    /// Makes one batch's writes durable.
    pub fn persist(&mut self, hard_state: Option<HardState>, log_write: Option<&LogWrite>) {
        if let Some(hard_state) = hard_state {
            assert!(hard_state.term >= self.hard_state.term, "the durable term never decreases");
            self.hard_state = hard_state;
        }
        if let Some(write) = log_write {
            assert!(write.first_index >= 1, "log indexes start at 1");
            assert!(write.first_index as usize <= self.entries.len() + 1, "a log write leaves no hole");
            self.entries.truncate(write.first_index as usize - 1);
            self.entries.extend(write.entries.iter().cloned());
        }
    }

    /// What a restarting node finds.
    pub fn restore(&self) -> RestoredState {
        RestoredState { hard_state: self.hard_state, entries: self.entries.clone() }
    }
}

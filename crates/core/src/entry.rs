//! Log entries.

use serde::{Deserialize, Serialize};

use crate::types::{LogIndex, Term};

/// One entry of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    /// Term (ballot) of the leader that created the entry.
    pub term: Term,
    /// Position in the log, starting at 1.
    pub index: LogIndex,
    /// What the entry carries.
    pub payload: Payload,
}

/// What a log entry carries.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Payload {
    /// Appended by every new leader so that it can commit entries of earlier terms
    /// (Raft §5.4.2 forbids counting replicas of those directly).
    Noop,
    /// An opaque client command for the state machine.
    Command(Vec<u8>),
}

impl Entry {
    /// Size of the payload in bytes, used for limits.
    pub fn payload_len(&self) -> usize {
        match &self.payload {
            Payload::Noop => 0,
            Payload::Command(bytes) => bytes.len(),
        }
    }
}

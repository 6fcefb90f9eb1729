//! Log entries.

use serde::{Deserialize, Serialize};

use crate::types::{LogIndex, NodeId, Term};

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
    /// An opaque client command for the state machine. Shared bytes: the log,
    /// the storage's copy of it, the messages that carry it and the apply
    /// stream all hold the same buffer.
    Command(bytes::Bytes),
    /// `gapless` and `conclave` modes (docs/design/leader-terms.md): the entry a leader-elect
    /// appends first, in place of `Noop`. The entry's own `term` is the ballot
    /// that elected it; `leader_term` is the gapless term it leads: one above the
    /// `leader_term` of the previous `BecomeLeader` in its log (1 if none). It
    /// serves only once this entry commits.
    BecomeLeader {
        /// The gapless leader term this entry establishes.
        leader_term: u64,
        /// The node that leads it.
        leader: NodeId,
    },
    /// The cluster's membership from this entry on (docs/design/membership.md):
    /// every node acts on the latest one in its log, committed or not.
    Membership(crate::membership::Membership),
}

impl Entry {
    /// Size of the payload in bytes, used for limits.
    pub fn payload_len(&self) -> usize {
        match &self.payload {
            Payload::Noop | Payload::BecomeLeader { .. } | Payload::Membership(_) => 0,
            Payload::Command(bytes) => bytes.len(),
        }
    }
}

/// A `BecomeLeader` entry seen in a log: which leader term, led by whom, elected
/// at which ballot, at which index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaderTermRecord {
    /// The gapless leader term.
    pub leader_term: u64,
    /// Its leader.
    pub leader: NodeId,
    /// The ballot (Raft term) of the entry.
    pub ballot: Term,
    /// Where the entry sits.
    pub index: LogIndex,
}

impl Entry {
    /// The leader term this entry establishes, if it is a `BecomeLeader`.
    pub fn leader_term_record(&self) -> Option<LeaderTermRecord> {
        match self.payload {
            Payload::BecomeLeader { leader_term, leader } => {
                Some(LeaderTermRecord { leader_term, leader, ballot: self.term, index: self.index })
            }
            _ => None,
        }
    }
}

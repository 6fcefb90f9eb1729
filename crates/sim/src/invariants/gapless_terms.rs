//! Gapless leader terms (invariant 2 in docs/design/invariants.md, seed 003): the `BecomeLeader` entries
//! of every committed prefix carry leader terms 1, 2, 3, … with no hole and one
//! leader each, and no node's committed leader term decreases.
//!
//! Fed with what each node applies (committed entries, in index order). Also
//! measures the leader-term sequence of the modes without `BecomeLeader` entries,
//! where a leader's term is its Raft term: there, terms without a leader are the
//! holes the seed wants gone (`term_gaps`).

use std::collections::{BTreeMap, BTreeSet};

use conclave_core::{Entry, LogIndex, NodeId, Term};

use super::Broken;

/// The leader-term sequence of the committed log, as the nodes apply it.
#[derive(Debug, Default)]
pub struct GaplessTerms {
    /// Per node, the leader term of the last `BecomeLeader` it applied in its
    /// current incarnation (a restarted node re-applies from index 1).
    applied_leader_term: BTreeMap<NodeId, u64>,
    /// Every leader seen per leader term, over the whole run.
    leaders: BTreeMap<u64, BTreeSet<NodeId>>,
    /// Entries of the committed sequence seen so far (each index counted once).
    committed_len: LogIndex,
    /// Leader term of the last `BecomeLeader` of the committed sequence.
    last_leader_term: u64,
    /// Raft term of the last entry of the committed sequence.
    last_entry_term: Term,
    /// Holes in the committed sequence of leader terms.
    term_gaps: u64,
    /// Holes in the committed sequence of Raft terms that had a leader.
    ballot_gaps: u64,
}

impl GaplessTerms {
    /// The property checked.
    pub const PROPERTY: &'static str = "gapless_terms";

    /// `node` applied `entries` (contiguous, in order; state machine safety checks
    /// that every node applies the same ones).
    pub fn on_apply(&mut self, node: NodeId, entries: &[Entry]) -> Result<(), Broken> {
        for entry in entries {
            if entry.index == self.committed_len + 1 {
                self.on_newly_committed(entry);
            }
            let Some(record) = entry.leader_term_record() else { continue };
            let previous = self.applied_leader_term.get(&node).copied().unwrap_or(0);
            if record.leader_term != previous + 1 {
                return Err(Broken {
                    property: Self::PROPERTY,
                    detail: format!(
                        "n{node} applied BecomeLeader(leader term {}, n{}) at index {} after leader term {previous}",
                        record.leader_term, record.leader, record.index
                    ),
                });
            }
            self.applied_leader_term.insert(node, record.leader_term);
            let leaders = self.leaders.entry(record.leader_term).or_default();
            leaders.insert(record.leader);
            if leaders.len() > 1 {
                return Err(Broken {
                    property: Self::PROPERTY,
                    detail: format!("leader term {} has leaders {leaders:?}", record.leader_term),
                });
            }
        }
        Ok(())
    }

    fn on_newly_committed(&mut self, entry: &Entry) {
        self.committed_len = entry.index;
        if let Some(record) = entry.leader_term_record() {
            self.term_gaps += record.leader_term.saturating_sub(self.last_leader_term + 1);
            self.last_leader_term = self.last_leader_term.max(record.leader_term);
        }
        if entry.term > self.last_entry_term {
            self.ballot_gaps += entry.term - self.last_entry_term - 1;
            self.last_entry_term = entry.term;
        }
    }

    /// `node` restarted: it applies its log again from index 1.
    pub fn on_restart(&mut self, node: NodeId) {
        self.applied_leader_term.insert(node, 0);
    }

    /// `node`'s state machine jumped to a snapshot whose last `BecomeLeader`
    /// had `leader_term` (0 for none): its cursor continues from there.
    pub fn on_snapshot(&mut self, node: NodeId, leader_term: u64) {
        self.applied_leader_term.insert(node, leader_term);
    }

    /// Holes in the committed leader-term sequence: `BecomeLeader` leader terms
    /// where the log has them, else the Raft terms of the committed entries.
    pub fn term_gaps(&self) -> u64 {
        if self.last_leader_term > 0 {
            self.term_gaps
        } else {
            self.ballot_gaps
        }
    }

    /// Most leaders seen for one leader term (1 unless the property broke; 0 if
    /// no `BecomeLeader` committed).
    pub fn leaders_per_term_max(&self) -> u64 {
        self.leaders.values().map(|leaders| leaders.len() as u64).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use conclave_core::Payload;

    use super::*;

    fn become_leader(term: Term, index: LogIndex, leader_term: u64, leader: NodeId) -> Entry {
        Entry { term, index, payload: Payload::BecomeLeader { leader_term, leader } }
    }

    fn command(term: Term, index: LogIndex) -> Entry {
        Entry { term, index, payload: Payload::Command(vec![index as u8].into()) }
    }

    #[test]
    fn consecutive_leader_terms_hold() {
        let mut checker = GaplessTerms::default();
        let log = [become_leader(1, 1, 1, 1), command(1, 2), become_leader(4, 3, 2, 2), command(4, 4)];
        checker.on_apply(1, &log).unwrap();
        checker.on_apply(2, &log[..2]).unwrap();
        checker.on_restart(1);
        checker.on_apply(1, &log).unwrap();
        assert_eq!((checker.term_gaps(), checker.leaders_per_term_max()), (0, 1));
    }

    #[test]
    fn a_hole_or_a_second_leader_is_caught() {
        let mut checker = GaplessTerms::default();
        let broken = checker.on_apply(1, &[become_leader(1, 1, 1, 1), become_leader(2, 2, 3, 2)]).unwrap_err();
        assert!(broken.detail.contains("after leader term 1"), "{}", broken.detail);
        assert_eq!(checker.term_gaps(), 1);

        let mut checker = GaplessTerms::default();
        checker.on_apply(1, &[become_leader(1, 1, 1, 1)]).unwrap();
        let broken = checker.on_apply(2, &[become_leader(1, 1, 1, 2)]).unwrap_err();
        assert!(broken.detail.contains("leader term 1 has leaders"), "{}", broken.detail);
    }

    #[test]
    fn raft_terms_without_a_leader_count_as_gaps() {
        let mut checker = GaplessTerms::default();
        checker.on_apply(1, &[command(2, 1), command(2, 2), command(5, 3)]).unwrap();
        assert_eq!(checker.term_gaps(), 1 + 2, "terms 1, 3 and 4 had no committed leader");
    }
}

//! State machine safety (Raft §5.4.3, invariant 5 in docs/design/invariants.md): no two nodes apply
//! different entries at one index; each node applies in order, without gaps. A
//! node that installs or restores a snapshot jumps to its index, and the
//! snapshot's chained fingerprint must equal that prefix of the one applied
//! sequence.

use std::collections::BTreeMap;

use conclave_core::{Entry, LogIndex, NodeId};

use super::{entry_fingerprint, Broken};
use crate::state_machine::chain_step;

/// The one applied sequence every node must follow.
#[derive(Debug, Default)]
pub struct StateMachineSafety {
    applied: Vec<u64>,
    /// `chains[i]`: the chained fingerprint of `applied[..=i]`.
    chains: Vec<u64>,
    cursors: BTreeMap<NodeId, LogIndex>,
}

impl StateMachineSafety {
    /// The property checked.
    pub const PROPERTY: &'static str = "state_machine_safety";

    /// `node` applied `entries`.
    pub fn on_apply(&mut self, node: NodeId, entries: &[Entry]) -> Result<(), Broken> {
        let cursor = self.cursors.entry(node).or_insert(0);
        for entry in entries {
            if entry.index != *cursor + 1 {
                return Err(Broken {
                    property: Self::PROPERTY,
                    detail: format!("n{node} applied index {} after index {}", entry.index, cursor),
                });
            }
            let fingerprint = entry_fingerprint(entry);
            match self.applied.get(entry.index as usize - 1) {
                Some(expected) if *expected != fingerprint => {
                    return Err(Broken {
                        property: Self::PROPERTY,
                        detail: format!(
                            "n{node} applied a different entry (term {}) at index {} than another node",
                            entry.term, entry.index
                        ),
                    });
                }
                Some(_) => {}
                None => {
                    let previous = self.chains.last().copied().unwrap_or(0);
                    self.applied.push(fingerprint);
                    self.chains.push(chain_step(previous, fingerprint));
                }
            }
            *cursor = entry.index;
        }
        Ok(())
    }

    /// `node` restarted: its state machine is rebuilt from index 1.
    pub fn on_restart(&mut self, node: NodeId) {
        self.cursors.insert(node, 0);
    }

    /// `node`'s state machine was replaced by a snapshot up to `index` whose
    /// chained fingerprint is `chain` (installed from a leader, or restored).
    pub fn on_snapshot(&mut self, node: NodeId, index: LogIndex, chain: u64) -> Result<(), Broken> {
        let expected = index.checked_sub(1).and_then(|position| self.chains.get(position as usize));
        if expected != Some(&chain) {
            return Err(Broken {
                property: Self::PROPERTY,
                detail: format!(
                    "n{node} took a snapshot up to index {index} that is not that prefix of the applied sequence                      ({} entries applied by anyone so far)",
                    self.applied.len()
                ),
            });
        }
        let cursor = self.cursors.entry(node).or_insert(0);
        if index < *cursor {
            return Err(Broken {
                property: Self::PROPERTY,
                detail: format!("n{node} installed a snapshot up to {index} after applying up to {cursor}"),
            });
        }
        *cursor = index;
        Ok(())
    }

    /// Entries applied by at least one node.
    pub fn applied_len(&self) -> u64 {
        self.applied.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_core::Payload;

    fn entry(term: u64, index: LogIndex, byte: u8) -> Entry {
        Entry { term, index, payload: Payload::Command(vec![byte].into()) }
    }

    #[test]
    fn fires_on_divergent_or_out_of_order_application() {
        let mut checker = StateMachineSafety::default();
        checker.on_apply(1, &[entry(1, 1, 1), entry(1, 2, 2)]).unwrap();
        checker.on_apply(2, &[entry(1, 1, 1)]).unwrap();
        assert!(checker.on_apply(2, &[entry(2, 2, 3)]).is_err());
        assert!(checker.on_apply(3, &[entry(1, 2, 2)]).is_err(), "gap");
        checker.on_restart(1);
        checker.on_apply(1, &[entry(1, 1, 1)]).unwrap();
    }

    #[test]
    fn a_snapshot_must_be_a_prefix_of_the_applied_sequence() {
        let mut checker = StateMachineSafety::default();
        let log = [entry(1, 1, 1), entry(1, 2, 2)];
        checker.on_apply(1, &log).unwrap();
        let mut machine = crate::state_machine::SimStateMachine::default();
        machine.apply(&log[..1]);
        checker.on_snapshot(2, 1, machine.chain).unwrap();
        checker.on_apply(2, &log[1..]).unwrap();
        assert!(checker.on_snapshot(3, 2, machine.chain).is_err(), "wrong fingerprint for index 2");
        assert!(checker.on_snapshot(3, 3, machine.chain).is_err(), "beyond anything applied");
    }
}

//! State machine safety (Raft §5.4.3, DESIGN.md §4.5): no two nodes apply
//! different entries at one index; each node applies in order, without gaps.

use std::collections::BTreeMap;

use conclave_core::{Entry, LogIndex, NodeId};

use super::{entry_fingerprint, Broken};

/// The one applied sequence every node must follow.
#[derive(Debug, Default)]
pub struct StateMachineSafety {
    applied: Vec<u64>,
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
                None => self.applied.push(fingerprint),
            }
            *cursor = entry.index;
        }
        Ok(())
    }

    /// `node` restarted: its state machine is rebuilt from index 1.
    pub fn on_restart(&mut self, node: NodeId) {
        self.cursors.insert(node, 0);
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
        Entry { term, index, payload: Payload::Command(vec![byte]) }
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
}

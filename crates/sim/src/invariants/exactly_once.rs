//! Exactly-once writes (docs/decisions/0060-exactly-once-writes.md): no
//! command id takes effect twice on a node, although a client may propose an
//! id again (after losing its leader) and both copies may commit. A node that
//! restarts rebuilds its state from index 1 or from a snapshot, which must
//! not hold an id twice either.

use std::collections::{BTreeMap, BTreeSet};

use conclave_core::NodeId;

use super::Broken;

/// The command ids that took effect on each node since it last started.
#[derive(Debug, Default)]
pub struct ExactlyOnce {
    applied: BTreeMap<NodeId, BTreeSet<u64>>,
}

impl ExactlyOnce {
    /// The property checked.
    pub const PROPERTY: &'static str = "exactly_once";

    /// The commands with `ids` took effect on `node`, in this order.
    pub fn on_effects(&mut self, node: NodeId, ids: &[u64]) -> Result<(), Broken> {
        let applied = self.applied.entry(node).or_default();
        for &id in ids {
            if !applied.insert(id) {
                return Err(Broken {
                    property: Self::PROPERTY,
                    detail: format!("n{node} applied command id {id} a second time"),
                });
            }
        }
        Ok(())
    }

    /// `node` restarted: its state machine is rebuilt from index 1.
    pub fn on_restart(&mut self, node: NodeId) {
        self.applied.remove(&node);
    }

    /// `node`'s state became a snapshot whose commands took effect as `ids`.
    pub fn on_snapshot(&mut self, node: NodeId, ids: &[u64]) -> Result<(), Broken> {
        self.applied.remove(&node);
        self.on_effects(node, ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_applied_twice_on_one_node_is_caught_and_a_restart_forgets() {
        let mut checker = ExactlyOnce::default();
        checker.on_effects(1, &[1, 2]).unwrap();
        checker.on_effects(2, &[1, 2]).unwrap();
        let broken = checker.on_effects(1, &[3, 2]).unwrap_err();
        assert_eq!(broken.property, ExactlyOnce::PROPERTY);
        assert!(broken.detail.contains("id 2"), "{}", broken.detail);
        checker.on_restart(2);
        checker.on_effects(2, &[1]).unwrap();
        assert!(checker.on_snapshot(2, &[4, 4]).is_err());
        checker.on_snapshot(2, &[1, 2]).unwrap();
    }
}

//! Linearizable reads (invariant 6 in docs/design/invariants.md, Raft thesis §6.4): a read served at read
//! index R returns a state that includes every write acknowledged before the
//! read was issued. A write counts as acknowledged once any node applied it, so
//! at issue time the checker notes the longest applied sequence; the read's
//! index, and the state it is served from, must reach it. (The applied
//! sequences being prefixes of one another is `state_machine_safety`'s job.)

use std::collections::BTreeMap;

use conclave_core::{LogIndex, NodeId};

use super::Broken;

/// Reads in flight and what each must see.
#[derive(Debug, Default)]
pub struct LinearizableReads {
    /// Context → (node asked, length of the applied sequence when issued).
    issued: BTreeMap<u64, (NodeId, LogIndex)>,
    served: u64,
    failed: u64,
}

impl LinearizableReads {
    /// The property checked.
    pub const PROPERTY: &'static str = "linearizable_reads";

    /// A read `context` went to `node` when some node had applied up to `acknowledged`.
    pub fn on_issue(&mut self, context: u64, node: NodeId, acknowledged: LogIndex) {
        let previous = self.issued.insert(context, (node, acknowledged));
        debug_assert!(previous.is_none(), "contexts are unique");
    }

    /// `node` served read `context`, released at `read_index`, from its state
    /// machine at `state_index`.
    pub fn on_serve(
        &mut self,
        node: NodeId,
        context: u64,
        read_index: LogIndex,
        state_index: LogIndex,
    ) -> Result<(), Broken> {
        let broken = |detail: String| Err(Broken { property: Self::PROPERTY, detail });
        let Some((asked, acknowledged)) = self.issued.remove(&context) else {
            return broken(format!("n{node} served read {context}, which is not in flight"));
        };
        if asked != node {
            return broken(format!("n{node} served read {context}, which was asked of n{asked}"));
        }
        if read_index < acknowledged {
            return broken(format!(
                "n{node} released read {context} at index {read_index}, but index {acknowledged} was applied \
                 (acknowledged) before the read was issued: a stale read"
            ));
        }
        if state_index < read_index {
            return broken(format!(
                "n{node} served read {context} from state {state_index} below its index {read_index}"
            ));
        }
        self.served += 1;
        Ok(())
    }

    /// `node` failed read `context` (it stopped leading), or lost it in a crash.
    pub fn on_fail(&mut self, context: u64) {
        if self.issued.remove(&context).is_some() {
            self.failed += 1;
        }
    }

    /// Reads served so far.
    pub fn served(&self) -> u64 {
        self.served
    }

    /// Reads failed or lost so far.
    pub fn failed(&self) -> u64 {
        self.failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_that_misses_an_acknowledged_write_is_caught() {
        let mut reads = LinearizableReads::default();
        reads.on_issue(1, 2, 10);
        let broken = reads.on_serve(2, 1, 9, 12).unwrap_err();
        assert_eq!(broken.property, "linearizable_reads");
        assert!(broken.detail.contains("stale read"), "{}", broken.detail);
    }

    #[test]
    fn reads_at_or_past_the_acknowledged_index_pass_once() {
        let mut reads = LinearizableReads::default();
        reads.on_issue(1, 2, 10);
        reads.on_issue(2, 2, 10);
        assert!(reads.on_serve(2, 1, 10, 10).is_ok());
        assert!(reads.on_serve(2, 1, 10, 10).is_err(), "a read is served once");
        assert!(reads.on_serve(3, 2, 11, 11).is_err(), "only by the node asked");
        reads.on_issue(3, 2, 10);
        assert!(reads.on_serve(2, 3, 11, 10).is_err(), "from a state at its index");
        assert_eq!(reads.served(), 1);
    }
}

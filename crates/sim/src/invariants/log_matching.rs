//! Log matching (Raft §5.3, DESIGN.md §4.3): two logs holding an entry with the
//! same (index, term) are identical up to that entry.
//!
//! Each node's log is summarized by a chain of hashes, `chain[i] = H(chain[i-1],
//! entry i)`; the property holds iff every (index, term) ever seen maps to one
//! chain hash.

use std::collections::BTreeMap;

use conclave_core::{Entry, LogIndex, NodeId, Term};

use super::{entry_fingerprint, Broken};
use crate::trace::Fnv64;

/// The chain hashes of every node and the global (index, term) map.
#[derive(Debug, Default)]
pub struct LogMatching {
    chains: BTreeMap<NodeId, Vec<u64>>,
    seen: BTreeMap<(LogIndex, Term), (u64, NodeId)>,
}

impl LogMatching {
    /// The property checked.
    pub const PROPERTY: &'static str = "log_matching";

    /// `node`'s log changed from `first_index` on; `log` is its whole log now.
    pub fn on_log_changed(&mut self, node: NodeId, first_index: LogIndex, log: &[Entry]) -> Result<(), Broken> {
        let chain = self.chains.entry(node).or_default();
        chain.truncate(first_index.saturating_sub(1) as usize);
        for entry in &log[chain.len()..] {
            let mut hash = Fnv64::new();
            hash.write_u64(chain.last().copied().unwrap_or(0));
            hash.write_u64(entry_fingerprint(entry));
            let chained = hash.finish();
            chain.push(chained);
            match self.seen.get(&(entry.index, entry.term)) {
                Some((other_hash, other_node)) if *other_hash != chained => {
                    return Err(Broken {
                        property: Self::PROPERTY,
                        detail: format!(
                            "n{node} and n{other_node} hold an entry at index {} term {} but their logs differ at or before it",
                            entry.index, entry.term
                        ),
                    });
                }
                Some(_) => {}
                None => {
                    self.seen.insert((entry.index, entry.term), (chained, node));
                }
            }
        }
        debug_assert_eq!(chain.len(), log.len());
        Ok(())
    }

    /// `node` restarted with `log` as its whole log.
    pub fn on_restart(&mut self, node: NodeId, log: &[Entry]) -> Result<(), Broken> {
        self.chains.remove(&node);
        self.on_log_changed(node, 1, log)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_core::Payload;

    fn entry(term: Term, index: LogIndex, byte: u8) -> Entry {
        Entry { term, index, payload: Payload::Command(vec![byte]) }
    }

    #[test]
    fn fires_when_equal_index_and_term_follow_different_prefixes() {
        let mut checker = LogMatching::default();
        checker.on_log_changed(1, 1, &[entry(1, 1, 1), entry(2, 2, 2)]).unwrap();
        checker.on_log_changed(2, 1, &[entry(1, 1, 1), entry(2, 2, 2)]).unwrap();
        let broken = checker.on_log_changed(3, 1, &[entry(1, 1, 9), entry(2, 2, 2)]).unwrap_err();
        assert_eq!(broken.property, "log_matching");
    }

    #[test]
    fn truncation_and_rewrite_of_a_suffix_is_fine() {
        let mut checker = LogMatching::default();
        checker.on_log_changed(1, 1, &[entry(1, 1, 1), entry(1, 2, 2)]).unwrap();
        checker.on_log_changed(1, 2, &[entry(1, 1, 1), entry(3, 2, 5)]).unwrap();
        checker.on_log_changed(2, 1, &[entry(1, 1, 1), entry(3, 2, 5)]).unwrap();
    }
}

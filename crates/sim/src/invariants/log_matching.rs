//! Log matching (Raft §5.3, invariant 3 in docs/design/invariants.md): two logs holding an entry with the
//! same (index, term) are identical up to that entry.
//!
//! Each node's log is summarized by a chain of hashes, `chain[i] = H(chain[i-1],
//! entry i)`; the property holds iff every (index, term) ever seen maps to one
//! chain hash. A log that starts after a snapshot takes the chain hash of the
//! snapshot's last (index, term) as seen in the log that held that entry.

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

    /// `node`'s log changed from `first_index` on; `log` is every entry it
    /// still holds, from `log_start` (1 unless a snapshot replaced a prefix).
    pub fn on_log_changed(
        &mut self,
        node: NodeId,
        first_index: LogIndex,
        log_start: LogIndex,
        log: &[Entry],
    ) -> Result<(), Broken> {
        let chain = self.chains.entry(node).or_default();
        chain.truncate(first_index.saturating_sub(1) as usize);
        assert!(chain.len() as LogIndex + 1 >= log_start, "n{node}'s chain reaches its log");
        for entry in &log[(chain.len() as LogIndex + 1 - log_start) as usize..] {
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
        debug_assert_eq!(chain.len() as LogIndex, log_start - 1 + log.len() as LogIndex);
        Ok(())
    }

    /// `node` restarted with `log` as its log, after the snapshot ending at
    /// (`index`, `term`) if there is one.
    pub fn on_restart(
        &mut self,
        node: NodeId,
        snapshot: Option<(LogIndex, Term)>,
        log: &[Entry],
    ) -> Result<(), Broken> {
        self.chains.remove(&node);
        match snapshot {
            Some((index, term)) => self.on_snapshot(node, index, term, log),
            None => self.on_log_changed(node, 1, 1, log),
        }
    }

    /// `node`'s log now starts after a snapshot ending at (`index`, `term`),
    /// followed by `log`.
    pub fn on_snapshot(&mut self, node: NodeId, index: LogIndex, term: Term, log: &[Entry]) -> Result<(), Broken> {
        let Some((base, _)) = self.seen.get(&(index, term)).copied() else {
            return Err(Broken {
                property: Self::PROPERTY,
                detail: format!("n{node} holds a snapshot ending at index {index} term {term}, an entry no log held"),
            });
        };
        let chain = self.chains.entry(node).or_default();
        chain.clear();
        chain.resize(index as usize - 1, 0); // Compacted: never compared again.
        chain.push(base);
        self.on_log_changed(node, index + 1, index + 1, log)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_core::Payload;

    fn entry(term: Term, index: LogIndex, byte: u8) -> Entry {
        Entry { term, index, payload: Payload::Command(vec![byte].into()) }
    }

    #[test]
    fn fires_when_equal_index_and_term_follow_different_prefixes() {
        let mut checker = LogMatching::default();
        checker.on_log_changed(1, 1, 1, &[entry(1, 1, 1), entry(2, 2, 2)]).unwrap();
        checker.on_log_changed(2, 1, 1, &[entry(1, 1, 1), entry(2, 2, 2)]).unwrap();
        let broken = checker.on_log_changed(3, 1, 1, &[entry(1, 1, 9), entry(2, 2, 2)]).unwrap_err();
        assert_eq!(broken.property, "log_matching");
    }

    #[test]
    fn truncation_and_rewrite_of_a_suffix_is_fine() {
        let mut checker = LogMatching::default();
        checker.on_log_changed(1, 1, 1, &[entry(1, 1, 1), entry(1, 2, 2)]).unwrap();
        checker.on_log_changed(1, 2, 1, &[entry(1, 1, 1), entry(3, 2, 5)]).unwrap();
        checker.on_log_changed(2, 1, 1, &[entry(1, 1, 1), entry(3, 2, 5)]).unwrap();
    }

    #[test]
    fn a_log_after_a_snapshot_continues_the_chain_of_the_entry_it_ends_at() {
        let mut checker = LogMatching::default();
        checker.on_log_changed(1, 1, 1, &[entry(1, 1, 1), entry(1, 2, 2), entry(1, 3, 3)]).unwrap();
        checker.on_snapshot(2, 2, 1, &[entry(1, 3, 3)]).unwrap();
        assert!(checker.on_snapshot(3, 2, 1, &[entry(1, 3, 4)]).is_err(), "same (3, 1) after the same prefix");
        assert!(checker.on_snapshot(3, 2, 7, &[]).is_err(), "no log ever held (2, 7)");
    }
}

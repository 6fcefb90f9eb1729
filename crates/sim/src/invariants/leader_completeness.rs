//! Leader completeness (Raft §5.4, invariant 4 in docs/design/invariants.md): an entry committed in term
//! T is in the log of every leader of a term above T.
//!
//! Logs are passed with the index of their first entry: entries below it were
//! replaced by a snapshot of committed entries (whose equality with the one
//! applied sequence state machine safety checks), so they count as present.
//!
//! The term an entry was committed in is bounded above by the term of any node
//! that knows it committed; the checker keeps the smallest such term, which can
//! only make it check fewer leaders, never report a false violation.

use std::collections::BTreeMap;

use conclave_core::{Entry, LogIndex, NodeId, Term};

use super::{entry_fingerprint, Broken};

#[derive(Clone, Copy, Debug)]
struct Committed {
    entry_term: Term,
    fingerprint: u64,
    commit_term: Term,
}

/// Every entry known committed, with the term it was committed in.
#[derive(Debug, Default)]
pub struct LeaderCompleteness {
    committed: BTreeMap<LogIndex, Committed>,
}

impl LeaderCompleteness {
    /// The property checked.
    pub const PROPERTY: &'static str = "leader_completeness";

    /// `node`, in `term`, now knows its log committed up to `commit` (it knew
    /// up to `previous_commit` before); `log` starts at index `log_start`.
    /// `leaders` are the current leaders' logs, each with its start.
    pub fn on_commit(
        &mut self,
        node: NodeId,
        term: Term,
        previous_commit: LogIndex,
        commit: LogIndex,
        (log_start, log): (LogIndex, &[Entry]),
        leaders: &[(NodeId, Term, LogIndex, &[Entry])],
    ) -> Result<(), Broken> {
        let from = previous_commit.max(log_start - 1);
        let newly =
            if commit > from { &log[(from + 1 - log_start) as usize..(commit + 1 - log_start) as usize] } else { &[] };
        for entry in newly {
            let fingerprint = entry_fingerprint(entry);
            let record = self.committed.entry(entry.index).or_insert(Committed {
                entry_term: entry.term,
                fingerprint,
                commit_term: term,
            });
            if record.fingerprint != fingerprint {
                return Err(Broken {
                    property: Self::PROPERTY,
                    detail: format!(
                        "n{node} committed index {} term {} but index {} was committed with term {} before",
                        entry.index, entry.term, entry.index, record.entry_term
                    ),
                });
            }
            record.commit_term = record.commit_term.min(term);
            let record = *record;
            for (leader, leader_term, leader_start, leader_log) in leaders {
                if *leader_term > record.commit_term {
                    Self::require(*leader, *leader_term, (*leader_start, leader_log), entry.index, record)?;
                }
            }
        }
        Ok(())
    }

    /// `node` became leader of `term` with `log`, which starts at `log_start`.
    pub fn on_leader(&self, node: NodeId, term: Term, (log_start, log): (LogIndex, &[Entry])) -> Result<(), Broken> {
        for (index, record) in self.committed.range(log_start..) {
            if record.commit_term < term {
                Self::require(node, term, (log_start, log), *index, *record)?;
            }
        }
        Ok(())
    }

    fn require(
        node: NodeId,
        term: Term,
        (log_start, log): (LogIndex, &[Entry]),
        index: LogIndex,
        record: Committed,
    ) -> Result<(), Broken> {
        let present = index < log_start
            || log
                .get((index - log_start) as usize)
                .is_some_and(|entry| entry_fingerprint(entry) == record.fingerprint);
        if present {
            Ok(())
        } else {
            Err(Broken {
                property: Self::PROPERTY,
                detail: format!(
                    "leader n{node} of term {term} lacks index {index} (term {}), committed in term {}",
                    record.entry_term, record.commit_term
                ),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_core::Payload;

    fn entry(term: Term, index: LogIndex) -> Entry {
        Entry { term, index, payload: Payload::Noop }
    }

    #[test]
    fn fires_when_a_later_leader_lacks_a_committed_entry() {
        let mut checker = LeaderCompleteness::default();
        let log = [entry(1, 1), entry(1, 2)];
        checker.on_commit(1, 1, 0, 2, (1, &log), &[]).unwrap();
        checker.on_leader(2, 2, (1, &log)).unwrap();
        assert!(checker.on_leader(3, 3, (1, &log[..1])).is_err());
        // A leader of the same term as the commit is not bound by it.
        checker.on_leader(3, 1, (1, &log[..1])).unwrap();
        // Entries a snapshot replaced count as present.
        checker.on_leader(3, 3, (3, &[])).unwrap();
    }
}

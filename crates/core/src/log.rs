//! The in-memory replicated log, with the commit and apply cursors.
//!
//! Invariant: `applied <= committed <= last_index()`, entries are contiguous from
//! index 1, and their terms never decrease.

use crate::entry::{Entry, LeaderTermRecord};
use crate::types::{LogIndex, Term};

/// The log as the node currently sees it, persisted or not.
#[derive(Clone, Debug, Default)]
pub struct RaftLog {
    /// `entries[i]` has index `i + 1`.
    entries: Vec<Entry>,
    /// Highest index known to be committed.
    committed: LogIndex,
    /// Highest index handed to the state machine.
    applied: LogIndex,
    /// Lowest index changed since the last output batch, if any: the driver must
    /// rewrite the persisted log from there.
    dirty_from: Option<LogIndex>,
}

impl RaftLog {
    /// A log restored from durable storage; `committed` is the persisted commit
    /// index and `applied` how far the state machine already is.
    pub fn restore(entries: Vec<Entry>, committed: LogIndex, applied: LogIndex) -> RaftLog {
        RaftLog { entries, committed, applied, dirty_from: None }
    }

    /// Index of the last entry, 0 when the log is empty.
    pub fn last_index(&self) -> LogIndex {
        self.entries.len() as LogIndex
    }

    /// Term of the last entry, 0 when the log is empty.
    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(0, |entry| entry.term)
    }

    /// Term of the entry at `index`; `Some(0)` for index 0, `None` past the end.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == 0 {
            return Some(0);
        }
        self.entries.get(index as usize - 1).map(|entry| entry.term)
    }

    /// The entry at `index`, if present.
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        if index == 0 {
            return None;
        }
        self.entries.get(index as usize - 1)
    }

    /// Entries from `from` to the end, at most `max` of them.
    pub fn entries_from(&self, from: LogIndex, max: usize) -> &[Entry] {
        assert!(from >= 1, "log indexes start at 1");
        let start = (from as usize - 1).min(self.entries.len());
        let end = start.saturating_add(max).min(self.entries.len());
        &self.entries[start..end]
    }

    /// Every entry, oldest first.
    pub fn all(&self) -> &[Entry] {
        &self.entries
    }

    /// Highest committed index.
    pub fn committed(&self) -> LogIndex {
        self.committed
    }

    /// Highest applied index.
    pub fn applied(&self) -> LogIndex {
        self.applied
    }

    /// Raft §5.4.1: is a log ending at (`last_term`, `last_index`) at least as
    /// up-to-date as this one?
    pub fn is_up_to_date(&self, last_term: Term, last_index: LogIndex) -> bool {
        (last_term, last_index) >= (self.last_term(), self.last_index())
    }

    /// Appends one entry at the end; it must carry the next index.
    pub fn append(&mut self, entry: Entry) {
        assert_eq!(entry.index, self.last_index() + 1, "appended entries are contiguous");
        assert!(entry.term >= self.last_term(), "terms never decrease along the log");
        self.mark_dirty(entry.index);
        self.entries.push(entry);
    }

    /// Raft §5.3: stores `entries` (contiguous, following an entry that matches),
    /// skipping those already present and truncating the suffix at the first
    /// conflict. Never truncates a committed entry. Returns the index of the first
    /// conflict truncated, if any.
    pub fn merge(&mut self, entries: &[Entry]) -> Option<LogIndex> {
        let mut truncated_at = None;
        for entry in entries {
            match self.term_at(entry.index) {
                Some(term) if term == entry.term => continue,
                Some(_) => {
                    assert!(
                        entry.index > self.committed,
                        "conflict at committed index {} (committed {}): log matching is broken",
                        entry.index,
                        self.committed
                    );
                    self.entries.truncate(entry.index as usize - 1);
                    self.mark_dirty(entry.index);
                    truncated_at.get_or_insert(entry.index);
                    self.append(entry.clone());
                }
                None => self.append(entry.clone()),
            }
        }
        truncated_at
    }

    /// Advances the commit index; it never moves back.
    pub fn commit_to(&mut self, index: LogIndex) -> bool {
        assert!(index <= self.last_index(), "cannot commit {index} beyond the last index {}", self.last_index());
        if index > self.committed {
            self.committed = index;
            true
        } else {
            false
        }
    }

    /// Entries committed but not yet applied; marks them applied.
    pub fn take_committed_unapplied(&mut self) -> Vec<Entry> {
        if self.applied >= self.committed {
            return Vec::new();
        }
        let taken = self.entries[self.applied as usize..self.committed as usize].to_vec();
        self.applied = self.committed;
        taken
    }

    /// The lowest index rewritten since the last call, with the entries from there
    /// to the end; clears the mark.
    pub fn take_unpersisted(&mut self) -> Option<(LogIndex, Vec<Entry>)> {
        let from = self.dirty_from.take()?;
        let start = (from as usize - 1).min(self.entries.len());
        Some((from, self.entries[start..].to_vec()))
    }

    fn mark_dirty(&mut self, index: LogIndex) {
        self.dirty_from = Some(self.dirty_from.map_or(index, |from| from.min(index)));
    }

    /// The newest `BecomeLeader` in the log, committed or not (DESIGN.md §3.4: a
    /// candidate's leader term is one above it). A scan from the end: it runs once
    /// per won election, and a `BecomeLeader` heads every leader's entries.
    pub fn last_leader_term_record(&self) -> Option<LeaderTermRecord> {
        self.entries.iter().rev().find_map(Entry::leader_term_record)
    }

    /// The newest committed `BecomeLeader`: the leader term this node knows to be
    /// established. It never decreases (the commit index never does).
    pub fn committed_leader_term_record(&self) -> Option<LeaderTermRecord> {
        self.entries[..self.committed as usize].iter().rev().find_map(Entry::leader_term_record)
    }

    /// Checks the cursor invariants in O(1). Contiguity and non-decreasing terms
    /// are enforced by `append` itself; [`RaftLog::validate_entries`] re-checks
    /// them in full, for restored logs.
    pub fn validate(&self) -> Result<(), String> {
        if self.committed > self.last_index() {
            return Err(format!("committed {} > last index {}", self.committed, self.last_index()));
        }
        if self.applied > self.committed {
            return Err(format!("applied {} > committed {}", self.applied, self.committed));
        }
        if let Some(last) = self.entries.last() {
            if last.index != self.last_index() || self.entries[0].index != 1 {
                return Err(format!(
                    "entries span {}..={} in {} slots",
                    self.entries[0].index,
                    last.index,
                    self.entries.len()
                ));
            }
        }
        Ok(())
    }

    /// Checks every entry: contiguous from 1, terms at least 1 and never decreasing.
    pub fn validate_entries(&self) -> Result<(), String> {
        let mut previous_term = 0;
        for (position, entry) in self.entries.iter().enumerate() {
            if entry.index != position as LogIndex + 1 {
                return Err(format!("entry at position {position} has index {}", entry.index));
            }
            if entry.term < previous_term || entry.term == 0 {
                return Err(format!("entry {} has term {} after term {previous_term}", entry.index, entry.term));
            }
            previous_term = entry.term;
        }
        self.validate_leader_terms()?;
        self.validate()
    }

    /// Checks the `BecomeLeader` entries (DESIGN.md §3.4): leader terms 1, 2, 3, …
    /// with no hole along the log, each heading its ballot's entries.
    pub fn validate_leader_terms(&self) -> Result<(), String> {
        let mut previous: Option<LeaderTermRecord> = None;
        for record in self.entries.iter().filter_map(Entry::leader_term_record) {
            let expected = previous.map_or(1, |previous| previous.leader_term + 1);
            if record.leader_term != expected {
                return Err(format!(
                    "BecomeLeader at {} has leader term {}, expected {expected} (the previous one + 1)",
                    record.index, record.leader_term
                ));
            }
            if self.term_at(record.index - 1).is_some_and(|before| before >= record.ballot) {
                return Err(format!(
                    "BecomeLeader at {} (ballot {}) is not the first entry of its ballot",
                    record.index, record.ballot
                ));
            }
            previous = Some(record);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Payload;

    fn entry(term: Term, index: LogIndex) -> Entry {
        Entry { term, index, payload: Payload::Noop }
    }

    #[test]
    fn merge_skips_matching_entries_and_truncates_at_the_first_conflict() {
        let mut log = RaftLog::default();
        for (index, term) in [(1, 1), (2, 1), (3, 2)] {
            log.append(entry(term, index));
        }
        log.take_unpersisted();
        // A duplicate of entries already present changes nothing.
        assert_eq!(log.merge(&[entry(1, 2), entry(2, 3)]), None);
        assert_eq!(log.take_unpersisted(), None);
        // A conflict at index 3 replaces the suffix.
        assert_eq!(log.merge(&[entry(1, 2), entry(3, 3), entry(3, 4)]), Some(3));
        assert_eq!(log.last_index(), 4);
        assert_eq!(log.term_at(3), Some(3));
        let (from, rewritten) = log.take_unpersisted().expect("the suffix was rewritten");
        assert_eq!(from, 3);
        assert_eq!(rewritten, vec![entry(3, 3), entry(3, 4)]);
        log.validate_entries().expect("valid");
    }

    #[test]
    #[should_panic(expected = "log matching is broken")]
    fn merge_refuses_to_truncate_a_committed_entry() {
        let mut log = RaftLog::default();
        log.append(entry(1, 1));
        log.commit_to(1);
        log.merge(&[entry(2, 1)]);
    }

    #[test]
    fn up_to_date_compares_last_term_then_last_index() {
        let mut log = RaftLog::default();
        log.append(entry(1, 1));
        log.append(entry(2, 2));
        assert!(log.is_up_to_date(2, 2));
        assert!(log.is_up_to_date(3, 1));
        assert!(!log.is_up_to_date(2, 1));
        assert!(!log.is_up_to_date(1, 9));
    }

    #[test]
    fn committed_entries_are_handed_out_once() {
        let mut log = RaftLog::default();
        log.append(entry(1, 1));
        log.append(entry(1, 2));
        log.commit_to(1);
        assert_eq!(log.take_committed_unapplied(), vec![entry(1, 1)]);
        assert!(log.take_committed_unapplied().is_empty());
        log.commit_to(2);
        assert_eq!(log.take_committed_unapplied(), vec![entry(1, 2)]);
        assert!(!log.commit_to(1), "commit never moves back");
    }
}

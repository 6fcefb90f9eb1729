//! The in-memory replicated log, with the commit and apply cursors.
//!
//! The log starts after a snapshot base (Raft §7): entries run contiguously from
//! `first_index() = snapshot index + 1`; the entry at the snapshot index is known
//! only by its term, and the ones below are *compacted*.
//!
//! Invariant: `snapshot index <= applied <= committed <= last_index()`, entries
//! are contiguous after the snapshot base, and their terms never decrease.

use crate::entry::{Entry, LeaderTermRecord, Payload};
use crate::membership::Membership;
use crate::snapshot::SnapshotMeta;
use crate::types::{LogIndex, Term};

/// The log as the node currently sees it, persisted or not.
#[derive(Clone, Debug, Default)]
pub struct RaftLog {
    /// What the latest snapshot covers; `None` until the first one.
    snapshot: Option<SnapshotMeta>,
    /// `entries[i]` has index `snapshot_index() + 1 + i`.
    entries: Vec<Entry>,
    /// Highest index known to be committed.
    committed: LogIndex,
    /// Highest index handed to the state machine.
    applied: LogIndex,
    /// Lowest index changed since the last output batch, if any: the driver must
    /// rewrite the persisted log from there.
    dirty_from: Option<LogIndex>,
    /// Indexes of the held entries that are `BecomeLeader`s, ascending: the
    /// newest leader term at or below an index is found without scanning the
    /// log. A leader's one `BecomeLeader` heads its entries, so a scan would
    /// cost the whole retained log, and `Node::status` asks on every driver
    /// loop (it took three quarters of a leader's CPU under sustained load).
    leader_term_indexes: Vec<LogIndex>,
    /// Indexes of the held entries that are `Membership`s, ascending: a node
    /// acts on the latest one at every step (docs/design/membership.md).
    membership_indexes: Vec<LogIndex>,
}

/// The indexes of `entries` that carry a membership.
fn membership_indexes(entries: &[Entry]) -> Vec<LogIndex> {
    entries.iter().filter(|entry| matches!(entry.payload, Payload::Membership(_))).map(|entry| entry.index).collect()
}

/// The indexes of `entries` that carry a leader term record.
fn leader_term_indexes(entries: &[Entry]) -> Vec<LogIndex> {
    entries.iter().filter(|entry| entry.leader_term_record().is_some()).map(|entry| entry.index).collect()
}

impl RaftLog {
    /// A log restored from durable storage; `committed` is the persisted commit
    /// index and `applied` how far the state machine already is.
    pub fn restore(entries: Vec<Entry>, committed: LogIndex, applied: LogIndex) -> RaftLog {
        let leader_term_indexes = leader_term_indexes(&entries);
        let membership_indexes = membership_indexes(&entries);
        RaftLog {
            snapshot: None,
            entries,
            committed,
            applied,
            dirty_from: None,
            leader_term_indexes,
            membership_indexes,
        }
    }

    /// A log restored on top of a snapshot: `entries` follow its last index, and
    /// the state machine starts from the snapshot (applied = its last index).
    pub fn restore_with_snapshot(snapshot: SnapshotMeta, entries: Vec<Entry>, committed: LogIndex) -> RaftLog {
        let base = snapshot.last_included_index;
        let leader_term_indexes = leader_term_indexes(&entries);
        let membership_indexes = membership_indexes(&entries);
        RaftLog {
            snapshot: Some(snapshot),
            entries,
            committed: committed.max(base),
            applied: base,
            dirty_from: None,
            leader_term_indexes,
            membership_indexes,
        }
    }

    /// What the latest snapshot covers, if the log has one.
    pub fn snapshot(&self) -> Option<&SnapshotMeta> {
        self.snapshot.as_ref()
    }

    /// Last index the snapshot covers, 0 without one.
    pub fn snapshot_index(&self) -> LogIndex {
        self.snapshot.as_ref().map_or(0, |meta| meta.last_included_index)
    }

    fn snapshot_term(&self) -> Term {
        self.snapshot.as_ref().map_or(0, |meta| meta.last_included_term)
    }

    /// First index still held as an entry (the snapshot index + 1).
    pub fn first_index(&self) -> LogIndex {
        self.snapshot_index() + 1
    }

    /// Index of the last entry (the snapshot index if none follows it; 0 when
    /// the log is empty).
    pub fn last_index(&self) -> LogIndex {
        self.snapshot_index() + self.entries.len() as LogIndex
    }

    /// Term of the last entry (the snapshot's if none follows it), 0 when empty.
    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(self.snapshot_term(), |entry| entry.term)
    }

    /// Term of the entry at `index`: `Some(0)` for index 0, the snapshot's term at
    /// its last index, `None` past the end or below the snapshot (compacted).
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        let base = self.snapshot_index();
        if index == base {
            return Some(self.snapshot_term());
        }
        self.position(index).map(|position| self.entries[position].term)
    }

    /// Whether `index` is below the snapshot's last index: no entry and no term.
    pub fn is_compacted(&self, index: LogIndex) -> bool {
        index < self.snapshot_index()
    }

    fn position(&self, index: LogIndex) -> Option<usize> {
        let position = index.checked_sub(self.first_index())?;
        let position = usize::try_from(position).ok()?;
        (position < self.entries.len()).then_some(position)
    }

    /// The entry at `index`, if present (not compacted, not past the end).
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        self.position(index).map(|position| &self.entries[position])
    }

    /// Entries from `from` to the end, at most `max` of them. `from` must not be
    /// compacted.
    pub fn entries_from(&self, from: LogIndex, max: usize) -> &[Entry] {
        assert!(from >= self.first_index(), "entries from {from} are compacted (first index {})", self.first_index());
        let start = ((from - self.first_index()) as usize).min(self.entries.len());
        let end = start.saturating_add(max).min(self.entries.len());
        &self.entries[start..end]
    }

    /// Every entry still held, oldest first: from [`RaftLog::first_index`].
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
        if entry.leader_term_record().is_some() {
            self.leader_term_indexes.push(entry.index);
        }
        if matches!(entry.payload, Payload::Membership(_)) {
            self.membership_indexes.push(entry.index);
        }
        self.entries.push(entry);
    }

    /// Raft §5.3: stores `entries` (contiguous, following an entry that matches),
    /// skipping those already present and truncating the suffix at the first
    /// conflict. Never truncates a committed entry. Entries the snapshot covers
    /// are skipped (they are committed). Returns the index of the first conflict
    /// truncated, if any.
    pub fn merge(&mut self, entries: &[Entry]) -> Option<LogIndex> {
        let mut truncated_at = None;
        let base = self.snapshot_index();
        for entry in entries.iter().filter(|entry| entry.index > base) {
            match self.term_at(entry.index) {
                Some(term) if term == entry.term => continue,
                Some(_) => {
                    assert!(
                        entry.index > self.committed,
                        "conflict at committed index {} (committed {}): log matching is broken",
                        entry.index,
                        self.committed
                    );
                    let keep = (entry.index - self.first_index()) as usize;
                    self.entries.truncate(keep);
                    self.leader_term_indexes.retain(|index| *index < entry.index);
                    self.membership_indexes.retain(|index| *index < entry.index);
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
        let start = (self.applied + 1 - self.first_index()) as usize;
        let end = (self.committed + 1 - self.first_index()) as usize;
        let taken = self.entries[start..end].to_vec();
        self.applied = self.committed;
        taken
    }

    /// The lowest index rewritten since the last call, with the entries from there
    /// to the end; clears the mark.
    pub fn take_unpersisted(&mut self) -> Option<(LogIndex, Vec<Entry>)> {
        let from = self.dirty_from.take()?;
        assert!(from > self.snapshot_index(), "a rewrite at {from} below the snapshot base");
        let start = ((from - self.first_index()) as usize).min(self.entries.len());
        Some((from, self.entries[start..].to_vec()))
    }

    fn mark_dirty(&mut self, index: LogIndex) {
        self.dirty_from = Some(self.dirty_from.map_or(index, |from| from.min(index)));
    }

    /// Whether entries changed since the last output batch.
    pub fn has_unpersisted(&self) -> bool {
        self.dirty_from.is_some()
    }

    /// Compaction (Raft §7): the state machine was snapshotted at `upto`, an
    /// applied index above the current snapshot's; the entries up to it leave the
    /// log. Returns the new snapshot's metadata (the membership as of `upto`,
    /// `bootstrap` if the log names none) and the
    /// entries that left, for the caller to drop where that costs nothing:
    /// a log of hundreds of thousands of entries takes tens of milliseconds
    /// to free.
    pub fn compact(&mut self, upto: LogIndex, bootstrap: &Membership) -> (SnapshotMeta, Vec<Entry>) {
        assert!(upto <= self.applied, "compacting {upto} beyond the applied index {}", self.applied);
        assert!(upto > self.snapshot_index(), "compacting {upto} at or below the snapshot {}", self.snapshot_index());
        assert!(self.dirty_from.is_none_or(|from| from > upto), "compacting entries not yet handed out for persisting");
        let last_included_term = self.term_at(upto).expect("an applied index is in the log");
        let last_leader_term = self.leader_term_record_at_or_below(upto);
        let membership = self.membership_at_or_below(upto).map_or_else(|| bootstrap.clone(), |(_, held)| held.clone());
        let meta = SnapshotMeta { last_included_index: upto, last_included_term, membership, last_leader_term };
        let covered = (upto - self.snapshot_index()) as usize;
        // The kept suffix moves to a new vector; the compacted prefix keeps
        // the old one and is handed back whole, not freed entry by entry here.
        let kept = self.entries.split_off(covered);
        let released = std::mem::replace(&mut self.entries, kept);
        self.leader_term_indexes.retain(|index| *index > upto);
        self.membership_indexes.retain(|index| *index > upto);
        self.snapshot = Some(meta.clone());
        (meta, released)
    }

    /// Installs a snapshot from the leader (Raft §7): if the log holds the entry
    /// at its last index with its term, the entries after it stay; otherwise the
    /// whole log is discarded. Commit and applied move to its last index. Returns
    /// true if the log was discarded.
    pub fn install(&mut self, meta: SnapshotMeta) -> bool {
        let index = meta.last_included_index;
        assert!(index > self.committed, "installing snapshot {index} at or below the commit index {}", self.committed);
        let keeps_suffix = self.term_at(index) == Some(meta.last_included_term);
        if keeps_suffix {
            let covered = (index - self.snapshot_index()) as usize;
            self.entries.drain(..covered);
            self.leader_term_indexes.retain(|held| *held > index);
            self.membership_indexes.retain(|held| *held > index);
        } else {
            self.entries.clear();
            self.leader_term_indexes.clear();
            self.membership_indexes.clear();
        }
        // Whatever was rewritten but not yet handed out is either gone or above
        // the new base; the snapshot itself is persisted through `Output::snapshot`.
        self.dirty_from = self.dirty_from.filter(|from| *from > index && keeps_suffix);
        self.snapshot = Some(meta);
        self.committed = index;
        self.applied = index;
        !keeps_suffix
    }

    fn leader_term_record_at_or_below(&self, index: LogIndex) -> Option<LeaderTermRecord> {
        let below = self.leader_term_indexes.partition_point(|held| *held <= index);
        below
            .checked_sub(1)
            .map(|slot| {
                let at = self.leader_term_indexes[slot];
                self.entry(at).and_then(Entry::leader_term_record).expect("an indexed BecomeLeader is held")
            })
            .or_else(|| self.snapshot.as_ref().and_then(|meta| meta.last_leader_term))
    }

    /// What a snapshot of the state machine at `index` covers: `index` must
    /// be in the log or its base (the leader offering a snapshot made at
    /// its applied index, which may be above the base).
    pub fn meta_at(&self, index: LogIndex, bootstrap: &Membership) -> Option<SnapshotMeta> {
        let last_included_term = self.term_at(index)?;
        if index == 0 || index > self.applied {
            return None;
        }
        let last_leader_term = self.leader_term_record_at_or_below(index);
        let membership = self.membership_at_or_below(index).map_or_else(|| bootstrap.clone(), |(_, held)| held.clone());
        Some(SnapshotMeta { last_included_index: index, last_included_term, membership, last_leader_term })
    }

    /// The latest membership at or below `index`, with the index it took
    /// effect at: a held `Membership` entry, or the snapshot's (at its last
    /// index) if none is held there. `None` if the log names none (a cluster
    /// still on its bootstrap membership).
    pub fn membership_at_or_below(&self, index: LogIndex) -> Option<(LogIndex, &Membership)> {
        let below = self.membership_indexes.partition_point(|held| *held <= index);
        below
            .checked_sub(1)
            .map(|slot| {
                let at = self.membership_indexes[slot];
                match &self.entry(at).expect("an indexed membership is held").payload {
                    Payload::Membership(membership) => (at, membership),
                    _ => unreachable!("membership_indexes names only Membership entries"),
                }
            })
            .or_else(|| self.snapshot.as_ref().map(|meta| (meta.last_included_index, &meta.membership)))
    }

    /// The latest membership in the log, committed or not, and its index.
    pub fn latest_membership(&self) -> Option<(LogIndex, &Membership)> {
        self.membership_at_or_below(self.last_index())
    }

    /// The newest `BecomeLeader` in the log, committed or not (docs/design/leader-terms.md: a
    /// candidate's leader term is one above it); the snapshot's record if no
    /// `BecomeLeader` follows it. Found through `leader_term_indexes`, in
    /// O(log n) of the leader terms held.
    pub fn last_leader_term_record(&self) -> Option<LeaderTermRecord> {
        self.leader_term_record_at_or_below(self.last_index())
    }

    /// The newest committed `BecomeLeader`: the leader term this node knows to be
    /// established. It never decreases (the commit index never does); the
    /// snapshot, which only covers committed entries, carries it past compaction.
    pub fn committed_leader_term_record(&self) -> Option<LeaderTermRecord> {
        self.leader_term_record_at_or_below(self.committed)
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
        if self.applied < self.snapshot_index() {
            return Err(format!("applied {} below the snapshot index {}", self.applied, self.snapshot_index()));
        }
        if let (Some(first), Some(last)) = (self.entries.first(), self.entries.last()) {
            if last.index != self.last_index() || first.index != self.first_index() {
                return Err(format!(
                    "entries span {}..={} in {} slots after snapshot index {}",
                    first.index,
                    last.index,
                    self.entries.len(),
                    self.snapshot_index()
                ));
            }
        }
        Ok(())
    }

    /// Checks every entry: contiguous after the snapshot base, terms at least 1,
    /// never decreasing, and never below the snapshot's term.
    pub fn validate_entries(&self) -> Result<(), String> {
        let mut previous_term = self.snapshot_term();
        for (position, entry) in self.entries.iter().enumerate() {
            let expected = self.first_index() + position as LogIndex;
            if entry.index != expected {
                return Err(format!("entry at position {position} has index {}, expected {expected}", entry.index));
            }
            if entry.term < previous_term || entry.term == 0 {
                return Err(format!("entry {} has term {} after term {previous_term}", entry.index, entry.term));
            }
            previous_term = entry.term;
        }
        if self.leader_term_indexes != leader_term_indexes(&self.entries) {
            return Err(format!(
                "leader term index {:?} does not match the held BecomeLeader entries",
                self.leader_term_indexes
            ));
        }
        if self.membership_indexes != membership_indexes(&self.entries) {
            return Err(format!(
                "membership index {:?} does not match the held Membership entries",
                self.membership_indexes
            ));
        }
        self.validate_leader_terms()?;
        self.validate()
    }

    /// Checks the `BecomeLeader` entries (docs/design/leader-terms.md): leader terms 1, 2, 3, …
    /// with no hole along the log, each heading its ballot's entries. The
    /// expectation starts from the snapshot's last `BecomeLeader`, if any.
    pub fn validate_leader_terms(&self) -> Result<(), String> {
        let mut previous: Option<LeaderTermRecord> = self.snapshot.as_ref().and_then(|meta| meta.last_leader_term);
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

    fn snapshot_meta(index: LogIndex, term: Term, last_leader_term: Option<LeaderTermRecord>) -> SnapshotMeta {
        SnapshotMeta {
            last_included_index: index,
            last_included_term: term,
            membership: Membership::bootstrap(&[1, 2, 3], &Default::default()),
            last_leader_term,
        }
    }

    #[test]
    fn a_compacted_log_answers_from_its_snapshot_base() {
        // Reference: Raft §7 — the snapshot keeps the last included index and term.
        let mut log = RaftLog::default();
        for (index, term) in [(1, 1), (2, 1), (3, 2), (4, 2)] {
            log.append(entry(term, index));
        }
        log.take_unpersisted();
        log.commit_to(3);
        assert_eq!(log.take_committed_unapplied().len(), 3);
        let (meta, released) = log.compact(3, &Membership::bootstrap(&[1, 2, 3], &Default::default()));
        assert_eq!(meta, snapshot_meta(3, 2, None));
        assert_eq!(released, vec![entry(1, 1), entry(1, 2), entry(2, 3)], "the entries that left, in order");
        assert_eq!((log.first_index(), log.last_index(), log.last_term()), (4, 4, 2));
        assert_eq!((log.term_at(3), log.term_at(2), log.term_at(0)), (Some(2), None, None));
        assert_eq!(log.entries_from(4, 10), &[entry(2, 4)]);
        // Entries the snapshot covers are skipped by a merge; the rest is checked.
        assert_eq!(log.merge(&[entry(1, 2), entry(2, 3), entry(2, 4), entry(2, 5)]), None);
        assert_eq!(log.last_index(), 5);
        log.validate_entries().expect("valid");
        // Compacting everything leaves the base alone.
        log.take_unpersisted();
        log.commit_to(5);
        log.take_committed_unapplied();
        log.compact(5, &Membership::bootstrap(&[1, 2, 3], &Default::default()));
        assert_eq!((log.first_index(), log.last_index(), log.last_term(), log.all().len()), (6, 5, 2, 0));
    }

    #[test]
    fn an_installed_snapshot_keeps_a_matching_suffix_and_replaces_a_divergent_log() {
        // Reference: Raft §7 — "If existing log entry has same index and term as
        // snapshot's last included entry, retain log entries following it";
        // otherwise discard the entire log.
        let mut log = RaftLog::default();
        for (index, term) in [(1, 1), (2, 1), (3, 2), (4, 2)] {
            log.append(entry(term, index));
        }
        log.take_unpersisted();
        let mut matching = log.clone();
        assert!(!matching.install(snapshot_meta(3, 2, None)), "kept");
        assert_eq!(
            (matching.first_index(), matching.last_index(), matching.committed(), matching.applied()),
            (4, 4, 3, 3)
        );
        assert_eq!(matching.all(), &[entry(2, 4)]);
        assert!(log.install(snapshot_meta(3, 3, None)), "discarded: another term at index 3");
        assert_eq!((log.first_index(), log.last_index(), log.last_term()), (4, 3, 3));
        log.validate_entries().expect("valid");
    }

    #[test]
    fn the_leader_term_index_follows_truncation_compaction_and_install() {
        // Regression: the newest BecomeLeader was found by scanning the log from
        // its end, and `Node::status` asked on every driver loop: with one leader
        // and a long log, that scan was three quarters of the leader's CPU.
        let become_leader =
            |term, index, leader_term| Entry { term, index, payload: Payload::BecomeLeader { leader_term, leader: 1 } };
        let mut log = RaftLog::default();
        log.append(become_leader(1, 1, 1));
        for index in 2..=4 {
            log.append(entry(1, index));
        }
        log.append(become_leader(2, 5, 2));
        log.append(entry(2, 6));
        log.validate_entries().expect("valid");
        assert_eq!(log.last_leader_term_record().map(|record| record.leader_term), Some(2));
        // A conflict at 5 truncates the second BecomeLeader away.
        assert_eq!(log.merge(&[become_leader(3, 5, 2)]), Some(5));
        log.validate_entries().expect("valid after truncation");
        assert_eq!(log.last_leader_term_record().map(|record| (record.leader_term, record.index)), Some((2, 5)));
        log.commit_to(5);
        let _ = log.take_committed_unapplied();
        let _ = log.take_unpersisted();
        let (meta, _) = log.compact(3, &Membership::bootstrap(&[1], &Default::default()));
        assert_eq!(meta.last_leader_term.map(|record| record.leader_term), Some(1));
        log.validate_entries().expect("valid after compaction");
        assert_eq!(log.committed_leader_term_record().map(|record| record.leader_term), Some(2));
        assert_eq!(log.leader_term_record_at_or_below(4).map(|record| record.leader_term), Some(1));
        let record = LeaderTermRecord { leader_term: 7, leader: 2, ballot: 9, index: 20 };
        assert!(log.install(snapshot_meta(20, 9, Some(record))));
        log.validate_entries().expect("valid after install");
        assert_eq!(log.last_leader_term_record(), Some(record));
    }

    #[test]
    fn leader_terms_fall_back_to_the_snapshot_record() {
        // Reference: docs/design/leader-terms.md — the last BecomeLeader may only be in the
        // snapshot's metadata after compaction.
        let record = LeaderTermRecord { leader_term: 4, leader: 2, ballot: 3, index: 2 };
        let mut log = RaftLog::restore_with_snapshot(snapshot_meta(5, 3, Some(record)), vec![entry(3, 6)], 6);
        assert_eq!(log.last_leader_term_record(), Some(record));
        assert_eq!(log.committed_leader_term_record(), Some(record));
        log.validate_entries().expect("valid");
        let next = Entry { term: 5, index: 7, payload: Payload::BecomeLeader { leader_term: 5, leader: 1 } };
        log.append(next.clone());
        assert_eq!(log.last_leader_term_record(), next.leader_term_record());
        assert_eq!(log.committed_leader_term_record(), Some(record), "not committed yet");
        log.validate_leader_terms().expect("5 follows 4");
        let restored = RaftLog::restore_with_snapshot(
            snapshot_meta(5, 3, Some(record)),
            vec![Entry { term: 5, index: 6, payload: Payload::BecomeLeader { leader_term: 6, leader: 1 } }],
            5,
        );
        assert!(restored.validate_leader_terms().unwrap_err().contains("expected 5"));
    }
}

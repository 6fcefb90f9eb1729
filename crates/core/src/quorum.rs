//! Majority arithmetic, kept apart so that it is tested on its own.

use std::collections::BTreeMap;

use crate::types::{LogIndex, NodeId};

/// Smallest number of members that is strictly more than half of `voters`.
pub fn majority(voters: usize) -> usize {
    voters / 2 + 1
}

/// The highest index that at least a majority of `match_indexes` have reached.
///
/// `match_indexes` holds one value per voter (the leader's own last index
/// included). Sorting descending, the value at position `majority - 1` is held by
/// a majority.
pub fn committed_index(match_indexes: &mut [LogIndex]) -> LogIndex {
    assert!(!match_indexes.is_empty(), "a cluster has at least one voter");
    match_indexes.sort_unstable_by(|a, b| b.cmp(a));
    match_indexes[majority(match_indexes.len()) - 1]
}

/// Outcome of counting votes so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    /// A majority granted.
    Won,
    /// A majority refused: no outcome can win any more.
    Lost,
    /// Neither yet.
    Pending,
}

/// Votes received in one election round, at most one per voter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VoteTally {
    votes: BTreeMap<NodeId, bool>,
}

impl VoteTally {
    /// Records `voter`'s answer; a repeated answer from the same voter (a
    /// duplicated message) does not count twice, and the first answer stands.
    pub fn record(&mut self, voter: NodeId, granted: bool) {
        self.votes.entry(voter).or_insert(granted);
    }

    /// Counts the votes against a cluster of `voters` members.
    pub fn result(&self, voters: usize) -> VoteResult {
        let granted = self.votes.values().filter(|granted| **granted).count();
        let refused = self.votes.len() - granted;
        if granted >= majority(voters) {
            VoteResult::Won
        } else if refused > voters - majority(voters) {
            VoteResult::Lost
        } else {
            VoteResult::Pending
        }
    }

    /// Every voter that answered, granting or not.
    pub fn answered(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.votes.keys().copied()
    }

    /// Number of votes granted so far.
    pub fn granted(&self) -> usize {
        self.votes.values().filter(|granted| **granted).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_is_strictly_more_than_half() {
        assert_eq!(majority(1), 1);
        assert_eq!(majority(2), 2);
        assert_eq!(majority(3), 2);
        assert_eq!(majority(4), 3);
        assert_eq!(majority(5), 3);
        assert_eq!(majority(7), 4);
    }

    #[test]
    fn committed_index_is_held_by_a_majority() {
        assert_eq!(committed_index(&mut [5, 1, 3]), 3);
        assert_eq!(committed_index(&mut [5, 5, 1, 1, 1]), 1);
        assert_eq!(committed_index(&mut [9, 8, 7, 1, 1]), 7);
        assert_eq!(committed_index(&mut [4]), 4);
    }

    #[test]
    fn tally_counts_each_voter_once() {
        let mut tally = VoteTally::default();
        tally.record(1, true);
        tally.record(1, true);
        assert_eq!(tally.result(3), VoteResult::Pending);
        tally.record(2, false);
        tally.record(2, true);
        assert_eq!(tally.result(3), VoteResult::Pending);
        tally.record(3, true);
        assert_eq!(tally.result(3), VoteResult::Won);
    }

    #[test]
    fn tally_loses_once_a_majority_refuses() {
        let mut tally = VoteTally::default();
        tally.record(1, true);
        tally.record(2, false);
        tally.record(3, false);
        assert_eq!(tally.result(5), VoteResult::Pending);
        tally.record(4, false);
        assert_eq!(tally.result(5), VoteResult::Lost);
    }
}

//! Did the newest data win each election, and if not, why: the audit behind
//! `up_to_date_winner_ratio` and `not_newest_by_cause` (docs/design/simulator.md,
//! docs/decisions/0078-every-miss-of-the-newest-data-has-a-cause.md).
//!
//! An audit spans one election, from the first node that starts one to the
//! next leader. It records what the simulator sees from outside the nodes:
//! each node's data version when the election started, who crashed, restarted
//! or abstained during it, who took part, and whose own vote reached whom
//! before that receiver bound its vote. When a winner's data was not the
//! newest, the first cause that fits is the verdict.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use conclave_core::{LogIndex, NodeId, Term};

/// A data version: (last log term, last log index).
pub type Version = (Term, LogIndex);

/// Why a winner did not hold the newest data, in the order they are tested.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MissCause {
    /// Every node with the newest data crashed (and came back) during the
    /// election: while it was down nobody could wait for it.
    NewestCrashedDuringRound,
    /// The newest node had lost its data and abstained, or started from an
    /// empty data dir and was not yet caught up: it may not be elected.
    NewestAbstaining,
    /// The newest version was in the newest node's memory only: not yet
    /// durable on its disk when the election started.
    NewestNotDurable,
    /// The newest node never took part in the round (it still followed the
    /// old leader, or was bound elsewhere) before a quorum bound its votes.
    NewestNotInRound,
    /// The newest node voted, but its own vote reached fewer than a quorum of
    /// the nodes before they bound their votes (latency: it came too late).
    NewestVoteTooLate,
    /// A quorum heard the newest node's own vote before binding, and a rule
    /// of the protocol chose another winner (in `raft`/`gapless`: any log at
    /// least as up to date as a majority's wins by design).
    RuleChoseOtherwise,
}

impl MissCause {
    /// Every cause, in test order.
    pub const ALL: [MissCause; 6] = [
        MissCause::NewestCrashedDuringRound,
        MissCause::NewestAbstaining,
        MissCause::NewestNotDurable,
        MissCause::NewestNotInRound,
        MissCause::NewestVoteTooLate,
        MissCause::RuleChoseOtherwise,
    ];

    /// The name in `not_newest_by_cause` and in traces.
    pub fn name(self) -> &'static str {
        match self {
            MissCause::NewestCrashedDuringRound => "newest_crashed_during_round",
            MissCause::NewestAbstaining => "newest_abstaining",
            MissCause::NewestNotDurable => "newest_not_durable",
            MissCause::NewestNotInRound => "newest_not_in_round",
            MissCause::NewestVoteTooLate => "newest_vote_too_late",
            MissCause::RuleChoseOtherwise => "rule_chose_otherwise",
        }
    }

    /// Whether no rule of ours can avoid it (docs/decisions/0078): the
    /// protocol cannot know data it was never shown in time, and must not
    /// elect data that may be gone.
    pub fn unavoidable(self) -> bool {
        !matches!(self, MissCause::RuleChoseOtherwise | MissCause::NewestNotInRound)
    }
}

impl fmt::Display for MissCause {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// The judgement of one won election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The winner's data version when the election started (or now, if it
    /// was not in the majority side then).
    pub winner_version: Option<Version>,
    /// The newest version among the eligible nodes.
    pub newest: Option<Version>,
    /// The newest version among the electable nodes (eligible, minus those
    /// that abstained or crashed during the election).
    pub newest_electable: Option<Version>,
    /// `None` if the winner had the newest eligible data, else why not.
    pub miss: Option<MissCause>,
}

impl Verdict {
    /// Whether the winner had the newest data of the eligible nodes.
    pub fn up_to_date(&self) -> bool {
        self.miss.is_none()
    }

    /// Whether the winner had the newest data of the electable nodes.
    pub fn up_to_date_among_electable(&self) -> bool {
        self.winner_version.is_some() && self.winner_version >= self.newest_electable
    }
}

/// One election in progress, watched from outside the nodes.
#[derive(Clone, Debug)]
pub struct ElectionAudit {
    /// When the first node started the election.
    pub started_at_ms: u64,
    /// Data version of each node alive in the majority side at the start,
    /// raised as its log grows until it binds its vote: the old leader's
    /// appends still in flight land during the round, and a vote is given
    /// against the data a node holds when it binds.
    versions: BTreeMap<NodeId, Version>,
    /// Nodes whose version at the start was durable on their disk.
    durable: BTreeSet<NodeId>,
    crashed: BTreeSet<NodeId>,
    abstained: BTreeSet<NodeId>,
    /// Nodes that started looking (voting) during the election.
    looked: BTreeSet<NodeId>,
    /// Nodes that bound their vote during the election.
    bound: BTreeSet<NodeId>,
    /// sender -> the nodes that received its vote for itself before binding.
    own_vote_heard_by: BTreeMap<NodeId, BTreeSet<NodeId>>,
}

impl ElectionAudit {
    /// An election starting at `now_ms`: `versions` of the nodes alive in the
    /// majority side, and which of them hold that version durably.
    pub fn start(now_ms: u64, versions: BTreeMap<NodeId, Version>, durable: BTreeSet<NodeId>) -> ElectionAudit {
        debug_assert!(durable.iter().all(|id| versions.contains_key(id)));
        ElectionAudit {
            started_at_ms: now_ms,
            versions,
            durable,
            crashed: BTreeSet::new(),
            abstained: BTreeSet::new(),
            looked: BTreeSet::new(),
            bound: BTreeSet::new(),
            own_vote_heard_by: BTreeMap::new(),
        }
    }

    /// The versions at the start, for the trace.
    pub fn versions(&self) -> &BTreeMap<NodeId, Version> {
        &self.versions
    }

    /// `node` now holds `version`: counts if it was on the majority side at
    /// the start and has not bound its vote yet.
    pub fn on_version(&mut self, node: NodeId, version: Version) {
        if self.bound.contains(&node) {
            return;
        }
        if let Some(known) = self.versions.get_mut(&node) {
            *known = (*known).max(version);
        }
    }

    /// `node` started looking (a vote-exchange round or a Raft campaign).
    pub fn on_looking(&mut self, node: NodeId) {
        self.looked.insert(node);
    }

    /// `node` bound its vote (a finalized vote).
    pub fn on_bound(&mut self, node: NodeId) {
        self.bound.insert(node);
    }

    /// `to` received `from`'s vote naming `from` itself.
    pub fn on_own_vote_delivered(&mut self, from: NodeId, to: NodeId) {
        self.looked.insert(from);
        if !self.bound.contains(&to) {
            self.own_vote_heard_by.entry(from).or_default().insert(to);
        }
    }

    /// `node` crashed.
    pub fn on_crash(&mut self, node: NodeId) {
        self.crashed.insert(node);
    }

    /// `node` abstained after data loss, or restarted from an empty data dir.
    pub fn on_abstain(&mut self, node: NodeId) {
        self.abstained.insert(node);
    }

    /// Judges the election `winner` won. `alive_now` holds the nodes alive in
    /// the majority side now (with their versions now): the eligible nodes are
    /// those alive there at the start and now. `quorum` is a majority of the
    /// members.
    pub fn judge(&self, winner: NodeId, alive_now: &BTreeMap<NodeId, Version>, quorum: usize) -> Verdict {
        let eligible: BTreeMap<NodeId, Version> = alive_now
            .iter()
            .filter_map(|(id, now)| match self.versions.get(id) {
                Some(at_start) => Some((*id, *at_start)),
                // A winner that was not in the majority side at the start (it
                // restarted since) is judged by its data now.
                None if *id == winner => Some((*id, *now)),
                None => None,
            })
            .collect();
        let winner_version = eligible.get(&winner).copied();
        let newest = eligible.values().copied().max();
        let electable = |id: &NodeId| !self.abstained.contains(id) && !self.crashed.contains(id);
        let newest_electable =
            eligible.iter().filter(|(id, _)| **id == winner || electable(id)).map(|(_, version)| *version).max();
        let miss = if winner_version.is_some() && winner_version >= newest {
            None
        } else {
            let holders: Vec<NodeId> =
                eligible.iter().filter(|(_, version)| Some(**version) == newest).map(|(id, _)| *id).collect();
            Some(self.cause(&holders, quorum))
        };
        Verdict { winner_version, newest, newest_electable, miss }
    }

    /// The first cause that fits every node holding the newest data.
    fn cause(&self, holders: &[NodeId], quorum: usize) -> MissCause {
        debug_assert!(!holders.is_empty(), "a miss has a newest node");
        let all = |test: &dyn Fn(&NodeId) -> bool| holders.iter().all(test);
        if all(&|id| self.crashed.contains(id)) {
            MissCause::NewestCrashedDuringRound
        } else if all(&|id| self.abstained.contains(id)) {
            MissCause::NewestAbstaining
        } else if all(&|id| !self.durable.contains(id)) {
            MissCause::NewestNotDurable
        } else if all(&|id| !self.looked.contains(id)) {
            MissCause::NewestNotInRound
        } else if all(&|id| self.own_vote_heard_by.get(id).map_or(0, BTreeSet::len) + 1 < quorum) {
            MissCause::NewestVoteTooLate
        } else {
            MissCause::RuleChoseOtherwise
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audit() -> ElectionAudit {
        let versions = BTreeMap::from([(1, (2, 10)), (2, (2, 9)), (3, (2, 9))]);
        ElectionAudit::start(0, versions, BTreeSet::from([1, 2, 3]))
    }

    #[test]
    fn the_newest_winner_is_no_miss() {
        let alive = BTreeMap::from([(1, (2, 10)), (2, (2, 9)), (3, (2, 9))]);
        let verdict = audit().judge(1, &alive, 2);
        assert!(verdict.up_to_date() && verdict.up_to_date_among_electable());
    }

    #[test]
    fn causes_are_tested_in_order() {
        let alive = BTreeMap::from([(1, (2, 10)), (2, (2, 9)), (3, (2, 9))]);
        let mut audit = audit();
        assert_eq!(audit.judge(2, &alive, 2).miss, Some(MissCause::NewestNotInRound));
        audit.on_looking(1);
        assert_eq!(audit.judge(2, &alive, 2).miss, Some(MissCause::NewestVoteTooLate));
        audit.on_own_vote_delivered(1, 3);
        assert_eq!(audit.judge(2, &alive, 2).miss, Some(MissCause::RuleChoseOtherwise));
        audit.on_crash(1);
        let verdict = audit.judge(2, &alive, 2);
        assert_eq!(verdict.miss, Some(MissCause::NewestCrashedDuringRound));
        assert!(verdict.up_to_date_among_electable(), "a node that crashed during the round is not electable");
    }

    #[test]
    fn a_vote_heard_after_binding_does_not_count() {
        let alive = BTreeMap::from([(1, (2, 10)), (2, (2, 9)), (3, (2, 9))]);
        let mut audit = audit();
        audit.on_bound(3);
        audit.on_own_vote_delivered(1, 3);
        assert_eq!(audit.judge(2, &alive, 2).miss, Some(MissCause::NewestVoteTooLate));
    }
}

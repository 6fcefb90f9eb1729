//! Membership changes (docs/design/membership.md): one at a time, each
//! moving at most one voter, acted on from the moment the entry is in a log.

use thiserror::Error;

use super::{Node, Proposal};
use crate::entry::Payload;
use crate::membership::{InvalidChange, MembershipChange};
use crate::output::Event;
use crate::progress::Progress;
use crate::status::Role;
use crate::types::{LogIndex, NodeId, Term};

/// Why a membership change was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChangeError {
    /// Only the leader changes the membership.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this node knows, if any.
        leader: Option<NodeId>,
    },
    /// A leader-elect, or a leader whose own term has nothing committed yet:
    /// a change before that could conflict with one an earlier leader left
    /// uncommitted (the single-server change bug found in 2015).
    #[error("the leader of ballot {ballot} has not committed an entry of its own term yet")]
    NotYetServing {
        /// The ballot it leads.
        ballot: Term,
    },
    /// The previous change has not committed.
    #[error("a membership change is in progress (index {index} not committed yet)")]
    InProgress {
        /// Where the uncommitted change sits.
        index: LogIndex,
    },
    /// A leader transfer is in progress.
    #[error("handing leadership over to node {target}")]
    Transferring {
        /// The voter that is to lead.
        target: NodeId,
    },
    /// The change itself is impossible.
    #[error(transparent)]
    Invalid(#[from] InvalidChange),
    /// The learner is too far behind to vote.
    #[error(
        "node {id} is not caught up: it holds index {match_index}, the leader {last_index} (at most {max_lag} behind)"
    )]
    NotCaughtUp {
        /// The learner.
        id: NodeId,
        /// What it holds.
        match_index: LogIndex,
        /// The leader's last index.
        last_index: LogIndex,
        /// `Config::max_promotion_lag`.
        max_lag: u64,
    },
    /// The leader cannot remove itself: it hands over first.
    #[error("node {0} leads: hand leadership over before removing it")]
    RemovesLeader(NodeId),
}

impl Node {
    /// Proposes `change` as the next membership (docs/design/membership.md). It
    /// takes effect here at once, and at each member once in its log; the
    /// caller learns it committed when the returned entry does. Refused unless
    /// this node leads, serves, has committed an entry of its own term and the
    /// previous change committed.
    pub fn change_membership(&mut self, change: MembershipChange) -> Result<Proposal, ChangeError> {
        if self.role != Role::Leader {
            return Err(ChangeError::NotLeader { leader: self.leader });
        }
        if !self.serving || self.log.term_at(self.log.committed()) != Some(self.term) {
            return Err(ChangeError::NotYetServing { ballot: self.term });
        }
        if let Some(transfer) = &self.transfer {
            return Err(ChangeError::Transferring { target: transfer.target });
        }
        if self.membership_at.0 > self.log.committed() {
            return Err(ChangeError::InProgress { index: self.membership_at.0 });
        }
        if let MembershipChange::Remove { id } = change {
            if id == self.config.id {
                return Err(ChangeError::RemovesLeader(id));
            }
        }
        let next = self.membership.apply(&change)?;
        if let MembershipChange::Promote { id } = change {
            let match_index = self.progress.get(&id).map_or(0, |progress| progress.match_index);
            let last_index = self.log.last_index();
            let max_lag = self.config.max_promotion_lag;
            if match_index == 0 || match_index.saturating_add(max_lag) < last_index {
                return Err(ChangeError::NotCaughtUp { id, match_index, last_index, max_lag });
            }
        }
        let index = self.append_as_leader(Payload::Membership(next));
        Ok(Proposal { index, term: self.term, output: self.finish() })
    }

    /// The index of the latest membership in the log (0 for the bootstrap
    /// membership), and whether it committed.
    pub fn membership_index(&self) -> (LogIndex, bool) {
        (self.membership_at.0, self.membership_at.0 <= self.log.committed())
    }

    /// The membership this node acts on: the latest in its log, committed or
    /// not, or the configuration's bootstrap membership if the log names none.
    pub fn membership(&self) -> &crate::membership::Membership {
        &self.membership
    }

    /// Whether `id` was removed by a membership this node knows committed:
    /// its messages are dropped. Not by an uncommitted one: that removal may
    /// yet be replaced by a leader that kept `id`, and this node must hear
    /// that leader to learn it.
    pub(crate) fn removed_for_good(&self, id: NodeId) -> bool {
        let committed = self.log.membership_at_or_below(self.log.committed()).map_or(&self.bootstrap, |(_, held)| held);
        committed.removed.contains(&id)
    }

    /// Adopts the latest membership in the log after it may have changed (an
    /// append, a truncation, a snapshot). A leader starts or stops tracking
    /// the members that came or went.
    pub(crate) fn refresh_membership(&mut self) {
        let (at, latest) = match self.log.latest_membership() {
            Some((index, membership)) => {
                let term = self.log.term_at(index).expect("a membership's index is held or is the base");
                ((index, term), membership)
            }
            None => ((0, 0), &self.bootstrap),
        };
        if at == self.membership_at {
            return;
        }
        let changed = *latest != self.membership;
        self.membership_at = at;
        if !changed {
            return; // The same membership, now found elsewhere (compaction).
        }
        self.membership = latest.clone();
        self.voters = self.membership.voters();
        if self.role == Role::Leader {
            assert!(self.is_voter(), "a leader never changes itself out of the voters");
            let (last_index, now_ms) = (self.log.last_index(), self.now_ms);
            for peer in self.replication_peers() {
                self.progress.entry(peer).or_insert_with(|| Progress::new(last_index, now_ms));
            }
            let membership = &self.membership;
            self.progress.retain(|id, _| membership.contains(*id));
            self.outgoing_snapshots.retain(|id, _| membership.contains(*id));
        } else if self.role == Role::Candidate && !self.is_voter() {
            self.become_follower(self.term, None);
        }
        self.emit(Event::MembershipChanged {
            index: at.0,
            voters: self.voters.clone(),
            learners: self.membership.learners(),
        });
    }
}

//! Leader transfer (Raft thesis §3.10): the leader hands its leadership to a
//! named voter, or to the most up-to-date one, without anyone waiting out an
//! election timeout (docs/decisions/0099).
//!
//! The leader stops taking proposals, waits until the target holds its whole
//! log, then sends it `TimeoutNow`:
//! - Raft campaigns (`raft`, `gapless`): the target campaigns at once, without
//!   PreVote, and its vote requests say they come from a hand-over, so voters
//!   that still hear the leader grant them anyway. The old leader keeps
//!   leading (and refusing proposals) until the higher term reaches it.
//! - The vote exchange (`fast`, `conclave`): the target declares the leader
//!   objectively down, as a majority of reports would, and opens the round.
//!   The newest data wins a round, so the leader first appends one entry and
//!   sends it to the target alone: the target is then strictly the newest
//!   among the nodes that vote. The old leader steps down and stays out of the
//!   elections for one election timeout: with the same log as the target, it
//!   could win the round itself.
//!
//! In every mode the winner's term is the next ballot and, with leader terms,
//! its `BecomeLeader` carries the previous leader term + 1: a hand-over is an
//! election like a failover, without the wait. A target that does not catch
//! up within an election timeout, or a campaign that does not win in it, ends
//! the transfer: the leader takes proposals again.

use thiserror::Error;

use super::Node;
use crate::entry::Payload;
use crate::message::Body;
use crate::output::{Event, Output};
use crate::status::Role;
use crate::types::{LogIndex, NodeId, Term};

/// A hand-over in progress at the leader.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Transfer {
    /// The voter that is to lead.
    pub(crate) target: NodeId,
    /// The hand-over gives up at this time.
    pub(crate) deadline_ms: u64,
    /// The target must hold the log up to here before `TimeoutNow`.
    pub(crate) needed: LogIndex,
    /// Vote exchange: the entry only the target gets; the others get the log
    /// up to the one before it.
    pub(crate) marker: Option<LogIndex>,
    /// `TimeoutNow` was sent (Raft campaigns: the leader waits for the higher term).
    pub(crate) handed_over: bool,
}

/// Why [`Node::transfer_leadership`] refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TransferError {
    /// Only the leader hands over; `leader` is the one this node knows, if any.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this node knows.
        leader: Option<NodeId>,
    },
    /// A leader-elect whose `BecomeLeader` has not committed yet.
    #[error("leader-elect of ballot {ballot}: it hands over once it serves")]
    NotYetServing {
        /// The ballot it won.
        ballot: Term,
    },
    /// One transfer at a time.
    #[error("a transfer to node {target} is in progress")]
    InProgress {
        /// Its target.
        target: NodeId,
    },
    /// The target is not a voter of this cluster.
    #[error("node {target} is not a voter of this cluster")]
    UnknownTarget {
        /// The id asked for.
        target: NodeId,
    },
    /// The target leads already.
    #[error("node {target} leads already")]
    AlreadyLeader {
        /// This node.
        target: NodeId,
    },
    /// A single-voter cluster has nobody to hand over to.
    #[error("no other voter to hand over to")]
    NoOtherVoter,
    /// With two voters the vote exchange cannot elect the target while the
    /// old leader stays out: its quorum is both of them.
    #[error("the vote exchange hands over only with three voters or more (a failover elects with two)")]
    TooFewVoters,
}

/// A transfer that started.
#[derive(Debug)]
pub struct TransferStarted {
    /// The voter that is to lead.
    pub target: NodeId,
    /// The batch to persist and send.
    pub output: Output,
}

impl Node {
    /// Hands leadership over to `target`, or, with `None`, to the voter whose
    /// log is the most complete (the lowest id among equals). The leader
    /// refuses proposals from now until the transfer ends: a new leader is
    /// elected, or it gives up after an election timeout
    /// ([`Event::TransferEnded`]).
    pub fn transfer_leadership(&mut self, target: Option<NodeId>) -> Result<TransferStarted, TransferError> {
        let target = self.start_transfer(target)?;
        Ok(TransferStarted { target, output: self.finish() })
    }

    /// A leader of priority 0 (docs/design/membership.md) hands over to a
    /// caught-up voter of higher priority, at most once per election timeout:
    /// it led only because no one else could.
    pub(crate) fn leave_priority_zero(&mut self) {
        if self.role != Role::Leader
            || !self.serving
            || self.transfer.is_some()
            || self.membership.priority(self.config.id) != 0
            || self.now_ms < self.priority_handover_after_ms
        {
            return;
        }
        let last_index = self.log.last_index();
        let caught_up = self.progress.iter().any(|(id, progress)| {
            self.membership.is_voter(*id) && self.membership.priority(*id) > 0 && progress.match_index == last_index
        });
        if !caught_up {
            return;
        }
        self.priority_handover_after_ms = self.now_ms + 2 * self.config.election_timeout_ms();
        let best = self.most_complete_follower();
        if best.is_some_and(|best| self.membership.priority(best) > 0) {
            let _ = self.start_transfer(best);
        }
    }

    /// `transfer_leadership` without closing the input: the target it started
    /// handing over to.
    fn start_transfer(&mut self, target: Option<NodeId>) -> Result<NodeId, TransferError> {
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader { leader: self.leader });
        }
        if !self.serving {
            return Err(TransferError::NotYetServing { ballot: self.term });
        }
        if let Some(transfer) = &self.transfer {
            return Err(TransferError::InProgress { target: transfer.target });
        }
        let exchanges_votes = self.config.election_mode.exchanges_votes();
        let target = match target {
            Some(target) if target == self.config.id => return Err(TransferError::AlreadyLeader { target }),
            Some(target) if !self.voters.contains(&target) => return Err(TransferError::UnknownTarget { target }),
            Some(target) => target,
            None => self.most_complete_follower().ok_or(TransferError::NoOtherVoter)?,
        };
        if exchanges_votes && self.voters.len() < 3 {
            return Err(TransferError::TooFewVoters);
        }
        let (needed, marker) = if exchanges_votes {
            // Nothing commits on the leader's word alone here (three voters
            // or more): the target's answer does the rest.
            let marker = self.append_entry_as_leader(Payload::Noop);
            (marker, Some(marker))
        } else {
            (self.log.last_index(), None)
        };
        let deadline_ms = self.now_ms + self.config.election_timeout_ms();
        self.transfer = Some(Transfer { target, deadline_ms, needed, marker, handed_over: false });
        self.emit(Event::TransferStarted { target, term: self.term });
        self.send_append(target);
        self.maybe_hand_over();
        Ok(target)
    }

    /// The voter with the highest match index; among equals the highest
    /// priority, then the lowest id.
    pub(crate) fn most_complete_follower(&self) -> Option<NodeId> {
        self.progress
            .iter()
            .filter(|(id, _)| self.membership.is_voter(**id))
            .max_by_key(|(id, progress)| {
                (progress.match_index, self.membership.priority(**id), std::cmp::Reverse(**id))
            })
            .map(|(id, _)| *id)
    }

    /// The highest index `to` may be sent while a transfer holds back the
    /// marker from everyone but its target.
    pub(crate) fn transfer_send_limit(&self, to: NodeId) -> Option<LogIndex> {
        let transfer = self.transfer.as_ref()?;
        let marker = transfer.marker?;
        (to != transfer.target).then(|| marker - 1)
    }

    /// Sends `TimeoutNow` once the target holds what it needs.
    pub(crate) fn maybe_hand_over(&mut self) {
        let Some(transfer) = self.transfer.as_ref() else { return };
        if self.role != Role::Leader || transfer.handed_over {
            return;
        }
        let target = transfer.target;
        let matched = self.progress.get(&target).map_or(0, |progress| progress.match_index);
        if matched < transfer.needed {
            return;
        }
        self.send(target, Body::TimeoutNow);
        self.emit(Event::TransferHandedOver { target, term: self.term });
        if self.config.election_mode.exchanges_votes() {
            // The target opens the round; this node, whose log equals the
            // target's, stays out of it for an election timeout.
            let until_ms = self.now_ms + self.config.election_timeout_ms();
            self.transfer = None; // Handed over, not ended: `TransferEnded` is for the others' news.
            self.become_follower(self.term, None);
            self.fast.handed_over_until_ms = Some(until_ms);
        } else {
            self.transfer.as_mut().expect("checked above").handed_over = true;
        }
    }

    /// The leader's timer: a transfer that did not end in time gives up.
    pub(crate) fn check_transfer_deadline(&mut self) {
        let Some(transfer) = self.transfer.as_ref() else { return };
        if self.now_ms < transfer.deadline_ms {
            return;
        }
        let target = transfer.target;
        self.transfer = None;
        self.emit(Event::TransferEnded { target, term: self.term, new_leader: None });
        // The others get what was held back from them.
        for peer in self.replication_peers() {
            self.send_append(peer);
        }
    }

    /// `TimeoutNow` from this node's leader: campaign at once.
    pub(crate) fn on_timeout_now(&mut self, from: NodeId) {
        if self.role != Role::Follower || self.leader != Some(from) {
            return; // Not from the leader this node follows in this term.
        }
        if self.config.election_mode.exchanges_votes() {
            crate::election::fast::on_handed_over(self, from);
        } else {
            crate::election::campaign_now(self);
        }
    }

    /// The target of the hand-over this leader has in progress, if any.
    pub fn transfer_target(&self) -> Option<NodeId> {
        self.transfer.as_ref().map(|transfer| transfer.target)
    }

    /// When the transfer in progress gives up, if any.
    pub(crate) fn transfer_deadline_ms(&self) -> Option<u64> {
        self.transfer.as_ref().map(|transfer| transfer.deadline_ms)
    }
}

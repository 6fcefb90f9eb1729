//! Every message enters here: identity screening, impossible-field checks, and
//! the term rules shared by all roles (Raft §5.1) before dispatch by kind.

use super::Node;
use crate::message::{AppendOutcome, Body, Message};
use crate::status::DropReason;
use crate::types::{LogIndex, Term};

impl Node {
    pub(crate) fn handle_message(&mut self, message: Message) {
        if let Err(reason) = self.screen(&message) {
            self.dropped.record(reason);
            return;
        }
        let Some(message) = self.route_election_message(message) else { return };
        if message.term > self.term && !self.adopt_higher_term(&message) {
            return;
        }
        if message.term < self.term {
            self.answer_stale(&message);
            return;
        }
        match message.body {
            Body::RequestVote { pre_vote, last_log_term, last_log_index, transfer } => {
                self.on_vote_request(message.from, message.term, pre_vote, last_log_term, last_log_index, transfer)
            }
            Body::VoteResponse { pre_vote, granted } => {
                self.on_vote_response(message.from, message.term, pre_vote, granted)
            }
            Body::AppendEntries { prev_log_index, prev_log_term, entries, leader_commit, read_round, heartbeat } => {
                self.on_append_entries(
                    message.from,
                    prev_log_index,
                    prev_log_term,
                    entries,
                    leader_commit,
                    read_round,
                    heartbeat,
                )
            }
            Body::AppendResponse { outcome, read_round } => self.on_append_response(message.from, outcome, read_round),
            Body::InstallSnapshot { meta, total_bytes, offset, data, done } => {
                self.on_install_snapshot(message.from, super::snapshot::Chunk { meta, total_bytes, offset, data, done })
            }
            Body::SnapshotResponse { last_included_index, received_bytes, installed } => {
                self.on_snapshot_response(message.from, last_included_index, received_bytes, installed)
            }
            Body::TimeoutNow => self.on_timeout_now(message.from),
            Body::SubjectiveDown { .. }
            | Body::ObjectiveDown { .. }
            | Body::Vote { .. }
            | Body::Correction { .. }
            | Body::Liveness { .. } => {
                unreachable!("election messages are routed before the term rules")
            }
        }
    }

    /// Drops what no correct member of this cluster can send.
    fn screen(&self, message: &Message) -> Result<(), DropReason> {
        if message.cluster_id != self.config.cluster_id {
            return Err(DropReason::WrongCluster);
        }
        if message.to != self.config.id {
            return Err(DropReason::Misdirected);
        }
        if message.from == self.config.id || message.from == 0 {
            return Err(DropReason::UnknownSender);
        }
        // A removed node cannot disturb the members with its campaigns; its
        // replication is still heard: it may have been added back and elected
        // since, which this node, behind, does not know yet (and an old
        // leader's traffic fails the term check anyway).
        let replication = matches!(message.body, Body::AppendEntries { .. } | Body::InstallSnapshot { .. });
        if !replication && self.removed_for_good(message.from) {
            return Err(DropReason::Removed);
        }
        // Answers to a leader come from the members it tracks. Everything
        // else is taken from any node not known removed, as Raft thesis §4.1
        // says: a new member learns the membership from its leader, and a
        // member whose log lags a change must still hear (and vote for) the
        // nodes that change made voters. Only voters' votes and reports are
        // counted (docs/design/membership.md).
        if matches!(message.body, Body::AppendResponse { .. } | Body::SnapshotResponse { .. })
            && !self.membership.contains(message.from)
        {
            return Err(DropReason::UnknownSender);
        }
        // Election gossip carries the sender's own term, which is 0 before any leader.
        let gossip = matches!(
            message.body,
            Body::SubjectiveDown { .. } | Body::ObjectiveDown { .. } | Body::Vote { .. } | Body::Correction { .. }
        );
        if (message.term == 0 && !gossip) || !fields_are_possible(message) {
            return Err(DropReason::ImpossibleFields);
        }
        Ok(())
    }

    /// Raft §5.1 with the PreVote and CheckQuorum exceptions (thesis §9.6).
    /// Returns false if the message must be ignored.
    fn adopt_higher_term(&mut self, message: &Message) -> bool {
        match message.body {
            // A node that hears from a live leader ignores campaigns: a node
            // rejoining from a partition cannot depose a working leader. Not
            // a campaign that leader asked for by handing over (`TimeoutNow`).
            Body::RequestVote { transfer: false, .. } if self.in_leader_lease() => {
                self.dropped.record(DropReason::LeaderLease);
                false
            }
            // The vote lease (docs/design/leader-terms.md): no other vote, whatever the ballot,
            // and no term change that would shut out the candidate voted for.
            // A hand-over comes from a leader that serves: its leader-elect
            // phase, which the lease protects, is over.
            Body::RequestVote { transfer: false, .. } if self.vote_lease_refuses(message.from) => {
                self.dropped.record(DropReason::VoteLease);
                false
            }
            // Pre-votes change no term, neither asking nor granting.
            Body::RequestVote { pre_vote: true, .. } => true,
            Body::VoteResponse { pre_vote: true, granted: true } => true,
            Body::AppendEntries { .. } | Body::InstallSnapshot { .. } => {
                self.become_follower(message.term, Some(message.from));
                true
            }
            _ => {
                self.become_follower(message.term, None);
                true
            }
        }
    }

    /// Raft §5.1: a request from an older term is refused with the current term,
    /// so that its sender learns it is stale; stale responses are ignored.
    fn answer_stale(&mut self, message: &Message) {
        self.dropped.record(DropReason::StaleTerm);
        match message.body {
            Body::AppendEntries { prev_log_index, read_round, .. } => self.send(
                message.from,
                Body::AppendResponse {
                    outcome: AppendOutcome::Rejected { prev_log_index, hint_index: prev_log_index.saturating_sub(1) },
                    read_round,
                },
            ),
            Body::RequestVote { pre_vote, .. } => {
                self.send(message.from, Body::VoteResponse { pre_vote, granted: false })
            }
            Body::InstallSnapshot { ref meta, .. } => self.send(
                message.from,
                Body::SnapshotResponse {
                    last_included_index: meta.last_included_index,
                    received_bytes: 0,
                    installed: false,
                },
            ),
            _ => {}
        }
    }
}

/// Checks fields against what a correct sender can produce, without state.
fn fields_are_possible(message: &Message) -> bool {
    let term = message.term;
    // No correct node reaches the last term: it would have campaigned 2⁶⁴
    // times. Refusing it keeps `term + 1` (a campaign, a vote round) from
    // overflowing on a forged one.
    if term == Term::MAX {
        return false;
    }
    match &message.body {
        Body::RequestVote { last_log_term, last_log_index, pre_vote, transfer } => {
            // A hand-over's campaign skips PreVote.
            *last_log_term <= term && (*last_log_index == 0) == (*last_log_term == 0) && !(*pre_vote && *transfer)
        }
        Body::TimeoutNow => true,
        Body::VoteResponse { .. } => true,
        Body::AppendEntries { prev_log_index, prev_log_term, entries, leader_commit, heartbeat, .. } => {
            // A heartbeat never carries entries.
            if *prev_log_term > term
                || (*prev_log_index == 0) != (*prev_log_term == 0)
                || (*heartbeat && !entries.is_empty())
            {
                return false;
            }
            let mut previous_term = *prev_log_term;
            // Indexes past the end of u64 are forged (and would overflow below).
            let Some(last_index) = prev_log_index.checked_add(entries.len() as LogIndex) else { return false };
            for (expected_index, entry) in (prev_log_index.saturating_add(1)..=last_index).zip(entries) {
                if entry.index != expected_index || entry.term < previous_term.max(1) || entry.term > term {
                    return false;
                }
                previous_term = entry.term;
            }
            *leader_commit <= last_index
        }
        Body::AppendResponse { outcome: AppendOutcome::Accepted { .. }, .. } => true,
        Body::AppendResponse { outcome: AppendOutcome::Rejected { prev_log_index, hint_index }, .. } => {
            *hint_index <= prev_log_index.saturating_sub(1)
        }
        Body::InstallSnapshot { meta, total_bytes, offset, data, done } => {
            let end = offset.checked_add(data.len() as u64);
            meta.last_included_index >= 1
                && meta.last_included_term >= 1
                && meta.last_included_term <= term
                && end.is_some_and(|end| end <= *total_bytes && *done == (end == *total_bytes))
                && (*done || !data.is_empty())
        }
        Body::SnapshotResponse { last_included_index, .. } => *last_included_index >= 1,
        Body::SubjectiveDown { .. } | Body::ObjectiveDown { .. } | Body::Correction { .. } => true,
        Body::Liveness { active } => !active.contains(&message.from),
        Body::Vote { ballot, vote, .. } => {
            *ballot >= 1
                && *ballot < Term::MAX
                && vote.last_log_term < (*ballot).max(term + 1)
                && (vote.last_log_index == 0) == (vote.last_log_term == 0)
        }
    }
}

//! The `raft` election mode: Raft §5.2 with PreVote and CheckQuorum (thesis §9.6).

use rand::Rng;

use crate::message::Body;
use crate::node::Node;
use crate::output::{Detector, Event};
use crate::quorum::{VoteResult, VoteTally};
use crate::status::Role;
use crate::types::{LogIndex, NodeId, Term};

/// Raft §5.2: timeouts drawn uniformly from `[T, 2T)` make split votes rare.
pub(super) fn draw_election_timeout_ms(node: &mut Node) -> u64 {
    let base = node.config.election_timeout_ms();
    let drawn = base + node.rng.gen_range(0..base);
    // Priority 0 (docs/design/membership.md): campaign only after every
    // other member had a full timeout to, so it leads only when no one else can.
    if node.membership.priority(node.config.id) == 0 {
        drawn + base
    } else {
        drawn
    }
}

pub(super) fn on_election_timeout(node: &mut Node) {
    // A follower that still had its leader's lease counted misses; one whose
    // lease the transport's evidence ended has said so already.
    if let (Role::Follower, Some(leader), Some(_)) = (node.role, node.leader, node.last_leader_contact_ms) {
        node.emit(Event::FailureDetected { leader, term: node.term, detector: Detector::Misses });
    }
    if node.config.pre_vote {
        start_pre_vote(node);
    } else {
        start_campaign(node, false);
    }
}

/// The transport found the process of `peer` gone. About this node's leader it
/// is a campaign trigger: the leader's lease ends (this node grants pre-votes and
/// votes to others at once) and the election timer is brought forward to a
/// random point within one heartbeat timeout, so that the followers, which all
/// learn within about one network delay, do not all campaign at once and split
/// the vote. PreVote, the vote rules and the vote lease still apply; hearing the
/// leader again restores its lease and re-arms the timer (docs/decisions/0050).
pub(super) fn on_peer_process_gone(node: &mut Node, peer: NodeId) {
    if node.role != Role::Follower || node.leader != Some(peer) || node.last_leader_contact_ms.is_none() {
        return;
    }
    node.emit(Event::FailureDetected { leader: peer, term: node.term, detector: Detector::ProcessGone });
    node.last_leader_contact_ms = None;
    let jitter_ms = node.rng.gen_range(0..node.config.heartbeat_timeout_ms.max(1));
    node.election_deadline_ms = node.election_deadline_ms.min(node.now_ms + jitter_ms);
}

/// Thesis §9.6: ask whether a majority would vote before raising any term, so a
/// node that cannot win (cut off, or behind) disturbs nobody.
fn start_pre_vote(node: &mut Node) {
    node.set_role(Role::PreCandidate);
    node.set_leader(None);
    node.reset_election_timer();
    node.votes = VoteTally::default();
    node.votes.record(node.config.id, true);
    let term = node.term + 1;
    node.emit(Event::ElectionStarted { term, pre_vote: true });
    if node.votes.result(node.voters.len()) == VoteResult::Won {
        start_campaign(node, false);
        return;
    }
    request_votes(node, term, true, false);
}

/// Raft §5.2: increment the term, vote for yourself, ask everyone else;
/// `transfer` when the leader handed over to this node (no PreVote, and the
/// voters' leader lease does not hold the requests back).
pub(super) fn start_campaign(node: &mut Node, transfer: bool) {
    node.term += 1;
    node.voted_for = Some(node.config.id);
    node.set_role(Role::Candidate);
    node.set_leader(None);
    node.reset_election_timer();
    node.votes = VoteTally::default();
    node.votes.record(node.config.id, true);
    node.emit(Event::ElectionStarted { term: node.term, pre_vote: false });
    if node.votes.result(node.voters.len()) == VoteResult::Won {
        node.become_leader();
        return;
    }
    request_votes(node, node.term, false, transfer);
}

fn request_votes(node: &mut Node, term: Term, pre_vote: bool, transfer: bool) {
    let last_log_term = node.log.last_term();
    let last_log_index = node.log.last_index();
    for peer in node.peers() {
        node.send_with_term(peer, term, Body::RequestVote { pre_vote, last_log_term, last_log_index, transfer });
    }
}

/// Raft §5.2, §5.4.1: one vote per term, only for a log at least as up-to-date.
pub(super) fn on_vote_request(
    node: &mut Node,
    from: NodeId,
    term: Term,
    pre_vote: bool,
    last_log_term: Term,
    last_log_index: LogIndex,
    transfer: bool,
) {
    let up_to_date = node.log.is_up_to_date(last_log_term, last_log_index) || skips_up_to_date_check(node);
    if pre_vote {
        // The higher-term and lease checks already ran; a pre-vote at our own term
        // means the asker is behind us.
        let granted = term > node.term && up_to_date;
        let answer_term = if granted { term } else { node.term };
        node.send_with_term(from, answer_term, Body::VoteResponse { pre_vote: true, granted });
        return;
    }
    debug_assert_eq!(term, node.term, "term rules ran first");
    let free_to_vote = node.voted_for == Some(from)
        || (node.voted_for.is_none() && node.leader.is_none())
        || (votes_more_than_once(node) && node.role == Role::Follower);
    // A hand-over's campaign passes the vote lease (`inbound::adopt_higher_term`).
    let granted = free_to_vote && up_to_date && (transfer || !node.vote_lease_refuses(from));
    if granted {
        node.voted_for = Some(from);
        node.start_vote_lease(from);
        node.reset_election_timer();
    }
    node.send(from, Body::VoteResponse { pre_vote: false, granted });
}

pub(super) fn on_vote_response(node: &mut Node, from: NodeId, term: Term, pre_vote: bool, granted: bool) {
    let expected = match (pre_vote, node.role) {
        // A granted pre-vote carries the term we asked for; a refusal carries the
        // voter's own, which equals ours (a higher one made us follow already).
        (true, Role::PreCandidate) => term == if granted { node.term + 1 } else { node.term },
        (false, Role::Candidate) => term == node.term,
        _ => false,
    };
    if !expected {
        return; // An answer to a round that is over.
    }
    // Only the voters of this node's membership count (docs/design/membership.md).
    if node.membership.is_voter(from) {
        node.votes.record(from, granted);
    }
    match node.votes.result(node.voters.len()) {
        VoteResult::Won if pre_vote => start_campaign(node, false),
        VoteResult::Won => node.become_leader(),
        VoteResult::Lost => node.become_follower(node.term, None),
        VoteResult::Pending => {}
    }
}

#[cfg(feature = "bug-injection")]
fn votes_more_than_once(node: &Node) -> bool {
    node.config.injected_bug == Some(crate::config::InjectedBug::VoteMoreThanOncePerTerm)
}

#[cfg(not(feature = "bug-injection"))]
fn votes_more_than_once(_node: &Node) -> bool {
    false
}

#[cfg(feature = "bug-injection")]
fn skips_up_to_date_check(node: &Node) -> bool {
    node.config.injected_bug == Some(crate::config::InjectedBug::SkipUpToDateCheck)
}

#[cfg(not(feature = "bug-injection"))]
fn skips_up_to_date_check(_node: &Node) -> bool {
    false
}

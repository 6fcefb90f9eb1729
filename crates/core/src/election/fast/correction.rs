//! Cold start from `initial_leader`, correction messages, and the node that
//! started from an empty data dir (docs/design/cold-start.md).

use super::detector;
use crate::message::{Body, Message};
use crate::node::Node;
use crate::output::Event;
use crate::progress::Progress;
use crate::quorum::VoteTally;
use crate::status::{DropReason, Role};
use crate::types::{NodeId, Term};

/// The term the configured initial leader leads without an election.
pub(super) const INITIAL_TERM: Term = 1;

/// Called once by `Node::new`. A brand-new cluster (every data dir empty) starts
/// with `initial_leader` leading term 1 without an election: every node records a
/// vote for it in term 1, so no other node can lead that term. Durable state
/// ignores the config.
///
/// The initial leader leads only once *every* member has confirmed an empty data
/// dir (a fresh node's binding vote for it in term 1). An initial leader whose own
/// disk was replaced cannot tell itself from a fresh one; if it led term 1 again,
/// its new entries could share (index, term) with different entries its earlier
/// incarnation left on some follower, breaking log matching. Unanimity rules that
/// out: a member that holds anything does not confirm.
///
/// Members are rarely started at the same instant, so for `cold_start_wait_ms`
/// after it starts a brand-new member does not campaign: it waits for the
/// initial leader, which gathers confirmations as long (at least an election
/// timeout). Past that bound, or once some member reports data (no unanimous
/// confirmation can come then), the first term is elected instead.
pub(crate) fn cold_start(node: &mut Node, restored_empty: bool) {
    node.fast.started_empty = restored_empty;
    detector::restart_watch(node);
    if !restored_empty {
        detector::announce_restart(node);
    }
    let Some(initial_leader) = node.config.initial_leader else { return };
    if !restored_empty {
        return;
    }
    node.term = INITIAL_TERM;
    node.voted_for = Some(initial_leader);
    let wait_until_ms = node.now_ms + node.config.cold_start_wait_ms;
    node.fast.cold_start_wait_until_ms = Some(wait_until_ms);
    if initial_leader == node.config.id {
        node.set_role(Role::Candidate);
        node.votes = VoteTally::default();
        node.votes.record(node.config.id, true);
        node.fast.cold_start_candidate = true;
        node.fast.candidate_deadline_ms = Some(wait_until_ms.max(node.now_ms + node.config.election_timeout_ms()));
        if node.voters.len() == 1 {
            node.fast.cold_start_candidate = false;
            node.fast.candidate_deadline_ms = None;
            node.become_leader();
        }
    } else {
        // Confirm the empty data dir to the initial leader (resent until it leads).
        node.send(initial_leader, Body::VoteResponse { pre_vote: false, granted: true });
        node.fast.grant_resend_at_ms = Some(node.now_ms + node.config.heartbeat_timeout_ms);
    }
}

/// Whether this brand-new member still waits for the initial leader's cold
/// start: within its bound, in term 1, with no leader heard and no member known
/// to hold data. Meanwhile it counts no misses, so it does not campaign; it
/// still answers and joins what others do (a majority past their own bounds
/// elects as usual).
pub(super) fn waits_for_initial_leader(node: &Node) -> bool {
    node.fast.cold_start_wait_until_ms.is_some_and(|until_ms| node.now_ms < until_ms)
        && node.term == INITIAL_TERM
        && node.leader.is_none()
}

/// A member reported holding data: the cluster is not brand new, so no
/// unanimous confirmation of empty data dirs can come. Stop waiting; the
/// initial leader gives up its claim on term 1 at once.
pub(super) fn on_member_has_data(node: &mut Node) {
    node.fast.cold_start_wait_until_ms = None;
    if node.fast.cold_start_candidate && node.role == Role::Candidate {
        node.fast.cold_start_candidate = false;
        node.fast.candidate_deadline_ms = None;
        node.become_follower(node.term, None);
    }
}

/// A node that started empty cannot know what it voted before (a replaced disk):
/// a message from a later term proves the cluster has history. It then joins that
/// term without a vote of its own, so it can never vote twice in a term it may
/// have voted in before. The seed's stale-config case comes first: heartbeats from
/// a node other than the leader it believes in are answered with a correction.
pub(super) fn screen_started_empty(node: &mut Node, message: Message) -> Option<Message> {
    if !node.fast.started_empty || message.term <= INITIAL_TERM.max(node.term) {
        return Some(message);
    }
    // Whom this node believes leads: itself if it is the initial leader waiting
    // to lead term 1, else the leader it knows or the configured one.
    let believed = if node.fast.cold_start_candidate {
        Some(node.config.id)
    } else {
        node.leader.or(node.config.initial_leader.filter(|_| node.term == INITIAL_TERM))
    };
    match &message.body {
        Body::Correction { .. } => return Some(message),
        Body::AppendEntries { .. } | Body::InstallSnapshot { .. }
            if believed.is_some_and(|leader| leader != message.from) =>
        {
            let leader = believed.expect("checked");
            node.send(message.from, Body::Correction { leader, leader_term: node.term });
            return None;
        }
        _ => {}
    }
    let ballot = match &message.body {
        Body::Vote { ballot, .. } => *ballot,
        _ => 0,
    };
    abstain_in(node, message.term.max(ballot));
    Some(message)
}

/// Joins `term` having "voted" already (for itself, as a marker): no vote in it.
fn abstain_in(node: &mut Node, term: Term) {
    assert!(term > node.term, "abstaining moves to a later term");
    node.fast.started_empty = false;
    node.term = term;
    node.voted_for = Some(node.config.id);
    node.emit(Event::AbstainedAfterDataLoss { term });
    node.become_follower(term, None);
}

/// An `AppendEntries` from an older term: tell its sender who leads now.
pub(super) fn answer_stale_leader(node: &mut Node, message: Message) -> Option<Message> {
    let leader = if node.role == Role::Leader { Some(node.config.id) } else { node.leader };
    let Some(leader) = leader else { return Some(message) };
    node.dropped.record(DropReason::StaleTerm);
    forget_progress(node, message.from);
    node.send(message.from, Body::Correction { leader, leader_term: node.term });
    None
}

/// A leader learns that `peer` restarted believing something older (it leads an
/// older term, or names an older leader): its disk may have been replaced, so what
/// it acknowledged before proves nothing. Probe it again from scratch; otherwise
/// its rejections of appends at or below the old match index look stale and it
/// never catches up.
fn forget_progress(node: &mut Node, peer: NodeId) {
    let (last_index, now_ms) = (node.log.last_index(), node.now_ms);
    if let Some(progress) = node.progress.get_mut(&peer) {
        *progress = Progress { recent_active: true, ..Progress::new(last_index, now_ms) };
    }
}

/// A correction naming `leader` of `leader_term`, from `from`.
pub(super) fn on_correction(node: &mut Node, from: NodeId, leader: NodeId, leader_term: Term) {
    if leader_term <= node.term {
        // The sender believes something older (e.g. a restarted follower whose
        // config still names the initial leader): answer it directly; never step
        // down for it — such a correction cannot come from a majority.
        let current = if node.role == Role::Leader { Some(node.config.id) } else { node.leader };
        if let Some(current) = current {
            if (current, node.term) != (leader, leader_term) {
                forget_progress(node, from);
                node.send(from, Body::Correction { leader: current, leader_term: node.term });
            }
        }
        return;
    }
    if leader == node.config.id {
        return; // Only an election makes this node leader again.
    }
    // A later term. The named leader itself is authoritative; otherwise strictly
    // more than half of the cluster must name the same (leader, term).
    node.fast.corrections.insert(from, (leader, leader_term));
    let agreeing = node
        .fast
        .corrections
        .iter()
        .filter(|(id, named)| **named == (leader, leader_term) && node.membership.is_voter(**id))
        .count();
    if from == leader || agreeing >= node.quorum() {
        if node.fast.started_empty {
            abstain_in(node, leader_term);
        }
        node.become_follower(leader_term, Some(leader));
        node.emit(Event::Corrected { leader, term: leader_term });
    }
}

//! The `fast` election mode (docs/design/detection.md, docs/design/vote-exchange.md, docs/design/cold-start.md; seed 000).
//!
//! *When*: a follower counts missed heartbeats; at `miss_limit` the leader is
//! subjectively down for it (SDOWN) and it tells everyone. Once strictly more than
//! half of the voters hold the same leader down, the leader is objectively down
//! (ODOWN): the first node to see it broadcasts `ObjectiveDown`, and everyone
//! starts the election at once (`detector`).
//!
//! *Who*: nodes exchange votes carrying data versions and move to any better one
//! until a quorum agrees and a quiet window passes; then the vote is final, binding
//! and persisted, and counts like a Raft vote (`round`).
//!
//! *Stale beliefs*: corrections and the cold start from `initial_leader`
//! (`correction`).

mod correction;
mod detector;
mod round;

use std::collections::{BTreeMap, BTreeSet};

use crate::message::{Body, Message, PeerState, VoteChoice};
use crate::node::Node;
use crate::status::{DropReason, Role};
use crate::types::{NodeId, Term};

pub(crate) use correction::cold_start;

/// One node's report that it lost its leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FailReport {
    pub leader: Option<NodeId>,
    pub leader_term: Term,
    pub reported_at_ms: u64,
    /// The reporter's data version, as a vote for it. A hint only: the reporter's
    /// log may change after it reported, so a vote taken from it binds nobody
    /// until the reporter itself votes the same in the round (`round::evaluate`).
    pub version: VoteChoice,
}

/// A round of the vote exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Round {
    /// The term this round binds.
    pub ballot: Term,
    /// This node's current vote.
    pub vote: VoteChoice,
    /// The latest vote of every node heard in this round (this node included).
    pub received: BTreeMap<NodeId, VoteChoice>,
    /// When the vote becomes final if nothing changes it.
    pub finalize_at_ms: Option<u64>,
    /// When to send the vote again (lost messages).
    pub resend_at_ms: u64,
    /// When to give up on this ballot and look again one higher.
    pub give_up_at_ms: u64,
    /// The leader whose loss started the round (objectively down: not waited for).
    pub lost_leader: Option<NodeId>,
    /// Nodes that already sent this node a binding vote for this ballot.
    pub early_grants: BTreeSet<NodeId>,
    /// Votes taken from reports and given up on: their candidates did not
    /// confirm them within the quiet window.
    pub shunned: BTreeSet<VoteChoice>,
    /// Peers that voted in this round, then reported that they hear the leader
    /// of this node's term again: their votes count for nothing until they vote
    /// again (docs/decisions/0087).
    pub withdrawn: BTreeSet<NodeId>,
    /// An append of the lost leader arrived and its answer to this node's vote
    /// had not: this node binds nothing before then (one heartbeat timeout
    /// later), once per round (docs/decisions/0087).
    pub awaiting_leader_until_ms: Option<u64>,
}

/// State of the `fast` mode; idle in other modes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FastState {
    /// Consecutive heartbeat timeouts without hearing from the leader.
    pub misses: u32,
    /// End of the current heartbeat-timeout window.
    pub miss_deadline_ms: u64,
    /// This node holds its leader subjectively down.
    pub subjectively_down: bool,
    /// When to repeat the SDOWN report (and expire old reports).
    pub report_at_ms: u64,
    /// node -> its latest SDOWN report.
    pub fail_table: BTreeMap<NodeId, FailReport>,
    /// node -> its data version and when it was heard, from its latest report or
    /// retraction (a restarted node sends one at once): nodes known alive, and
    /// the versions a round may start from.
    pub heard_alive: BTreeMap<NodeId, (VoteChoice, u64)>,
    /// The vote exchange in progress.
    pub round: Option<Round>,
    /// The last vote finalized: (ballot, vote), answered to latecomers.
    pub final_vote: Option<(Term, VoteChoice)>,
    /// A candidate gives up at this time if no quorum confirmed it.
    pub candidate_deadline_ms: Option<u64>,
    /// The initial leader waiting for every member to confirm a fresh cluster.
    pub cold_start_candidate: bool,
    /// A brand-new member waits for the initial leader's cold start until then
    /// and does not campaign (`correction::waits_for_initial_leader`).
    pub cold_start_wait_until_ms: Option<u64>,
    /// A follower that voted resends its binding vote until the leader appears.
    pub grant_resend_at_ms: Option<u64>,
    /// While looking: peers that report an established leader: node -> (leader, term).
    pub established: BTreeMap<NodeId, (NodeId, Term)>,
    /// Corrections received: corrector -> (leader, term) it named.
    pub corrections: BTreeMap<NodeId, (NodeId, Term)>,
    /// Started from an empty data dir and not yet known to be in step with the
    /// cluster (docs/design/cold-start.md).
    pub started_empty: bool,
    /// The latest `Liveness` from this node's leader: (leader, its term, the
    /// members it heard from). Kept after the leader is lost: that is its use.
    pub leader_view: Option<(NodeId, Term, BTreeSet<NodeId>)>,
    /// A round this node left because a quorum heard its leader again:
    /// (leader, term, until when) reports and verdicts about that leader from
    /// others count for nothing, as they may predate the quorum hearing it
    /// (`detector::is_stale_verdict`). Its own misses still count.
    pub returned_to: Option<(NodeId, Term, u64)>,
    /// The latest contact with the leader ended a silence long enough for
    /// peers to hold it down (`detector::silence_ms`), and no miss has been
    /// counted since (docs/decisions/0087).
    pub resumed_after_silence: bool,
    /// This node led and handed over (`TimeoutNow`): until then it stays out
    /// of elections, which its log, equal to its target's, could win
    /// (docs/decisions/0099).
    pub handed_over_until_ms: Option<u64>,
}

/// Whether this node handed its leadership over within the last election
/// timeout and follows nobody since: it stays out of elections.
pub(crate) fn handed_over(node: &Node) -> bool {
    node.role == Role::Follower
        && node.leader.is_none()
        && node.fast.handed_over_until_ms.is_some_and(|until_ms| node.now_ms < until_ms)
}

/// The leader handed over to this node (`TimeoutNow`; it holds the leader's
/// whole log, and more than any other voter): the leader is down by its own
/// word, so this node declares it objectively down, as a majority of reports
/// would, and opens the round at once.
pub(crate) fn on_handed_over(node: &mut Node, leader: NodeId) {
    let term = node.term;
    node.emit(crate::output::Event::ObjectivelyDown { leader: Some(leader), term });
    for peer in node.peers() {
        node.send(peer, Body::ObjectiveDown { leader: Some(leader), leader_term: term });
    }
    round::start(node, term + 1, Some(leader));
}

/// Whether this node has no working leader: none known, or its own link to it
/// is down (SDOWN).
pub(crate) fn lost_leader(node: &Node) -> bool {
    node.leader.is_none() || node.fast.subjectively_down
}

/// This node's own data version as a vote for itself.
pub(crate) fn own_vote(node: &Node) -> VoteChoice {
    VoteChoice {
        candidate: node.config.id,
        last_log_term: node.log.last_term(),
        last_log_index: node.log.last_index(),
        priority: node.membership.priority(node.config.id),
    }
}

/// Timers of a non-leader.
pub(super) fn on_tick(node: &mut Node) {
    if handed_over(node) {
        // Counts no misses of the leader it was: nobody leads yet.
        detector::restart_watch(node);
        return;
    }
    round::resend_grant_if_due(node);
    match node.role {
        Role::Looking => round::on_tick(node),
        Role::Candidate => {
            if node.fast.candidate_deadline_ms.is_some_and(|deadline| node.now_ms >= deadline) {
                // No quorum confirmed us in time: give up, so that nobody waits
                // forever for voters that changed their minds (ZOOKEEPER-3109).
                node.fast.candidate_deadline_ms = None;
                node.fast.cold_start_candidate = false;
                node.become_follower(node.term, None);
            }
        }
        Role::Follower | Role::PreCandidate => detector::on_tick(node),
        Role::Leader => unreachable!("leaders run the shared heartbeat timers"),
    }
}

/// Earliest timer of a non-leader.
pub(super) fn deadline(node: &Node) -> u64 {
    let fast = &node.fast;
    let mut deadline = match node.role {
        Role::Looking => {
            let round = fast.round.as_ref().expect("a looking node has a round");
            let awaiting = round.awaiting_leader_until_ms.filter(|until_ms| *until_ms > node.now_ms);
            round
                .finalize_at_ms
                .unwrap_or(u64::MAX)
                .min(round.resend_at_ms)
                .min(round.give_up_at_ms)
                .min(awaiting.unwrap_or(u64::MAX))
        }
        Role::Candidate => fast.candidate_deadline_ms.unwrap_or(u64::MAX),
        _ => {
            let report = if fast.subjectively_down { fast.report_at_ms } else { u64::MAX };
            fast.miss_deadline_ms.min(report)
        }
    };
    if let Some(resend) = fast.grant_resend_at_ms {
        deadline = deadline.min(resend);
    }
    deadline
}

/// Messages the fast mode handles before (and instead of) the shared term rules.
/// Returns the message back if the shared path should handle it.
pub(super) fn route(node: &mut Node, message: Message) -> Option<Message> {
    let gossip = matches!(
        message.body,
        Body::SubjectiveDown { .. } | Body::ObjectiveDown { .. } | Body::Vote { state: PeerState::Looking, .. }
    );
    if gossip && handed_over(node) {
        node.dropped.record(DropReason::HandedOver);
        return None;
    }
    if let Some(message) = correction::screen_started_empty(node, message) {
        adopt_newer_term(node, &message);
        match message.body {
            Body::SubjectiveDown { leader, leader_term, down, last_log_term, last_log_index } => {
                let priority = node.membership.priority(message.from);
                let version = VoteChoice { candidate: message.from, last_log_term, last_log_index, priority };
                detector::on_report(node, message.from, leader, leader_term, down, version)
            }
            Body::ObjectiveDown { leader, leader_term } => detector::on_objective_down(node, leader, leader_term),
            Body::Vote { ballot, vote, state } => round::on_vote(node, message.from, message.term, ballot, vote, state),
            Body::VoteResponse { pre_vote: false, granted } => {
                round::on_grant(node, message.from, message.term, granted)
            }
            Body::Correction { leader, leader_term } => {
                correction::on_correction(node, message.from, leader, leader_term)
            }
            Body::Liveness { active } => on_liveness(node, message.from, message.term, active),
            Body::RequestVote { .. } | Body::VoteResponse { pre_vote: true, .. } => {
                node.dropped.record(DropReason::WrongElectionMode)
            }
            Body::AppendEntries { .. } | Body::InstallSnapshot { .. } if message.term < node.term => {
                return correction::answer_stale_leader(node, message)
            }
            // A majority declared this term's leader down: a looking node stays in
            // the round rather than drifting back to the leader it lost, unless a
            // quorum hears that leader again (`round::on_append_while_looking`).
            Body::AppendEntries { .. } | Body::InstallSnapshot { .. }
                if node.role == Role::Looking && message.term == node.term =>
            {
                round::on_leader_append_while_looking(node, message.from)
            }
            _ => return Some(message),
        }
    }
    None
}

/// The leader tells its followers whom it heard from: during the election that
/// made it leader, then during each election timeout (at CheckQuorum).
pub(crate) fn broadcast_liveness(node: &mut Node, active: Vec<NodeId>) {
    debug_assert!(!active.contains(&node.config.id), "the leader is not in its own view");
    for peer in node.peers() {
        node.send(peer, Body::Liveness { active: active.clone() });
    }
}

fn on_liveness(node: &mut Node, from: NodeId, term: Term, active: Vec<NodeId>) {
    // Only the view of the leader this node follows, in its term, is of use.
    // A member it names that this node does not count as a voter (one
    // promoted by an entry this node lacks yet) is left out of the view.
    if node.role == Role::Follower && node.leader == Some(from) && term == node.term {
        let active = active.into_iter().filter(|id| node.voters.contains(id)).collect();
        node.fast.leader_view = Some((from, term, active));
    }
}

/// Raft's rule for gossip: a sender in a later term proves this node's leader (of
/// an older term) is gone. A settled node adopts the term, leaderless, then handles
/// the message (a leaderless node joins elections). Nodes in a round keep it:
/// rounds already bind a later term. Corrections keep their own counting rule.
fn adopt_newer_term(node: &mut Node, message: &Message) {
    let gossip = matches!(message.body, Body::SubjectiveDown { .. } | Body::ObjectiveDown { .. } | Body::Vote { .. });
    if gossip && message.term > node.term && matches!(node.role, Role::Follower | Role::Leader) {
        node.become_follower(message.term, None);
    }
}

/// The node heard from its leader (an `AppendEntries` of the current term).
pub(super) fn on_heard_from_leader(node: &mut Node, heartbeat: bool, previous_contact_ms: Option<u64>) {
    detector::on_heard_from_leader(node, heartbeat, previous_contact_ms);
    node.fast.grant_resend_at_ms = None;
    // A leader is heard: from now on its loss is detected as any other's.
    node.fast.cold_start_wait_until_ms = None;
    if node.term == correction::INITIAL_TERM {
        node.fast.started_empty = false;
    }
}

/// The transport's evidence that `peer`'s process is gone.
pub(super) fn on_peer_process_gone(node: &mut Node, peer: NodeId) {
    detector::on_peer_process_gone(node, peer);
}

/// The node (re)started following, or stopped looking, in its current term.
pub(super) fn on_follow(node: &mut Node) {
    node.fast.round = None;
    node.fast.handed_over_until_ms = None;
    node.fast.candidate_deadline_ms = None;
    node.fast.established.clear();
    node.fast.corrections.clear();
    // Reports were about the leader this node no longer waits for.
    node.fast.subjectively_down = false;
    node.fast.fail_table.clear();
    node.fast.heard_alive.clear();
    detector::restart_watch(node);
}

//! The vote exchange: adopt better votes, wait for a quiet window once a quorum
//! agrees, then finalize a binding vote (docs/design/vote-exchange.md).

use std::collections::{BTreeMap, BTreeSet};

use super::{detector, own_vote, Round};
use crate::message::{Body, PeerState, VoteChoice};
use crate::node::Node;
use crate::output::Event;
use crate::quorum::{VoteResult, VoteTally};
use crate::status::Role;
use crate::types::{NodeId, Term};

/// Enters the round for `ballot`, voting for itself (or for a better vote already
/// known in that round).
pub(super) fn start(node: &mut Node, ballot: Term, lost_leader: Option<NodeId>) {
    start_with_hint(node, ballot, lost_leader, None);
}

/// `start`, but voting at once for `hint` — a better data version a peer
/// reported with its SDOWN — instead of for itself. Nodes that lost the same
/// leader mostly hold the same reports, so their first votes already agree and
/// the round settles one network delay sooner. The hint binds nobody: a vote is
/// final only once its candidate has voted the same in this round (`evaluate`).
pub(super) fn start_with_hint(node: &mut Node, ballot: Term, lost_leader: Option<NodeId>, hint: Option<VoteChoice>) {
    assert!(ballot > node.term, "a round binds a term above the current one");
    node.set_role(Role::Looking);
    node.set_leader(None);
    node.fast.candidate_deadline_ms = None;
    node.fast.grant_resend_at_ms = None;
    node.fast.established.clear();
    let own = own_vote(node);
    debug_assert!(hint.is_none_or(|hint| hint.candidate != node.config.id && hint > own));
    let vote = hint.filter(|hint| hint.candidate != node.config.id).map_or(own, |hint| hint.max(own));
    node.fast.round = Some(Round {
        ballot,
        vote,
        received: BTreeMap::from([(node.config.id, vote)]),
        shunned: BTreeSet::new(),
        finalize_at_ms: None,
        resend_at_ms: node.now_ms + node.config.heartbeat_timeout_ms,
        give_up_at_ms: node.now_ms + 2 * node.config.election_timeout_ms(),
        lost_leader,
        early_grants: BTreeSet::new(),
        withdrawn: BTreeSet::new(),
        awaiting_leader_until_ms: None,
    });
    node.emit(Event::ElectionStarted { term: ballot, pre_vote: false });
    broadcast_vote(node);
    evaluate(node);
}

fn broadcast_vote(node: &mut Node) {
    if let Some(leader) = hears_leader(node) {
        // This node hears the leader it lost: it withholds its vote. It tells
        // the others whom it hears, and asks that leader again, whose next
        // answer renews the proof or, if it stepped down, voids it.
        for peer in node.peers() {
            if peer != leader {
                let body = vote_body(node);
                node.send(peer, body);
            }
        }
        on_append_while_looking(node, leader);
        return;
    }
    let body = vote_body(node);
    for peer in node.peers() {
        node.send(peer, body.clone());
    }
}

/// What this looking node tells a peer: its vote, or, while it hears the
/// leader of its own term (`hears_leader`), that it follows that leader; a
/// vote would count toward a round against a leader that works.
fn vote_body(node: &Node) -> Body {
    if let Some(leader) = hears_leader(node) {
        return Body::Vote { ballot: node.term, vote: own_vote(node), state: PeerState::Following { leader } };
    }
    let round = node.fast.round.as_ref().expect("looking");
    Body::Vote { ballot: round.ballot, vote: round.vote, state: PeerState::Looking }
}

/// The leader of this node's own term, if it answered this node during the
/// round (`hear_leader_again`): proof that it leads and that the link to it
/// works both ways. Such a node withholds its vote — it neither counts its own
/// nor lets its votes reach others — like a Raft voter that heard its leader
/// within an election timeout refuses votes
/// (docs/decisions/0087-an-isolated-leader-retires-when-its-followers-hold-it-down.md).
fn hears_leader(node: &Node) -> Option<NodeId> {
    let own = node.fast.established.get(&node.config.id)?;
    (own.1 == node.term).then_some(own.0)
}

pub(super) fn on_tick(node: &mut Node) {
    let now_ms = node.now_ms;
    let round = node.fast.round.as_mut().expect("a looking node has a round");
    if round.finalize_at_ms.is_some_and(|at| now_ms >= at) {
        finalize(node);
        return;
    }
    if now_ms >= round.give_up_at_ms {
        // No quorum agreed in two election timeouts (a partition, or peers stuck
        // elsewhere): look again one ballot up rather than wait forever.
        let (ballot, lost_leader) = (round.ballot, round.lost_leader);
        start(node, ballot + 1, lost_leader);
        return;
    }
    if round.awaiting_leader_until_ms.is_some_and(|until_ms| now_ms >= until_ms) && round.finalize_at_ms.is_none() {
        // The lost leader did not answer in time: its append was stale.
        evaluate(node);
        if node.role != Role::Looking {
            return;
        }
    }
    let round = node.fast.round.as_mut().expect("looking");
    if now_ms >= round.resend_at_ms {
        round.resend_at_ms = now_ms + node.config.heartbeat_timeout_ms;
        broadcast_vote(node);
    }
}

/// A `Vote` from `from`, whose own term is `sender_term`.
pub(super) fn on_vote(
    node: &mut Node,
    from: NodeId,
    sender_term: Term,
    ballot: Term,
    vote: VoteChoice,
    state: PeerState,
) {
    if node.role == Role::Leader && sender_term == node.term {
        // A looking node of this leader's term asks whether it leads (after one
        // of its appends): it is heard, and will hear the answer. Counted for
        // the vote exchange's CheckQuorum, or a leader a quorum returns to
        // would step down before their next acknowledgements
        // (`Node::quorum_contact_deadline_ms`).
        let now_ms = node.now_ms;
        if let Some(progress) = node.progress.get_mut(&from) {
            progress.heard_at_ms = now_ms;
        }
    }
    if node.role == Role::Follower && node.leader == Some(from) && state == PeerState::Looking {
        // Our own leader is looking: it no longer leads.
        node.become_follower(node.term, None);
    }
    // A node under a vote lease waits for the candidate it voted for rather
    // than being pulled into the next round (docs/design/leader-terms.md).
    let leaderless_follower = node.role == Role::Follower && super::lost_leader(node) && !node.vote_lease_active();
    if leaderless_follower && state == PeerState::Looking && ballot > node.term {
        // No working leader to defend and someone is electing one: take part.
        start(node, ballot, None);
    }
    if node.role != Role::Looking {
        answer_not_looking(node, from, ballot, state);
        return;
    }
    let round_ballot = node.fast.round.as_ref().expect("looking").ballot;
    match state {
        PeerState::Following { leader } => return on_established(node, from, leader, sender_term),
        PeerState::Leading => return on_established(node, from, from, sender_term),
        PeerState::Looking => {}
    }
    if ballot < round_ballot {
        // A latecomer: tell it where the round is.
        let body = vote_body(node);
        node.send(from, body);
        return;
    }
    if hears_leader(node) == Some(from) && sender_term >= node.term {
        // The leader this node heard again is looking itself: it stepped down.
        // The proof is void, for this node and for the peers that reported it.
        let named = (from, node.term);
        node.fast.established.retain(|_, leader| *leader != named);
        node.fast.round.as_mut().expect("looking").withdrawn.clear();
        broadcast_vote(node);
    }
    if ballot > round_ballot {
        let lost_leader = node.fast.round.as_ref().and_then(|round| round.lost_leader);
        start(node, ballot, lost_leader);
    }
    let own = own_vote(node);
    let round = node.fast.round.as_mut().expect("looking");
    // The sender's first vote in this round: it may have dropped ours, sent
    // while it still followed the lost leader a moment longer (it answered
    // with that leader instead). Ours goes back to it once, below, rather than
    // at the next resend a heartbeat timeout later.
    let previous = round.received.insert(from, vote);
    // A vote again, from a peer that had withdrawn its vote: it counts again.
    round.withdrawn.remove(&from);
    let first_from_sender = previous.is_none();
    if previous == Some(round.vote) && vote < round.vote && !confirmed(round, &round.vote) {
        // The sender backed this node's vote, a hint not yet confirmed, and now
        // backs a worse one: only falling back moves a vote down, so the hint's
        // window ended there without its candidate. Give it up too, rather than
        // hold it alone while the others settle on a vote that may be worse than
        // this node's own data (docs/decisions/0078).
        return fall_back(node);
    }
    // A vote naming this node with another data version than its own comes from
    // a stale report (its log changed since): this node knows its own version.
    let stale_about_me = vote.candidate == node.config.id && vote != own;
    if vote.candidate == from && round.vote.candidate == from && from != node.config.id && vote != round.vote {
        // The candidate itself votes another version than the report this
        // node's vote came from: the report was stale.
        return fall_back(node);
    }
    if vote > round.vote && !stale_about_me && adoptable(round, &vote) {
        round.vote = vote;
        round.received.insert(node.config.id, vote);
        round.finalize_at_ms = None; // A changed vote postpones finalizing.
        let ballot = round.ballot;
        node.emit(Event::VoteChanged { ballot, candidate: vote.candidate });
        broadcast_vote(node);
    } else if first_from_sender {
        let body = vote_body(node);
        node.send(from, body);
    }
    evaluate(node);
}

/// While looking, a peer reports the leader it follows (or that it leads).
fn on_established(node: &mut Node, from: NodeId, leader: NodeId, term: Term) {
    // Peers may still follow this very node from before it restarted: a node can
    // only lead again by an election.
    if term < node.term || leader == node.config.id {
        return;
    }
    node.fast.established.insert(from, (leader, term));
    let round = node.fast.round.as_mut().expect("looking");
    if from != leader && term == node.term && round.received.contains_key(&from) {
        // A peer that voted in this round hears the leader again: its vote is
        // withdrawn (`hears_leader`).
        round.withdrawn.insert(from);
    }
    if from == leader && term == node.term {
        hear_leader_again(node, leader);
    } else if term == node.term && !node.fast.established.contains_key(&node.config.id) {
        // A peer still hears the leader of this node's term: ask that leader
        // whether it leads, as after one of its appends.
        on_append_while_looking(node, leader);
    }
    let ballot = node.fast.round.as_ref().expect("looking").ballot;
    let agreeing = node
        .fast
        .established
        .iter()
        .filter(|(id, named)| **named == (leader, term) && node.membership.is_voter(**id))
        .count();
    // A leader of this round's term (or later) exists: follow it. An older leader
    // only if a majority still follows it (the down verdict was wrong).
    if term >= ballot {
        node.become_follower(term, Some(leader));
    } else if agreeing >= node.quorum() {
        node.become_follower(term, Some(leader));
        // Reports and ODOWN verdicts about that leader sent before the quorum
        // heard it again may still be in flight: they are stale.
        let until_ms = node.now_ms + node.config.election_timeout_ms();
        node.fast.returned_to = Some((leader, term, until_ms));
        node.emit(Event::RoundAbandoned { leader, term });
    } else {
        // A withdrawn vote may leave no quorum agreeing.
        evaluate(node);
    }
}

/// The leader of this node's own term answered its vote: it leads, and this
/// link to it works both ways, now. This node counts itself among those that
/// hear it and tells the others once; a round in which a quorum hears the
/// leader again before any vote binds is abandoned (`on_established`), and the
/// leader keeps its ballot and its leader term
/// (docs/decisions/0080-a-round-yields-to-a-leader-a-majority-hears-again.md).
/// No committed newer leader term can have deposed that leader: committing one
/// needs a majority at a later term, and none of those reports this term.
fn hear_leader_again(node: &mut Node, leader: NodeId) {
    let own_id = node.config.id;
    let term = node.term;
    if node.fast.established.insert(own_id, (leader, term)) == Some((leader, term)) {
        return; // Already told the others in this round.
    }
    // This node withholds its vote from now on (`hears_leader`).
    let round = node.fast.round.as_mut().expect("looking");
    round.finalize_at_ms = None;
    let body = Body::Vote { ballot: term, vote: own_vote(node), state: PeerState::Following { leader } };
    for peer in node.peers() {
        if peer != leader {
            node.send(peer, body.clone());
        }
    }
}

/// A looking node got an append from the leader of its own term: maybe in
/// flight since before that leader was lost, maybe sent now. Its vote goes to
/// that leader, whose answer (`PeerState::Leading`) proves which; the append
/// itself is not taken (docs/decisions/0080). One vote per append: the
/// leader's appends pace it, and no state is kept for it.
/// An append of the leader of this node's own term arrived while looking: as
/// `on_append_while_looking`, and this node binds nothing until that leader's
/// answer (which makes it withhold its vote, `hears_leader`) or its next
/// resend, a heartbeat timeout at most, whichever comes first. The append may
/// be stale (in flight since before that leader was lost), so it proves
/// nothing to others and holds this node only that long; but a round bound
/// while the answer is on its way would depose a leader this node hears
/// (docs/decisions/0087).
pub(super) fn on_leader_append_while_looking(node: &mut Node, leader: NodeId) {
    let until_ms = node.now_ms + node.config.heartbeat_timeout_ms;
    // Only after a silence: appends in flight when a crash was found at once
    // (its process gone) are expected, and say nothing of a link coming back.
    let silent_ms = detector::silence_ms(node);
    let after_silence = node.last_leader_contact_ms.is_none_or(|at_ms| node.now_ms >= at_ms + silent_ms);
    let round = node.fast.round.as_mut().expect("looking");
    if after_silence && round.awaiting_leader_until_ms.is_none() {
        round.awaiting_leader_until_ms = Some(until_ms);
        round.finalize_at_ms = None;
    }
    on_append_while_looking(node, leader);
}

pub(super) fn on_append_while_looking(node: &mut Node, leader: NodeId) {
    let round = node.fast.round.as_ref().expect("looking");
    let body = Body::Vote { ballot: round.ballot, vote: round.vote, state: PeerState::Looking };
    node.send(leader, body);
}

/// A node that is not looking answers a looking node with what it knows.
fn answer_not_looking(node: &mut Node, from: NodeId, ballot: Term, state: PeerState) {
    if state != PeerState::Looking {
        return; // Only looking nodes are answered; two settled nodes never ping-pong.
    }
    let body = match (node.role, node.leader) {
        (Role::Leader, _) => Body::Vote { ballot: node.term, vote: own_vote(node), state: PeerState::Leading },
        (_, Some(leader)) => {
            Body::Vote { ballot: node.term, vote: own_vote(node), state: PeerState::Following { leader } }
        }
        // Bound to a vote in this very round: share it, the latecomer may adopt it.
        _ => match node.fast.final_vote {
            Some((final_ballot, vote)) if final_ballot == ballot => {
                Body::Vote { ballot, vote, state: PeerState::Looking }
            }
            _ => return,
        },
    };
    node.send(from, body);
}

/// Whether `vote` came, in this round, from its own candidate: only then is its
/// data version known to be the candidate's (a report's may be stale).
fn confirmed(round: &Round, vote: &VoteChoice) -> bool {
    round.received.get(&vote.candidate) == Some(vote)
}

/// A vote given up on for want of confirmation is taken again only once its
/// candidate confirms it.
fn adoptable(round: &Round, vote: &VoteChoice) -> bool {
    !round.shunned.contains(vote) || confirmed(round, vote)
}

/// Finalize when a quorum agrees: at once if every member that is not
/// objectively down has voted the same, else after the quiet window. A vote
/// its candidate has not confirmed never finalizes: at the window's end
/// `finalize` falls back instead.
fn evaluate(node: &mut Node) {
    let voters = node.voters.len();
    let quorum = node.quorum();
    let now_ms = node.now_ms;
    let finalize_wait_ms = node.config.finalize_wait_ms;
    let election_timeout_ms = node.config.election_timeout_ms();
    let withholding = hears_leader(node).is_some();
    let round = node.fast.round.as_mut().expect("looking");
    let awaiting = round.awaiting_leader_until_ms.is_some_and(|until_ms| now_ms < until_ms);
    if withholding || awaiting {
        // This node hears the leader it lost: it binds no vote against it.
        round.finalize_at_ms = None;
        return;
    }
    let membership = &node.membership;
    let agreeing = round
        .received
        .iter()
        .filter(|(id, vote)| **vote == round.vote && !round.withdrawn.contains(id) && membership.is_voter(**id))
        .count();
    if agreeing < quorum {
        round.finalize_at_ms = None;
        return;
    }
    // Who can still vote: every member but the lost leader — or, if the lost
    // leader's last CheckQuorum view is known, only the members it had heard
    // from (a member silent to the leader for an election timeout is down too).
    // Anyone who did vote counts whatever the view said.
    let term = node.term;
    let view = node
        .fast
        .leader_view
        .as_ref()
        .filter(|(leader, view_term, _)| Some(*leader) == round.lost_leader && *view_term == term);
    // A member that reported since (a restarted one announces itself) is alive,
    // whatever the view: even the lost leader, back with maybe the newest data.
    let heard_alive = &node.fast.heard_alive;
    let reported = |member: &NodeId| {
        heard_alive.get(member).is_some_and(|(_, at_ms)| detector::still_fresh(*at_ms, now_ms, election_timeout_ms))
    };
    let can_vote = |member: &NodeId| {
        round.received.contains_key(member)
            || reported(member)
            || (Some(*member) != round.lost_leader && view.is_none_or(|(_, _, active)| active.contains(member)))
    };
    let expected = node.voters.iter().filter(|member| can_vote(member)).count();
    debug_assert!(expected <= voters);
    // Proof that the leader of this term is alive: the quorum hearing it may
    // form within the window, and the round then yields to it (`on_established`).
    let leader_alive = leader_heard_in_round(&node.fast.established, round, term);
    if agreeing >= expected && confirmed(round, &round.vote) && !leader_alive {
        finalize(node);
    } else if round.finalize_at_ms.is_none() {
        round.finalize_at_ms = Some(now_ms + finalize_wait_ms);
    }
}

/// Whether the leader of `term` (this node's own) was heard alive during the
/// round: it answered this node, or a peer that voted in the round reports it
/// hears that leader. A node that never looked reporting its leader proves
/// nothing: it may not have noticed a crash yet.
fn leader_heard_in_round(established: &BTreeMap<NodeId, (NodeId, Term)>, round: &Round, term: Term) -> bool {
    established.iter().any(|(from, (leader, named_term))| {
        *named_term == term && (from == leader || round.received.contains_key(from))
    })
}

/// Gives up the current vote, taken from a report its candidate did not
/// confirm: back to the best vote that is confirmed, at worst this node's own.
/// The only move to a worse vote; harmless, since no vote binds before it is
/// confirmed and `finalize` checks this node's own log.
fn fall_back(node: &mut Node) {
    let own = own_vote(node);
    let round = node.fast.round.as_mut().expect("looking");
    debug_assert!(!confirmed(round, &round.vote) || round.vote.candidate != node.config.id);
    round.shunned.insert(round.vote);
    let confirmed_votes = round.received.values().copied().filter(|vote| confirmed(round, vote));
    round.vote = confirmed_votes.chain([own]).max().expect("own vote");
    round.received.insert(node.config.id, round.vote);
    round.finalize_at_ms = None;
    let (ballot, candidate) = (round.ballot, round.vote.candidate);
    node.emit(Event::VoteChanged { ballot, candidate });
    broadcast_vote(node);
    evaluate(node);
}

/// The vote becomes binding: a real vote for (ballot, candidate), persisted in
/// this batch before any message of it is sent.
fn finalize(node: &mut Node) {
    let round = node.fast.round.as_mut().expect("looking");
    if !confirmed(round, &round.vote) {
        // A vote taken from a report whose candidate never voted the same in the
        // quiet window (it crashed, or its log changed since it reported).
        return fall_back(node);
    }
    if let Some((holder, until_ms)) = node.terms.vote_lease {
        let round = node.fast.round.as_mut().expect("looking");
        if holder != round.vote.candidate && node.now_ms < until_ms {
            // The vote lease (docs/design/leader-terms.md): bind no other vote before it ends.
            round.finalize_at_ms = Some(until_ms);
            return;
        }
    }
    let round = node.fast.round.take().expect("looking");
    assert!(round.ballot > node.term, "a round binds a term above the current one");
    if round.vote < own_vote(node) {
        // This node's log grew during the round: it may not vote for an older log
        // (Raft §5.4.1). Look again, one ballot up.
        start(node, round.ballot + 1, round.lost_leader);
        return;
    }
    node.term = round.ballot;
    node.voted_for = Some(round.vote.candidate);
    node.fast.final_vote = Some((round.ballot, round.vote));
    node.fast.started_empty = false;
    node.emit(Event::VoteFinalized { ballot: round.ballot, candidate: round.vote.candidate });
    if round.vote.candidate == node.config.id {
        node.set_role(Role::Candidate);
        node.votes = VoteTally::default();
        node.votes.record(node.config.id, true);
        for early in &round.early_grants {
            node.votes.record(*early, true);
        }
        node.fast.candidate_deadline_ms = Some(node.now_ms + node.config.election_timeout_ms());
        if node.votes.result(node.voters.len()) == VoteResult::Won {
            node.fast.candidate_deadline_ms = None;
            node.become_leader();
        }
    } else {
        node.become_follower(node.term, None);
        node.start_vote_lease(round.vote.candidate);
        send_grant(node);
    }
}

fn send_grant(node: &mut Node) {
    let candidate = node.voted_for.expect("finalized");
    node.send(candidate, Body::VoteResponse { pre_vote: false, granted: true });
    node.fast.grant_resend_at_ms = Some(node.now_ms + node.config.heartbeat_timeout_ms);
}

/// A follower bound to a candidate repeats its vote until a leader shows up.
pub(super) fn resend_grant_if_due(node: &mut Node) {
    let due = node.fast.grant_resend_at_ms.is_some_and(|at| node.now_ms >= at);
    let bound = node.role == Role::Follower && node.leader.is_none();
    if due && bound && node.voted_for.is_some_and(|candidate| candidate != node.config.id) {
        send_grant(node);
    } else if due {
        node.fast.grant_resend_at_ms = None;
    }
}

/// A binding vote from `from` for this node in `term`.
pub(super) fn on_grant(node: &mut Node, from: NodeId, term: Term, granted: bool) {
    match node.role {
        Role::Candidate if term == node.term => {
            // Only the voters of this node's membership count.
            if node.membership.is_voter(from) {
                node.votes.record(from, granted);
            }
            let voters = node.voters.len();
            // The cold start needs every member (see `correction::cold_start`).
            let won = if node.fast.cold_start_candidate {
                node.votes.granted() == voters
            } else {
                node.votes.result(voters) == VoteResult::Won
            };
            if won {
                if node.fast.cold_start_candidate {
                    // Every member confirmed an empty data dir: a fresh cluster,
                    // not a replaced disk.
                    node.fast.started_empty = false;
                }
                node.fast.cold_start_wait_until_ms = None;
                node.fast.cold_start_candidate = false;
                node.fast.candidate_deadline_ms = None;
                node.become_leader();
            }
        }
        Role::Looking => {
            // The voter finalized before this node did: keep its vote for later.
            let round = node.fast.round.as_mut().expect("looking");
            if term == round.ballot && granted && node.membership.is_voter(from) {
                round.early_grants.insert(from);
                // A quorum already bound itself to this node for this ballot: no
                // other node can win it, so waiting for the rest of the votes
                // would only cost time. `finalize` still checks the lease and
                // this node's own log.
                let named_self = round.vote.candidate == node.config.id;
                if named_self && round.early_grants.len() + 1 >= node.quorum() {
                    finalize(node);
                }
            }
        }
        _ => {} // A vote for a round that is over.
    }
}

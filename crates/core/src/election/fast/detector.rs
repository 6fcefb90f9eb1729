//! Failure detection by counted misses, the subjective fail table and objective
//! down (docs/design/detection.md).

use super::{round, FailReport};
use crate::message::{Body, VoteChoice};
use crate::node::Node;
use crate::output::{Detector, Event};
use crate::status::Role;
use crate::types::{NodeId, Term};

/// Starts counting misses afresh (a leader was heard or is newly expected).
pub(super) fn restart_watch(node: &mut Node) {
    node.fast.misses = 0;
    node.fast.miss_deadline_ms = node.now_ms + node.config.heartbeat_timeout_ms;
}

/// Misses count heartbeats, not traffic (docs/design/detection.md, "heartbeat loss is
/// counted"): the leader sends one to every follower each heartbeat interval
/// whatever else it sends, so the count, and the moment a crashed leader is
/// suspected, does not depend on client load. Any contact still retracts an
/// SDOWN: it proves the link works.
pub(super) fn on_heard_from_leader(node: &mut Node, heartbeat: bool, previous_contact_ms: Option<u64>) {
    if previous_contact_ms.is_some_and(|at_ms| node.now_ms >= at_ms + silence_ms(node)) {
        node.fast.resumed_after_silence = true;
    }
    if heartbeat || node.fast.subjectively_down {
        restart_watch(node);
    }
    if node.fast.subjectively_down {
        // Retract: this node's link works again.
        node.fast.subjectively_down = false;
        node.fast.fail_table.remove(&node.config.id);
        broadcast_report(node, false);
    }
}

pub(super) fn on_tick(node: &mut Node) {
    if super::correction::waits_for_initial_leader(node) {
        // A brand-new member does not count the initial leader's absence
        // against it while the cold start may still come (cold-start.md).
        restart_watch(node);
        return;
    }
    let timeout_ms = node.config.heartbeat_timeout_ms;
    if node.now_ms >= node.fast.miss_deadline_ms {
        // Count every whole heartbeat timeout that passed without the leader.
        let windows = (node.now_ms - node.fast.miss_deadline_ms) / timeout_ms + 1;
        node.fast.misses = node.fast.misses.saturating_add(windows.min(u64::from(u32::MAX)) as u32);
        node.fast.resumed_after_silence = false;
        node.fast.miss_deadline_ms += windows * timeout_ms;
        if node.fast.misses >= node.config.miss_limit && !node.fast.subjectively_down {
            declare_subjectively_down(node, Detector::Misses);
            return;
        }
    }
    if node.fast.subjectively_down && node.now_ms >= node.fast.report_at_ms {
        // Repeat the report: messages get lost and reports expire.
        node.fast.report_at_ms = node.now_ms + timeout_ms;
        record_own_view(node);
        broadcast_report(node, true);
        check_objective_down(node);
    }
}

/// A node restarting from durable state announces itself with its data
/// version, in the form of a retraction (it holds no leader down: it just does
/// not know one yet, and counts misses from now like any follower). An election
/// starting meanwhile then waits for it and sees its data — a leader that
/// crashed and came back quickly may hold the newest (simulator seed 182).
pub(super) fn announce_restart(node: &mut Node) {
    debug_assert!(node.leader.is_none() && !node.fast.subjectively_down);
    broadcast_report(node, false);
}

/// The transport found the process of `peer` gone (its host refused a redial).
/// About this node's leader, that is the miss counter reaching its limit at once:
/// the same SDOWN, the same report, and objective down still needs a majority
/// of them. A leader that is reachable is never reported this way, since every
/// redial to it succeeds (docs/decisions/0050).
pub(super) fn on_peer_process_gone(node: &mut Node, peer: NodeId) {
    if matches!(node.role, Role::Follower) && node.leader == Some(peer) && !node.fast.subjectively_down {
        node.fast.misses = node.fast.misses.max(node.config.miss_limit);
        declare_subjectively_down(node, Detector::ProcessGone);
    }
}

fn declare_subjectively_down(node: &mut Node, detector: Detector) {
    if let Some(leader) = node.leader {
        node.emit(Event::FailureDetected { leader, term: node.term, detector });
    }
    node.fast.subjectively_down = true;
    node.fast.report_at_ms = node.now_ms + node.config.heartbeat_timeout_ms;
    node.emit(Event::SubjectivelyDown { leader: node.leader, term: node.term });
    record_own_view(node);
    broadcast_report(node, true);
    check_objective_down(node);
}

fn record_own_view(node: &mut Node) {
    let version = super::own_vote(node);
    let report = FailReport { leader: node.leader, leader_term: node.term, reported_at_ms: node.now_ms, version };
    node.fast.fail_table.insert(node.config.id, report);
}

fn broadcast_report(node: &mut Node, down: bool) {
    let body = Body::SubjectiveDown {
        leader: node.leader,
        leader_term: node.term,
        down,
        last_log_term: node.log.last_term(),
        last_log_index: node.log.last_index(),
    };
    for peer in node.peers() {
        node.send(peer, body.clone());
    }
}

/// A peer's SDOWN report (or its retraction).
pub(super) fn on_report(
    node: &mut Node,
    from: NodeId,
    leader: Option<NodeId>,
    leader_term: Term,
    down: bool,
    version: VoteChoice,
) {
    node.fast.heard_alive.insert(from, (version, node.now_ms));
    if version.last_log_index > 0 {
        super::correction::on_member_has_data(node);
    }
    if down && is_stale_verdict(node, leader, leader_term) {
        return;
    }
    if !down {
        if node.fast.fail_table.get(&from).is_some_and(|report| report.leader_term == leader_term) {
            node.fast.fail_table.remove(&from);
        }
        return;
    }
    if node.role != Role::Follower {
        return;
    }
    node.fast.fail_table.insert(from, FailReport { leader, leader_term, reported_at_ms: node.now_ms, version });
    // On a report a node also looks at its own link: one heartbeat timeout from
    // its own SDOWN counts as down, so that nodes that lost the same leader agree
    // within about one network delay, while a node that hears its leader stays out.
    if !node.fast.subjectively_down && node.fast.misses + 1 >= node.config.miss_limit {
        declare_subjectively_down(node, Detector::Misses);
    } else {
        check_objective_down(node);
    }
}

/// Whether `report` is evidence against this node's current leader. A node that
/// follows `L` of term `T` counts only reports about exactly (`L`, `T`): a node
/// that merely lost its own link, or lost some other leader, proves nothing about
/// `L`. A node with no leader at all counts every report of its term or later:
/// each says its sender has no working leader either.
fn counts_against_my_leader(node: &Node, report: &FailReport) -> bool {
    match node.leader {
        Some(_) => report.leader == node.leader && report.leader_term == node.term,
        // Reports from older terms are stale: those senders have not caught up.
        None => report.leader_term >= node.term,
    }
}

/// Whether a peer's verdict that `leader` of `leader_term` is down is known to
/// be stale: this node just left a round because a quorum heard that very
/// leader again, so the verdict was sent before (docs/decisions/0080).
fn is_stale_verdict(node: &Node, leader: Option<NodeId>, leader_term: Term) -> bool {
    node.fast.returned_to.is_some_and(|(returned_to, term, until_ms)| {
        node.now_ms < until_ms && leader == Some(returned_to) && leader_term == term && node.term == term
    })
}

/// Whether this follower's link to `leader` of `leader_term` (its own) came
/// back: a contact ended a long silence (`silence_ms`) and no miss was counted
/// since. A verdict after a crash whose process evidence came at once
/// (docs/decisions/0050) finds no silence, and is joined.
fn hears_leader_again(node: &Node, leader: Option<NodeId>, leader_term: Term) -> bool {
    node.role == Role::Follower
        && leader.is_some()
        && node.leader == leader
        && node.term == leader_term
        && !node.fast.subjectively_down
        && node.fast.resumed_after_silence
}

/// A silence long enough that a peer may hold the leader down: two heartbeat
/// timeouts short of the election timeout (at least one heartbeat timeout).
pub(super) fn silence_ms(node: &Node) -> u64 {
    node.config.heartbeat_timeout_ms * u64::from(node.config.miss_limit.max(3) - 2)
}

/// Reports expire one election timeout after they arrive.
pub(super) fn heard_recently(node: &Node, at_ms: u64) -> bool {
    still_fresh(at_ms, node.now_ms, node.config.election_timeout_ms())
}

/// Whether something heard at `at_ms` is still fresh at `now_ms`: reports and
/// signs of life last one election timeout (`expiry_ms`).
pub(super) fn still_fresh(at_ms: u64, now_ms: u64, expiry_ms: u64) -> bool {
    now_ms < at_ms + expiry_ms
}

/// Counts fresh reports about this node's leader; a majority makes it ODOWN.
fn check_objective_down(node: &mut Node) {
    if node.role != Role::Follower {
        return;
    }
    let expiry_ms = node.config.election_timeout_ms();
    let now_ms = node.now_ms;
    node.fast.fail_table.retain(|_, report| still_fresh(report.reported_at_ms, now_ms, expiry_ms));
    let agreeing = node
        .fast
        .fail_table
        .iter()
        .filter(|(id, report)| node.membership.is_voter(**id) && counts_against_my_leader(node, report))
        .count();
    if agreeing >= node.quorum() {
        let (leader, term) = (node.leader, node.term);
        let newest_term = node.fast.fail_table.values().map(|report| report.leader_term).max().unwrap_or(term);
        node.emit(Event::ObjectivelyDown { leader, term });
        for peer in node.peers() {
            node.send(peer, Body::ObjectiveDown { leader, leader_term: term });
        }
        let hint = best_reported_version(node);
        round::start_with_hint(node, term.max(newest_term) + 1, leader, hint);
    }
}

/// The best data version among the fresh reports and retractions (from nodes
/// known alive), if better than its own: the vote the round will most likely
/// settle on.
fn best_reported_version(node: &Node) -> Option<VoteChoice> {
    let own = super::own_vote(node);
    node.fast
        .heard_alive
        .iter()
        .filter(|(id, (_, at_ms))| **id != node.config.id && heard_recently(node, *at_ms))
        .map(|(_, (version, _))| *version)
        .filter(|version| *version > own)
        .max()
}

/// Another node saw the leader objectively down: join the election at once, even
/// if this node's own link is fine (a majority has lost that leader).
pub(super) fn on_objective_down(node: &mut Node, leader: Option<NodeId>, leader_term: Term) {
    if is_stale_verdict(node, leader, leader_term) {
        return;
    }
    if hears_leader_again(node, leader, leader_term) {
        // This node's link to that leader came back within the last heartbeat
        // timeout, after a silence as long as the one the verdict is about:
        // the verdict predates it. It stays out, as a Raft voter that heard its
        // leader refuses a campaign; the round's votes get its answer
        // (`Following`), and the voters ask that leader (docs/decisions/0087).
        // A leader that lost the majority still retires by CheckQuorum, and
        // the majority that lost it elects without this node.
        return;
    }
    match node.role {
        // A node without a working leader joins any election of its term; a
        // follower joins one about its own leader, or about a later term.
        Role::Follower
            if (super::lost_leader(node) && leader_term >= node.term)
                || leader_term > node.term
                || (leader == node.leader && leader_term == node.term) =>
        {
            node.emit(Event::ObjectivelyDown { leader, term: leader_term });
            let hint = best_reported_version(node);
            round::start_with_hint(node, leader_term.max(node.term) + 1, leader, hint);
        }
        Role::Looking => {
            let ballot = node.fast.round.as_ref().map_or(0, |round| round.ballot);
            if leader_term + 1 > ballot {
                round::start(node, leader_term + 1, leader);
            }
        }
        // A leader hears it is down for a majority: CheckQuorum retires it if so.
        _ => {}
    }
}

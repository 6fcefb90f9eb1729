//! Linearizable reads by ReadIndex (Raft thesis §6.4): a leader releases a read
//! only after a quorum confirmed its leadership after the read arrived, and only
//! once it has committed an entry of its own term; a leader that stops leading
//! fails the reads it holds; a follower refuses them.

mod support;

use conclave_core::{
    AppendOutcome, Body, Config, DropReason, ElectionMode, Node, NodeId, ReadIndexError, ReadState, Role,
};
use support::*;

const VOTERS: [NodeId; 3] = [1, 2, 3];

fn in_mode(id: NodeId, mode: ElectionMode) -> Config {
    let mut config = config(id, &VOTERS);
    config.election_mode = mode;
    config
}

fn answer(match_index: u64, read_round: u64) -> Body {
    Body::AppendResponse { outcome: AppendOutcome::Accepted { match_index }, read_round }
}

fn probe(prev_log_index: u64, prev_log_term: u64, leader_commit: u64, read_round: u64) -> Body {
    Body::AppendEntries {
        prev_log_index,
        prev_log_term,
        entries: Vec::new(),
        leader_commit,
        read_round,
        heartbeat: false,
    }
}

/// A leader of `mode` alone with injected peers whose first entry (no-op or
/// `BecomeLeader`) at index 1 is committed by node 2's acknowledgement.
fn serving_leader(mode: ElectionMode) -> Node {
    let mut node = node_from(in_mode(1, mode), Default::default(), 1);
    let _ = elect_alone(&mut node);
    let _ = node.step(msg(2, 1, node.term(), accepted(1)));
    assert!(node.is_serving());
    assert_eq!(node.log().committed(), 1);
    node
}

#[test]
fn a_leader_releases_a_read_once_a_quorum_confirms_it_after_the_read_arrived() {
    // Reference: Raft thesis §6.4, steps 1-3 — record the commit index, then
    // confirm leadership with a round of heartbeats.
    let mut node = serving_leader(ElectionMode::Raft);
    let term = node.term();
    let output = node.read_index(42).expect("a leader takes reads");
    assert!(output.read_states.is_empty(), "not before a quorum confirms");
    assert!(!output.needs_persist(), "a read persists nothing");
    assert_eq!(
        output.messages,
        vec![msg(1, 2, term, probe(1, term, 1, 1)), msg(1, 3, term, probe(0, 0, 0, 1))],
        "one empty append per follower, at its match index, carrying round 1"
    );

    // An echo of an older round proves nothing about this read.
    let output = node.step(msg(2, 1, term, answer(1, 0)));
    assert!(output.read_states.is_empty());
    // A rejection of this term still acknowledges the leadership.
    let rejection =
        Body::AppendResponse { outcome: AppendOutcome::Rejected { prev_log_index: 1, hint_index: 0 }, read_round: 1 };
    let output = node.step(msg(3, 1, term, rejection));
    assert_eq!(output.read_states, vec![ReadState { context: 42, index: 1 }]);
    assert_eq!(node.pending_reads(), 0);
}

#[test]
fn the_read_index_is_the_commit_index_when_the_read_arrived() {
    let mut node = serving_leader(ElectionMode::Raft);
    let term = node.term();
    let write = node.propose(b"x".to_vec()).unwrap();
    let _ = node.step(msg(2, 1, term, accepted(write.index)));
    assert_eq!(node.log().committed(), 2);
    let _ = node.read_index(5).unwrap();
    let later = node.propose(b"y".to_vec()).unwrap();
    let _ = node.step(msg(2, 1, term, accepted(later.index)));
    assert_eq!(node.log().committed(), 3);
    let output = node.step(msg(2, 1, term, answer(later.index, 1)));
    assert_eq!(output.read_states, vec![ReadState { context: 5, index: 2 }]);
}

#[test]
fn reads_arriving_during_a_round_join_the_next_one() {
    let mut node = serving_leader(ElectionMode::Raft);
    let term = node.term();
    let _ = node.read_index(1).unwrap();
    let output = node.read_index(2).unwrap();
    assert!(output.messages.is_empty(), "a round is in flight: the second read waits for the next");
    let _ = node.read_index(3).unwrap();
    // Round 1 confirmed: read 1 goes, and round 2 starts for reads 2 and 3.
    let output = node.step(msg(2, 1, term, answer(1, 1)));
    assert_eq!(output.read_states, vec![ReadState { context: 1, index: 1 }]);
    assert_eq!(output.messages.len(), 2, "round 2 goes to both followers: {:?}", output.messages);
    assert!(output.messages.iter().all(|message| matches!(message.body, Body::AppendEntries { read_round: 2, .. })));
    // A late echo of round 1 from the other follower confirms nothing new.
    assert!(node.step(msg(3, 1, term, answer(0, 1))).read_states.is_empty());
    let output = node.step(msg(3, 1, term, answer(0, 2)));
    assert_eq!(output.read_states, vec![ReadState { context: 2, index: 1 }, ReadState { context: 3, index: 1 }]);
}

#[test]
fn every_append_carries_the_latest_round() {
    let mut node = serving_leader(ElectionMode::Raft);
    let _ = node.read_index(1).unwrap();
    let write = node.propose(b"x".to_vec()).unwrap();
    assert!(!write.output.messages.is_empty());
    for message in &write.output.messages {
        assert!(matches!(message.body, Body::AppendEntries { read_round: 1, .. }), "{message:?}");
    }
    let beat = node.tick(node.next_deadline_ms());
    assert!(beat.messages.iter().all(|message| matches!(message.body, Body::AppendEntries { read_round: 1, .. })));
}

#[test]
fn a_follower_answers_with_the_round_it_was_sent() {
    let mut node = new_node(2, &VOTERS, 2);
    let output = node.step(msg(1, 2, 1, probe(0, 0, 0, 9)));
    assert_eq!(output.messages, vec![msg(2, 1, 1, answer(0, 9))]);
    // A stale leader's append is refused, with its round echoed.
    let _ = node.step(msg(1, 2, 2, probe(0, 0, 0, 9)));
    let output = node.step(msg(3, 2, 1, probe(5, 1, 0, 4)));
    assert_eq!(output.messages.len(), 1);
    assert!(output.messages.iter().all(|message| matches!(message.body, Body::AppendResponse { read_round: 4, .. })));
}

#[test]
fn a_leader_that_has_not_committed_an_entry_of_its_term_holds_its_reads() {
    // Reference: Raft thesis §6.4 step 1 — the leader's commit index is current
    // only once it committed an entry of its own term; in raft mode that is its
    // no-op, in gapless and conclave its BecomeLeader (DESIGN.md §3.4: the
    // leader-elect does not serve).
    // (conclave shares gapless's rule; its fast election needs real peers.)
    for mode in [ElectionMode::Raft, ElectionMode::Gapless] {
        let mut node = node_from(in_mode(1, mode), Default::default(), 1);
        let _ = elect_alone(&mut node);
        let term = node.term();
        assert_eq!(node.role(), Role::Leader);
        assert_eq!(node.log().committed(), 0);
        let _ = node.read_index(8).expect("a leader-elect takes the read and holds it");
        // Both followers confirm the round, but hold nothing of this term yet.
        assert!(node.step(msg(2, 1, term, answer(0, 1))).read_states.is_empty(), "{mode:?}");
        assert!(node.step(msg(3, 1, term, answer(0, 1))).read_states.is_empty(), "{mode:?}");
        assert_eq!(node.pending_reads(), 1);
        // Its first entry commits: the read goes, at an index that covers it.
        let output = node.step(msg(2, 1, term, accepted(1)));
        assert!(node.is_serving());
        assert_eq!(output.read_states, vec![ReadState { context: 8, index: 1 }], "{mode:?}");
    }
}

#[test]
fn a_leader_that_steps_down_fails_the_reads_it_holds() {
    let mut node = serving_leader(ElectionMode::Raft);
    let term = node.term();
    let _ = node.read_index(1).unwrap();
    let _ = node.read_index(2).unwrap();
    // A leader of a higher term: it follows, and neither read can be confirmed.
    let output = node.step(msg(3, 1, term + 1, heartbeat(0, 0, 0)));
    assert_ne!(node.role(), Role::Leader);
    assert_eq!(output.failed_reads, vec![1, 2]);
    assert!(output.read_states.is_empty());
    assert_eq!(node.pending_reads(), 0);
    // The old round's echoes, now stale, release nothing.
    let output = node.step(msg(2, 1, term, answer(1, 1)));
    assert!(output.read_states.is_empty() && output.failed_reads.is_empty());
}

#[test]
fn a_leader_that_loses_its_quorum_fails_its_reads() {
    // CheckQuorum (thesis §6.2) ends a leadership cut off in a minority; its
    // reads fail instead of hanging.
    let mut node = serving_leader(ElectionMode::Raft);
    let _ = node.read_index(3).unwrap();
    let mut failed = Vec::new();
    for _ in 0..10 {
        let output = node.tick(node.next_deadline_ms());
        assert!(output.read_states.is_empty());
        failed.extend(output.failed_reads);
        if node.role() != Role::Leader {
            break;
        }
    }
    assert_ne!(node.role(), Role::Leader, "no quorum answered for an election timeout");
    assert_eq!(failed, vec![3]);
}

#[test]
fn a_follower_refuses_reads_and_names_the_leader() {
    let mut node = new_node(2, &VOTERS, 2);
    assert_eq!(node.read_index(1), Err(ReadIndexError::NotLeader { leader: None }));
    let _ = node.step(msg(1, 2, 1, heartbeat(0, 0, 0)));
    assert_eq!(node.read_index(1), Err(ReadIndexError::NotLeader { leader: Some(1) }));
    assert_eq!(node.pending_reads(), 0);
}

#[test]
fn a_single_node_releases_a_read_at_once() {
    let mut node = new_node(1, &[1], 1);
    let _ = node.tick(node.next_deadline_ms());
    assert!(node.is_serving());
    let write = node.propose(b"x".to_vec()).unwrap();
    assert_eq!(node.log().committed(), write.index);
    let output = node.read_index(4).unwrap();
    assert_eq!(output.read_states, vec![ReadState { context: 4, index: write.index }]);
    assert!(output.messages.is_empty());
}

#[test]
fn an_echo_of_a_round_not_yet_started_is_dropped() {
    // Bad input: no correct follower can echo a round the leader never sent.
    let mut node = serving_leader(ElectionMode::Raft);
    let term = node.term();
    let _ = node.read_index(1).unwrap();
    let before = node.status().dropped.get(DropReason::ImpossibleFields);
    let output = node.step(msg(2, 1, term, answer(1, 2)));
    assert!(output.read_states.is_empty(), "the forged echo confirms nothing");
    assert_eq!(node.status().dropped.get(DropReason::ImpossibleFields), before + 1);
    assert_eq!(node.pending_reads(), 1);
}

#[test]
fn a_partitioned_old_leader_never_releases_a_read() {
    // The stale-leader case of DESIGN.md §3.4: cut off, node 1 still believes it
    // leads. Its read must not come back while the majority elects a new leader
    // and commits a write the old leader never sees.
    let mut cluster = Cluster::new(3, 10);
    cluster.elect(1);
    let first = cluster.propose(1, b"before");
    cluster.deliver_all();
    assert_eq!(cluster.node(1).log().committed(), first);

    cluster.isolated.insert(1);
    cluster.read_index(1, 77).unwrap();
    cluster.deliver_all();
    assert_eq!(cluster.read_released(1, 77), None);

    // The majority moves on: node 2 leads and commits a write.
    let now = cluster.now_ms + 3 * ELECTION_TIMEOUT_MS;
    let _ = cluster.tick(2, now);
    let _ = cluster.tick(3, now);
    cluster.deliver_all();
    let mut budget = 20;
    while cluster.node(2).role() != Role::Leader && budget > 0 {
        budget -= 1;
        let at = cluster.node(2).next_deadline_ms().max(cluster.now_ms);
        let _ = cluster.tick(2, at);
        cluster.deliver_all();
    }
    assert_eq!(cluster.node(2).role(), Role::Leader);
    let write = cluster.propose(2, b"after");
    cluster.deliver_all();
    assert!(cluster.node(2).log().committed() >= write, "the majority commits without node 1");
    // A read at the new leader sees the write.
    cluster.read_index(2, 78).unwrap();
    cluster.deliver_all();
    assert!(cluster.read_released(2, 78).is_some_and(|index| index >= write));

    // Healed, the old leader learns the new term and fails its read.
    cluster.isolated.clear();
    let _ = cluster.tick(2, cluster.now_ms + HEARTBEAT_MS);
    cluster.deliver_all();
    assert_ne!(cluster.node(1).role(), Role::Leader);
    assert_eq!(cluster.read_released(1, 77), None);
    assert!(cluster.read_failed(1, 77));
}

#[test]
fn reads_in_a_cluster_see_every_write_committed_before_them() {
    // A read released at index R covers every write whose commit was known
    // anywhere before the read was asked.
    let mut cluster = Cluster::new(3, 20);
    cluster.elect(1);
    for round in 0..5u64 {
        let index = cluster.propose(1, format!("w{round}").as_bytes());
        cluster.deliver_all();
        let committed_anywhere = VOTERS.iter().map(|id| cluster.node(*id).log().committed()).max().unwrap();
        assert!(committed_anywhere >= index);
        cluster.read_index(1, round).unwrap();
        cluster.deliver_all();
        let read_at = cluster.read_released(1, round).expect("released");
        assert!(read_at >= committed_anywhere, "read {round} at {read_at} misses commit {committed_anywhere}");
    }
}

#[test]
fn an_impossible_acknowledgement_confirms_no_read() {
    // Bad input: an answer that acknowledges entries the leader never had is
    // dropped whole, its round echo included.
    let mut node = serving_leader(ElectionMode::Raft);
    let term = node.term();
    let _ = node.read_index(1).unwrap();
    let before = node.status().dropped.get(DropReason::ImpossibleFields);
    let output = node.step(msg(2, 1, term, answer(99, 1)));
    assert!(output.read_states.is_empty());
    assert_eq!(node.status().dropped.get(DropReason::ImpossibleFields), before + 1);
    let output = node.step(msg(2, 1, term, answer(1, 1)));
    assert_eq!(output.read_states, vec![ReadState { context: 1, index: 1 }]);
}

#[test]
fn a_read_is_confirmed_no_later_than_the_commit_of_an_entry_proposed_after_it() {
    // What lets a driver serve a connection's pipelined read before its next
    // write: a read waiting for the next round (one is in flight) joins a new
    // round the moment an entry is proposed, and the answers that commit the
    // entry confirm the read in the same batch.
    let mut node = serving_leader(ElectionMode::Raft);
    let term = node.term();
    let _ = node.read_index(1).unwrap(); // Round 1 in flight.
    let _ = node.read_index(2).unwrap(); // Waits for the next round.
    let write = node.propose(b"later".to_vec()).unwrap();
    for message in &write.output.messages {
        assert!(matches!(message.body, Body::AppendEntries { read_round: 2, .. }), "{message:?}");
    }
    let output = node.step(msg(2, 1, term, answer(write.index, 2)));
    assert_eq!(node.log().committed(), write.index, "the entry commits on this answer");
    assert_eq!(
        output.read_states,
        vec![ReadState { context: 1, index: 1 }, ReadState { context: 2, index: 1 }],
        "both reads are released with it, at an index below the entry"
    );
    assert_eq!(output.committed_entries.last().map(|entry| entry.index), Some(write.index));
}

#[test]
fn a_read_held_for_the_leaders_first_commit_never_requires_a_later_entry() {
    // A read that arrives before the leader committed in its term takes its
    // index when released, but never above the leader's last index when the
    // read arrived: an entry proposed after the read is not part of it.
    let mut node = node_from(in_mode(1, ElectionMode::Raft), Default::default(), 1);
    let _ = elect_alone(&mut node);
    let term = node.term();
    let _ = node.read_index(9).unwrap();
    let later = node.propose(b"after the read".to_vec()).unwrap();
    assert_eq!(later.index, 2, "the no-op is at 1");
    let output = node.step(msg(2, 1, term, answer(later.index, 1)));
    assert_eq!(node.log().committed(), later.index);
    assert_eq!(output.read_states, vec![ReadState { context: 9, index: 1 }]);
}

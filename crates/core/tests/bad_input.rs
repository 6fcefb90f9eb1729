//! Malformed, misaddressed and hostile input: every `DropReason`, and the start-up
//! checks of `Node::new`. A dropped message must not panic, must produce an empty
//! output, must leave the node's state alone, and must be counted exactly once.

mod support;

use conclave_core::{
    Body, Config, ConfigError, DropReason, ElectionMode, Entry, HardState, LeaderTermRecord, Message, Node, NodeId,
    Output, Payload, PeerState, RestoredState, Role, SnapshotMeta, StartError, Status, VoteChoice,
};
use rand::Rng;
use support::*;

const VOTERS: [NodeId; 3] = [1, 2, 3];

/// Steps `message` into `node` and checks that it was dropped for `reason` and
/// nothing else happened.
fn assert_dropped(node: &mut Node, message: Message, reason: DropReason) {
    let before = node.status();
    let log_before = node.log().all().to_vec();
    let deadline_before = node.next_deadline_ms();
    let output = node.step(message.clone());
    assert_eq!(output, Output::default(), "{message:?} produced output");
    let after = node.status();
    assert_eq!(
        after.dropped.get(reason),
        before.dropped.get(reason) + 1,
        "{message:?} was not counted as {}",
        reason.name()
    );
    assert_eq!(after.dropped.total(), before.dropped.total() + 1, "{message:?} counted once");
    assert_eq!(without_drops(after), without_drops(before), "{message:?} changed the node");
    assert_eq!(node.log().all(), log_before.as_slice(), "{message:?} changed the log");
    assert_eq!(node.next_deadline_ms(), deadline_before, "{message:?} moved a timer");
    node.validate().expect("invariants hold");
}

fn without_drops(status: Status) -> Status {
    Status { dropped: Default::default(), ..status }
}

/// Node 1 as a follower at term 2 with a committed prefix [1, 2] and an
/// uncommitted entry 3, knowing node 2 as its leader.
fn follower() -> Node {
    let mut node = restored_node(config(1, &VOTERS), hard_state(2, None, 2), &[1, 2, 2], 1);
    let output = node.step(msg(2, 1, 2, heartbeat(3, 2, 2)));
    assert_eq!(output.messages, vec![msg(1, 2, 2, accepted(3))]);
    assert_eq!((node.role(), node.leader()), (Role::Follower, Some(2)));
    node
}

/// Node 1 leading term 1 (elected by injected votes).
fn leader() -> Node {
    let mut node = new_node(1, &VOTERS, 1);
    let _ = elect_alone(&mut node);
    node
}

#[test]
fn wrong_cluster_is_dropped() {
    let mut node = follower();
    let message = Message { cluster_id: CLUSTER_ID + 1, ..msg(2, 1, 2, heartbeat(3, 2, 3)) };
    assert_dropped(&mut node, message, DropReason::WrongCluster);
    let mut node = leader();
    let message = Message { cluster_id: CLUSTER_ID + 1, ..msg(2, 1, 9, vote_request(0, 0)) };
    assert_dropped(&mut node, message, DropReason::WrongCluster);
}

#[test]
fn sender_that_is_not_a_member_is_dropped() {
    // Requests from a non-member are taken (a member whose log lags a change
    // hears the nodes it made voters: tests/membership.rs); answers to a
    // leader are not, nor anything from the reserved id 0.
    let mut node = follower();
    assert_dropped(&mut node, msg(0, 1, 2, heartbeat(3, 2, 3)), DropReason::UnknownSender);
    assert_dropped(&mut node, msg(0, 1, 5, vote_request(2, 3)), DropReason::UnknownSender);
    let mut node = leader();
    assert_dropped(&mut node, msg(4, 1, 1, accepted(1)), DropReason::UnknownSender);
}

#[test]
fn message_from_self_is_dropped() {
    let mut node = follower();
    assert_dropped(&mut node, msg(1, 1, 2, heartbeat(3, 2, 3)), DropReason::UnknownSender);
    let mut node = leader();
    assert_dropped(&mut node, msg(1, 1, 1, accepted(1)), DropReason::UnknownSender);
    assert_dropped(&mut node, msg(1, 1, 3, vote_request(1, 1)), DropReason::UnknownSender);
}

#[test]
fn misdirected_message_is_dropped() {
    let mut node = follower();
    assert_dropped(&mut node, msg(2, 3, 2, heartbeat(3, 2, 3)), DropReason::Misdirected);
    assert_dropped(&mut node, msg(2, 9, 7, vote_request(2, 3)), DropReason::Misdirected);
}

#[test]
fn term_zero_is_impossible() {
    let mut node = new_node(1, &VOTERS, 1);
    for body in [heartbeat(0, 0, 0), vote_request(0, 0), pre_vote_request(0, 0), vote(true), accepted(0)] {
        assert_dropped(&mut node, msg(2, 1, 0, body), DropReason::ImpossibleFields);
    }
}

#[test]
fn non_contiguous_entries_are_impossible() {
    let mut node = follower();
    let gap = append(3, 2, vec![entry(2, 4), entry(2, 6)], 3);
    assert_dropped(&mut node, msg(2, 1, 2, gap), DropReason::ImpossibleFields);
    let wrong_start = append(3, 2, vec![entry(2, 5)], 3);
    assert_dropped(&mut node, msg(2, 1, 2, wrong_start), DropReason::ImpossibleFields);
    // Terms going back along the log are just as impossible.
    let decreasing = append(3, 2, vec![entry(1, 4)], 3);
    assert_dropped(&mut node, msg(2, 1, 2, decreasing), DropReason::ImpossibleFields);
}

#[test]
fn entry_term_above_message_term_is_impossible() {
    let mut node = follower();
    let future = append(3, 2, vec![entry(3, 4)], 3);
    assert_dropped(&mut node, msg(2, 1, 2, future), DropReason::ImpossibleFields);
    let future_prev = heartbeat(3, 3, 3);
    assert_dropped(&mut node, msg(2, 1, 2, future_prev), DropReason::ImpossibleFields);
    // prev_log_term and prev_log_index are 0 together or not at all.
    assert_dropped(&mut node, msg(2, 1, 2, heartbeat(0, 1, 0)), DropReason::ImpossibleFields);
    assert_dropped(&mut node, msg(2, 1, 2, heartbeat(2, 0, 0)), DropReason::ImpossibleFields);
}

#[test]
fn a_heartbeat_with_entries_is_impossible() {
    let mut node = follower();
    let body = match append(3, 2, vec![entry(2, 4)], 3) {
        Body::AppendEntries { prev_log_index, prev_log_term, entries, leader_commit, read_round, .. } => {
            Body::AppendEntries { prev_log_index, prev_log_term, entries, leader_commit, read_round, heartbeat: true }
        }
        other => unreachable!("{other:?}"),
    };
    assert_dropped(&mut node, msg(2, 1, 2, body), DropReason::ImpossibleFields);
}

#[test]
fn leader_commit_beyond_what_the_message_carries_is_impossible() {
    let mut node = follower();
    assert_dropped(&mut node, msg(2, 1, 2, heartbeat(2, 2, 3)), DropReason::ImpossibleFields);
    assert_dropped(&mut node, msg(2, 1, 2, append(3, 2, vec![entry(2, 4)], 5)), DropReason::ImpossibleFields);
    assert_eq!(node.status().commit, 2, "the bogus commit index was not applied");
}

#[test]
fn vote_request_with_last_log_term_above_its_term_is_impossible() {
    let mut node = follower();
    assert_dropped(&mut node, msg(3, 1, 3, vote_request(4, 9)), DropReason::ImpossibleFields);
    assert_dropped(&mut node, msg(3, 1, 3, pre_vote_request(4, 9)), DropReason::ImpossibleFields);
    // last_log_term and last_log_index are 0 together or not at all.
    assert_dropped(&mut node, msg(3, 1, 3, vote_request(1, 0)), DropReason::ImpossibleFields);
    assert_dropped(&mut node, msg(3, 1, 3, vote_request(0, 4)), DropReason::ImpossibleFields);
}

#[test]
fn rejection_hint_not_below_prev_index_is_impossible() {
    let mut node = leader();
    assert_dropped(&mut node, msg(2, 1, 1, rejected(3, 3)), DropReason::ImpossibleFields);
    assert_dropped(&mut node, msg(2, 1, 1, rejected(1, 5)), DropReason::ImpossibleFields);
    assert_dropped(&mut node, msg(2, 1, 1, rejected(0, 1)), DropReason::ImpossibleFields);
}

#[test]
fn acknowledgement_beyond_the_leader_log_is_impossible() {
    let mut node = leader();
    assert_eq!(node.log().last_index(), 1);
    assert_dropped(&mut node, msg(2, 1, 1, accepted(5)), DropReason::ImpossibleFields);
    assert_eq!(node.status().followers[&2].match_index, 0);
}

#[test]
fn second_leader_in_the_same_term_is_impossible() {
    let mut node = leader();
    assert_dropped(&mut node, msg(2, 1, 1, append(0, 0, vec![entry(1, 1)], 0)), DropReason::ImpossibleFields);
    assert_eq!(node.role(), Role::Leader);
}

#[test]
fn stale_responses_are_dropped_silently() {
    let mut node = follower();
    for body in [vote(true), pre_vote(false), accepted(3), rejected(3, 1)] {
        assert_dropped(&mut node, msg(3, 1, 1, body), DropReason::StaleTerm);
    }
}

#[test]
fn stale_requests_are_counted_once_and_answered_once() {
    // A stale request changes nothing but earns exactly one refusal at the current
    // term (Raft §5.1), so that its sender steps down.
    for (body, answer) in [
        (heartbeat(3, 1, 0), rejected(3, 2)),
        (vote_request(1, 3), vote(false)),
        (pre_vote_request(1, 3), pre_vote(false)),
    ] {
        let mut node = follower();
        let before = node.status();
        let output = node.step(msg(3, 1, 1, body));
        assert_eq!(output, only_messages(vec![msg(1, 3, 2, answer)]));
        let after = node.status();
        assert_eq!(after.dropped.get(DropReason::StaleTerm), before.dropped.get(DropReason::StaleTerm) + 1);
        assert_eq!(after.dropped.total(), before.dropped.total() + 1);
        assert_eq!(without_drops(after), without_drops(before));
    }
}

#[test]
fn vote_request_during_leader_lease_is_dropped() {
    let mut node = follower();
    assert_dropped(&mut node, msg(3, 1, 3, vote_request(2, 3)), DropReason::LeaderLease);
    assert_dropped(&mut node, msg(3, 1, 3, pre_vote_request(2, 3)), DropReason::LeaderLease);
    let mut node = leader();
    assert_dropped(&mut node, msg(3, 1, 2, vote_request(1, 1)), DropReason::LeaderLease);
    assert_dropped(&mut node, msg(3, 1, 2, pre_vote_request(1, 1)), DropReason::LeaderLease);
}

#[test]
fn append_contradicting_the_committed_prefix_is_dropped() {
    // The follower committed [1@1, 2@2]. A "leader" claiming index 2 has term 1,
    // or sending a different entry at index 2, can only be broken.
    let mut node = follower();
    let wrong_prev = append(2, 1, vec![entry(2, 3)], 2);
    assert_dropped(&mut node, msg(2, 1, 2, wrong_prev), DropReason::ConflictsWithCommitted);
    let overwrite = append(1, 1, vec![entry(1, 2), entry(2, 3)], 0);
    assert_dropped(&mut node, msg(2, 1, 2, overwrite), DropReason::ConflictsWithCommitted);
    // From a node other than the known leader, it does not make the follower
    // switch leaders either.
    let wrong_prev = append(2, 1, vec![entry(2, 3)], 2);
    assert_dropped(&mut node, msg(3, 1, 2, wrong_prev), DropReason::ConflictsWithCommitted);
    assert_eq!(node.leader(), Some(2));
    let same_term_other_payload = Entry { payload: conclave_core::Payload::Noop, ..entry(2, 2) };
    // Same index and term but another payload cannot be told apart by Raft: it
    // is taken as the entry already present and nothing changes.
    let output = node.step(msg(2, 1, 2, append(1, 1, vec![same_term_other_payload], 0)));
    assert_eq!(output, only_messages(vec![msg(1, 2, 2, accepted(2))]));
    assert_eq!(node.log().all(), log_with_terms(&[1, 2, 2]).as_slice());
}

#[test]
fn append_contradicting_the_committed_prefix_does_not_depose_a_candidate() {
    let mut config = config(1, &VOTERS);
    config.pre_vote = false;
    let mut node = node_from(
        config,
        RestoredState { hard_state: hard_state(2, None, 2), entries: log_with_terms(&[1, 2, 2]), snapshot: None },
        1,
    );
    let _ = node.tick(node.next_deadline_ms());
    assert_eq!((node.role(), node.term()), (Role::Candidate, 3));
    let wrong_prev = append(2, 1, vec![entry(3, 3)], 2);
    assert_dropped(&mut node, msg(2, 1, 3, wrong_prev), DropReason::ConflictsWithCommitted);
    let overwrite = append(1, 1, vec![entry(3, 2)], 0);
    assert_dropped(&mut node, msg(2, 1, 3, overwrite), DropReason::ConflictsWithCommitted);
    assert_eq!(node.role(), Role::Candidate);
}

#[test]
fn another_election_mode_s_messages_are_dropped() {
    // A raft-mode node receiving fast-mode gossip (a misconfigured peer).
    let mut node = follower();
    let gossip = [
        Body::SubjectiveDown { leader: Some(2), leader_term: 2, down: true, last_log_term: 0, last_log_index: 0 },
        Body::ObjectiveDown { leader: Some(2), leader_term: 2 },
        Body::Vote {
            ballot: 3,
            vote: VoteChoice { candidate: 3, last_log_term: 2, last_log_index: 3, priority: 1 },
            state: PeerState::Looking,
        },
        Body::Correction { leader: 2, leader_term: 2 },
        Body::Liveness { active: vec![2] },
    ];
    for body in gossip {
        assert_dropped(&mut node, msg(3, 1, 2, body), DropReason::WrongElectionMode);
    }
}

#[test]
fn vote_request_during_vote_lease_is_dropped() {
    // Reference: docs/design/leader-terms.md (vote lease): after granting a vote, no other
    // vote, whatever the ballot, until the lease ends.
    let mut gapless = config(1, &VOTERS);
    gapless.election_mode = ElectionMode::Gapless;
    gapless.check_quorum = false; // isolate the vote lease from the leader lease
    let mut node = node_from(gapless.clone(), RestoredState::default(), 1);
    let output = node.step(msg(2, 1, 1, vote_request(0, 0)));
    assert_eq!(output.messages, vec![msg(1, 2, 1, vote(true))]);
    assert_dropped(&mut node, msg(3, 1, 2, vote_request(0, 0)), DropReason::VoteLease);
    assert_dropped(&mut node, msg(3, 1, 2, pre_vote_request(0, 0)), DropReason::VoteLease);
    // The candidate voted for may ask again (a retransmission) and is answered.
    let output = node.step(msg(2, 1, 1, vote_request(0, 0)));
    assert_eq!(output.messages, vec![msg(1, 2, 1, vote(true))]);
    // Once the lease ends, the higher ballot gets its vote.
    let _ = node.tick(gapless.vote_lease_ms);
    let output = node.step(msg(3, 1, 2, vote_request(0, 0)));
    assert_eq!(output.messages, vec![msg(1, 3, 2, vote(true))]);
    assert_eq!((node.term(), node.status().voted_for), (2, Some(3)));
}

fn chunk(meta: SnapshotMeta, total_bytes: u64, offset: u64, data: &[u8], done: bool) -> Body {
    Body::InstallSnapshot { meta, total_bytes, offset, data: data.to_vec().into(), done }
}

fn learners_only() -> conclave_core::Membership {
    let mut membership = conclave_core::Membership::bootstrap(&VOTERS, &Default::default());
    for member in membership.members.values_mut() {
        member.voter = false;
    }
    membership
}

fn snapshot_meta(index: u64, term: u64) -> SnapshotMeta {
    SnapshotMeta {
        last_included_index: index,
        last_included_term: term,
        membership: conclave_core::Membership::bootstrap(&VOTERS, &Default::default()),
        last_leader_term: None,
    }
}

#[test]
fn install_snapshot_chunks_with_impossible_sizes_are_dropped() {
    // Reference: Raft §7 — offset and data must lie within the snapshot, and
    // `done` marks exactly the chunk that ends it.
    let mut node = follower();
    let meta = snapshot_meta(5, 2);
    let impossible = [
        chunk(meta.clone(), 10, 11, b"", true),         // offset beyond the data
        chunk(meta.clone(), 10, 8, b"abc", true),       // chunk runs past the end
        chunk(meta.clone(), 10, 0, b"abc", true),       // `done` before the end
        chunk(meta.clone(), 3, 0, b"abc", false),       // the end without `done`
        chunk(meta.clone(), 10, 0, b"", false),         // an empty chunk that is not the last
        chunk(meta.clone(), 10, u64::MAX, b"a", false), // offset overflows
    ];
    for body in impossible {
        assert_dropped(&mut node, msg(2, 1, 2, body), DropReason::ImpossibleFields);
    }
}

#[test]
fn install_snapshot_with_impossible_metadata_is_dropped() {
    let mut node = follower();
    let beyond = LeaderTermRecord { leader_term: 1, leader: 2, ballot: 2, index: 6 };
    let impossible = [
        snapshot_meta(0, 0),                                                    // covers nothing
        snapshot_meta(5, 0),                                                    // term 0
        snapshot_meta(5, 3),                                                    // term beyond the message's
        SnapshotMeta { membership: learners_only(), ..snapshot_meta(5, 2) },    // no voter
        SnapshotMeta { last_leader_term: Some(beyond), ..snapshot_meta(5, 2) }, // BecomeLeader past its end
    ];
    for meta in impossible {
        assert_dropped(&mut node, msg(2, 1, 2, chunk(meta, 3, 0, b"abc", true)), DropReason::ImpossibleFields);
    }
    assert_eq!(node.snapshot(), None);
}

#[test]
fn install_snapshot_at_or_below_the_commit_index_is_dropped_as_stale() {
    // The follower already holds everything such a snapshot covers.
    // Like a stale term, it is counted and answered: "installed" (its committed
    // prefix matches the leader's), so a leader that lost the real answer stops
    // sending it.
    let mut node = follower();
    assert_eq!(node.status().commit, 2);
    for index in [1, 2] {
        let before = node.status();
        let deadline_before = node.next_deadline_ms();
        let body = chunk(snapshot_meta(index, 1.max(index - 1)), 3, 0, b"abc", true);
        let output = node.step(msg(2, 1, 2, body));
        let answer = Body::SnapshotResponse { last_included_index: index, received_bytes: 3, installed: true };
        assert_eq!(output, only_messages(vec![msg(1, 2, 2, answer)]));
        let after = node.status();
        assert_eq!(after.dropped.get(DropReason::StaleSnapshot), before.dropped.get(DropReason::StaleSnapshot) + 1);
        assert_eq!(after.dropped.total(), before.dropped.total() + 1);
        assert_eq!(without_drops(after), without_drops(before), "nothing changed");
        assert_eq!(node.next_deadline_ms(), deadline_before, "no timer moved");
    }
    assert_eq!(node.log().first_index(), 1, "nothing was installed");
}

#[test]
fn install_snapshot_to_the_leader_of_the_same_term_is_impossible() {
    let mut node = leader();
    assert_dropped(&mut node, msg(2, 1, 1, chunk(snapshot_meta(5, 1), 1, 0, b"a", true)), DropReason::ImpossibleFields);
    assert_eq!(node.role(), Role::Leader);
}

/// Node 1 leading term 1 with its entry 1 committed and compacted into a
/// 10-byte snapshot, sending that snapshot to node 3 (which never answered).
fn leader_sending_a_snapshot() -> Node {
    let mut node = leader();
    let output = node.step(msg(2, 1, 1, accepted(1)));
    assert_eq!(output.committed_entries.len(), 1);
    node.compact(1, vec![7; 10]).expect("compact");
    let now = node.next_deadline_ms();
    let output = node.tick(now);
    assert!(
        output.messages.iter().any(|message| message.to == 3 && matches!(message.body, Body::InstallSnapshot { .. })),
        "{:?}",
        output.messages
    );
    node
}

#[test]
fn snapshot_responses_with_impossible_fields_are_dropped() {
    let mut node = leader_sending_a_snapshot();
    let response = |last_included_index, received_bytes, installed| Body::SnapshotResponse {
        last_included_index,
        received_bytes,
        installed,
    };
    // No snapshot ends at index 0.
    assert_dropped(&mut node, msg(3, 1, 1, response(0, 0, false)), DropReason::ImpossibleFields);
    // More bytes than the snapshot has.
    assert_dropped(&mut node, msg(3, 1, 1, response(1, 11, false)), DropReason::ImpossibleFields);
    // Installed a snapshot beyond the leader's own log.
    assert_dropped(&mut node, msg(3, 1, 1, response(5, 10, true)), DropReason::ImpossibleFields);
    assert_eq!(node.status().followers[&3].match_index, 0);
}

#[test]
fn a_liveness_view_naming_its_sender_is_impossible_and_strangers_are_left_out() {
    // Reference: docs/design/vote-exchange.md — the leader's view lists the members it heard
    // from: never itself.
    let mut fast = config(1, &VOTERS);
    fast.election_mode = ElectionMode::Fast;
    let mut node = node_from(fast, RestoredState::default(), 1);
    let _ = node.step(msg(2, 1, 2, heartbeat(0, 0, 0)));
    assert_eq!(node.leader(), Some(2));
    assert_dropped(&mut node, msg(2, 1, 2, Body::Liveness { active: vec![2, 3] }), DropReason::ImpossibleFields);
    // A well-formed view from the leader is taken without any output; a
    // member this node does not know as a voter (promoted by an entry it
    // lacks yet: docs/design/membership.md) is left out of it.
    let output = node.step(msg(2, 1, 2, Body::Liveness { active: vec![3, 9] }));
    assert_eq!(output, Output::default());
    let output = node.step(msg(2, 1, 2, Body::Liveness { active: vec![3] }));
    assert_eq!(output, Output::default());
    assert_eq!(node.status().dropped.total(), 1);
}

#[test]
fn every_drop_reason_is_covered() {
    // Guards this file: a new DropReason needs a test above (`HandedOver`:
    // tests/leader_transfer.rs; `Removed`: tests/membership.rs).
    assert_eq!(DropReason::ALL.len(), 12);
}

// ---------------------------------------------------------------------------
// Node::new
// ---------------------------------------------------------------------------

fn start(config: Config, restored: RestoredState) -> Result<Node, StartError> {
    Node::new(config, restored, rng(1), 0)
}

fn assert_config_error(config: Config, expected_key: &str, expected_words: &str) {
    let error = start(config.clone(), RestoredState::default()).expect_err("invalid config refused");
    let StartError::Config(ConfigError::Invalid { key, reason }) = error.clone() else {
        panic!("expected a config error, got {error:?}");
    };
    assert_eq!(key, expected_key, "{config:?}");
    assert!(reason.contains(expected_words), "reason {reason:?} lacks {expected_words:?}");
    assert!(error.to_string().contains(expected_key), "the message names the key: {error}");
    assert_eq!(config.validate(), Err(ConfigError::Invalid { key, reason }));
}

#[test]
fn node_new_refuses_every_invalid_config() {
    let valid = config(1, &VOTERS);
    assert!(start(valid.clone(), RestoredState::default()).is_ok());

    assert_config_error(Config { id: 0, ..valid.clone() }, "id", "reserved");
    // No voters: a node that joins an existing cluster (docs/design/membership.md).
    assert!(Config { voters: vec![], initial_leader: None, ..valid.clone() }.joins());
    assert_config_error(
        Config { voters: vec![], initial_leader: Some(1), ..valid.clone() },
        "initial_leader",
        "not among",
    );
    assert_config_error(Config { voters: vec![1, 2, 2], ..valid.clone() }, "voters", "listed twice");
    assert_config_error(Config { voters: vec![0, 1, 2], ..valid.clone() }, "voters", "reserved");
    assert_config_error(Config { id: 4, ..valid.clone() }, "id", "not among the voters");
    assert_config_error(
        Config { heartbeat_interval_ms: 0, ..valid.clone() },
        "heartbeat_interval_ms",
        "greater than 0",
    );
    assert_config_error(Config { heartbeat_timeout_ms: 40, ..valid.clone() }, "heartbeat_timeout_ms", "below");
    assert_config_error(Config { miss_limit: 1, ..valid.clone() }, "miss_limit", "at least 2");
    assert_config_error(Config { finalize_wait_ms: 0, ..valid.clone() }, "finalize_wait_ms", "greater than 0");
    assert_config_error(Config { initial_leader: Some(9), ..valid.clone() }, "initial_leader", "not among the voters");
    assert_config_error(
        Config { max_entries_per_message: 0, ..valid.clone() },
        "max_entries_per_message",
        "greater than 0",
    );
    assert_config_error(
        Config { max_bytes_per_message: 0, ..valid.clone() },
        "max_bytes_per_message",
        "greater than 0",
    );
    assert_config_error(Config { max_command_bytes: 0, ..valid.clone() }, "max_command_bytes", "greater than 0");
    for mode in [ElectionMode::Gapless, ElectionMode::Conclave] {
        let leased = Config { election_mode: mode, ..valid.clone() };
        assert!(start(leased.clone(), RestoredState::default()).is_ok());
        assert_config_error(Config { vote_lease_ms: 0, ..leased.clone() }, "vote_lease_ms", "greater than 0");
        assert_config_error(
            Config { vote_lease_ms: 250, ..leased.clone() },
            "vote_lease_ms",
            "not below the election timeout",
        );
        assert_config_error(Config { heartbeat_timeout_ms: 50, miss_limit: 3, ..leased }, "vote_lease_ms", "150 ms");
    }
    // Modes without leader terms have no lease to check.
    assert!(start(Config { vote_lease_ms: 0, ..valid }, RestoredState::default()).is_ok());
}

fn assert_restore_error(hard_state: HardState, entries: Vec<Entry>, expected_words: &str) {
    let error = start(config(1, &VOTERS), RestoredState { hard_state, entries, snapshot: None }).expect_err("refused");
    let StartError::Restore(reason) = &error else {
        panic!("expected a restore error, got {error:?}");
    };
    assert!(reason.contains(expected_words), "reason {reason:?} lacks {expected_words:?}");
    assert!(error.to_string().starts_with("restored state is inconsistent"), "{error}");
}

#[test]
fn node_new_refuses_an_inconsistent_restored_state() {
    let good =
        RestoredState { hard_state: hard_state(2, Some(2), 2), entries: log_with_terms(&[1, 2]), snapshot: None };
    let node = start(config(1, &VOTERS), good).expect("consistent state starts");
    assert_eq!((node.term(), node.status().voted_for, node.status().commit), (2, Some(2), 2));

    // BecomeLeader entries whose leader terms leave a hole, or that do not head
    // their ballot (docs/design/leader-terms.md).
    let become_leader =
        |term, index, leader_term| Entry { term, index, payload: Payload::BecomeLeader { leader_term, leader: 2 } };
    assert_restore_error(hard_state(3, None, 0), vec![become_leader(1, 1, 1), become_leader(3, 2, 3)], "expected 2");
    assert_restore_error(hard_state(3, None, 0), vec![become_leader(1, 1, 2)], "expected 1");
    assert_restore_error(hard_state(3, None, 0), vec![entry(2, 1), become_leader(2, 2, 1)], "not the first entry");

    // Entries not contiguous from index 1.
    assert_restore_error(hard_state(2, None, 0), vec![entry(1, 1), entry(1, 3)], "has index 3");
    assert_restore_error(hard_state(2, None, 0), vec![entry(1, 2)], "has index 2");
    // Terms going back, or term 0.
    assert_restore_error(hard_state(2, None, 0), vec![entry(2, 1), entry(1, 2)], "has term 1 after term 2");
    assert_restore_error(hard_state(2, None, 0), vec![entry(0, 1)], "has term 0");
    // An entry from a term later than the persisted term.
    assert_restore_error(hard_state(1, None, 0), log_with_terms(&[1, 2]), "term 2 beyond the persisted term 1");
    // A vote for a non-member.
}

#[test]
fn a_commit_index_beyond_the_restored_log_is_lowered_to_its_end() {
    // A crash between the hard-state record and the log record of one batch (a
    // torn write) leaves a commit index ahead of the log. The commit index is
    // advisory (re-learned from the leader), so the node starts with it lowered.
    let node = start(
        config(1, &VOTERS),
        RestoredState { hard_state: hard_state(2, None, 3), entries: log_with_terms(&[1, 2]), snapshot: None },
    )
    .expect("starts");
    assert_eq!((node.status().commit, node.status().last_index), (2, 2));
    let node = start(
        config(1, &VOTERS),
        RestoredState { hard_state: hard_state(2, None, 1), entries: vec![], snapshot: None },
    )
    .expect("starts");
    assert_eq!(node.status().commit, 0);
}

#[test]
fn garbage_never_panics() {
    // A burst of arbitrary field values at every role: the node must survive and
    // keep its invariants (checked after every input in debug builds).
    let mut chaos = rng(7);
    let nodes = [new_node(1, &VOTERS, 1), follower(), leader()];
    for mut node in nodes {
        for _ in 0..5_000 {
            let term = chaos.gen_range(0..6);
            let prev = chaos.gen_range(0..6);
            let body = match chaos.gen_range(0..6) {
                0 => Body::RequestVote {
                    pre_vote: chaos.gen(),
                    last_log_term: chaos.gen_range(0..6),
                    last_log_index: chaos.gen_range(0..6),
                    transfer: chaos.gen(),
                },
                1 => Body::VoteResponse { pre_vote: chaos.gen(), granted: chaos.gen() },
                2 => {
                    let count = chaos.gen_range(0..3);
                    let first_term = chaos.gen_range(1..6);
                    let entries = (0..count).map(|offset| entry(first_term, prev + 1 + offset)).collect();
                    append(prev, chaos.gen_range(0..6), entries, chaos.gen_range(0..8))
                }
                3 => {
                    let total = chaos.gen_range(0..8u64);
                    let offset = chaos.gen_range(0..9u64);
                    let len = chaos.gen_range(0..4usize);
                    let meta = snapshot_meta(chaos.gen_range(0..8), chaos.gen_range(0..6));
                    chunk(meta, total, offset, &vec![1; len], chaos.gen())
                }
                4 => Body::SnapshotResponse {
                    last_included_index: chaos.gen_range(0..8),
                    received_bytes: chaos.gen_range(0..12),
                    installed: chaos.gen(),
                },
                _ if chaos.gen() => accepted(chaos.gen_range(0..6)),
                _ => rejected(prev, chaos.gen_range(0..6)),
            };
            let from = chaos.gen_range(0..5);
            let to = if chaos.gen_bool(0.9) { 1 } else { 2 };
            let _ = node.step(msg(from, to, term, body));
            node.validate().expect("invariants hold");
            if chaos.gen_bool(0.05) {
                let now = node.next_deadline_ms();
                let _ = node.tick(now);
            }
        }
    }
}

/// Found by the `core_step` fuzz target: a `Vote` whose message term is the
/// last `u64` overflowed `term + 1` in the field check (a panic in builds with
/// overflow checks, which the release profile has): any peer past the
/// handshake could crash a node. No correct node reaches that term.
#[test]
fn regression_fuzz_forged_last_term_is_dropped_not_a_panic() {
    let mut conclave = config(1, &VOTERS);
    conclave.election_mode = ElectionMode::default();
    let mut node = node_from(conclave, RestoredState::default(), 1);
    let vote = |ballot| Body::Vote {
        ballot,
        vote: VoteChoice { candidate: 2, last_log_term: 0, last_log_index: 0, priority: 1 },
        state: PeerState::Looking,
    };
    assert_dropped(&mut node, msg(2, 1, u64::MAX, vote(37)), DropReason::ImpossibleFields);
    assert_dropped(&mut node, msg(2, 1, 5, vote(u64::MAX)), DropReason::ImpossibleFields);
    assert_dropped(&mut node, msg(2, 1, u64::MAX, heartbeat(0, 0, 0)), DropReason::ImpossibleFields);
    assert_dropped(&mut node, msg(2, 1, u64::MAX, vote_request(0, 0)), DropReason::ImpossibleFields);
}

/// The same family: an append whose indexes run past the end of `u64`.
#[test]
fn regression_fuzz_append_past_the_last_index_is_dropped_not_a_panic() {
    let mut node = follower();
    let entry = Entry { term: 2, index: 0, payload: Payload::Noop };
    let body = append(u64::MAX, 2, vec![entry], 0);
    assert_dropped(&mut node, msg(2, 1, 2, body), DropReason::ImpossibleFields);
}

/// Found by the `core_step` fuzz target: a rejection whose `prev_log_index`
/// lies past the leader's log moved the follower's next index beyond the last
/// index + 1, and the next append panicked looking up the previous entry's
/// term. A leader never sent such an index; the rejection is dropped.
#[test]
fn regression_fuzz_rejection_past_the_leaders_log_is_dropped_not_a_panic() {
    let mut node = leader();
    let last = node.log().last_index();
    // The follower acknowledges everything: its progress streams (Replicate).
    let _ = node.step(msg(2, 1, 1, accepted(last)));
    assert_dropped(&mut node, msg(2, 1, 1, rejected(last + 1_000, last + 998)), DropReason::ImpossibleFields);
    assert_dropped(&mut node, msg(2, 1, 1, rejected(u64::MAX, u64::MAX - 1)), DropReason::ImpossibleFields);
}

//! The leader writes its log in parallel with replicating it (Raft thesis
//! §10.2.1, `Config::parallel_persist`, docs/decisions/0068): which messages may
//! leave before a persist, and what the leader may count before the driver
//! reports its own write durable.

mod support;

use conclave_core::{Body, Config, DurableMark, Node, NodeId, Output};
use support::*;

const VOTERS: [NodeId; 3] = [1, 2, 3];

fn parallel(config: &mut Config) {
    config.parallel_persist = true;
}

fn appends(messages: &[conclave_core::Message]) -> usize {
    messages.iter().filter(|message| matches!(message.body, Body::AppendEntries { .. })).count()
}

/// A 3-node cluster with node 1 elected and idle, every write reported.
fn cluster_led_by_1() -> Cluster {
    let mut cluster = Cluster::with_config(3, 40, parallel);
    cluster.elect(1);
    cluster.deliver_all();
    assert_eq!(cluster.node(1).status().commit, cluster.node(1).log().last_index(), "the first entry committed");
    cluster
}

#[test]
fn a_leader_counts_itself_only_once_its_write_is_reported_durable() {
    let mut cluster = cluster_led_by_1();
    let term = cluster.node(1).term();
    let before = cluster.node(1).status().commit;
    let proposal = cluster.node_mut(1).propose(b"x".to_vec()).expect("leads");
    let index = proposal.index;
    let output = proposal.output;
    assert_eq!(appends(&output.early_messages), 2, "the appends leave before the write: {output:?}");
    assert!(output.messages.is_empty(), "nothing else to send");
    assert_eq!(output.durable_mark, Some(DurableMark { index, term, rewrites: 0, hard_state_term: term }));
    // Follower 2 stores the entry; the leader's own copy is not durable yet:
    // one copy of three is no majority.
    let output = cluster.node_mut(1).step(msg(2, 1, term, accepted(index)));
    assert!(output.committed_entries.is_empty(), "counted its own unpersisted entry: {output:?}");
    assert_eq!(cluster.node(1).status().commit, before);
    // Its write completes: now two copies of three.
    let mark = DurableMark { index, term, rewrites: 0, hard_state_term: term };
    let output = cluster.node_mut(1).persisted(mark);
    assert_eq!(output.committed_entries.last().map(|entry| entry.index), Some(index));
    assert_eq!(output.hard_state, None, "a commit advance alone is not written");
    assert!(!output.needs_persist(), "applying the commit waits for no fsync");
    // A report repeated (or late) changes nothing.
    assert!(cluster.node_mut(1).persisted(mark).is_empty());
}

#[test]
fn two_followers_commit_without_the_leaders_own_copy() {
    let mut cluster = cluster_led_by_1();
    let term = cluster.node(1).term();
    let index = cluster.node_mut(1).propose(b"x".to_vec()).expect("leads").index;
    let _ = cluster.node_mut(1).step(msg(2, 1, term, accepted(index)));
    let output = cluster.node_mut(1).step(msg(3, 1, term, accepted(index)));
    assert_eq!(output.committed_entries.last().map(|entry| entry.index), Some(index), "a majority holds it durably");
    assert!(cluster.node(1).durable_index() < index, "still not reported");
}

#[test]
fn a_new_leaders_first_appends_wait_for_its_term_to_be_durable() {
    let mut node = new_node(1, &VOTERS, 7);
    let mut config = node.config().clone();
    config.parallel_persist = true;
    node = Node::new(config, Default::default(), rng(7), 0).expect("valid");
    let output = elect_alone(&mut node);
    assert_eq!(node.role(), conclave_core::Role::Leader);
    // No entry of its term is durable: a crash could make it forget the term
    // its appends carry, so they wait for the persist like any message.
    assert!(output.early_messages.is_empty(), "{output:?}");
    assert_eq!(appends(&output.messages), 2);
    let mark = output.durable_mark.expect("the leader's first entry is written");
    assert_eq!(mark.term, node.term());
    let _ = node.persisted(mark);
    assert_eq!(node.durable_index(), mark.index);
    for follower in [2, 3] {
        let _ = node.step(msg(follower, 1, mark.term, accepted(mark.index)));
    }
    let output = node.propose(b"y".to_vec()).expect("serving in raft mode").output;
    assert_eq!(appends(&output.early_messages), 2, "now its term is durable");
    // Heartbeats too never wait behind a persist.
    let output = node.tick(node.next_deadline_ms());
    assert!(appends(&output.early_messages) >= 1 && output.messages.is_empty(), "{output:?}");
}

#[test]
fn a_report_from_before_a_rewrite_is_ignored() {
    let mut config = config(2, &VOTERS);
    config.parallel_persist = true;
    let mut node = restored_node(config, hard_state(2, None, 0), &[1, 1], 1);
    // A leader of term 2 appends index 3: the batch's mark names (3, 2).
    let output = node.step(msg(1, 2, 2, append(2, 1, vec![entry(2, 3)], 0)));
    let old = output.durable_mark.expect("an append");
    assert_eq!((old.index, old.term, old.rewrites), (3, 2, 0));
    // Before that write completes, a leader of term 3 replaces index 3.
    let output = node.step(msg(3, 2, 3, append(2, 1, vec![entry(3, 3), entry(3, 4)], 0)));
    let new = output.durable_mark.expect("a rewrite");
    assert_eq!((new.index, new.term, new.rewrites), (4, 3, 1));
    assert_eq!(node.durable_index(), 2, "the rewritten suffix is no longer durable");
    // The old batch's report arrives: it says nothing about the new entry 3.
    assert!(node.persisted(old).is_empty());
    assert_eq!(node.durable_index(), 2);
    let _ = node.persisted(new);
    assert_eq!(node.durable_index(), 4);
}

#[test]
fn without_parallel_persist_every_message_waits_and_the_leader_counts_its_log() {
    let mut cluster = Cluster::new(3, 41);
    cluster.elect(1);
    cluster.deliver_all();
    let term = cluster.node(1).term();
    let proposal = cluster.node_mut(1).propose(b"x".to_vec()).expect("leads");
    assert!(proposal.output.early_messages.is_empty());
    assert_eq!(appends(&proposal.output.messages), 2);
    let output: Output = cluster.node_mut(1).step(msg(2, 1, term, accepted(proposal.index)));
    assert_eq!(output.committed_entries.last().map(|entry| entry.index), Some(proposal.index));
    assert!(output.hard_state.is_some(), "the commit is written, as before");
}

fn append_responses(messages: &[conclave_core::Message]) -> Vec<Body> {
    messages
        .iter()
        .filter(|message| matches!(message.body, Body::AppendResponse { .. }))
        .map(|m| m.body.clone())
        .collect()
}

/// A follower of term 2 holding entries 1..=2 durably, with parallel persist.
fn durable_follower() -> Node {
    let mut config = config(2, &VOTERS);
    config.parallel_persist = true;
    restored_node(config, hard_state(2, None, 0), &[1, 2], 1)
}

#[test]
fn a_follower_answers_a_heartbeat_at_once_claiming_only_its_durable_prefix() {
    let mut node = durable_follower();
    // Entries 3 and 4 arrive; their write is in flight (not reported).
    let output = node.step(msg(1, 2, 2, append(2, 2, vec![entry(2, 3), entry(2, 4)], 2)));
    assert!(output.early_messages.is_empty(), "an append's answer waits for its write: {output:?}");
    assert_eq!(append_responses(&output.messages), vec![accepted(4)]);
    // A heartbeat at 4 is answered at once for the durable prefix (2), which
    // renews the leader's contact without counting the unsynced entries, and
    // again after the persist for all of it.
    let output = node.step(msg(1, 2, 2, heartbeat(4, 2, 2)));
    assert_eq!(append_responses(&output.early_messages), vec![accepted(2)], "{output:?}");
    assert_eq!(append_responses(&output.messages), vec![accepted(4)]);
    // Once the write is reported, one early answer says everything.
    let mark = DurableMark { index: 4, term: 2, rewrites: 0, hard_state_term: 2 };
    let _ = node.persisted(mark);
    let output = node.step(msg(1, 2, 2, heartbeat(4, 2, 2)));
    assert_eq!(append_responses(&output.early_messages), vec![accepted(4)], "{output:?}");
    assert!(output.messages.is_empty(), "{output:?}");
}

#[test]
fn a_follower_whose_new_term_is_not_yet_durable_answers_after_the_persist() {
    let mut node = durable_follower();
    // A leader of term 3: the follower writes the term; until that write is
    // reported, a crash could make it forget the term of an early answer.
    let output = node.step(msg(3, 2, 3, heartbeat(2, 2, 2)));
    let mark = output.durable_mark.expect("a hard state alone is marked with parallel persist");
    assert_eq!((mark.index, mark.term, mark.hard_state_term), (2, 2, 3));
    assert!(output.early_messages.is_empty(), "{output:?}");
    assert_eq!(append_responses(&output.messages), vec![accepted(2)]);
    let output = node.step(msg(3, 2, 3, heartbeat(2, 2, 2)));
    assert!(output.early_messages.is_empty(), "the term's write is not reported yet: {output:?}");
    let _ = node.persisted(mark);
    let output = node.step(msg(3, 2, 3, heartbeat(2, 2, 2)));
    assert_eq!(append_responses(&output.early_messages), vec![accepted(2)], "{output:?}");
}

#[test]
fn a_heartbeat_rejected_by_a_follower_is_answered_at_once() {
    let mut node = durable_follower();
    let output = node.step(msg(1, 2, 2, heartbeat(9, 2, 2)));
    assert!(output.messages.is_empty(), "{output:?}");
    assert!(
        matches!(
            append_responses(&output.early_messages)[..],
            [Body::AppendResponse { outcome: conclave_core::AppendOutcome::Rejected { prev_log_index: 9, .. }, .. }]
        ),
        "{output:?}"
    );
}

#[test]
fn a_heartbeat_answer_waits_when_its_input_writes_the_commit_of_a_leader_term() {
    let mut config = config(2, &VOTERS);
    config.parallel_persist = true;
    config.election_mode = conclave_core::ElectionMode::Gapless;
    let become_leader = conclave_core::Entry {
        term: 2,
        index: 3,
        payload: conclave_core::Payload::BecomeLeader { leader_term: 1, leader: 1 },
    };
    let mut entries = log_with_terms(&[1, 1]);
    entries.push(become_leader);
    let restored = conclave_core::RestoredState { hard_state: hard_state(2, None, 2), entries, snapshot: None };
    let mut node = node_from(config, restored, 1);
    // The heartbeat commits the `BecomeLeader`: that commit is written (the
    // committed leader term a node knows never falls), and the answer waits
    // for the write, as the commit is acted on only once durable.
    let output = node.step(msg(1, 2, 2, heartbeat(3, 2, 3)));
    assert!(output.hard_state.is_some_and(|hard| hard.commit == 3), "{output:?}");
    assert!(output.early_messages.is_empty(), "{output:?}");
    assert_eq!(append_responses(&output.messages), vec![accepted(3)]);
}

//! The gapless leader-term rules (docs/design/leader-terms.md, seed 003, the repaired rules)
//! in the `gapless` and `conclave` modes: `BecomeLeader` entries, the
//! leader-elect that serves only once its entry commits, leader terms taken from
//! the candidate's own log, voters that do not check the leader term, and the
//! `conclave` mode's failover end to end.

mod support;

use conclave_core::{
    Config, ElectionMode, Entry, Event, HardState, LeaderTermRecord, Node, NodeId, Payload, ProposeError,
    RestoredState, Role, Term,
};
use support::*;

const VOTERS: [NodeId; 3] = [1, 2, 3];

fn gapless(id: NodeId) -> Config {
    let mut config = config(id, &VOTERS);
    config.election_mode = ElectionMode::Gapless;
    config
}

fn become_leader(term: Term, index: u64, leader_term: u64, leader: NodeId) -> Entry {
    Entry { term, index, payload: Payload::BecomeLeader { leader_term, leader } }
}

fn last_entry(node: &Node) -> Entry {
    node.log().all().last().expect("non-empty log").clone()
}

fn committed_leader_terms(node: &Node) -> Vec<(u64, NodeId)> {
    node.log().all()[..node.log().committed() as usize]
        .iter()
        .filter_map(Entry::leader_term_record)
        .map(|record| (record.leader_term, record.leader))
        .collect()
}

#[test]
fn a_leader_elect_serves_only_once_its_become_leader_entry_commits() {
    // Reference: docs/design/leader-terms.md — "a leader-elect ... serves as leader only once
    // that entry is committed".
    let mut node = node_from(gapless(1), RestoredState::default(), 1);
    let output = elect_alone(&mut node);
    let ballot = node.term();
    assert_eq!(node.role(), Role::Leader);
    assert!(!node.is_serving(), "a leader-elect does not serve");
    assert!(output.events.contains(&Event::LeaderElect { ballot, leader_term: 1 }), "{:?}", output.events);
    assert_eq!(last_entry(&node), become_leader(ballot, 1, 1, 1), "the first entry is BecomeLeader, not a Noop");
    assert_eq!(node.propose(b"x".to_vec()).unwrap_err(), ProposeError::NotYetServing { ballot });
    assert_eq!(node.status().leader_term, None, "nothing is established yet");

    let output = node.step(msg(2, 1, ballot, accepted(1)));
    assert!(node.is_serving(), "a majority stores the entry: it commits and the leader serves");
    assert!(
        output.events.contains(&Event::LeaderTermCommitted { leader_term: 1, leader: 1, ballot }),
        "{:?}",
        output.events
    );
    assert_eq!(output.committed_entries, vec![become_leader(ballot, 1, 1, 1)]);
    assert_eq!(node.status().leader_term, Some(1));
    assert!(node.propose(b"x".to_vec()).is_ok());
}

#[test]
fn the_leader_term_is_one_above_the_last_become_leader_in_the_own_log_committed_or_not() {
    // Reference: docs/design/leader-terms.md — leader_term = (leader term of the last
    // BecomeLeader in the candidate's own log, committed or not) + 1.
    let entries = vec![become_leader(1, 1, 1, 2), entry(1, 2), become_leader(3, 3, 2, 3)];
    let restored = RestoredState { hard_state: hard_state(3, None, 2), entries, snapshot: None };
    let mut node = node_from(gapless(1), restored, 1);
    assert_eq!(node.committed_leader_term().map(|record| record.leader_term), Some(1));
    let _ = elect_alone(&mut node);
    assert_eq!(node.term(), 4);
    assert_eq!(last_entry(&node), become_leader(4, 4, 3, 1));
    assert_eq!(node.status().leader_term_in_log, Some(3));
}

#[test]
fn a_leader_elect_that_cannot_commit_gives_up_after_an_election_timeout() {
    // Reference: docs/design/leader-terms.md — "A leader-elect that cannot commit its
    // BecomeLeader within a bounded time gives up."
    let mut node = node_from(Config { check_quorum: false, ..gapless(1) }, RestoredState::default(), 1);
    let _ = elect_alone(&mut node);
    let (ballot, elected_at_ms) = (node.term(), node.status().commit);
    assert_eq!(elected_at_ms, 0);
    let mut gave_up = Vec::new();
    for _ in 0..100 {
        let now = node.next_deadline_ms();
        let output = node.tick(now);
        gave_up.extend(output.events.into_iter().filter(|event| matches!(event, Event::LeaderElectGaveUp { .. })));
        if node.role() != Role::Leader {
            break;
        }
    }
    assert_eq!(gave_up, vec![Event::LeaderElectGaveUp { ballot, leader_term: 1 }]);
    assert_eq!((node.role(), node.term(), node.is_serving()), (Role::Follower, ballot, false));
}

#[test]
fn a_voter_that_holds_a_higher_leader_term_still_votes_for_a_newer_log() {
    // Reference: docs/design/leader-terms.md — the leader term is not checked when voting;
    // "≥ my last + 1" deadlocks because the live node with the newer log can hold
    // the lower leader term. Here node 1 holds BecomeLeader(3) from ballot 3 that
    // never committed, while node 2's log is newer (ballot 4) with leader term 2.
    // Node 3 is down: node 1's vote is the only way to a majority.
    let voter_log = vec![become_leader(1, 1, 1, 1), become_leader(2, 2, 2, 2), become_leader(3, 3, 3, 3)];
    let voter = node_from(
        gapless(1),
        RestoredState { hard_state: hard_state(3, None, 1), entries: voter_log, snapshot: None },
        1,
    );
    let candidate_log = vec![become_leader(1, 1, 1, 1), become_leader(4, 2, 2, 2)];
    let candidate = node_from(
        gapless(2),
        RestoredState { hard_state: hard_state(4, Some(2), 1), entries: candidate_log, snapshot: None },
        2,
    );
    let mut cluster = Cluster::from_nodes(vec![(voter, 0), (candidate, 0)]);
    cluster.elect(2);
    cluster.run_until(cluster.now_ms + 100, 10);

    let leader = cluster.node(2);
    assert!(leader.is_serving(), "node 2 leads ballot 5 with node 1's vote");
    assert_eq!(leader.term(), 5);
    let expected = [(1, 1), (2, 2), (3, 2)];
    for id in [1, 2] {
        assert_eq!(committed_leader_terms(cluster.node(id)), expected, "node {id}: consecutive, one leader each");
    }
    let record = cluster.node(1).committed_leader_term();
    assert_eq!(record, Some(LeaderTermRecord { leader_term: 3, leader: 2, ballot: 5, index: 3 }));
}

#[test]
fn an_uncommitted_become_leader_may_be_replaced_so_a_held_leader_term_can_go_back() {
    // Reference: docs/design/leader-terms.md — what is promised is about the committed log; the
    // leader term a node merely holds can go back when its uncommitted
    // BecomeLeader is truncated (documented, not prevented).
    let mut truncating = node_from(
        gapless(1),
        RestoredState {
            hard_state: hard_state(3, None, 1),
            entries: vec![become_leader(1, 1, 1, 1), become_leader(2, 2, 2, 3), become_leader(3, 3, 3, 1)],
            snapshot: None,
        },
        1,
    );
    assert_eq!(truncating.status().leader_term_in_log, Some(3));
    // The leader of ballot 4 never had BecomeLeader(2) and (3): it claimed 2.
    let conflicting = append(1, 1, vec![become_leader(4, 2, 2, 2)], 1);
    let _ = truncating.step(msg(2, 1, 4, conflicting));
    assert_eq!(truncating.status().leader_term_in_log, Some(2), "held leader term went from 3 back to 2");
    assert_eq!(truncating.status().leader_term, Some(1), "the committed leader term did not move");
}

#[test]
fn the_gapless_mode_campaigns_like_raft_one_vote_per_ballot() {
    // Reference: docs/design/leader-terms.md — "A node casts at most one vote per ballot".
    let mut node = node_from(Config { check_quorum: false, ..gapless(1) }, RestoredState::default(), 1);
    let output = node.step(msg(2, 1, 1, vote_request(0, 0)));
    assert_eq!(output.messages, vec![msg(1, 2, 1, vote(true))]);
    let _ = node.tick(node.config().vote_lease_ms);
    let output = node.step(msg(3, 1, 1, vote_request(0, 0)));
    assert_eq!(output.messages, vec![msg(1, 3, 1, vote(false))], "the lease ended; the ballot's vote is still spent");
    assert_eq!(node.status().voted_for, Some(2));
}

// ---------------------------------------------------------------------------
// The conclave mode: the fast election chooses who, the gapless rules choose
// which leader term and when the winner serves (docs/design/elections.md).
// ---------------------------------------------------------------------------

const DELAY_MS: (u64, u64) = (2, 10);

fn conclave(config: &mut Config) {
    config.election_mode = ElectionMode::Conclave;
    config.initial_leader = Some(1);
}

fn serving_leaders(cluster: &TimedCluster) -> Vec<NodeId> {
    cluster.nodes.values().filter(|node| node.is_serving()).map(|node| node.id()).collect()
}

#[test]
fn conclave_cold_start_leads_leader_term_1_once_its_become_leader_commits() {
    let mut cluster = TimedCluster::new(5, 3, DELAY_MS, conclave);
    assert!(cluster.run_until_or(1_000, 10, |cluster| serving_leaders(cluster) == vec![1]));
    assert!(cluster.run_until_or(1_500, 10, |cluster| {
        cluster
            .nodes
            .values()
            .all(|node| node.committed_leader_term().map(|r| (r.leader_term, r.leader)) == Some((1, 1)))
    }));
}

#[test]
fn conclave_failover_elects_the_newest_data_with_the_next_leader_term() {
    let mut cluster = TimedCluster::new(5, 11, DELAY_MS, conclave);
    assert!(cluster.run_until_or(1_000, 10, |cluster| serving_leaders(cluster) == vec![1]));
    // Node 4 misses the last write: nodes 2, 3 and 5 hold the newest data.
    cluster.cut_link(1, 4);
    let index = cluster.propose(1, b"last write");
    assert!(cluster.run_until_or(cluster.now_ms + 500, 5, |cluster| {
        [2, 3, 5].iter().all(|id| cluster.node(*id).log().last_index() >= index)
    }));
    cluster.heal();
    cluster.crash(1);
    let crashed_at_ms = cluster.now_ms;
    assert!(
        cluster.run_until_or(crashed_at_ms + 2_000, 5, |cluster| serving_leaders(cluster).len() == 1),
        "a new leader serves within 2 s"
    );
    let leader = serving_leaders(&cluster)[0];
    assert_ne!(leader, 4, "the node that missed the last write cannot win");
    let record = cluster.node(leader).committed_leader_term().expect("established");
    assert_eq!((record.leader_term, record.leader), (2, leader), "leader term 1 + 1, exactly");
    assert!(record.ballot >= 2);
    let _ = cluster.propose(leader, b"after failover");
    assert!(cluster.run_until_or(cluster.now_ms + 1_000, 5, |cluster| {
        cluster.nodes.values().all(|node| committed_leader_terms(node) == vec![(1, 1), (2, leader)])
    }));
}

#[test]
fn a_restored_log_with_a_hole_in_its_leader_terms_is_refused() {
    let restored = RestoredState {
        hard_state: HardState { term: 4, voted_for: None, commit: 0 },
        entries: vec![become_leader(1, 1, 1, 1), become_leader(4, 2, 3, 2)],
        snapshot: None,
    };
    let error = Node::new(gapless(1), restored, rng(1), 0).unwrap_err();
    assert!(error.to_string().contains("expected 2"), "{error}");
}

#[test]
fn re_applying_the_committed_prefix_after_a_restart_announces_no_leader_term() {
    // Events are what operators and the demo read: a restart re-applies its
    // committed prefix, but those leader terms were established long ago.
    let entries = vec![become_leader(1, 1, 1, 2), entry(1, 2), become_leader(3, 3, 2, 3)];
    let restored = RestoredState { hard_state: hard_state(3, None, 3), entries, snapshot: None };
    let mut node = node_from(gapless(1), restored, 1);
    let output = node.tick(1);
    assert_eq!(output.committed_entries.len(), 3, "the committed prefix is handed out again");
    assert!(
        !output.events.iter().any(|event| matches!(event, Event::LeaderTermCommitted { .. })),
        "{:?}",
        output.events
    );
    assert_eq!(node.committed_leader_term().map(|record| record.leader_term), Some(2));
}

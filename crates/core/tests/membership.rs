//! Membership changes (docs/design/membership.md): learners catch up and are
//! promoted, voters are removed, every quorum follows the membership in the
//! log, removed nodes cannot disturb the cluster, priority breaks ties only,
//! and every refusal says why. Each test runs in every election mode.

mod support;

use conclave_core::{
    ChangeError, Config, DropReason, ElectionMode, Event, InvalidChange, MemberAddresses, MembershipChange, NodeId,
    Role,
};
use support::*;

const DELAY_MS: (u64, u64) = (1, 5);

fn mode(mode: ElectionMode) -> impl Fn(&mut Config) {
    move |config: &mut Config| {
        config.election_mode = mode;
        if mode.exchanges_votes() && !config.voters.is_empty() {
            config.initial_leader = Some(1);
        }
    }
}

fn addresses(id: NodeId) -> MemberAddresses {
    MemberAddresses { peer: format!("10.0.0.{id}:7100"), client: format!("10.0.0.{id}:7000"), http: String::new() }
}

fn serving_leader(cluster: &TimedCluster) -> Option<NodeId> {
    match cluster.leaders()[..] {
        [leader] if cluster.node(leader).is_serving() => Some(leader),
        _ => None,
    }
}

/// A cluster of `size` with a serving leader that committed a few commands.
fn serving_cluster(size: u64, election_mode: ElectionMode, seed: u64) -> (TimedCluster, NodeId) {
    let mut cluster = TimedCluster::new(size, seed, DELAY_MS, mode(election_mode));
    assert!(cluster.run_until_or(5_000, 10, |cluster| serving_leader(cluster).is_some()), "{election_mode}: no leader");
    let leader = serving_leader(&cluster).expect("checked");
    for command in [b"a", b"b", b"c"] {
        cluster.propose(leader, command);
    }
    cluster.run_for(100);
    (cluster, leader)
}

/// Waits until the entry at `index` committed on `leader`.
fn await_commit(cluster: &mut TimedCluster, leader: NodeId, index: u64, what: &str) {
    let deadline = cluster.now_ms + 2_000;
    let done = |cluster: &TimedCluster| cluster.is_up(leader) && cluster.node(leader).log().committed() >= index;
    assert!(cluster.run_until_or(deadline, 5, done), "{what}: index {index} committed");
}

/// Proposes `change` at the serving leader, once an entry of its term
/// committed, and waits for it to commit.
fn change(cluster: &mut TimedCluster, change: MembershipChange, what: &str) -> NodeId {
    let ready = |cluster: &TimedCluster| {
        serving_leader(cluster).is_some_and(|leader| {
            let node = cluster.node(leader);
            node.log().term_at(node.log().committed()) == Some(node.term())
        })
    };
    assert!(cluster.run_until_or(cluster.now_ms + 2_000, 5, ready), "{what}: a leader that committed in its term");
    let leader = serving_leader(cluster).expect("checked");
    let index = cluster.change(leader, change).unwrap_or_else(|error| panic!("{what}: refused: {error}"));
    await_commit(cluster, leader, index, what);
    leader
}

#[test]
fn a_learner_catches_up_is_promoted_and_takes_part_in_quorums() {
    for election_mode in ElectionMode::ALL {
        let (mut cluster, leader) = serving_cluster(3, election_mode, 21);
        cluster.start_joiner(4, mode(election_mode));
        assert!(!cluster.node(4).status().voter, "{election_mode}: a joining node does not vote");
        change(&mut cluster, MembershipChange::AddLearner { id: 4, addresses: addresses(4) }, "add");
        // Caught up as the leader knows it: its match index is the leader's last.
        let caught_up = |cluster: &TimedCluster| {
            let leader = cluster.node(leader);
            leader.status().followers.get(&4).is_some_and(|follower| follower.match_index == leader.log().last_index())
        };
        assert!(cluster.run_until_or(cluster.now_ms + 2_000, 5, caught_up), "{election_mode}: the learner caught up");
        assert_eq!(cluster.node(4).membership().learners(), vec![4], "{election_mode}: it learned it is a learner");
        assert_eq!(cluster.node(4).role(), Role::Follower);
        change(&mut cluster, MembershipChange::Promote { id: 4 }, "promote");
        assert_eq!(cluster.node(leader).membership().voters(), vec![1, 2, 3, 4]);
        cluster.run_for(100);
        assert!(cluster.node(4).status().voter, "{election_mode}: node 4 votes");
        // Four voters: a commit needs three. With two of the old members
        // down, nothing commits; the new one brings the third answer.
        let others: Vec<NodeId> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
        cluster.crash(others[0]);
        let index = cluster.propose(leader, b"needs node 4");
        await_commit(&mut cluster, leader, index, "node 4 counts in the quorum");
        cluster.crash(4);
        let index = cluster.propose(leader, b"two of four");
        cluster.run_for(ELECTION_TIMEOUT_MS / 2);
        assert!(
            !cluster.is_up(leader) || cluster.node(leader).log().committed() < index,
            "{election_mode}: two of four voters committed an entry"
        );
    }
}

#[test]
fn a_removed_voter_no_longer_counts_and_the_rest_fail_over() {
    for election_mode in ElectionMode::ALL {
        let (mut cluster, leader) = serving_cluster(5, election_mode, 31);
        let removed: Vec<NodeId> = (1..=5).filter(|id| *id != leader).take(2).collect();
        for id in &removed {
            change(&mut cluster, MembershipChange::Remove { id: *id }, "remove");
        }
        let voters = cluster.node(leader).membership().voters();
        assert_eq!(voters.len(), 3, "{election_mode}");
        // Two of five crashed would still leave a majority of five: here they
        // are out, and the three voters commit with one of them down.
        for id in &removed {
            cluster.crash(*id);
        }
        let survivor = *voters.iter().find(|id| **id != leader).expect("another voter");
        let down = *voters.iter().find(|id| **id != leader && **id != survivor).expect("a third voter");
        let disk = cluster.disk(down);
        cluster.crash(down);
        let index = cluster.propose(leader, b"two of three");
        await_commit(&mut cluster, leader, index, "two of three voters");
        // The leader dies: the two voters left cannot elect without the third
        // voter back, and do with it; the removed nodes take no part.
        cluster.restart(down, disk);
        cluster.crash(leader);
        let elected = |cluster: &TimedCluster| {
            serving_leader(cluster).is_some_and(|new| new != leader && cluster.node(new).log().committed() >= index)
        };
        assert!(
            cluster.run_until_or(cluster.now_ms + 5_000, 5, elected),
            "{election_mode}: a failover keeping the commit"
        );
        let new_leader = serving_leader(&cluster).expect("checked");
        assert!(voters.contains(&new_leader), "{election_mode}: node {new_leader} is a voter");
    }
}

#[test]
fn a_learner_never_campaigns_and_a_joiner_waits() {
    for election_mode in ElectionMode::ALL {
        let (mut cluster, leader) = serving_cluster(3, election_mode, 41);
        cluster.start_joiner(4, mode(election_mode));
        cluster.start_joiner(5, mode(election_mode));
        change(&mut cluster, MembershipChange::AddLearner { id: 4, addresses: addresses(4) }, "add");
        cluster.run_for(200);
        // Every voter gone: the learner and the joiner stay followers.
        for id in [1, 2, 3] {
            cluster.crash(id);
        }
        cluster.run_for(10 * ELECTION_TIMEOUT_MS);
        for id in [4, 5] {
            assert_eq!(cluster.node(id).role(), Role::Follower, "{election_mode}: node {id}");
            let campaigned = cluster.events.iter().any(|(_, from, event)| {
                *from == id && matches!(event, Event::ElectionStarted { .. } | Event::VoteFinalized { .. })
            });
            assert!(!campaigned, "{election_mode}: node {id} never campaigns");
        }
        assert!(cluster.node(4).log().committed() >= 4, "{election_mode}: the learner had the log");
        let _ = leader;
    }
}

#[test]
fn a_removed_node_that_keeps_running_cannot_disturb_the_cluster() {
    for election_mode in ElectionMode::ALL {
        let (mut cluster, leader) = serving_cluster(3, election_mode, 51);
        let gone = (1..=3).find(|id| *id != leader).expect("a follower");
        change(&mut cluster, MembershipChange::Remove { id: gone }, "remove");
        let term = cluster.node(leader).term();
        cluster.run_for(20 * ELECTION_TIMEOUT_MS);
        assert_eq!(serving_leader(&cluster), Some(leader), "{election_mode}: the leader kept its place");
        assert_eq!(cluster.node(leader).term(), term, "{election_mode}: no term change");
        let dropped: u64 =
            (1..=3).filter(|id| *id != gone).map(|id| cluster.node(id).status().dropped.get(DropReason::Removed)).sum();
        assert!(dropped > 0, "{election_mode}: the removed node's campaigns reached the members and were dropped");
        // Its own log never learned of the removal: it still thinks it votes.
        assert!(cluster.node(gone).membership().is_voter(gone), "{election_mode}");
    }
}

#[test]
fn every_refusal_says_why() {
    for election_mode in [ElectionMode::Raft, ElectionMode::Conclave] {
        let (mut cluster, leader) = serving_cluster(3, election_mode, 61);
        let follower = (1..=3).find(|id| *id != leader).expect("a follower");
        let add = |id| MembershipChange::AddLearner { id, addresses: addresses(id) };
        assert_eq!(cluster.change(follower, add(4)), Err(ChangeError::NotLeader { leader: Some(leader) }));
        assert_eq!(
            cluster.change(leader, add(2)),
            Err(ChangeError::Invalid(InvalidChange::AlreadyMember(2))),
            "adding an existing id"
        );
        let index = cluster.change(leader, add(4)).expect("a new learner");
        assert_eq!(cluster.change(leader, add(5)), Err(ChangeError::InProgress { index }), "one at a time");
        await_commit(&mut cluster, leader, index, "add 4");
        let taken = MembershipChange::AddLearner { id: 5, addresses: addresses(4) };
        assert!(
            matches!(cluster.change(leader, taken), Err(ChangeError::Invalid(InvalidChange::AddressInUse { .. }))),
            "adding an address in use"
        );
        assert_eq!(
            cluster.change(leader, MembershipChange::Promote { id: 9 }),
            Err(ChangeError::Invalid(InvalidChange::UnknownNode(9)))
        );
        // Node 4 was never started: it holds nothing, so it cannot vote yet.
        assert!(matches!(
            cluster.change(leader, MembershipChange::Promote { id: 4 }),
            Err(ChangeError::NotCaughtUp { id: 4, match_index: 0, .. })
        ));
        assert_eq!(
            cluster.change(leader, MembershipChange::Remove { id: leader }),
            Err(ChangeError::RemovesLeader(leader))
        );
        let voter = follower;
        assert_eq!(
            cluster.change(leader, MembershipChange::Promote { id: voter }),
            Err(ChangeError::Invalid(InvalidChange::AlreadyVoter(voter)))
        );
    }
}

#[test]
fn the_last_voter_cannot_be_removed() {
    let mut cluster = TimedCluster::new(1, 71, DELAY_MS, mode(ElectionMode::Raft));
    assert!(cluster.run_until_or(2_000, 5, |cluster| serving_leader(cluster) == Some(1)));
    cluster.start_joiner(2, mode(ElectionMode::Raft));
    change(&mut cluster, MembershipChange::AddLearner { id: 2, addresses: addresses(2) }, "add");
    let index = cluster.change(1, MembershipChange::Remove { id: 2 }).expect("a learner leaves");
    await_commit(&mut cluster, 1, index, "remove the learner");
    // The only voter is the leader: removing it hands over first, and there
    // is no one to hand over to; the membership itself refuses too.
    assert_eq!(cluster.change(1, MembershipChange::Remove { id: 1 }), Err(ChangeError::RemovesLeader(1)));
    let alone = cluster.node(1).membership().apply(&MembershipChange::Remove { id: 1 });
    assert_eq!(alone, Err(InvalidChange::LastVoter(1)));
}

#[test]
fn priority_picks_among_equal_data_and_a_priority_zero_leader_hands_over() {
    for election_mode in ElectionMode::ALL {
        let (mut cluster, leader) = serving_cluster(3, election_mode, 81);
        let followers: Vec<NodeId> = (1..=3).filter(|id| *id != leader).collect();
        // Equal data: the higher priority is the transfer's "best", not the lower id.
        change(&mut cluster, MembershipChange::SetPriority { id: followers[1], priority: 5 }, "priority");
        cluster.run_for(200);
        assert_eq!(cluster.transfer(leader, None), Ok(followers[1]), "{election_mode}");
        let moved = |cluster: &TimedCluster| serving_leader(cluster) == Some(followers[1]);
        assert!(cluster.run_until_or(cluster.now_ms + 2_000, 5, moved), "{election_mode}: the transfer");
        // The new leader gets priority 0: it hands over by itself, once a
        // member of higher priority holds its whole log.
        let zero = followers[1];
        change(&mut cluster, MembershipChange::SetPriority { id: zero, priority: 0 }, "priority 0");
        let gone = |cluster: &TimedCluster| serving_leader(cluster).is_some_and(|now| now != zero);
        assert!(
            cluster.run_until_or(cluster.now_ms + 3 * ELECTION_TIMEOUT_MS, 5, gone),
            "{election_mode}: the priority-0 leader handed over"
        );
    }
}

#[test]
fn a_cluster_whose_newest_members_all_have_priority_zero_still_elects() {
    for election_mode in ElectionMode::ALL {
        let (mut cluster, _) = serving_cluster(3, election_mode, 91);
        for id in 1..=3 {
            change(&mut cluster, MembershipChange::SetPriority { id, priority: 0 }, "priority 0");
        }
        let leader = serving_leader(&cluster).expect("a leader");
        cluster.crash(leader);
        let elected = |cluster: &TimedCluster| serving_leader(cluster).is_some();
        assert!(cluster.run_until_or(cluster.now_ms + 5_000, 5, elected), "{election_mode}: someone leads");
    }
}

#[test]
fn a_restarted_follower_whose_config_names_an_old_leader_is_corrected_across_a_membership_change() {
    // Reference: docs/design/cold-start.md (a restarted follower whose config
    // still names the initial leader is corrected by the current leader),
    // with the membership changed since the config was written.
    let election_mode = ElectionMode::Conclave;
    let (mut cluster, leader) = serving_cluster(3, election_mode, 101);
    assert_eq!(leader, 1, "the configured initial leader leads first");
    cluster.start_joiner(4, mode(election_mode));
    change(&mut cluster, MembershipChange::AddLearner { id: 4, addresses: addresses(4) }, "add");
    let caught_up = |cluster: &TimedCluster| {
        let leader = cluster.node(1);
        leader.status().followers.get(&4).is_some_and(|follower| follower.match_index == leader.log().last_index())
    };
    assert!(cluster.run_until_or(cluster.now_ms + 2_000, 5, caught_up), "node 4 caught up");
    change(&mut cluster, MembershipChange::Promote { id: 4 }, "promote");
    assert_eq!(cluster.transfer(1, Some(4)), Ok(4));
    let moved = |cluster: &TimedCluster| serving_leader(cluster) == Some(4);
    assert!(cluster.run_until_or(cluster.now_ms + 2_000, 5, moved), "node 4 leads");
    let term = cluster.node(4).term();

    // Node 3's disk is replaced: its config names node 1 and voters 1..3.
    cluster.crash(3);
    cluster.restart_wiped(3);
    let corrected = |cluster: &TimedCluster| {
        let node = cluster.node(3);
        node.leader() == Some(4) && node.log().last_index() == cluster.node(4).log().last_index()
    };
    let done = cluster.run_until_or(cluster.now_ms + 5_000, 5, corrected);
    if !done {
        let n3 = cluster.node(3).status();
        let events: Vec<String> = cluster
            .events
            .iter()
            .filter(|(_, id, _)| *id == 3)
            .map(|(at, _, event)| format!("{at} {event:?}"))
            .collect();
        panic!(
            "node 3 follows node 4 with its log: {n3:?}\n{}\nleader {:?}",
            events.join("\n"),
            cluster.node(4).status()
        );
    }
    let events: Vec<&Event> = cluster.events.iter().filter(|(_, id, _)| *id == 3).map(|(_, _, event)| event).collect();
    // It knew it lost its data: it abstained, then followed the leader it was
    // told of (by the leader itself or by the others).
    assert!(events.iter().any(|event| matches!(event, Event::AbstainedAfterDataLoss { .. })), "{events:?}");
    assert_eq!(cluster.node(3).membership().voters(), vec![1, 2, 3, 4], "it learned the membership from the log");
    assert_eq!((serving_leader(&cluster), cluster.node(4).term()), (Some(4), term), "the leader kept its term");
}

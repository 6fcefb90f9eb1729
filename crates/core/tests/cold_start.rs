//! Cold start of a brand-new cluster whose members start apart, as a script or
//! an orchestrator starts them (docs/design/cold-start.md, "Members that start
//! apart"): the configured initial leader leads the first term whenever every
//! member comes up within `cold_start_wait_ms`; without it, the others elect
//! soon after that bound; a member that reports data ends the wait at once.

mod support;

use conclave_core::{Config, ElectionMode, Event, HardState, NodeId, RestoredState, Role};
use rand::seq::SliceRandom;
use rand::Rng;
use support::*;

const DELAY_MS: (u64, u64) = (2, 10);
/// The shipped bound (`Config::new`).
const WAIT_MS: u64 = 5_000;

fn cold_start(mode: ElectionMode) -> impl Fn(&mut Config) {
    move |config: &mut Config| {
        config.election_mode = mode;
        config.initial_leader = Some(1);
        assert_eq!(config.cold_start_wait_ms, WAIT_MS, "the shipped default");
    }
}

/// Start times for `ids`, in a random order, each within the first `spread_ms`.
fn start_times(ids: &[NodeId], spread_ms: u64, seed: u64) -> Vec<(u64, NodeId)> {
    let mut rng = rng(seed);
    let mut order = ids.to_vec();
    order.shuffle(&mut rng);
    let mut times: Vec<u64> = order.iter().map(|_| rng.gen_range(0..=spread_ms)).collect();
    times.sort_unstable();
    times.into_iter().zip(order).collect()
}

/// Starts the members at their times (brand new), running the cluster between.
fn start_apart(cluster: &mut TimedCluster, starts: &[(u64, NodeId)]) {
    for &(at_ms, id) in starts {
        cluster.run_until(at_ms);
        cluster.start_empty(id);
    }
}

fn elections_started(cluster: &TimedCluster) -> usize {
    cluster.events.iter().filter(|(_, _, event)| matches!(event, Event::ElectionStarted { .. })).count()
}

#[test]
fn the_initial_leader_leads_term_1_when_members_start_up_to_2_s_apart() {
    for mode in [ElectionMode::Fast, ElectionMode::Conclave] {
        for seed in 0..100 {
            let mut cluster = TimedCluster::unstarted(5, seed, DELAY_MS, cold_start(mode));
            let starts = start_times(&[1, 2, 3, 4, 5], 2_000, seed);
            start_apart(&mut cluster, &starts);
            let last_start_ms = starts.last().expect("five").0;
            let settled = cluster.run_until_or(last_start_ms + 1_000, 10, |cluster| {
                cluster.nodes.values().all(|node| {
                    node.term() == 1
                        && node.leader() == Some(1)
                        && (mode != ElectionMode::Conclave
                            || node.committed_leader_term().map(|record| (record.leader_term, record.leader))
                                == Some((1, 1)))
                })
            });
            assert!(settled, "{mode} seed {seed}, starts {starts:?}: every member follows node 1 in term 1");
            assert_eq!(cluster.leaders(), vec![1], "{mode} seed {seed}");
            assert_eq!(elections_started(&cluster), 0, "{mode} seed {seed}: no election, starts {starts:?}");
        }
    }
}

#[test]
fn without_the_initial_leader_the_others_elect_soon_after_the_bound() {
    for mode in [ElectionMode::Fast, ElectionMode::Conclave] {
        for seed in 0..50 {
            let mut cluster = TimedCluster::unstarted(5, seed, DELAY_MS, cold_start(mode));
            let starts = start_times(&[2, 3, 4, 5], 2_000, seed);
            start_apart(&mut cluster, &starts);
            // The first three to start make a majority: their bounds end first.
            let majority_waited_ms = starts[2].0 + WAIT_MS;
            cluster.run_until(starts[0].0 + WAIT_MS - 1);
            assert!(cluster.leaders().is_empty(), "{mode} seed {seed}: nobody campaigns within the bound");
            assert_eq!(elections_started(&cluster), 0, "{mode} seed {seed}");
            // Then an election timeout of misses, a report round and the vote.
            let elected = cluster.run_until_or(majority_waited_ms + 2 * ELECTION_TIMEOUT_MS + 500, 10, |cluster| {
                cluster.leaders().len() == 1
                    && cluster
                        .nodes
                        .values()
                        .filter(|node| node.role() == Role::Follower && node.leader().is_some())
                        .count()
                        == 3
            });
            assert!(elected, "{mode} seed {seed}, starts {starts:?}: elected soon after the bound");
            assert_ne!(cluster.leaders(), vec![1]);
        }
    }
}

#[test]
fn a_member_with_data_ends_the_wait_at_once() {
    for mode in [ElectionMode::Fast, ElectionMode::Conclave] {
        let mut cluster = TimedCluster::unstarted(5, 9, DELAY_MS, cold_start(mode));
        for id in [1, 3, 4] {
            cluster.start_empty(id);
        }
        // Node 2 has run before: its data dir holds an entry of term 1.
        cluster.run_until(100);
        let restored = RestoredState {
            hard_state: HardState { term: 1, voted_for: Some(1), commit: 0 },
            entries: vec![noop(1, 1)],
            snapshot: None,
        };
        cluster.restart(2, restored);
        let started_ms = cluster.now_ms;
        // No unanimous confirmation can come: the first term is elected, long
        // before the bound.
        let elected = cluster.run_until_or(started_ms + 1_500, 10, |cluster| cluster.leaders().len() == 1);
        assert!(elected, "{mode}: a leader within 1.5 s, not after the {WAIT_MS} ms bound");
        assert!(cluster.now_ms < WAIT_MS);
        assert!(elections_started(&cluster) > 0, "{mode}: elected, not cold-started");
    }
}

//! The transport's evidence that the leader's process is gone
//! (`Node::peer_process_gone`, docs/decisions/0050): in every mode it stands in
//! for the counted misses of one node, nothing more. A majority still has to
//! agree (fast, conclave) or vote (raft, gapless), and a node that is wrong about
//! its leader (it still hears it) retracts.

mod support;

use conclave_core::{Config, Detector, ElectionMode, Event, NodeId, Role, Term};
use support::*;

const DELAY_MS: (u64, u64) = (1, 3);

fn settled_cluster(mode: ElectionMode, seed: u64, tweak: fn(&mut Config)) -> (TimedCluster, NodeId, Term) {
    let mut cluster = TimedCluster::new(5, seed, DELAY_MS, |config| {
        config.election_mode = mode;
        if mode.exchanges_votes() {
            config.initial_leader = Some(1);
        }
        tweak(config);
    });
    let settled = cluster.run_until_or(5_000, 10, |cluster| {
        let leaders = cluster.leaders();
        leaders.len() == 1 && cluster.node(leaders[0]).is_serving()
    });
    assert!(settled, "{mode}: a leader serves");
    // Every follower heard the leader's heartbeats for a while.
    cluster.run_for(300);
    let leader = cluster.leaders()[0];
    let term = cluster.node(leader).term();
    for (id, node) in &cluster.nodes {
        assert_eq!(node.leader(), Some(leader), "{mode}: n{id} follows n{leader}");
    }
    (cluster, leader, term)
}

fn serving_leader(cluster: &TimedCluster, other_than: NodeId) -> Option<NodeId> {
    cluster.leaders().into_iter().find(|id| *id != other_than && cluster.node(*id).is_serving())
}

fn detections(cluster: &TimedCluster, since_ms: u64, detector: Detector) -> Vec<NodeId> {
    cluster
        .events
        .iter()
        .filter(|(at, _, event)| {
            *at >= since_ms && matches!(event, Event::FailureDetected { detector: found, .. } if *found == detector)
        })
        .map(|(_, id, _)| *id)
        .collect()
}

#[test]
fn a_refused_redial_replaces_the_detection_budget_in_every_mode() {
    for mode in ElectionMode::ALL {
        let (mut cluster, leader, term) = settled_cluster(mode, 7, |_| {});
        let crash_at = cluster.now_ms;
        cluster.crash(leader);
        // Each follower's redial is refused about one network delay later.
        cluster.run_for(1);
        let followers: Vec<NodeId> = cluster.nodes.keys().copied().collect();
        for follower in &followers {
            cluster.process_gone(*follower, leader);
        }
        let elected = cluster.run_until_or(crash_at + 5_000, 1, |cluster| serving_leader(cluster, leader).is_some());
        assert!(elected, "{mode}: a new leader serves");
        let failover_ms = cluster.now_ms - crash_at;
        assert!(
            failover_ms < ELECTION_TIMEOUT_MS,
            "{mode}: failover took {failover_ms} ms, more than the detection budget of the counted misses"
        );
        let mut detected = detections(&cluster, crash_at, Detector::ProcessGone);
        detected.sort_unstable();
        assert_eq!(detected, followers, "{mode}: each follower says which detector fired");
        assert!(
            detections(&cluster, crash_at, Detector::Misses).is_empty(),
            "{mode}: no miss counter reached its limit"
        );
        let new_leader = serving_leader(&cluster, leader).expect("elected");
        assert!(cluster.node(new_leader).term() > term, "{mode}");
    }
}

#[test]
fn evidence_at_one_follower_that_still_hears_its_leader_deposes_nobody() {
    // Not a case a correct transport produces (a reachable leader's port
    // answers), but the core must stay safe and stable if it happens: one node's
    // evidence is one node's view.
    for mode in ElectionMode::ALL {
        let (mut cluster, leader, term) = settled_cluster(mode, 11, |_| {});
        let follower = cluster.nodes.keys().copied().find(|id| *id != leader).expect("followers");
        let at_ms = cluster.now_ms;
        cluster.process_gone(follower, leader);
        assert_eq!(detections(&cluster, at_ms, Detector::ProcessGone), vec![follower], "{mode}");
        cluster.run_for(2 * ELECTION_TIMEOUT_MS);
        assert_eq!(cluster.leaders(), vec![leader], "{mode}: the leader stays");
        for (id, node) in &cluster.nodes {
            assert_eq!((node.term(), node.leader()), (term, Some(leader)), "{mode}: n{id} follows the same leader");
        }
    }
}

#[test]
fn fast_mode_evidence_is_an_sdown_report_that_hearing_the_leader_retracts() {
    let (mut cluster, leader, _) = settled_cluster(ElectionMode::Fast, 3, |_| {});
    let follower = cluster.nodes.keys().copied().find(|id| *id != leader).expect("followers");
    let at_ms = cluster.now_ms;
    cluster.process_gone(follower, leader);
    let events: Vec<Event> =
        cluster.events_of(follower).into_iter().filter(|(at, _)| *at >= at_ms).map(|(_, e)| e).collect();
    let term = cluster.node(follower).term();
    assert_eq!(
        events[..2],
        [
            Event::FailureDetected { leader, term, detector: Detector::ProcessGone },
            Event::SubjectivelyDown { leader: Some(leader), term }
        ]
    );
    let reports = |cluster: &TimedCluster, down: bool| {
        cluster
            .sent
            .iter()
            .filter(|(at, message)| {
                *at >= at_ms
                    && message.from == follower
                    && matches!(message.body, conclave_core::Body::SubjectiveDown { down: d, .. } if d == down)
            })
            .count()
    };
    assert_eq!(reports(&cluster, true), 4, "its SDOWN report goes to every other member");
    cluster.run_for(HEARTBEAT_MS + DELAY_MS.1);
    assert!(reports(&cluster, false) >= 4, "the next heartbeat retracts it");
    // Evidence about the same leader again, later, works again.
    assert_eq!(cluster.node(follower).role(), Role::Follower);
}

#[test]
fn evidence_about_a_non_leader_or_with_fast_detection_off_changes_nothing() {
    let (mut cluster, leader, _) = settled_cluster(ElectionMode::Conclave, 5, |_| {});
    let mut others = cluster.nodes.keys().copied().filter(|id| *id != leader);
    let (observer, other) = (others.next().expect("follower"), others.next().expect("follower"));
    let output = cluster.nodes.get_mut(&observer).expect("up").peer_process_gone(other);
    assert!(output.is_empty(), "a follower's process is no leader's: {output:?}");
    let output = cluster.nodes.get_mut(&leader).expect("up").peer_process_gone(observer);
    assert!(output.is_empty(), "a leader has no leader to lose: {output:?}");

    for mode in ElectionMode::ALL {
        let (mut cluster, leader, _) = settled_cluster(mode, 9, |config| config.fast_detection = false);
        let follower = cluster.nodes.keys().copied().find(|id| *id != leader).expect("followers");
        let output = cluster.nodes.get_mut(&follower).expect("up").peer_process_gone(leader);
        assert!(output.is_empty(), "{mode}: switched off, the evidence is ignored: {output:?}");
        let crash_at = cluster.now_ms;
        cluster.crash(leader);
        assert!(cluster.run_until_or(crash_at + 5_000, 1, |cluster| serving_leader(cluster, leader).is_some()));
        assert!(cluster.now_ms - crash_at >= ELECTION_TIMEOUT_MS - HEARTBEAT_MS, "{mode}: the misses decide");
        assert!(!detections(&cluster, crash_at, Detector::Misses).is_empty(), "{mode}: and say so");
    }
}

//! Scenario tests of the `fast` election mode (docs/design/detection.md, docs/design/vote-exchange.md, docs/design/cold-start.md) on
//! real nodes over a timed, FIFO, in-memory network ([`TimedCluster`]), plus
//! unit-level tests of its rules on single nodes. Each test is named after the
//! situation of the seed document it checks.
//!
//! Every cluster starts from empty data dirs with `initial_leader = 1`, so node 1
//! leads term 1 without an election (docs/design/cold-start.md). Timings are the defaults: heartbeat
//! 50 ms, heartbeat timeout 50 ms, 5 misses (election timeout 250 ms),
//! `finalize_wait` 100 ms.

mod support;

use conclave_core::{
    Body, Config, Detector, ElectionMode, Event, LogIndex, Message, Node, NodeId, PeerState, Role, Term, VoteChoice,
};
use support::*;

/// One-way delay of every default link, drawn per message.
const DELAY_MS: (u64, u64) = (2, 10);
const FINALIZE_WAIT_MS: u64 = 100;

fn fast(config: &mut Config) {
    config.election_mode = ElectionMode::Fast;
    config.initial_leader = Some(1);
}

/// A brand-new `fast` cluster of `size` nodes, node 1 leading term 1 once every
/// member confirmed an empty data dir (one round trip), run for 300 ms so that
/// every follower heard its leader.
fn cluster(size: u64, seed: u64) -> TimedCluster {
    let mut cluster = TimedCluster::new(size, seed, DELAY_MS, fast);
    assert!(cluster.leaders().is_empty(), "node 1 waits for every member's confirmation");
    cluster.run_until(300);
    assert_eq!(cluster.leaders(), vec![1], "node 1 leads from the cold start");
    assert_settled(&cluster, 1, 1);
    cluster
}

/// Every node that is up follows `leader` in `term` (and `leader` leads it).
fn assert_settled(cluster: &TimedCluster, leader: NodeId, term: Term) {
    for (id, node) in &cluster.nodes {
        let role = if *id == leader { Role::Leader } else { Role::Follower };
        assert_eq!(
            (node.role(), node.term(), node.leader()),
            (role, term, Some(leader)),
            "node {id} at {} ms",
            cluster.now_ms
        );
    }
}

/// The roles node `id` entered after `since_ms`, with their times and terms.
fn roles_entered(cluster: &TimedCluster, id: NodeId, since_ms: u64) -> Vec<(u64, Role, Term)> {
    cluster
        .events_of(id)
        .into_iter()
        .filter(|(at, _)| *at >= since_ms)
        .filter_map(|(at, event)| match event {
            Event::RoleChanged { to, term, .. } => Some((at, to, term)),
            _ => None,
        })
        .collect()
}

/// Times at which node `id` emitted an event matching `pred`, after `since_ms`.
fn event_times(cluster: &TimedCluster, id: NodeId, since_ms: u64, pred: impl Fn(&Event) -> bool) -> Vec<u64> {
    cluster.events_of(id).into_iter().filter(|(at, event)| *at >= since_ms && pred(event)).map(|(at, _)| at).collect()
}

/// Every election-related event any node emitted after `since_ms`.
fn election_events(cluster: &TimedCluster, since_ms: u64) -> Vec<(u64, NodeId, Event)> {
    cluster
        .events
        .iter()
        .filter(|(at, _, event)| {
            *at >= since_ms
                && matches!(
                    event,
                    Event::ObjectivelyDown { .. }
                        | Event::ElectionStarted { .. }
                        | Event::VoteChanged { .. }
                        | Event::VoteFinalized { .. }
                        | Event::RoleChanged { to: Role::Looking | Role::Candidate | Role::Leader, .. }
                )
        })
        .cloned()
        .collect()
}

/// Proposes `count` commands at `leader`; returns the index of the last one.
fn propose_many(cluster: &mut TimedCluster, leader: NodeId, count: usize, tag: &str) -> LogIndex {
    let mut last = 0;
    for i in 0..count {
        last = cluster.propose(leader, format!("{tag}-{i}").as_bytes());
    }
    last
}

/// Every node that is up has committed and applied `index`, and all logs agree
/// up to it.
fn assert_committed_everywhere(cluster: &TimedCluster, index: LogIndex) {
    for (id, node) in &cluster.nodes {
        assert!(node.log().committed() >= index, "node {id} committed {} < {index}", node.log().committed());
    }
    let reference: Vec<_> = cluster.nodes.values().next().expect("a node is up").log().all()[..index as usize].to_vec();
    for (id, node) in &cluster.nodes {
        assert_eq!(&node.log().all()[..index as usize], reference.as_slice(), "node {id}'s log differs");
        assert!(cluster.applied[id].len() as LogIndex >= index, "node {id} applied up to {index}");
    }
}

/// Gives `best` the longest log: `count` commands that only it receives (the
/// leader's links to every other follower are cut meanwhile). None of them can
/// commit. Returns `best`'s last index.
fn give_longest_log(cluster: &mut TimedCluster, best: NodeId, count: usize) -> LogIndex {
    let others: Vec<NodeId> = cluster.nodes.keys().copied().filter(|id| *id != 1 && *id != best).collect();
    for other in &others {
        cluster.cut_link(1, *other);
    }
    let last = propose_many(cluster, 1, count, "only-best");
    cluster.run_for(DELAY_MS.1 + 1);
    assert_eq!(cluster.node(best).log().last_index(), last, "node {best} received the new entries");
    for other in others {
        assert!(cluster.node(other).log().last_index() < last, "node {other} did not");
    }
    assert!(cluster.node(1).log().committed() < last, "the new entries are not committed");
    last
}

fn vote_choice(candidate: NodeId, last_log_term: Term, last_log_index: LogIndex) -> VoteChoice {
    VoteChoice { candidate, last_log_term, last_log_index, priority: 1 }
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

#[test]
fn one_broken_link_to_the_leader_starts_no_election() {
    // Reference: docs/design/detection.md — "SDOWN alone starts nothing"; ODOWN needs
    // strictly more than half of the voters; the README: elections "never let a
    // one-sided link failure start an election".
    let mut cluster = cluster(5, 1);
    let cut_at = cluster.now_ms;
    cluster.cut_link(1, 3); // n3 stops hearing the leader; n3 → n1 still works.
    let end = cut_at + 10 * ELECTION_TIMEOUT_MS;
    while cluster.now_ms < end {
        cluster.run_for(10);
        assert_settled(&cluster, 1, 1);
    }

    // n3 held its leader subjectively down exactly once, after its misses ran out
    // (the last heartbeat it heard was sent at most one interval before the cut).
    let sdown =
        event_times(&cluster, 3, cut_at, |event| *event == Event::SubjectivelyDown { leader: Some(1), term: 1 });
    assert_eq!(sdown.len(), 1, "n3 declared SDOWN once: {sdown:?}");
    assert!(
        sdown[0] >= cut_at + ELECTION_TIMEOUT_MS - HEARTBEAT_MS
            && sdown[0] <= cut_at + ELECTION_TIMEOUT_MS + DELAY_MS.1,
        "SDOWN at {} ms, link cut at {cut_at} ms",
        sdown[0]
    );
    // It told everyone (and keeps repeating, so reports do not expire) ...
    let reports: Vec<NodeId> = cluster
        .sent
        .iter()
        .filter(|(at, message)| {
            *at == sdown[0]
                && message.from == 3
                && matches!(message.body, Body::SubjectiveDown { leader: Some(1), leader_term: 1, down: true, .. })
        })
        .map(|(_, message)| message.to)
        .collect();
    assert_eq!(reports, vec![1, 2, 4, 5]);
    // ... but no other node agreed, so nobody ever saw ODOWN or looked.
    for id in [1, 2, 4, 5] {
        assert!(event_times(&cluster, id, cut_at, |e| matches!(e, Event::SubjectivelyDown { .. })).is_empty());
    }
    assert_eq!(election_events(&cluster, cut_at), vec![], "no election activity");
    for id in 1..=5 {
        assert_eq!(roles_entered(&cluster, id, cut_at), vec![], "node {id} kept its role");
        assert_eq!(cluster.node(id).term(), 1);
    }

    // The leader still commits with the other four.
    let index = propose_many(&mut cluster, 1, 3, "after-cut");
    cluster.run_for(100);
    for id in [1, 2, 4, 5] {
        assert!(cluster.node(id).log().committed() >= index, "node {id} committed");
    }

    // Healing the link: n3 hears its leader again and retracts its report.
    let heal_at = cluster.now_ms;
    cluster.heal();
    cluster.run_for(2 * HEARTBEAT_MS + DELAY_MS.1);
    let retractions: Vec<NodeId> = cluster
        .sent
        .iter()
        .filter(|(at, message)| {
            *at >= heal_at
                && message.from == 3
                && matches!(message.body, Body::SubjectiveDown { leader: Some(1), leader_term: 1, down: false, .. })
        })
        .map(|(_, message)| message.to)
        .collect();
    assert_eq!(retractions, vec![1, 2, 4, 5], "n3 retracted its SDOWN once");
    cluster.run_for(ELECTION_TIMEOUT_MS);
    assert_settled(&cluster, 1, 1);
    assert_committed_everywhere(&cluster, index);
}

#[test]
fn leader_crash_starts_every_live_node_within_one_network_delay() {
    // Reference: docs/design/detection.md — "The first node to see ODOWN broadcasts
    // ObjectiveDown{leader, term} and starts the election; a node receiving it
    // starts at once. So every live node starts within about one network delay of
    // the first — the precondition of the fast election."
    let mut cluster = cluster(5, 2);
    let committed = propose_many(&mut cluster, 1, 2, "before");
    cluster.run_for(100);
    assert_committed_everywhere(&cluster, committed);

    let crash_at = cluster.now_ms;
    cluster.crash(1);
    cluster.run_for(4 * ELECTION_TIMEOUT_MS);

    let starts: Vec<u64> = (2..=5)
        .map(|id| {
            let times =
                event_times(&cluster, id, crash_at, |e| *e == Event::ElectionStarted { term: 2, pre_vote: false });
            assert_eq!(times.len(), 1, "node {id} started the term-2 election once: {times:?}");
            times[0]
        })
        .collect();
    let (first, last) = (*starts.iter().min().unwrap(), *starts.iter().max().unwrap());
    assert!(
        last - first <= cluster.max_delay_ms(),
        "starts {starts:?} spread over {} ms > max one-way delay {} ms",
        last - first,
        cluster.max_delay_ms()
    );
    // Nobody started before its misses ran out (the last heartbeat before the
    // crash was sent at most one interval earlier).
    assert!(first >= crash_at + ELECTION_TIMEOUT_MS - HEARTBEAT_MS, "started at {first}, crash at {crash_at}");
    // Every start followed an ODOWN about leader 1 of term 1.
    for id in 2..=5 {
        let odown = event_times(&cluster, id, crash_at, |e| *e == Event::ObjectivelyDown { leader: Some(1), term: 1 });
        assert_eq!(odown.len(), 1, "node {id}: {odown:?}");
    }

    // Equal logs: the highest id is the best vote; it leads term 2, alone.
    assert_settled(&cluster, 5, 2);
    for id in 2..=4 {
        assert_eq!(cluster.node(id).status().voted_for, Some(5), "node {id} voted for n5");
    }
    let terms_led: Vec<(NodeId, Term)> = cluster
        .events
        .iter()
        .filter_map(|(_, id, event)| match event {
            Event::RoleChanged { to: Role::Leader, term, .. } => Some((*id, *term)),
            _ => None,
        })
        .collect();
    assert_eq!(terms_led, vec![(1, 1), (5, 2)], "one leader per term, no extra elections");
    let elected_at =
        event_times(&cluster, 5, crash_at, |e| matches!(e, Event::RoleChanged { to: Role::Leader, .. }))[0];
    // Every member voted, all agreed: finalized at once, no finalize_wait.
    assert!(elected_at - first < FINALIZE_WAIT_MS, "elected at {elected_at}, first start at {first}");

    // The new leader commits.
    let index = propose_many(&mut cluster, 5, 2, "after");
    cluster.run_for(100);
    assert_committed_everywhere(&cluster, index);
}

#[test]
fn the_newest_data_wins() {
    // Reference: docs/design/vote-exchange.md — "A vote names a candidate and its data version:
    // (last_log_term, last_log_index, node_id), ordered lexicographically"; the README:
    // elections "pick the node with the newest data".
    let mut cluster = cluster(5, 3);
    // n2 has the lowest id of the survivors: only its data can make it win.
    let best_index = give_longest_log(&mut cluster, 2, 3);
    let crash_at = cluster.now_ms;
    cluster.crash(1);
    cluster.heal();
    cluster.run_for(4 * ELECTION_TIMEOUT_MS);

    assert_settled(&cluster, 2, 2);
    for id in 3..=5 {
        // Each ended backing n2 (at once, from n2's report, or by moving to it).
        let changes: Vec<NodeId> = votes_sent(&cluster, id, crash_at).into_iter().map(|(_, c)| c).collect();
        assert_eq!(changes.last(), Some(&2), "node {id} ended backing n2: {changes:?}");
        assert_eq!(
            event_times(&cluster, id, crash_at, |e| *e == Event::VoteFinalized { ballot: 2, candidate: 2 }).len(),
            1
        );
    }
    // The newest data survived and committed: n2's entries, then its term-2 no-op.
    let index = propose_many(&mut cluster, 2, 1, "after");
    cluster.run_for(100);
    assert_committed_everywhere(&cluster, index);
    let log = cluster.node(3).log().all().to_vec();
    assert_eq!(best_index, 4);
    assert_eq!(log.iter().map(|entry| entry.term).collect::<Vec<_>>(), vec![1, 1, 1, 1, 2, 2]);
}

/// The scenario of the finalize window: n2 holds the newest data but every
/// message it sends takes `best_delay_ms`, while n3..n5 agree on n5 among
/// themselves. Returns the cluster after the failover and the time n2's first
/// vote reached each of the others.
fn late_best_votes(best_delay_ms: u64, seed: u64) -> (TimedCluster, u64, BestVoteArrival) {
    let mut cluster = cluster(5, seed);
    give_longest_log(&mut cluster, 2, 2);
    cluster.delay_from(2, best_delay_ms);
    let crash_at = cluster.now_ms;
    cluster.crash(1);
    cluster.heal();
    cluster.run_for(4 * ELECTION_TIMEOUT_MS);
    let arrival = BestVoteArrival::find(&cluster, crash_at);
    (cluster, crash_at, arrival)
}

/// The candidates `id` voted for in round 2 since `since_ms`, with when it first
/// sent each: its first vote (maybe taken from a report) and every change.
fn votes_sent(cluster: &TimedCluster, id: NodeId, since_ms: u64) -> Vec<(u64, NodeId)> {
    let mut backed: Vec<(u64, NodeId)> = Vec::new();
    for (at, message) in &cluster.sent {
        if let Body::Vote { ballot: 2, vote, state: PeerState::Looking } = message.body {
            if *at >= since_ms && message.from == id && backed.last().is_none_or(|(_, c)| *c != vote.candidate) {
                backed.push((*at, vote.candidate));
            }
        }
    }
    backed
}

/// When n2's first vote of round 2 reached n3, n4, n5; and when n5 had heard
/// both n3 and n4 back it for ballot 2 (a quorum agreeing on the worse n5).
struct BestVoteArrival {
    first_best_vote_ms: u64,
    last_best_vote_ms: u64,
    quorum_on_n5_ms: u64,
}

impl BestVoteArrival {
    fn find(cluster: &TimedCluster, since_ms: u64) -> BestVoteArrival {
        let delivered_vote = |from: NodeId, to: NodeId, candidate: NodeId| {
            cluster
                .delivered
                .iter()
                .find(|(at, message)| {
                    *at >= since_ms
                        && message.from == from
                        && message.to == to
                        && matches!(message.body, Body::Vote { ballot: 2, vote, state: PeerState::Looking } if vote.candidate == candidate)
                })
                .map(|(at, _)| *at)
                .unwrap_or_else(|| panic!("no ballot-2 vote for n{candidate} from n{from} reached n{to}"))
        };
        let best: Vec<u64> = [3, 4, 5].iter().map(|to| delivered_vote(2, *to, 2)).collect();
        let quorum_on_n5_ms = delivered_vote(3, 5, 5).max(delivered_vote(4, 5, 5));
        BestVoteArrival {
            first_best_vote_ms: *best.iter().min().unwrap(),
            last_best_vote_ms: *best.iter().max().unwrap(),
            quorum_on_n5_ms,
        }
    }
}

#[test]
fn the_best_nodes_votes_arrive_last_and_the_finalize_window_still_elects_it() {
    // Reference: docs/design/vote-exchange.md — "When a quorum of `received` (self included)
    // equals its own vote, wait finalize_wait. If a vote arrives in that window
    // that changes its vote, continue"; "The best node can still be missed when
    // its votes arrive late ... the finalize window [is one of] the two defences".
    let (mut cluster, crash_at, arrival) = late_best_votes(60, 4);
    // n3, n4, n5 agreed on n5 (a quorum of five) before n2's vote arrived ...
    assert!(
        arrival.quorum_on_n5_ms < arrival.first_best_vote_ms,
        "quorum on n5 at {} ms, n2's vote at {} ms",
        arrival.quorum_on_n5_ms,
        arrival.first_best_vote_ms
    );
    // ... and nobody finalized for n5 before it, since it came within the window.
    assert!(arrival.last_best_vote_ms < arrival.quorum_on_n5_ms + FINALIZE_WAIT_MS);
    for id in 3..=5 {
        assert!(
            event_times(&cluster, id, crash_at, |e| matches!(e, Event::VoteFinalized { candidate: 5, .. })).is_empty(),
            "node {id} never bound itself to n5"
        );
        let finalized = event_times(&cluster, id, crash_at, |e| *e == Event::VoteFinalized { ballot: 2, candidate: 2 });
        assert_eq!(finalized.len(), 1, "node {id} finalized for n2");
    }
    // n3 and n4 first moved to n5, then to n2 when its vote came.
    for id in [3, 4] {
        let changes = votes_sent(&cluster, id, crash_at);
        // (It may pass through n4 first, as votes from n4 and n5 race.)
        let candidates: Vec<NodeId> = changes.iter().map(|(_, candidate)| *candidate).collect();
        let backed_n5 = candidates.iter().position(|candidate| *candidate == 5);
        assert!(backed_n5.is_some() && candidates.last() == Some(&2), "node {id}: {candidates:?}");
        assert!(!candidates[..backed_n5.expect("checked")].contains(&2), "node {id}: n5 before n2: {candidates:?}");
        assert!(changes.last().expect("checked").0 >= arrival.first_best_vote_ms);
    }
    assert_settled(&cluster, 2, 2);
    let index = propose_many(&mut cluster, 2, 1, "after");
    cluster.run_for(200);
    assert_committed_everywhere(&cluster, index);
}

#[test]
fn without_the_window_a_late_best_node_loses_to_a_worse_one() {
    // Reference: docs/design/vote-exchange.md — "The best node can still be missed when its
    // votes arrive late (queued, or it started late)": a vote that arrives after
    // the window closed no longer counts; this is why the window exists.
    let (mut cluster, crash_at, arrival) = late_best_votes(FINALIZE_WAIT_MS + 100, 4);
    let finalized_at =
        event_times(&cluster, 5, crash_at, |e| *e == Event::VoteFinalized { ballot: 2, candidate: 5 })[0];
    // The quorum bound itself to n5 before n2's vote arrived.
    assert!(arrival.quorum_on_n5_ms <= finalized_at && finalized_at < arrival.first_best_vote_ms);
    assert_settled(&cluster, 5, 2);
    // n2 never became candidate or leader; its uncommitted entries were replaced.
    assert!(roles_entered(&cluster, 2, crash_at).iter().all(|(_, role, _)| *role != Role::Candidate));
    let index = propose_many(&mut cluster, 5, 1, "after");
    cluster.run_for(FINALIZE_WAIT_MS + 300);
    assert_committed_everywhere(&cluster, index);
    assert_eq!(cluster.node(2).log().all(), cluster.node(5).log().all());
}

/// Crashes `early` (and waits `wait_ms`), then the leader n1; returns, per
/// survivor, the time from its round's start to its finalized vote.
fn round_lengths_after(early: NodeId, wait_ms: u64, seed: u64) -> Vec<u64> {
    let mut cluster = cluster(5, seed);
    cluster.crash(early);
    cluster.run_for(wait_ms);
    let crash_at = cluster.now_ms;
    cluster.crash(1);
    cluster.run_for(4 * ELECTION_TIMEOUT_MS);
    let survivors: Vec<NodeId> = (2..=5).filter(|id| *id != early).collect();
    let leader = cluster.leaders();
    assert_eq!(leader.len(), 1, "one leader after the failover");
    survivors
        .iter()
        .map(|id| {
            let started = event_times(&cluster, *id, crash_at, |e| matches!(e, Event::ElectionStarted { .. }))[0];
            let finalized = event_times(&cluster, *id, crash_at, |e| matches!(e, Event::VoteFinalized { .. }))[0];
            finalized - started
        })
        .collect()
}

#[test]
fn a_member_the_leader_had_not_heard_from_does_not_delay_the_round() {
    // Reference: docs/design/vote-exchange.md — "When every member that is not objectively
    // down has voted and all agree ... finalize at once". The leader's `Liveness`
    // view marks a member silent for an election timeout as down, so when the
    // leader is lost too the survivors do not wait `finalize_wait` for its vote.
    let known_down = round_lengths_after(5, 3 * ELECTION_TIMEOUT_MS, 21);
    assert!(known_down.iter().all(|length| *length < FINALIZE_WAIT_MS), "rounds took {known_down:?} ms");
    // Control: the same member lost just before the leader is still in the view,
    // so the survivors must give it the window (it might be the best).
    let just_lost = round_lengths_after(5, 10, 21);
    assert!(just_lost.iter().all(|length| *length >= FINALIZE_WAIT_MS), "rounds took {just_lost:?} ms");
}

#[test]
fn restarted_initial_leader_is_corrected() {
    // Reference: docs/design/cold-start.md — "A node that receives heartbeats from a node
    // other than its current leader (a restarted initial leader that believes the
    // config, say) answers Correction{leader, term}"; a node that starts empty
    // while the cluster has state "abstains from every vote and follows the
    // corrected leader".
    let mut cluster = cluster(5, 5);
    let crash_at = cluster.now_ms;
    cluster.crash(1);
    cluster.run_for(3 * ELECTION_TIMEOUT_MS);
    assert_settled(&cluster, 5, 2);
    let index = propose_many(&mut cluster, 5, 2, "term-2");
    cluster.run_for(100);
    let elected_at = event_times(&cluster, 5, crash_at, |e| matches!(e, Event::RoleChanged { to: Role::Leader, .. }));
    assert_eq!(elected_at.len(), 1);

    // n1's disk was replaced: it believes the config and claims term 1 again. It
    // would lead only once every member confirmed an empty data dir, which
    // nobody does (their data dirs are not empty), so it never writes term-1
    // entries that could clash with its earlier incarnation's.
    let restart_at = cluster.now_ms;
    cluster.restart_wiped(1);
    assert_eq!((cluster.node(1).role(), cluster.node(1).term()), (Role::Candidate, 1));
    cluster.run_for(2 * ELECTION_TIMEOUT_MS);

    // Corrections naming (n5, 2) reached it; n5 itself answered.
    let corrections: Vec<NodeId> = cluster
        .delivered
        .iter()
        .filter(|(at, message)| {
            *at >= restart_at && message.to == 1 && message.body == Body::Correction { leader: 5, leader_term: 2 }
        })
        .map(|(_, message)| message.from)
        .collect();
    assert!(corrections.contains(&5), "the real leader corrected n1: {corrections:?}");
    let n1_events: Vec<Event> = cluster
        .events_of(1)
        .into_iter()
        .filter(|(at, event)| {
            *at >= restart_at && matches!(event, Event::AbstainedAfterDataLoss { .. } | Event::Corrected { .. })
        })
        .map(|(_, event)| event)
        .collect();
    assert_eq!(n1_events, vec![Event::AbstainedAfterDataLoss { term: 2 }, Event::Corrected { leader: 5, term: 2 }]);
    // It follows the real leader at the real term, with the abstention marker as
    // its vote: it can grant no vote in term 2.
    assert_settled(&cluster, 5, 2);
    assert_eq!(cluster.node(1).status().voted_for, Some(1), "abstention marker");
    // The real leader never stepped down, and nobody else moved.
    for id in 2..=5 {
        assert_eq!(roles_entered(&cluster, id, restart_at), vec![], "node {id} kept its role");
    }
    assert_committed_everywhere(&cluster, index);
    assert_eq!(cluster.node(1).log().all(), cluster.node(5).log().all());
}

#[test]
fn restarted_initial_leader_that_had_followed_the_new_leader_catches_up() {
    // Reference: docs/design/cold-start.md — the stale initial leader "abstains from every vote
    // and follows the corrected leader". Following means catching up: the leader
    // acknowledged entries from n1 before its disk was replaced, and must not take
    // its empty log's rejections for stale ones.
    let mut cluster = cluster(5, 9);
    let disk = cluster.disk(1);
    cluster.crash(1);
    cluster.run_for(3 * ELECTION_TIMEOUT_MS);
    cluster.restart(1, disk);
    cluster.run_for(ELECTION_TIMEOUT_MS);
    let index = propose_many(&mut cluster, 5, 3, "term-2");
    cluster.run_for(100);
    assert_settled(&cluster, 5, 2);
    assert_committed_everywhere(&cluster, index);
    assert_eq!(cluster.node(5).status().followers[&1].match_index, index, "n1 acknowledged everything");

    cluster.crash(1);
    let restart_at = cluster.now_ms;
    cluster.restart_wiped(1);
    assert_eq!((cluster.node(1).role(), cluster.node(1).term()), (Role::Candidate, 1));
    cluster.run_for(2 * ELECTION_TIMEOUT_MS);
    let n1_events: Vec<Event> = cluster
        .events_of(1)
        .into_iter()
        .filter(|(at, event)| {
            *at >= restart_at && matches!(event, Event::AbstainedAfterDataLoss { .. } | Event::Corrected { .. })
        })
        .map(|(_, event)| event)
        .collect();
    assert_eq!(n1_events, vec![Event::AbstainedAfterDataLoss { term: 2 }, Event::Corrected { leader: 5, term: 2 }]);
    for id in 2..=5 {
        assert_eq!(roles_entered(&cluster, id, restart_at), vec![], "node {id} kept its role");
    }
    assert_settled(&cluster, 5, 2);
    assert_committed_everywhere(&cluster, index);
    assert_eq!(cluster.node(1).log().all(), cluster.node(5).log().all());
}

#[test]
fn the_initial_leader_cut_off_in_a_minority_steps_down_and_rejoins_as_a_follower() {
    // Reference: docs/design/detection.md — "A leader that hears from no majority for an
    // election timeout steps down (CheckQuorum)"; docs/design/cold-start.md — a node that started from
    // an empty data dir "finds out [the cluster has state] from a correction or
    // from any message of a higher ballot" and "cannot know what it voted before".
    // The cold-started initial leader led only after every member confirmed an
    // empty data dir, so it knows the cluster was fresh: it rejoins without
    // abstaining.
    let mut cluster = cluster(5, 10);
    let index = propose_many(&mut cluster, 1, 2, "term-1");
    cluster.run_for(100);
    assert_committed_everywhere(&cluster, index);
    let cut_at = cluster.now_ms;
    cluster.partition(&[1], &[2, 3, 4, 5]);
    cluster.run_for(4 * ELECTION_TIMEOUT_MS);
    assert_eq!(
        (cluster.node(1).role(), cluster.node(1).term(), cluster.node(1).leader()),
        (Role::Follower, 1, None),
        "CheckQuorum retired the cut-off leader"
    );
    assert_eq!(event_times(&cluster, 1, cut_at, |e| *e == Event::QuorumLost { term: 1 }).len(), 1);
    assert_eq!(
        roles_entered(&cluster, 1, cut_at).iter().map(|(_, role, _)| *role).collect::<Vec<_>>(),
        vec![Role::Follower]
    );
    assert_eq!(cluster.leaders(), vec![5]);
    assert_eq!(cluster.node(5).term(), 2);

    cluster.heal();
    let heal_at = cluster.now_ms;
    cluster.run_for(ELECTION_TIMEOUT_MS);
    assert_settled(&cluster, 5, 2);
    assert_eq!(roles_entered(&cluster, 5, heal_at), vec![], "the new leader was not disturbed");
    let n1_events: Vec<Event> = cluster
        .events_of(1)
        .into_iter()
        .filter(|(_, event)| matches!(event, Event::AbstainedAfterDataLoss { .. } | Event::Corrected { .. }))
        .map(|(_, event)| event)
        .collect();
    assert_eq!(n1_events, vec![], "a confirmed fresh start needs no abstention");
    assert_eq!(cluster.node(1).status().voted_for, None, "no abstention marker in term 2");
    assert_committed_everywhere(&cluster, index);

    // From the next term on it votes like everyone else.
    let crash_at = cluster.now_ms;
    cluster.crash(5);
    cluster.run_for(3 * ELECTION_TIMEOUT_MS);
    assert_settled(&cluster, 4, 3);
    assert_eq!(event_times(&cluster, 1, crash_at, |e| *e == Event::VoteFinalized { ballot: 3, candidate: 4 }).len(), 1);
    assert_eq!(cluster.node(1).status().voted_for, Some(4));
}

#[test]
fn restarted_follower_with_a_stale_config_is_corrected_by_the_leader() {
    // Reference: docs/design/cold-start.md — "A leader that receives a Correction naming
    // someone else (a restarted follower whose config still names the initial
    // leader) does not step down: it answers that follower directly with its own
    // (leader, term), and the follower joins."
    let mut cluster = cluster(5, 6);
    let disk = cluster.disk(1);
    cluster.crash(1);
    cluster.run_for(3 * ELECTION_TIMEOUT_MS);
    assert_settled(&cluster, 5, 2);
    // n1 comes back with its disk: durable state ignores `initial_leader`.
    cluster.restart(1, disk);
    assert_eq!((cluster.node(1).role(), cluster.node(1).leader()), (Role::Follower, None));
    cluster.run_for(ELECTION_TIMEOUT_MS);
    assert_settled(&cluster, 5, 2);
    let index = propose_many(&mut cluster, 5, 2, "term-2");
    cluster.run_for(100);
    assert_committed_everywhere(&cluster, index);

    // n3's disk is replaced: its config says n1 leads term 1.
    cluster.crash(3);
    let restart_at = cluster.now_ms;
    cluster.restart_wiped(3);
    // It believes the configured initial leader (not yet heard from).
    assert_eq!((cluster.node(3).role(), cluster.node(3).term(), cluster.node(3).leader()), (Role::Follower, 1, None));
    cluster.run_for(ELECTION_TIMEOUT_MS);

    let sent_since = |from: NodeId, to: NodeId| -> Vec<Message> {
        cluster
            .sent
            .iter()
            .filter(|(at, message)| *at >= restart_at && message.from == from && message.to == to)
            .map(|(_, message)| message.clone())
            .collect()
    };
    // n3's first word to the leader names the initial leader ...
    let from_n3 = sent_since(3, 5);
    assert_eq!(from_n3[0], msg(3, 5, 1, Body::Correction { leader: 1, leader_term: 1 }));
    // ... and the leader answers it directly with its own (leader, term).
    let corrections_from_n5: Vec<Message> =
        sent_since(5, 3).into_iter().filter(|m| matches!(m.body, Body::Correction { .. })).collect();
    assert_eq!(corrections_from_n5, vec![msg(5, 3, 2, Body::Correction { leader: 5, leader_term: 2 })]);
    // The follower abstains, then joins; the leader never stepped down.
    let n3_events: Vec<Event> = cluster
        .events_of(3)
        .into_iter()
        .filter(|(_, event)| matches!(event, Event::AbstainedAfterDataLoss { .. } | Event::Corrected { .. }))
        .map(|(_, event)| event)
        .collect();
    assert_eq!(n3_events, vec![Event::AbstainedAfterDataLoss { term: 2 }, Event::Corrected { leader: 5, term: 2 }]);
    assert_eq!(cluster.node(3).status().voted_for, Some(3), "abstention marker");
    for id in [1, 2, 4, 5] {
        assert_eq!(roles_entered(&cluster, id, restart_at), vec![], "node {id} kept its role");
    }
    assert_settled(&cluster, 5, 2);
    assert_committed_everywhere(&cluster, index);
}

#[test]
fn a_partitioned_minority_never_elects() {
    // Reference: docs/design/detection.md — ODOWN needs "strictly more than half of the
    // voting members"; a minority can hold its leader SDOWN but never start an
    // election; CheckQuorum keeps the majority's leader, which still hears a
    // majority.
    let mut cluster = cluster(5, 7);
    let partition_at = cluster.now_ms;
    cluster.partition(&[1, 2, 3], &[4, 5]);
    let mut majority_index = 0;
    let end = partition_at + 20 * ELECTION_TIMEOUT_MS;
    while cluster.now_ms < end {
        cluster.run_for(50);
        majority_index = propose_many(&mut cluster, 1, 1, "majority");
        let majority_term = cluster.node(1).term();
        assert_eq!((cluster.node(1).role(), majority_term), (Role::Leader, 1), "the majority keeps its leader");
        for id in [4, 5] {
            let node = cluster.node(id);
            assert_eq!(node.role(), Role::Follower, "node {id} at {} ms", cluster.now_ms);
            assert!(node.term() <= majority_term);
        }
    }
    cluster.run_for(100);
    for id in 1..=3 {
        assert!(cluster.node(id).log().committed() >= majority_index, "the majority commits");
    }
    for id in [4, 5] {
        // Each lost its leader and said so, but the two of them are no majority.
        assert_eq!(
            event_times(&cluster, id, partition_at, |e| *e == Event::SubjectivelyDown { leader: Some(1), term: 1 })
                .len(),
            1
        );
        assert_eq!(roles_entered(&cluster, id, partition_at), vec![], "node {id} never looked");
    }
    assert_eq!(election_events(&cluster, partition_at), vec![], "no election anywhere");

    // Healed: they hear the leader again and rejoin as its followers.
    cluster.heal();
    cluster.run_for(ELECTION_TIMEOUT_MS);
    assert_settled(&cluster, 1, 1);
    assert_committed_everywhere(&cluster, majority_index);
    assert_eq!(election_events(&cluster, partition_at), vec![]);
}

#[test]
fn a_winner_not_acknowledged_in_time_gives_up() {
    // Reference: docs/design/vote-exchange.md — finalizing binds; ZooKeeper's FLE can leave a
    // node waiting forever for votes that changed (ZOOKEEPER-3109): a candidate
    // that gets no quorum of binding votes within an election timeout gives up,
    // and a later round elects a leader.
    let mut cluster = cluster(5, 8);
    // Every binding vote of ballot 2 is lost on its way to the winner.
    cluster.drop_rule = Some(Box::new(|message: &Message| {
        message.term == 2 && matches!(message.body, Body::VoteResponse { pre_vote: false, granted: true })
    }));
    let crash_at = cluster.now_ms;
    cluster.crash(1);
    cluster.run_for(6 * ELECTION_TIMEOUT_MS);

    let finalized = event_times(&cluster, 5, crash_at, |e| *e == Event::VoteFinalized { ballot: 2, candidate: 5 });
    assert_eq!(finalized.len(), 1);
    let roles = roles_entered(&cluster, 5, crash_at);
    let candidate_at =
        roles.iter().find(|(_, role, term)| *role == Role::Candidate && *term == 2).expect("candidate").0;
    assert_eq!(candidate_at, finalized[0]);
    // It gave up exactly one election timeout later, still in ballot 2.
    let gave_up = roles.iter().find(|(at, role, _)| *at > candidate_at && *role == Role::Follower).expect("gave up");
    assert_eq!(*gave_up, (candidate_at + ELECTION_TIMEOUT_MS, Role::Follower, 2));
    assert!(!roles.iter().any(|(_, role, term)| *role == Role::Leader && *term == 2), "nobody led ballot 2");
    let lost_grants = cluster
        .lost
        .iter()
        .filter(|(_, message)| message.to == 5 && matches!(message.body, Body::VoteResponse { .. }))
        .count();
    assert!(lost_grants >= 3, "the binding votes were lost");

    // Nobody waited forever: ballot 3 elected a leader, which commits.
    assert_settled(&cluster, 5, 3);
    let led: Vec<(NodeId, Term)> = cluster
        .events
        .iter()
        .filter_map(|(_, id, event)| match event {
            Event::RoleChanged { to: Role::Leader, term, .. } => Some((*id, *term)),
            _ => None,
        })
        .collect();
    assert_eq!(led, vec![(1, 1), (5, 3)]);
    let index = propose_many(&mut cluster, 5, 1, "after");
    cluster.run_for(100);
    assert_committed_everywhere(&cluster, index);
}

// ---------------------------------------------------------------------------
// Rules, on single nodes
// ---------------------------------------------------------------------------

const FIVE: [NodeId; 5] = [1, 2, 3, 4, 5];

fn fast_config(id: NodeId, voters: &[NodeId]) -> Config {
    let mut config = config(id, voters);
    fast(&mut config);
    config
}

/// Node `id` of `voters`, brand new: it voted for n1 in term 1 at the cold start
/// and confirmed its empty data dir to n1, then heard n1's first heartbeat.
fn fresh_follower(id: NodeId, voters: &[NodeId]) -> Node {
    let mut node = new_node_with(fast_config(id, voters));
    let output = node.tick(0);
    assert_eq!((node.role(), node.term(), node.leader()), (Role::Follower, 1, None));
    let confirmation = Body::VoteResponse { pre_vote: false, granted: true };
    assert_eq!(output.messages, vec![msg(id, 1, 1, confirmation)], "confirms its empty data dir to n1");
    let output = node.step(msg(1, id, 1, heartbeat(0, 0, 0)));
    assert_eq!(output.messages, vec![msg(id, 1, 1, accepted(0))]);
    assert_eq!(node.leader(), Some(1));
    node
}

fn new_node_with(config: Config) -> Node {
    node_from(config, conclave_core::RestoredState::default(), 1)
}

fn vote_msg(from: NodeId, to: NodeId, term: Term, ballot: Term, vote: VoteChoice) -> Message {
    msg(from, to, term, Body::Vote { ballot, vote, state: PeerState::Looking })
}

fn report(from: NodeId, to: NodeId, down: bool) -> Message {
    msg(
        from,
        to,
        1,
        Body::SubjectiveDown { leader: Some(1), leader_term: 1, down, last_log_term: 0, last_log_index: 0 },
    )
}

/// n2 of five, looking in the round for ballot 2 after an `ObjectiveDown` from n3.
/// Without the lost leader's view every other member may vote, so the quiet
/// window applies until all have. (No SDOWN report came first: its data version
/// would be the round's first vote, see
/// `a_reported_data_version_is_the_first_vote_but_binds_only_once_confirmed`.)
fn looking_n2() -> Node {
    let mut node = fresh_follower(2, &FIVE);
    let output = node.step(msg(3, 2, 1, Body::ObjectiveDown { leader: Some(1), leader_term: 1 }));
    assert_eq!(node.role(), Role::Looking);
    assert!(output.events.contains(&Event::ElectionStarted { term: 2, pre_vote: false }));
    let own = vote_choice(2, 0, 0);
    let broadcast: Vec<Message> = [1, 3, 4, 5].iter().map(|to| vote_msg(2, *to, 1, 2, own)).collect();
    assert_eq!(output.messages, broadcast, "it votes for itself, to everyone");
    node
}

fn broadcast_vote(from: NodeId, term: Term, ballot: Term, vote: VoteChoice) -> Vec<Message> {
    FIVE.iter().filter(|to| **to != from).map(|to| vote_msg(from, *to, term, ballot, vote)).collect()
}

#[test]
fn votes_are_ordered_by_last_log_term_then_last_log_index_then_node_id() {
    // Reference: docs/design/vote-exchange.md — "A vote names a candidate and its data version:
    // (last_log_term, last_log_index, node_id), ordered lexicographically. Ids are
    // unique, so the order is strict"; "On a vote of the same round better than
    // its own: adopt it, broadcast the change ... Worse votes are recorded, not
    // adopted."
    assert!(vote_choice(1, 3, 1) > vote_choice(5, 2, 100), "the last log term comes first");
    assert!(vote_choice(2, 2, 8) > vote_choice(5, 2, 7), "then the last log index");
    assert!(vote_choice(5, 2, 7) > vote_choice(4, 2, 7), "then the id");
    let mut votes = [vote_choice(5, 2, 7), vote_choice(1, 3, 1), vote_choice(4, 2, 7), vote_choice(2, 2, 8)];
    votes.sort();
    let order: Vec<NodeId> = votes.iter().map(|vote| vote.candidate).collect();
    assert_eq!(order, vec![4, 5, 2, 1]);

    let mut node = looking_n2();
    // A better id with the same (empty) data: adopted and broadcast.
    let output = node.step(vote_msg(4, 2, 1, 2, vote_choice(4, 0, 0)));
    assert_eq!(output.events, vec![Event::VoteChanged { ballot: 2, candidate: 4 }]);
    assert_eq!(output.messages, broadcast_vote(2, 1, 2, vote_choice(4, 0, 0)));
    // A worse one: recorded, not adopted. It is n3's first vote in the round,
    // so n3 gets n2's vote back, to n3 alone (it may have dropped n2's
    // broadcast: `a_vote_dropped_while_still_following_reaches_its_peer_at_once`).
    let output = node.step(vote_msg(3, 2, 1, 2, vote_choice(3, 0, 0)));
    assert!(output.events.is_empty(), "{output:?}");
    assert_eq!(output.messages, vec![vote_msg(2, 3, 1, 2, vote_choice(4, 0, 0))]);
    // Again: recorded, nothing sent.
    let output = node.step(vote_msg(3, 2, 1, 2, vote_choice(3, 0, 0)));
    assert!(output.is_empty(), "{output:?}");
    // More data beats a higher id.
    let output = node.step(vote_msg(3, 2, 1, 2, vote_choice(3, 1, 1)));
    assert_eq!(output.events, vec![Event::VoteChanged { ballot: 2, candidate: 3 }]);
    assert_eq!(output.messages, broadcast_vote(2, 1, 2, vote_choice(3, 1, 1)));
    // n4 comes round to n3 too: a quorum of three agrees; the vote waits for the
    // quiet window (n5 has not voted) and binds when it passes.
    let output = node.step(vote_msg(4, 2, 1, 2, vote_choice(3, 1, 1)));
    assert!(output.is_empty(), "{output:?}");
    let output = node.tick(FINALIZE_WAIT_MS - 1);
    assert_eq!(output.messages, broadcast_vote(2, 1, 2, vote_choice(3, 1, 1)), "only a resend, no binding yet");
    assert_eq!(node.role(), Role::Looking);
    let output = node.tick(FINALIZE_WAIT_MS);
    assert!(output.events.contains(&Event::VoteFinalized { ballot: 2, candidate: 3 }));
    assert_eq!(output.messages, vec![msg(2, 3, 2, vote(true))], "the binding vote goes to the winner");
    assert_eq!(output.hard_state, Some(hard_state(2, Some(3), 0)), "persisted with the vote");
    assert_eq!((node.role(), node.term(), node.leader()), (Role::Follower, 2, None));
}

#[test]
fn a_vote_changed_within_the_window_postpones_finalizing() {
    // Reference: docs/design/vote-exchange.md — "If a vote arrives in that window that changes
    // its vote, continue"; "When every member that is not objectively down has
    // voted and all agree, no better vote can come: finalize at once".
    let mut node = looking_n2();
    let _ = node.step(vote_msg(3, 2, 1, 2, vote_choice(3, 0, 0)));
    let _ = node.step(vote_msg(4, 2, 1, 2, vote_choice(3, 0, 0)));
    let _ = node.tick(60); // The vote is resent; the window is still open.
    assert_eq!(node.next_deadline_ms(), FINALIZE_WAIT_MS, "a quorum agrees on n3: the window ends at 100 ms");
    let output = node.step(vote_msg(5, 2, 1, 2, vote_choice(5, 0, 0)));
    assert_eq!(output.events, vec![Event::VoteChanged { ballot: 2, candidate: 5 }]);
    assert_ne!(node.next_deadline_ms(), FINALIZE_WAIT_MS, "the window closed without finalizing");
    let output = node.tick(FINALIZE_WAIT_MS);
    assert!(!output.events.iter().any(|event| matches!(event, Event::VoteFinalized { .. })));
    assert_eq!(node.role(), Role::Looking);
    // n3 and n4 move to n5: every member but the lost leader has voted and all
    // agree, so the vote binds at once.
    let _ = node.step(vote_msg(3, 2, 1, 2, vote_choice(5, 0, 0)));
    let output = node.step(vote_msg(4, 2, 1, 2, vote_choice(5, 0, 0)));
    assert!(output.events.contains(&Event::VoteFinalized { ballot: 2, candidate: 5 }));
    assert_eq!(output.messages, vec![msg(2, 5, 2, vote(true))]);
}

#[test]
fn a_vote_from_an_older_round_is_answered_with_the_current_rounds_vote() {
    // Reference: docs/design/vote-exchange.md — "A vote from an older round is answered with the
    // current round's vote".
    let mut node = fresh_follower(2, &FIVE);
    // A later term's ODOWN: n2 adopts term 2 and looks in the round for ballot 3.
    let output = node.step(msg(3, 2, 2, Body::ObjectiveDown { leader: Some(4), leader_term: 2 }));
    assert!(output.events.contains(&Event::ElectionStarted { term: 3, pre_vote: false }));
    assert_eq!((node.role(), node.term()), (Role::Looking, 2));
    // A latecomer still in the round for ballot 2, with a better vote.
    let output = node.step(vote_msg(4, 2, 1, 2, vote_choice(4, 0, 0)));
    assert_eq!(output.messages, vec![vote_msg(2, 4, 2, 3, vote_choice(2, 0, 0))], "told where the round is");
    assert!(output.events.is_empty(), "an old round's vote is not adopted: {:?}", output.events);
}

#[test]
fn a_settled_node_tells_a_looking_node_who_leads() {
    // Reference: docs/design/vote-exchange.md — "a LOOKING node that asks a node already
    // FOLLOWING/LEADING learns the established leader directly".
    let mut follower = fresh_follower(3, &FIVE);
    let output = follower.step(vote_msg(2, 3, 1, 2, vote_choice(2, 0, 0)));
    assert_eq!(
        output.messages,
        vec![msg(
            3,
            2,
            1,
            Body::Vote { ballot: 1, vote: vote_choice(3, 0, 0), state: PeerState::Following { leader: 1 } }
        )]
    );
    assert_eq!((follower.role(), follower.leader()), (Role::Follower, Some(1)), "one looking node deposes nobody");

    let mut leader = new_node_with(fast_config(1, &FIVE));
    let _ = leader.tick(0);
    assert_eq!(leader.role(), Role::Candidate, "waits for every member's confirmation");
    for id in 2..=5 {
        let _ = leader.step(msg(id, 1, 1, Body::VoteResponse { pre_vote: false, granted: true }));
    }
    assert_eq!(leader.role(), Role::Leader);
    let output = leader.step(vote_msg(2, 1, 1, 2, vote_choice(2, 0, 0)));
    assert_eq!(
        output.messages,
        vec![msg(1, 2, 1, Body::Vote { ballot: 1, vote: vote_choice(1, 1, 1), state: PeerState::Leading })]
    );
    assert_eq!(leader.role(), Role::Leader);

    // The looking node learns the leader of its round's term (or a later one) and
    // follows it; an older leader only if a majority still follows it.
    let mut looking = looking_n2();
    let _ = looking.step(msg(
        3,
        2,
        1,
        Body::Vote { ballot: 1, vote: vote_choice(3, 0, 0), state: PeerState::Following { leader: 1 } },
    ));
    let _ = looking.step(msg(
        4,
        2,
        1,
        Body::Vote { ballot: 1, vote: vote_choice(4, 0, 0), state: PeerState::Following { leader: 1 } },
    ));
    assert_eq!(looking.role(), Role::Looking, "two of five still follow n1: not enough");
    let _ = looking.step(msg(
        5,
        2,
        1,
        Body::Vote { ballot: 1, vote: vote_choice(5, 0, 0), state: PeerState::Following { leader: 1 } },
    ));
    assert_eq!((looking.role(), looking.term(), looking.leader()), (Role::Follower, 1, Some(1)), "a majority does");

    let mut looking = looking_n2();
    let _ = looking.step(msg(5, 2, 2, Body::Vote { ballot: 2, vote: vote_choice(5, 0, 0), state: PeerState::Leading }));
    assert_eq!((looking.role(), looking.term(), looking.leader()), (Role::Follower, 2, Some(5)));
}

#[test]
fn subjective_down_is_retracted_when_the_leader_is_heard_again() {
    // Reference: docs/design/detection.md — "at miss_limit (default 5) misses the leader is
    // subjectively down (SDOWN) for this node ... The node broadcasts
    // SubjectiveDown{leader, term} ... Reports expire (after one election timeout)
    // and are retracted when a node hears the leader again."
    let mut node = fresh_follower(2, &FIVE);
    let output = node.tick(ELECTION_TIMEOUT_MS - 1);
    assert!(output.is_empty(), "four misses are not enough: {output:?}");
    let output = node.tick(ELECTION_TIMEOUT_MS);
    assert_eq!(
        output.events,
        vec![
            Event::FailureDetected { leader: 1, term: 1, detector: Detector::Misses },
            Event::SubjectivelyDown { leader: Some(1), term: 1 }
        ]
    );
    assert_eq!(output.messages, [1, 3, 4, 5].map(|to| report(2, to, true)).to_vec());
    let output = node.step(msg(1, 2, 1, heartbeat(0, 0, 0)));
    let mut expected: Vec<Message> = [1, 3, 4, 5].map(|to| report(2, to, false)).to_vec();
    expected.push(msg(2, 1, 1, accepted(0)));
    assert_eq!(output.messages, expected, "retracted, then the append is answered");
    // The count starts afresh: no new report before five more misses.
    assert!(node.tick(ELECTION_TIMEOUT_MS + 4 * HEARTBEAT_MS).messages.is_empty());

    // At a receiver, a retraction removes the sender's report from the count.
    let mut receiver = fresh_follower(3, &FIVE);
    let _ = receiver.tick(10);
    let _ = receiver.step(report(2, 3, true));
    let _ = receiver.step(report(4, 3, true));
    let _ = receiver.step(report(2, 3, false));
    let output = receiver.step(report(5, 3, true));
    assert!(output.is_empty(), "n4 and n5 are no majority once n2 retracted: {output:?}");
    assert_eq!(receiver.role(), Role::Follower);
    let output = receiver.step(report(2, 3, true));
    assert!(output.events.contains(&Event::ObjectivelyDown { leader: Some(1), term: 1 }), "n2, n4, n5: a majority");
}

#[test]
fn objective_down_needs_strictly_more_than_half() {
    // Reference: docs/design/detection.md — "When strictly more than half of the voting
    // members (self included) hold the leader SDOWN, the leader is objectively
    // down (ODOWN). The first node to see ODOWN broadcasts ObjectiveDown{leader,
    // term} and starts the election".
    // Five voters: two reports are not enough, three are (even though this node
    // still hears its leader).
    let mut node = fresh_follower(2, &FIVE);
    let _ = node.tick(10);
    assert!(node.step(report(3, 2, true)).is_empty());
    assert!(node.step(report(4, 2, true)).is_empty());
    let output = node.step(report(5, 2, true));
    assert_eq!(
        output.events[..2],
        [
            Event::ObjectivelyDown { leader: Some(1), term: 1 },
            Event::RoleChanged { from: Role::Follower, to: Role::Looking, term: 1 }
        ]
    );
    assert!(output.events.contains(&Event::ElectionStarted { term: 2, pre_vote: false }));
    let odown: Vec<Message> =
        output.messages.iter().filter(|message| matches!(message.body, Body::ObjectiveDown { .. })).cloned().collect();
    assert_eq!(odown, [1, 3, 4, 5].map(|to| msg(2, to, 1, Body::ObjectiveDown { leader: Some(1), leader_term: 1 })));

    // Four voters: two of four is exactly half, not a majority.
    const FOUR: [NodeId; 4] = [1, 2, 3, 4];
    let mut node = fresh_follower(2, &FOUR);
    let _ = node.tick(10);
    let report4 = |from: NodeId| {
        msg(
            from,
            2,
            1,
            Body::SubjectiveDown { leader: Some(1), leader_term: 1, down: true, last_log_term: 0, last_log_index: 0 },
        )
    };
    assert!(node.step(report4(3)).is_empty());
    assert!(node.step(report4(4)).is_empty());
    assert_eq!(node.role(), Role::Follower);
    // Its own link failing makes three of four.
    let _ = node.tick(ELECTION_TIMEOUT_MS - HEARTBEAT_MS);
    let output = node.step(report4(3));
    assert_eq!(
        output.events[..3],
        [
            Event::FailureDetected { leader: 1, term: 1, detector: Detector::Misses },
            Event::SubjectivelyDown { leader: Some(1), term: 1 },
            Event::ObjectivelyDown { leader: Some(1), term: 1 }
        ]
    );
    assert_eq!(node.role(), Role::Looking);
}

#[test]
fn reports_about_another_leader_or_term_do_not_count_against_mine() {
    // Reference: docs/design/detection.md — the fail table holds (leader, term) per report;
    // ODOWN is about one leader of one term, so reports about a different leader
    // (or an older term) prove nothing about this node's leader.
    let mut node = fresh_follower(2, &FIVE);
    let _ = node.tick(10);
    for from in [3, 4] {
        let other = msg(
            from,
            2,
            1,
            Body::SubjectiveDown { leader: Some(5), leader_term: 1, down: true, last_log_term: 0, last_log_index: 0 },
        );
        assert!(node.step(other).is_empty());
    }
    let older = msg(
        5,
        2,
        1,
        Body::SubjectiveDown { leader: Some(1), leader_term: 0, down: true, last_log_term: 0, last_log_index: 0 },
    );
    assert!(node.step(older).is_empty());
    assert_eq!(node.role(), Role::Follower);
}

#[test]
fn a_reported_data_version_is_the_first_vote_but_binds_only_once_confirmed() {
    // Reference: docs/decisions/0038-failover-speed.md (data versions in SDOWN reports) — a round
    // starts from the best version the reports carried, but a report may be
    // stale (the reporter's log can change after it), so a vote binds only once
    // its candidate voted the same in the round.
    let report_with = |from: NodeId, last_log_term: Term, last_log_index: LogIndex| {
        msg(
            from,
            2,
            1,
            Body::SubjectiveDown { leader: Some(1), leader_term: 1, down: true, last_log_term, last_log_index },
        )
    };
    let reported = vote_choice(5, 1, 7);
    let start = |node: &mut Node| {
        assert!(node.step(report_with(5, 1, 7)).is_empty(), "one report is not ODOWN");
        let output = node.step(msg(3, 2, 1, Body::ObjectiveDown { leader: Some(1), leader_term: 1 }));
        assert_eq!(node.role(), Role::Looking);
        assert_eq!(output.messages, broadcast_vote(2, 1, 2, reported), "the first vote is n5's reported version");
    };

    // n3 and n4 agree on it, but n5 has not voted: nothing binds, not even when
    // the quiet window ends; n2 falls back to its own vote instead.
    let mut node = fresh_follower(2, &FIVE);
    start(&mut node);
    let _ = node.step(vote_msg(3, 2, 1, 2, reported));
    let output = node.step(vote_msg(4, 2, 1, 2, reported));
    assert!(!output.events.iter().any(|event| matches!(event, Event::VoteFinalized { .. })), "{output:?}");
    let output = node.tick(FINALIZE_WAIT_MS);
    assert!(!output.events.iter().any(|event| matches!(event, Event::VoteFinalized { .. })), "{output:?}");
    assert!(output.events.contains(&Event::VoteChanged { ballot: 2, candidate: 2 }));
    assert_eq!(output.messages, broadcast_vote(2, 1, 2, vote_choice(2, 0, 0)));
    assert_eq!(node.role(), Role::Looking);
    // The unconfirmed version is not taken again from others ...
    let output = node.step(vote_msg(3, 2, 1, 2, reported));
    assert!(output.events.is_empty(), "{output:?}");
    // ... but it is once n5 itself confirms it, and then it binds: every member
    // but the lost leader now backs it.
    let output = node.step(vote_msg(5, 2, 1, 2, reported));
    assert!(output.events.contains(&Event::VoteFinalized { ballot: 2, candidate: 5 }), "{output:?}");
    let mut expected = broadcast_vote(2, 1, 2, reported);
    expected.push(msg(2, 5, 2, vote(true)));
    assert_eq!(output.messages, expected, "it backs n5 again, then binds to it");

    // n5's own vote names an older version (its log lost a suffix after it
    // reported): n2 drops the stale version at once and backs n5's real one.
    let mut node = fresh_follower(2, &FIVE);
    start(&mut node);
    let actual = vote_choice(5, 1, 5);
    let output = node.step(vote_msg(5, 2, 1, 2, actual));
    assert_eq!(output.events, vec![Event::VoteChanged { ballot: 2, candidate: 5 }]);
    assert_eq!(output.messages, broadcast_vote(2, 1, 2, actual));
    let _ = node.step(vote_msg(3, 2, 1, 2, actual));
    let output = node.step(vote_msg(4, 2, 1, 2, actual));
    assert!(output.events.contains(&Event::VoteFinalized { ballot: 2, candidate: 5 }), "{output:?}");
}

#[test]
fn a_node_never_takes_a_vote_for_itself_with_another_data_version() {
    // A stale report about n2 (a longer log it no longer has) reaches the round as
    // a vote naming n2: n2 knows its own version and keeps it, so it can never
    // lead on grants given for data it does not hold.
    let mut node = looking_n2();
    let stale_about_me = vote_choice(2, 1, 9);
    let output = node.step(vote_msg(3, 2, 1, 2, stale_about_me));
    assert!(output.events.is_empty(), "{output:?}");
    let _ = node.step(vote_msg(4, 2, 1, 2, stale_about_me));
    let output = node.step(vote_msg(5, 2, 1, 2, stale_about_me));
    assert!(!output.events.iter().any(|event| matches!(event, Event::VoteFinalized { .. })), "{output:?}");
    assert_eq!(node.role(), Role::Looking);
}

#[test]
fn a_vote_dropped_while_still_following_reaches_its_peer_at_once() {
    // Regression (docs/decisions/0072): nodes learn that their leader is gone
    // a millisecond or two apart. n2 broadcast its vote while n3 still followed
    // the lost leader; n3 answered with that leader and dropped the vote. When
    // n3 starts the same round and its vote reaches n2 — n3's first in this
    // round — n2 sends its own vote back to n3 at once. Before, n3 learned it
    // only from n2's resend a heartbeat timeout later, and until then could
    // not see every member agree: a 50 ms stall in a 10 ms failover.
    let mut node = looking_n2();
    let own = vote_choice(2, 0, 0);
    let output = node.step(vote_msg(3, 2, 1, 2, own));
    assert_eq!(output.messages, vec![vote_msg(2, 3, 1, 2, own)], "n2's vote, to n3 alone");
    // Once per sender and round: n3's next vote is only recorded.
    let output = node.step(vote_msg(3, 2, 1, 2, own));
    assert!(output.messages.is_empty(), "{output:?}");
}

#[test]
fn a_round_yields_to_its_leader_once_a_quorum_hears_it_again() {
    // Reference: docs/decisions/0080-a-round-yields-to-a-leader-a-majority-hears-again.md.
    let mut looking = looking_n2();
    // An append of the lost leader's own term: maybe in flight since before a
    // crash. It is not taken; the round's vote goes to that leader instead.
    let output = looking.step(msg(1, 2, 1, heartbeat(0, 0, 0)));
    assert_eq!(looking.role(), Role::Looking);
    assert_eq!(output.messages, vec![vote_msg(2, 1, 1, 2, vote_choice(2, 0, 0))], "asks n1 whether it leads");

    // n1 answers that it leads: n2 hears it, and tells the others once.
    let leading = Body::Vote { ballot: 1, vote: vote_choice(1, 1, 1), state: PeerState::Leading };
    let output = looking.step(msg(1, 2, 1, leading.clone()));
    let following = Body::Vote { ballot: 1, vote: vote_choice(2, 0, 0), state: PeerState::Following { leader: 1 } };
    let told: Vec<Message> = [3, 4, 5].iter().map(|to| msg(2, *to, 1, following.clone())).collect();
    assert_eq!(output.messages, told);
    assert_eq!(looking.role(), Role::Looking, "n1 and n2 are two of five");
    let output = looking.step(msg(1, 2, 1, leading));
    assert!(output.messages.is_empty(), "told once");

    // A third member hears n1: the round is given up, nothing was bound.
    let heard = Body::Vote { ballot: 1, vote: vote_choice(3, 0, 0), state: PeerState::Following { leader: 1 } };
    let output = looking.step(msg(3, 2, 1, heard));
    assert!(output.events.contains(&Event::RoundAbandoned { leader: 1, term: 1 }), "{:?}", output.events);
    assert_eq!((looking.role(), looking.term(), looking.leader()), (Role::Follower, 1, Some(1)));

    // Verdicts about n1 sent before the quorum heard it are stale.
    let output = looking.step(msg(4, 2, 1, Body::ObjectiveDown { leader: Some(1), leader_term: 1 }));
    assert!(output.events.is_empty() && output.messages.is_empty(), "{output:?}");
    assert_eq!((looking.role(), looking.leader()), (Role::Follower, Some(1)));
}

#[test]
fn an_unconfirmed_hint_is_given_up_once_a_peer_that_backed_it_moves_down() {
    // Reference: docs/decisions/0078-every-miss-of-the-newest-data-has-a-cause.md.
    let mut looking = looking_n2();
    let hint = vote_choice(4, 1, 3);
    let output = looking.step(vote_msg(3, 2, 1, 2, hint));
    assert!(output.events.contains(&Event::VoteChanged { ballot: 2, candidate: 4 }), "adopts n3's better vote");
    // n3 gave the hint up (n4 never confirmed it) and backs a worse vote now.
    let output = looking.step(vote_msg(3, 2, 1, 2, vote_choice(3, 0, 0)));
    assert!(output.events.contains(&Event::VoteChanged { ballot: 2, candidate: 3 }), "{:?}", output.events);
    assert_eq!(looking.role(), Role::Looking);
}

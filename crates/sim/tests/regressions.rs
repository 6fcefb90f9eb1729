//! Seeds that once broke an invariant, each named after what it found. Each must
//! now run clean; the matching deterministic unit test (named in the comment)
//! pins the rule that fixed it.

use conclave_core::ElectionMode;
use conclave_sim::{run_seed, FaultSet, SimOptions};

/// Gapless, 5 nodes, all faults. A follower replaced a suffix and learned it
/// committed in one batch; a torn write kept the batch's hard state (commit 151)
/// without its log record, and after the restart a replaced entry counted as
/// committed: state machine safety broke at index 144. Fixed by never persisting
/// a commit index over the batch's own log write
/// (`conclave-core/tests/persistence_contract.rs`).
#[test]
fn seed_5000036_torn_conflict_truncation_kept_a_commit_over_replaced_entries() {
    let options = SimOptions::new(ElectionMode::Gapless, 5, FaultSet::all());
    let (report, trace) = run_seed(&options, 5_000_036);
    assert!(report.violation.is_none(), "{:?}\n{}", report.violation, trace.join("\n"));
    assert!(report.committed_entries > 100, "the run did real work");
}

/// The crash-only sweep that compares the modes (docs/design/elections.md): 5 nodes, latency 1–10 ms,
/// no loss.
fn crash_only(mode: ElectionMode) -> SimOptions {
    let mut options = SimOptions::new(mode, 5, FaultSet::parse("crash").expect("known fault kinds"));
    options.latency_ms = Some((1, 10));
    options.loss_probability = Some(0.0);
    options
}

/// Fast, crash faults only. The leader crashed and restarted 59 ms later with
/// the newest data (one uncommitted entry more); the others, voting at once for
/// the best version their SDOWN reports carried, agreed among themselves and
/// finalized without it — the lost leader is not waited for — before its vote
/// arrived: not the newest data won. Fixed by a restarted node announcing itself
/// with its data version, so that the round expects its vote and starts from its
/// version (`election/fast/detector.rs`, `announce_restart`).
#[test]
fn seed_182_a_leader_back_from_a_quick_restart_held_the_newest_data_and_was_not_waited_for() {
    for seed in [182, 681] {
        let (report, trace) = run_seed(&crash_only(ElectionMode::Fast), seed);
        assert!(report.violation.is_none(), "{:?}", report.violation);
        assert!(report.elections_won > 0, "seed {seed} elected leaders");
        assert_eq!(
            report.up_to_date_wins,
            report.elections_won,
            "seed {seed}: every winner had the newest data\n{}",
            trace.iter().filter(|line| line.contains("won with data")).cloned().collect::<Vec<_>>().join("\n")
        );
    }
}

/// Fast, crash faults only. Four nodes restarted at once while the leader ran;
/// when a restarted node announced itself as an SDOWN report about no leader,
/// the four counted each other's reports, saw a majority without a leader, and
/// bound a new ballot before the leader's first heartbeat reached them: three
/// disruptions. Fixed by announcing a restart as a retraction, which counts
/// towards nobody's ODOWN.
#[test]
fn seed_937_nodes_restarting_together_did_not_depose_a_working_leader() {
    let (report, trace) = run_seed(&crash_only(ElectionMode::Fast), 937);
    assert!(report.violation.is_none(), "{:?}", report.violation);
    assert_eq!(
        report.disruptions,
        0,
        "{}",
        trace.iter().filter(|line| line.contains("disruption")).cloned().collect::<Vec<_>>().join("\n")
    );
}

/// Fast, 5 nodes, one-way link faults, default latency and loss. After the
/// faults healed, the leader sent a lagging follower its snapshot (8752 bytes,
/// 64-byte chunks) one chunk per round trip: over five seconds, by which time
/// the leader had compacted past it and a second, larger snapshot took as long
/// again, so the follower applied none of the new commands within the liveness
/// bound. Fixed by a window of `MAX_INFLIGHT_CHUNKS` chunks in flight per
/// transfer (`conclave-core/tests/snapshot.rs`,
/// `a_transfer_keeps_a_window_of_chunks_in_flight_not_one`). Seed 644 of the
/// same sweep failed the same way.
#[test]
fn seed_271_a_snapshot_sent_one_chunk_per_round_trip_never_caught_a_follower_up() {
    let options = SimOptions::new(ElectionMode::Fast, 5, FaultSet::parse("oneway").expect("known fault kinds"));
    let (report, trace) = run_seed(&options, 644);
    assert!(report.violation.is_none(), "seed 644: {:?}\n{}", report.violation, trace.join("\n"));
    let (report, trace) = run_seed(&options, 271);
    assert!(report.violation.is_none(), "{:?}\n{}", report.violation, trace.join("\n"));
    assert!(report.installed_snapshots > 0, "the run sent snapshots");
    assert!(report.committed_entries > 1000, "the run did real work");
    // The faults heal at 7719 ms; the run ends once every node applied the new
    // commands: at 10.3 s with the window. With one chunk in flight it ends at
    // 16.3 s, or (as it was) not within the 10 s bound at all.
    assert!(report.simulated_ms < 13_000, "caught up {} ms into the run", report.simulated_ms);
}

/// Conclave, 5 nodes, `--faults isolate`. The leader n3 was cut off, the
/// others reached objective down and started a round for ballot 7; the cut
/// healed at 9546 ms, and at 9595 ms n1 bound ballot 7 while a majority heard
/// n3 again: the reason for the election was gone before any vote bound.
/// First fixed by a round yielding to the leader of its term once a quorum
/// hears it again (docs/decisions/0080). Since docs/decisions/0087 the cut
/// leader retires one election timeout after it last heard a majority, the
/// moment its followers' misses hold it down (at 9539 ms, before the heal):
/// the round that follows replaces a leader that had stepped down, not one a
/// majority could reach.
#[test]
fn seed_500000_no_term_is_bound_beside_the_isolated_leader_once_the_cut_heals() {
    let mut options =
        SimOptions::new(ElectionMode::Conclave, 5, FaultSet::parse("isolate").expect("known fault kinds"));
    options.keep_full_trace = true;
    let (report, trace) = run_seed(&options, 500_000);
    assert!(report.violation.is_none(), "{:?}", report.violation);
    let retired = trace.iter().any(|line| line.contains("n3 QuorumLost { term: 6 }"));
    assert!(retired, "n3 retires in term 6 before the cut heals\n{}", trace.join("\n"));
    assert_eq!(report.disruptions, 0, "{}", disruptions(&trace));
}

/// Conclave, 5 nodes, all faults: each seed runs without a violation and
/// binds no term beside a leader a majority reaches.
fn no_disruption_with_all_faults(seeds: &[u64]) {
    let options = SimOptions::new(ElectionMode::Conclave, 5, FaultSet::parse("all").expect("known fault kinds"));
    for &seed in seeds {
        let (report, trace) = run_seed(&options, seed);
        assert!(report.violation.is_none(), "seed {seed}: {:?}", report.violation);
        assert_eq!(report.disruptions, 0, "seed {seed}: {}", disruptions(&trace));
    }
}

fn disruptions(trace: &[String]) -> String {
    trace.iter().filter(|line| line.contains("disruption")).cloned().collect::<Vec<_>>().join("\n")
}

/// Conclave, 5 nodes, all faults: a follower that hears its leader again after
/// a long silence stays out of a verdict about that leader
/// (`detector::hears_leader_again`, docs/decisions/0087).
///
/// - Seed 7000197, found before docs/decisions/0092: leader n4 was cut off for
///   192 ms; after the heal n1 and n2 got its heartbeats (8705, 8706 ms), then
///   the others' objective-down verdict (8713, 8716 ms), joined their round,
///   and n2 bound ballot 5 beside n4, which reached every node.
/// - Seed 7001185, since 0092 (followers answer heartbeats at once, which
///   changed every run's timing): leader n5 of term 1 is cut off and heard
///   again; n1..n4 reach objective down at 8063–8082 ms, and without the rule
///   n4, which heard n5 again, joins and binds ballot 2 at 8103 ms while n5
///   reaches a majority. Seeds 7001456 and 7001644 fail the same way without
///   the rule.
#[test]
fn a_follower_that_hears_its_leader_again_stays_out_of_the_verdict() {
    no_disruption_with_all_faults(&[7_000_197, 7_001_185, 7_001_456, 7_001_644]);
}

/// Conclave, 5 nodes, all faults: a looking node that gets its lost leader's
/// append after a silence binds nothing until that leader answers or a
/// heartbeat timeout passes (`round::on_leader_append_while_looking`), and a
/// node that heard the answer withholds its vote (`round::hears_leader`)
/// (docs/decisions/0087).
///
/// - Seed 7001424, found before docs/decisions/0092: the partition around
///   leader n4 healed at 7436 ms; n1 and n2, already looking, got its
///   heartbeat at once, asked it, and n2 bound ballot 6 at 7442 ms, before
///   n4's answer (7450 ms) arrived.
/// - Seed 7000629, since 0092: n1, n2, n3 and n5 reach objective down about
///   leader n4 of term 2 at 8924–8927 ms as its link comes back, and without
///   the rule n3 binds ballot 3 at 8929 ms while n4 reaches a majority.
#[test]
fn looking_nodes_that_get_the_leaders_append_wait_for_its_answer() {
    no_disruption_with_all_faults(&[7_001_424, 7_000_629]);
}

/// Seed 500064, `--faults isolate`, conclave, 5 nodes: after the cuts healed,
/// three followers needed a snapshot whose transfer (64-byte chunks) took
/// longer than an election timeout. Each leader-elect gave up before its
/// `BecomeLeader` could commit, the next one started the transfers over, and
/// no command was applied for the whole liveness bound (139 elections). Fixed
/// by moving a leader-elect's deadline on while its followers make progress
/// (`leader_elect_timer`).
#[test]
fn seed_500064_a_leader_elect_waits_while_its_followers_catch_up_by_snapshot() {
    let options = SimOptions::new(ElectionMode::Conclave, 5, FaultSet::parse("isolate").expect("known fault kinds"));
    let (report, _) = run_seed(&options, 500_064);
    assert!(report.violation.is_none(), "{:?}", report.violation);
}

// A node that handed its leadership over kept its "stay out" window after it
// followed the next leader; when that leader handed over in turn, the node
// joined the round, and the stale window made it skip the round's timers: it
// was ticked at one instant over and over (20 M trace lines, no progress).
// The window ends once the node follows a leader, and covers followers only.
#[test]
fn seed_1796601575068014060_a_window_left_from_an_earlier_hand_over_stalled_a_round() {
    let options = SimOptions::new(ElectionMode::Fast, 3, FaultSet::parse("transfer").expect("known fault kinds"));
    let (report, trace) = run_seed(&options, 1_796_601_575_068_014_060);
    assert!(report.violation.is_none(), "{:?}", report.violation);
    assert!(report.elections_won > 3, "leadership moved from hand-over to hand-over");
    assert!(trace.len() < 200_000, "the run made progress: {} trace lines", trace.len());
}

// A removal left two voters; the follower among them held a divergent suffix
// of tens of entries of older terms. Each leader-elect probed it back one
// entry per round trip and gave up (its deadline: an election timeout) long
// before the follower matched, so no leader term was ever established. The
// follower's rejection now skips the whole run of its conflicting term.
#[test]
fn seed_1796714897970616882_a_divergent_follower_caught_up_too_slowly_for_any_leader_elect() {
    let options = SimOptions::new(ElectionMode::Conclave, 3, FaultSet::all());
    for seed in [1_796_714_897_970_616_882, 1_796_714_897_970_617_190] {
        let (report, _) = run_seed(&options, seed);
        assert!(report.violation.is_none(), "seed {seed}: {:?}", report.violation);
    }
}

// A learner added back under a removed node's id, at once, got answers its
// previous process had sent before it was wiped: the leader took their match
// index, the learner's rejections below it looked stale, and it never caught
// up. An operator adds a wiped node back long after; so does the simulator.
#[test]
fn seed_1796579139233922104_a_wiped_node_added_back_at_once_never_caught_up() {
    let options = SimOptions::new(ElectionMode::Gapless, 3, FaultSet::parse("membership").expect("known fault kinds"));
    let (report, _) = run_seed(&options, 1_796_579_139_233_922_104);
    assert!(report.violation.is_none(), "{:?}", report.violation);
}

// A node removed and wiped before its removal committed could still vote as a
// voter with an empty log: the next leader lacked committed entries. The
// simulator's operator wipes a removed node only once the removal committed.
#[test]
fn seed_1796588538597706946_a_node_wiped_before_its_removal_committed() {
    let options = SimOptions::new(ElectionMode::Raft, 5, FaultSet::all());
    let (report, _) = run_seed(&options, 1_796_588_538_597_706_946);
    assert!(report.violation.is_none(), "{:?}", report.violation);
}

// A member that knew a removal committed dropped every message of the removed
// node, which a later leader had added back and elected: the member never
// heard its new leader. A leader's replication is taken from anyone.
#[test]
fn seed_1796583621305493911_a_member_ignored_a_node_added_back_and_elected() {
    let options = SimOptions::new(ElectionMode::Raft, 3, FaultSet::parse("membership").expect("known fault kinds"));
    let (report, _) = run_seed(&options, 1_796_583_621_305_493_911);
    assert!(report.violation.is_none(), "{:?}", report.violation);
}

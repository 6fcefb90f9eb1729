//! The model checker over the real core (docs/design/invariants.md): the shipped rules hold
//! in every state it reaches, and removing one rule (feature `bug-injection`)
//! makes it report the broken property with a short trace. A checker that never
//! fires proves nothing.
//!
//! Depths are chosen so that the whole file runs in well under a minute in a
//! release build; `conclave check` explores deeper.

use conclave_core::{Config, ElectionMode, Entry, InjectedBug, Payload};
use conclave_sim::model_check::{check, CheckOptions, CheckReport, LeaderClaim, LeaderRule, PROPERTIES};

fn run(options: CheckOptions) -> CheckReport {
    let report = check(options).expect("the model starts");
    eprintln!("{}", report.to_text());
    report
}

fn assert_all_hold(report: &CheckReport) {
    assert_eq!(report.violations(), 0, "{}", report.to_text());
    assert!(report.properties.values().all(|holds| *holds));
    assert_eq!(report.properties.len(), PROPERTIES.len(), "every property of the table is reported");
}

/// Options that reach elections fastest: no drop action (never delivering is
/// the same as dropping), clocks that jump from deadline to deadline, no crash,
/// no client command. Enough to break the election rules.
fn election_options(hook: fn(&mut Config), depth: usize) -> CheckOptions {
    let mut options = CheckOptions::new(ElectionMode::Raft, 3, depth);
    options.config_hook = Some(hook);
    options.drop_action = false;
    options.advance_action = false;
    options.max_crashes = 0;
    options.max_proposals = 0;
    options
}

fn violated<'a>(report: &'a CheckReport, property: &str) -> &'a conclave_sim::model_check::Counterexample {
    assert_eq!(report.properties.get(property), Some(&false), "{property} should be violated:\n{}", report.to_text());
    report
        .counterexamples
        .iter()
        .find(|counterexample| counterexample.property == property)
        .expect("a violated property has a counterexample")
}

#[test]
#[cfg_attr(debug_assertions, ignore = "an exhaustive search: run with `cargo test --release`")]
fn raft_holds_every_property_with_every_action() {
    // Every action: drop, 1 ms clock steps, a crash and restart, a client command.
    let report = run(CheckOptions::new(ElectionMode::Raft, 3, 7));
    assert_all_hold(&report);
    assert!(report.complete, "the bounded space to depth 7 is explored in full");
    assert_eq!(report.depth, 7);
    assert!(report.states > 10_000, "only {} states", report.states);
    assert_eq!(report.milestones.get("entry_committed"), Some(&7), "pre-vote, vote, commit: 7 actions");
}

#[test]
#[cfg_attr(debug_assertions, ignore = "an exhaustive search: run with `cargo test --release`")]
fn fast_holds_every_property_with_every_action() {
    let report = run(CheckOptions::new(ElectionMode::Fast, 3, 9));
    assert_all_hold(&report);
    assert!(report.complete);
    // Two misses, SDOWN (carrying the data version), ODOWN, the votes — already
    // agreeing, started from the reported versions — and the grant: 7 actions.
    assert_eq!(report.milestones.get("leader_elected"), Some(&7));
}

#[test]
#[cfg_attr(debug_assertions, ignore = "an exhaustive search: run with `cargo test --release`")]
fn raft_holds_through_elect_commit_crash_reelect() {
    // Reference: Raft §5.2–§5.4 — without pre-vote a leader is elected in 3
    // actions and commits its no-op in 5; its crash and a new leader take 4 more.
    let mut options = election_options(|config| config.pre_vote = false, 9);
    options.max_crashes = 1;
    let report = run(options);
    assert_all_hold(&report);
    assert!(report.complete);
    assert_eq!(report.milestones.get("crash_and_reelected_after_commit"), Some(&9));
    assert_eq!(report.milestones.get("leader_crashed_and_replaced"), Some(&9), "the leader itself crashed");
    let cycle = report.cycle_trace.as_ref().expect("the path to the cycle");
    assert_eq!(cycle.len(), 9);
    assert!(cycle
        .iter()
        .any(|line| line.contains("n1 crashes") || line.contains("n2 crashes") || line.contains("n3 crashes")));
}

/// The restricted environment of the conclave cycle run (docs/model_check.md):
/// cold start from n1, only leaders crash and stay down, at most `timers` timer
/// firings in all.
fn conclave_cycle_options(depth: usize, timers: u32) -> CheckOptions {
    let mut options = CheckOptions::new(ElectionMode::Conclave, 3, depth);
    options.drop_action = false;
    options.advance_action = false;
    options.max_proposals = 0;
    options.max_term = 2;
    options.max_log_length = 2;
    options.initial_leader = Some(1);
    options.crash_leaders_only = true;
    options.restart = false;
    options.max_timers = Some(timers);
    options
}

#[test]
fn conclave_cold_start_leads_in_two_actions_and_commits_in_four() {
    // Reference: docs/design/cold-start.md — both confirmations of an empty disk make n1
    // the leader of term 1; its BecomeLeader commits once n2 or n3 acknowledges.
    let report = run(conclave_cycle_options(6, 3));
    assert_all_hold(&report);
    assert!(report.complete);
    assert_eq!(report.milestones.get("leader_elected"), Some(&2));
    assert_eq!(report.milestones.get("entry_committed"), Some(&4));
}

#[test]
fn the_timer_budget_bounds_the_search() {
    // With no timer firing at all only the cold start's messages move: the space
    // is finite (no new state after depth 12) and no failover is reached.
    let small = run(conclave_cycle_options(16, 0));
    let large = run(conclave_cycle_options(24, 0));
    assert_all_hold(&large);
    assert!(small.complete && large.complete);
    assert!(large.depth < 16, "no new state beyond depth {}", large.depth);
    assert_eq!(small.states, large.states, "the space is exhausted before depth 16");
    assert_eq!(large.milestones.get("reelected_after_commit"), None);
    assert!(run(conclave_cycle_options(16, 1)).states > small.states, "one firing adds states");
}

#[test]
#[cfg_attr(debug_assertions, ignore = "an exhaustive search: run with `cargo test --release`")]
fn conclave_holds_after_a_failover_in_the_cycle_environment() {
    // Depth 12 in the cycle environment: a false suspicion, the round and its
    // binding votes are reached; the full cycle (depth 16) is `conclave check`'s.
    let report = run(conclave_cycle_options(12, 3));
    assert_all_hold(&report);
    assert!(report.complete);
    assert_eq!(report.states_per_depth.len(), 13);
}

#[test]
#[cfg_attr(debug_assertions, ignore = "an exhaustive search: run with `cargo test --release`")]
fn conclave_fails_over_on_the_evidence_of_a_refused_redial_in_fourteen_actions() {
    // Reference: docs/decisions/0073 — the transport's evidence is part of the
    // environment by default. Told that the crashed leader's process is gone, a
    // follower goes SDOWN at once; a peer one miss from its own limit joins on
    // the report (ODOWN), and the round, the grant, BecomeLeader(2) and its
    // acknowledgement follow: 14 actions instead of 16, within two firings.
    let options = conclave_cycle_options(14, 2);
    assert!(options.process_gone_action, "on by default");
    let report = run(options);
    assert_all_hold(&report);
    assert!(report.complete);
    assert_eq!(report.milestones.get("leader_crashed_and_replaced"), Some(&14));
    let cycle = report.cycle_trace.as_ref().expect("the path to the cycle");
    assert!(cycle.iter().any(|line| line.contains("is refused (its process is gone)")), "{}", cycle.join("\n"));
}

#[test]
#[cfg_attr(debug_assertions, ignore = "an exhaustive search: run with `cargo test --release`")]
fn without_the_evidence_two_firings_reach_no_failover() {
    // The same bounds without the input: two firings are not enough for the
    // counted misses (one node's two, and a peer's one), so no cycle is reached;
    // the evidence is what makes the failover above fit.
    let mut options = conclave_cycle_options(12, 2);
    options.process_gone_action = false;
    let report = run(options);
    assert_all_hold(&report);
    assert!(report.complete);
    assert_eq!(report.milestones.get("leader_crashed_and_replaced"), None);
}

#[test]
fn the_evidence_is_offered_only_to_followers_of_the_crashed_node_and_spends_the_budget() {
    // With no firing left the evidence is not offered, so a budget of 0 explores
    // the same states with or without it.
    let with = run(conclave_cycle_options(12, 0));
    let mut options = conclave_cycle_options(12, 0);
    options.process_gone_action = false;
    let without = run(options);
    assert_eq!(with.states, without.states);
    assert_eq!(with.states_per_depth, without.states_per_depth);
    assert!(with.process_gone && !without.process_gone);
}

#[test]
#[cfg_attr(debug_assertions, ignore = "an exhaustive search: run with `cargo test --release`")]
fn gapless_goes_through_a_full_cycle_in_twelve_actions() {
    // Reference: docs/design/leader-terms.md — a leader counts once its BecomeLeader commits.
    // Elect (3), commit (2), crash and restart of the leader, the second
    // election (3), BecomeLeader(2) and its acknowledgement (2): 12 actions.
    let mut options = election_options(|config| config.pre_vote = false, 12);
    options.mode = ElectionMode::Gapless;
    options.leader_rule = LeaderRule::for_mode(ElectionMode::Gapless);
    options.leader_claims = conclave_sim::model_check::leader_claims_for_mode(ElectionMode::Gapless);
    options.max_crashes = 1;
    options.max_term = 2;
    options.max_log_length = 2;
    options.max_timers = Some(2);
    options.crash_leaders_only = true;
    let report = run(options);
    assert_all_hold(&report);
    assert!(report.complete);
    // Any crash beside a re-election after a false suspicion comes earlier.
    assert_eq!(report.milestones.get("crash_and_reelected_after_commit"), Some(&11));
    assert_eq!(report.milestones.get("leader_crashed_and_replaced"), Some(&12));
    let cycle = report.cycle_trace.as_ref().expect("the path to the cycle");
    assert_eq!(cycle.len(), 12, "{}", cycle.join("\n"));
    assert!(cycle.iter().any(|line| line.contains("n1 crashes")), "{}", cycle.join("\n"));
}

// Reference: Raft §5.2 — each server votes for at most one candidate per term;
// without it two leaders share a term.
#[test]
#[cfg_attr(debug_assertions, ignore = "an exhaustive search: run with `cargo test --release`")]
fn voting_twice_in_a_term_breaks_election_safety() {
    let report = run(election_options(|config| config.injected_bug = Some(InjectedBug::VoteMoreThanOncePerTerm), 10));
    let counterexample = violated(&report, "election_safety");
    // Two pre-vote rounds and two vote rounds: 10 actions, the shortest possible.
    assert_eq!(counterexample.trace.len(), 11, "10 actions and the verdict:\n{}", counterexample.trace.join("\n"));
    assert!(counterexample.trace.iter().any(|line| line.contains("RequestVote")));
    assert!(counterexample.detail.contains("term 1"), "{}", counterexample.detail);
}

// Reference: Raft §5.2 with pre-vote off, the same bug in 6 actions.
#[test]
#[cfg_attr(debug_assertions, ignore = "an exhaustive search: run with `cargo test --release`")]
fn voting_twice_without_pre_vote_is_found_in_six_actions() {
    let report = run(election_options(
        |config| {
            config.pre_vote = false;
            config.injected_bug = Some(InjectedBug::VoteMoreThanOncePerTerm);
        },
        8,
    ));
    let counterexample = violated(&report, "election_safety");
    assert_eq!(counterexample.trace.len(), 7, "{}", counterexample.trace.join("\n"));
    assert!(!report.complete, "the search stops after the level of the first violation");
    let json = report.to_json();
    assert_eq!(json["violations"], 1);
    assert_eq!(json["properties"]["election_safety"], "violated");
    let trace = json["trace"].as_array().expect("a violation carries its trace");
    assert!(trace.last().and_then(|line| line.as_str()).is_some_and(|line| line.starts_with("=> election_safety")));
}

// Reference: Raft §5.4.1 — a voter refuses a candidate whose log is less
// up-to-date; without it a leader can lack a committed entry.
#[test]
#[cfg_attr(debug_assertions, ignore = "an exhaustive search: run with `cargo test --release`")]
fn voting_without_the_up_to_date_check_breaks_leader_completeness() {
    let mut options = election_options(
        |config| {
            config.pre_vote = false;
            config.injected_bug = Some(InjectedBug::SkipUpToDateCheck);
        },
        10,
    );
    // Two terms and two entries suffice; tighter bounds keep the test quick.
    options.max_term = 2;
    options.max_log_length = 2;
    let report = run(options);
    let counterexample = violated(&report, "leader_completeness");
    assert!(counterexample.trace.len() <= 11, "{}", counterexample.trace.join("\n"));
    assert!(counterexample.trace.iter().any(|line| line.contains("AppendEntries")));
}

/// Reads raft's no-op (appended by every new leader) as a leader claim for its
/// term, so that raft's own term gaps stand in for a broken gapless mode.
fn noop_as_leader_claim(entry: &Entry) -> Option<LeaderClaim> {
    matches!(entry.payload, Payload::Noop).then_some(LeaderClaim { leader_term: entry.term, leader_id: 0 })
}

// Reference: invariant 2 in docs/design/invariants.md — the gapless properties are wired and can fire:
// raft skips terms (a candidate times out and campaigns again), so its no-ops
// read as leader claims have holes.
#[test]
#[cfg_attr(debug_assertions, ignore = "an exhaustive search: run with `cargo test --release`")]
fn gapless_terms_fires_on_the_term_gaps_of_raft() {
    let mut options = election_options(|config| config.pre_vote = false, 8);
    options.leader_claims = noop_as_leader_claim;
    options.leader_rule = LeaderRule::ByCommittedClaim;
    let report = run(options);
    let counterexample = violated(&report, "gapless_terms");
    assert!(counterexample.detail.contains("where 1 was due"), "{}", counterexample.detail);
    assert!(report.properties["election_safety"], "one committed claim per leader term");
}

#[test]
fn the_json_report_has_the_documented_shape() {
    let report = check(CheckOptions::new(ElectionMode::Raft, 3, 3)).expect("the model starts");
    let json = report.to_json();
    for key in ["mode", "states", "depth", "complete", "violations", "properties"] {
        assert!(json.get(key).is_some(), "missing `{key}` in {json}");
    }
    assert_eq!(json["mode"], "raft");
    assert_eq!(json["violations"], 0);
    assert!(json.get("trace").is_none(), "a trace only comes with a violation");
    for property in PROPERTIES {
        assert_eq!(json["properties"][property.name], "holds");
    }
}

#[test]
fn a_search_is_deterministic() {
    let first = check(CheckOptions::new(ElectionMode::Fast, 3, 4)).expect("the model starts");
    let second = check(CheckOptions::new(ElectionMode::Fast, 3, 4)).expect("the model starts");
    assert_eq!(first.states, second.states);
    assert_eq!(first.states_per_depth, second.states_per_depth);
}

// Reference: Raft thesis §10.2.1 — a leader that sends its appends before its
// own write is durable counts itself toward a commit only once the driver
// reports that write; counting it earlier commits an entry that is on the disk
// of a minority (a crash of the leader would then lose it).
#[test]
#[cfg_attr(debug_assertions, ignore = "an exhaustive search: run with `cargo test --release`")]
fn counting_the_leaders_unpersisted_entries_is_caught() {
    let mut options = election_options(
        |config| {
            config.pre_vote = false;
            config.injected_bug = Some(InjectedBug::CountUnpersistedOwnEntries);
        },
        9,
    );
    assert!(options.parallel_persist, "the model runs leaders as the server does");
    options.max_proposals = 1;
    options.max_term = 1;
    options.max_log_length = 2;
    let report = run(options);
    let counterexample = violated(&report, "committed_is_durable_on_a_majority");
    let trace = counterexample.trace.join("\n");
    assert!(trace.contains("client proposes"), "{trace}");
    assert!(counterexample.detail.contains("durable on 1 of 3 disks"), "{}", counterexample.detail);
}

#[test]
#[cfg_attr(debug_assertions, ignore = "an exhaustive search: run with `cargo test --release`")]
fn raft_with_parallel_persist_keeps_commits_durable_through_a_crash() {
    // The same environment without the bug, one crash and its restart added:
    // the leader's unsynced writes may be lost, commits never are.
    let mut options = election_options(|config| config.pre_vote = false, 9);
    options.max_proposals = 1;
    options.max_crashes = 1;
    options.max_term = 2;
    options.max_log_length = 2;
    let report = run(options);
    assert_all_hold(&report);
    assert!(report.complete, "{}", report.to_text());
}

// Leader transfer (docs/decisions/0099), in the conclave cycle environment
// with no crash: the serving leader may be asked at any point to hand over to
// either follower, and the only way to a second leader is that hand-over. It
// is reached, and every property holds in every interleaving.
#[test]
#[cfg_attr(debug_assertions, ignore = "an exhaustive search: run with `cargo test --release`")]
fn a_leader_transfer_elects_its_target_and_every_property_holds_in_conclave_mode() {
    let transfers = |max_transfers| {
        let mut options = conclave_cycle_options(14, 2);
        options.max_crashes = 0;
        options.max_log_length = 3;
        options.max_transfers = max_transfers;
        run(options)
    };
    let report = transfers(1);
    assert_all_hold(&report);
    assert!(report.complete, "{}", report.to_text());
    assert_eq!(report.milestones.get("reelected_after_commit"), Some(&13), "{:?}", report.milestones);
    let without = transfers(0);
    assert_eq!(without.milestones.get("reelected_after_commit"), None, "only the hand-over re-elects here");
}

// The same in gapless mode: Raft campaigns, the hand-over's vote requests
// passing the leases, with a crash and restart anywhere too.
#[test]
#[cfg_attr(debug_assertions, ignore = "an exhaustive search: run with `cargo test --release`")]
fn a_leader_transfer_keeps_every_property_in_gapless_mode() {
    let mut options = CheckOptions::new(ElectionMode::Gapless, 3, 10);
    options.drop_action = false;
    options.advance_action = false;
    options.max_proposals = 0;
    options.max_term = 3;
    options.max_log_length = 3;
    options.max_timers = Some(3);
    options.max_transfers = 1;
    let report = run(options);
    assert_all_hold(&report);
    assert!(report.complete, "{}", report.to_text());
}

/// The membership plan (docs/design/membership.md): three voters, a joiner
/// added as a learner, promoted, then an original voter removed — 3 → 4 → 3.
fn membership_options(mode: ElectionMode, depth: usize) -> CheckOptions {
    let mut options = CheckOptions::new(mode, 3, depth);
    options.joiners = 1;
    options.max_membership_changes = 3;
    options.max_timers = Some(1);
    options.drop_action = false;
    options.advance_action = false;
    options.max_proposals = 0;
    options.max_crashes = 0;
    options.max_term = 1;
    options.max_log_length = 5;
    if mode.exchanges_votes() {
        options.initial_leader = Some(1);
    } else {
        options.pre_vote = false;
    }
    options
}

// Every property holds while the cluster grows to four voters and shrinks
// back to three, in every order of the changes' messages.
#[test]
#[cfg_attr(debug_assertions, ignore = "an exhaustive search: run with `cargo test --release`")]
fn raft_keeps_every_property_while_a_voter_is_added_and_another_removed() {
    let report = run(membership_options(ElectionMode::Raft, 23));
    assert_all_hold(&report);
    assert!(report.complete, "{}", report.to_text());
    assert!(report.milestones.contains_key("voter_added_then_removed"), "{}", report.to_text());
    assert!(report.bounds.contains("joiners=1") && report.bounds.contains("membership_changes=3"), "{}", report.bounds);
}

#[test]
#[cfg_attr(debug_assertions, ignore = "an exhaustive search: run with `cargo test --release`")]
fn conclave_keeps_every_property_while_a_voter_is_added_and_another_removed() {
    let report = run(membership_options(ElectionMode::Conclave, 22));
    assert_all_hold(&report);
    assert!(report.complete, "{}", report.to_text());
    assert!(report.milestones.contains_key("voter_added_then_removed"), "{}", report.to_text());
}

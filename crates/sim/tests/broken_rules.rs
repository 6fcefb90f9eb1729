//! A checker that never fires proves nothing: each test removes one safety rule
//! from the core (feature `bug-injection`) and requires the simulator to catch it
//! within a bounded number of seeds, through a checker (not a panic).

use conclave_core::{Config, ElectionMode, InjectedBug};
use conclave_sim::{find_violation, FaultSet, SimOptions, Violation};

/// Seeds a search may use. Both bugs below are found in far fewer.
const SEED_BUDGET: u64 = 2_000;

/// Runs seeds from 0 until the first violation, at most `SEED_BUDGET` of them.
fn first_violation(nodes: usize, hook: fn(&mut Config)) -> Violation {
    let mut options = SimOptions::new(ElectionMode::Raft, nodes, FaultSet::all());
    options.config_hook = Some(hook);
    let threads = std::thread::available_parallelism().map_or(1, |count| count.get());
    let violation = find_violation(&options, 0, SEED_BUDGET, threads)
        .unwrap_or_else(|| panic!("no checker fired in {SEED_BUDGET} seeds"));
    eprintln!("seed {}: {} — {}", violation.seed, violation.property, violation.detail);
    assert!(!violation.recent_events.is_empty(), "a violation shows the events leading to it");
    violation
}

// Reference: Raft §5.4.1 — a voter refuses a candidate whose log is less
// up-to-date; without it a leader can lack committed entries.
#[test]
#[cfg_attr(debug_assertions, ignore = "a sweep: run with `cargo test --release`")]
fn voting_without_the_up_to_date_check_is_caught() {
    let violation = first_violation(5, |config| config.injected_bug = Some(InjectedBug::SkipUpToDateCheck));
    assert!(
        ["leader_completeness", "state_machine_safety", "log_matching"].contains(&violation.property.as_str()),
        "unexpected property {}: {}",
        violation.property,
        violation.detail
    );
}

// Reference: Raft thesis §6.4 — a leader confirms it still leads before it
// answers a read; without it a leader deposed in a minority answers stale.
#[test]
#[cfg_attr(debug_assertions, ignore = "a sweep: run with `cargo test --release`")]
fn reads_without_the_leadership_check_are_caught() {
    let violation = first_violation(5, |config| config.injected_bug = Some(InjectedBug::ReadWithoutLeadershipCheck));
    assert_eq!(violation.property, "linearizable_reads", "{}", violation.detail);
}

// Reference: Raft §5.2 — each server votes for at most one candidate per term;
// without it two leaders can share a term.
#[test]
#[cfg_attr(debug_assertions, ignore = "a sweep: run with `cargo test --release`")]
fn voting_twice_in_a_term_is_caught() {
    let violation = first_violation(5, |config| config.injected_bug = Some(InjectedBug::VoteMoreThanOncePerTerm));
    assert!(
        ["election_safety", "leader_completeness", "state_machine_safety", "log_matching"]
            .contains(&violation.property.as_str()),
        "unexpected property {}: {}",
        violation.property,
        violation.detail
    );
}

// Reference: Raft thesis §6.3 — the state machine applies each request id
// once; without it a command the client proposed again after losing its
// leader takes effect twice when both copies commit.
#[test]
#[cfg_attr(debug_assertions, ignore = "a sweep: run with `cargo test --release`")]
fn applying_a_retried_command_again_is_caught() {
    let mut options = SimOptions::new(ElectionMode::Raft, 5, FaultSet::all());
    options.apply_duplicates = true;
    let threads = std::thread::available_parallelism().map_or(1, |count| count.get());
    let violation = find_violation(&options, 0, SEED_BUDGET, threads)
        .unwrap_or_else(|| panic!("no checker fired in {SEED_BUDGET} seeds"));
    eprintln!("seed {}: {} — {}", violation.seed, violation.property, violation.detail);
    assert_eq!(violation.property, "exactly_once", "{}", violation.detail);
}

// Reference: Raft thesis §10.2.1 — a leader that sends its appends before its
// own write is durable may count itself toward a commit only once that write
// completes; counting it earlier commits an entry that only a minority of
// disks holds (one power loss from being lost).
#[test]
#[cfg_attr(debug_assertions, ignore = "a sweep: run with `cargo test --release`")]
fn counting_the_leaders_unpersisted_entries_is_caught() {
    let violation = first_violation(3, |config| {
        assert!(config.parallel_persist, "the simulator runs leaders as the server does");
        config.injected_bug = Some(InjectedBug::CountUnpersistedOwnEntries);
    });
    assert_eq!(violation.property, "durable_commits", "{}", violation.detail);
}

// Reference: docs/design/membership.md — a learner receives the log but never
// counts toward a commit; counted, an entry commits on fewer disks than a
// majority of the voters.
#[test]
#[cfg_attr(debug_assertions, ignore = "a sweep: run with `cargo test --release`")]
fn counting_a_learner_in_the_quorum_is_caught() {
    let violation = first_violation(5, |config| config.injected_bug = Some(InjectedBug::CountLearnersInQuorum));
    assert!(
        ["durable_commits", "leader_completeness", "state_machine_safety", "log_matching"]
            .contains(&violation.property.as_str()),
        "unexpected property {}: {}",
        violation.property,
        violation.detail
    );
}

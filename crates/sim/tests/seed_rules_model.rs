//! Seed 003's election rules exactly as written break Raft's safety, and the
//! checker finds it (issue 4, item 3); the repaired rules of DESIGN.md §3.4 hold
//! at the same bounds. A checker that never fails proves nothing.

use std::time::Instant;

use conclave_sim::seed_rules::{check, check_properties, Bounds, CheckResult, Property, SeedVariant};

/// One set of bounds for all three tests, so the repaired rules face the same search.
fn bounds() -> Bounds {
    Bounds {
        max_term: 2,
        max_log: 3,
        max_commands: 1,
        max_messages: 3,
        max_crashes: 1,
        max_depth: 12,
        max_states: 5_000_000,
    }
}

fn run(label: &str, search: impl FnOnce() -> CheckResult) -> CheckResult {
    let started = Instant::now();
    let result = search();
    eprintln!(
        "{label}: {} states, depth {}, complete {}, {:.2?}",
        result.states,
        result.depth_reached,
        result.complete,
        started.elapsed()
    );
    if let Some((property, trace)) = &result.violation {
        eprintln!("{property} violated in {} steps:", trace.len());
        for line in trace.iter().chain(&result.final_state) {
            eprintln!("  {line}");
        }
    }
    result
}

#[test]
fn seed_rules_as_written_let_two_entries_share_index_and_term() {
    let result = run("as written", || check(SeedVariant::AsWritten, bounds()));
    let (property, trace) = result.violation.expect("the seed's rules as written break a property");
    assert_eq!(property, "log_matching");
    assert!(trace.len() <= 8, "shortest trace has {} steps", trace.len());
}

#[test]
fn seed_rules_with_committed_last_leader_term_elect_two_leaders_in_one_term() {
    let result = run("committed last leader term", || {
        check_properties(SeedVariant::CommittedLastLeaderTerm, bounds(), &[Property::ElectionSafety])
    });
    let (property, trace) = result.violation.expect("two leaders serve in one term");
    assert_eq!(property, "election_safety");
    assert!(trace.len() <= 14, "shortest trace has {} steps", trace.len());
}

#[test]
fn repaired_rules_hold_at_the_same_bounds() {
    let result = run("repaired", || check(SeedVariant::Repaired, bounds()));
    assert_eq!(result.violation, None);
    assert!(result.states > 1_000, "the search explored the space");
}

#[test]
#[ignore]
fn probe() {
    let depth: usize = std::env::var("D").unwrap().parse().unwrap();
    let variant = match std::env::var("V").unwrap().as_str() {
        "A" => SeedVariant::AsWritten,
        "B" => SeedVariant::CommittedLastLeaderTerm,
        _ => SeedVariant::Repaired,
    };
    let props: Vec<Property> =
        if std::env::var("E").is_ok() { vec![Property::ElectionSafety] } else { Property::ALL.to_vec() };
    let b = Bounds {
        max_depth: depth,
        max_messages: std::env::var("M").map_or(3, |m| m.parse().unwrap()),
        max_crashes: std::env::var("C").map_or(1, |m| m.parse().unwrap()),
        ..bounds()
    };
    run("probe", || check_properties(variant, b, &props));
}

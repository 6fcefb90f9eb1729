//! `conclave check` as a user runs it: the built binary, its exit status and what
//! it prints.

use std::process::{Command, Output};

use serde_json::Value;

fn conclave(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_conclave"))
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("cannot run conclave {args:?}: {error}"))
}

#[test]
fn a_json_check_prints_the_documented_object_and_succeeds() {
    let output = conclave(&["check", "--mode", "raft", "--nodes", "3", "--depth", "5", "--json"]);
    let stdout = String::from_utf8(output.stdout).expect("stdout is UTF-8");
    assert!(output.status.success(), "conclave check failed: {stdout}");
    let report: Value = serde_json::from_str(&stdout).expect("stdout is one JSON value");
    assert_eq!(report["mode"], "raft");
    assert_eq!(report["depth"], 5);
    assert_eq!(report["complete"], true);
    assert_eq!(report["violations"], 0);
    assert!(report["states"].as_u64().is_some_and(|states| states > 100), "{report}");
    let properties = report["properties"].as_object().expect("properties is an object");
    for name in ["election_safety", "log_matching", "leader_completeness", "state_machine_safety", "gapless_terms"] {
        assert_eq!(properties[name], "holds", "{name} in {report}");
    }
}

#[test]
fn the_readable_check_names_every_property() {
    let output = conclave(&["check", "--mode", "fast", "--depth", "4"]);
    let stdout = String::from_utf8(output.stdout).expect("stdout is UTF-8");
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.starts_with("mode fast: "), "{stdout}");
    assert!(stdout.contains("election_safety") && stdout.contains("holds"), "{stdout}");
}

#[test]
fn an_unknown_mode_is_refused_with_the_known_ones() {
    let output = conclave(&["check", "--mode", "paxos"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).expect("stderr is UTF-8");
    assert!(stderr.contains("unknown election mode `paxos`") && stderr.contains("raft"), "{stderr}");
}

fn check_json(args: &[&str]) -> (Option<i32>, Value) {
    let output = conclave(args);
    let stdout = String::from_utf8(output.stdout).expect("stdout is UTF-8");
    let report = serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("{error}: {stdout}"));
    (output.status.code(), report)
}

#[test]
fn gapless_and_conclave_hold_every_property() {
    // Reference: docs/design/leader-terms.md, docs/design/invariants.md — the shipped rules, on the real core.
    for mode in ["gapless", "conclave"] {
        let (code, report) = check_json(&["check", "--mode", mode, "--nodes", "3", "--depth", "7", "--json"]);
        assert_eq!(code, Some(0), "{report}");
        assert_eq!(report["violations"], 0, "{report}");
        assert_eq!(report["complete"], true, "{report}");
        for name in ["election_safety", "gapless_terms", "committed_leader_term_monotonic", "log_matching"] {
            assert_eq!(report["properties"][name], "holds", "{mode}: {name}");
        }
    }
}

#[test]
fn the_seed_rules_as_written_are_reported_violated_with_their_traces() {
    // Reference: docs/design/leader-terms.md "What a model check found": as written, two
    // entries share (index, term); with the last leader term taken from committed
    // entries, two leaders serve one term. The repaired rules hold.
    let (code, report) = check_json(&["check", "--variant", "seed", "--depth", "8", "--json"]);
    assert_eq!(code, Some(1), "a violation exits 1: {report}");
    assert_eq!(report["properties"]["log_matching"], "violated", "{report}");
    let trace = report["traces"]["log_matching"].as_array().expect("a trace");
    assert!(trace.len() <= 8, "{trace:?}");

    let (code, report) = check_json(&["check", "--variant", "seed-committed", "--depth", "12", "--json"]);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["properties"]["election_safety"], "violated", "{report}");
    let trace = report["traces"]["election_safety"].as_array().expect("a trace");
    assert!(trace.iter().any(|line| line.as_str().is_some_and(|line| line.contains("BecomeLeader"))), "{trace:?}");

    let (code, report) = check_json(&["check", "--variant", "repaired", "--depth", "10", "--json"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["violations"], 0, "{report}");
}

#[test]
fn the_cycle_environment_options_are_accepted_and_reported() {
    let (code, report) = check_json(&[
        "check",
        "--mode",
        "conclave",
        "--depth",
        "5",
        "--no-drop",
        "--no-advance",
        "--proposals",
        "0",
        "--max-term",
        "2",
        "--max-log",
        "2",
        "--initial-leader",
        "1",
        "--crash-leaders-only",
        "--no-restart",
        "--max-timers",
        "3",
        "--json",
    ]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["violations"], 0, "{report}");
    assert_eq!(report["milestones"]["leader_elected"], 2, "the cold start leads at once: {report}");
    assert_eq!(report["milestones"]["entry_committed"], 4, "{report}");
}

#[test]
fn a_bad_initial_leader_is_refused_with_a_clear_error() {
    for (args, expected) in [
        (
            &["check", "--mode", "conclave", "--initial-leader", "4"][..],
            "--initial-leader 4 is not a node: the nodes are 1 to 3",
        ),
        (&["check", "--mode", "conclave", "--initial-leader", "0"][..], "--initial-leader 0 is not a node"),
        (&["check", "--mode", "gapless", "--initial-leader", "1"][..], "needs a mode with the cold start"),
        (&["check", "--mode", "conclave", "--max-timers", "many"][..], "invalid value 'many' for '--max-timers"),
    ] {
        let output = conclave(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(output.stderr).expect("stderr is UTF-8");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn the_process_gone_input_is_on_by_default_and_can_be_left_out() {
    // Reference: docs/decisions/0073-the-model-checker-offers-the-evidence-by-default.md.
    let (code, report) = check_json(&["check", "--mode", "conclave", "--depth", "6", "--json"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["process_gone"], true, "{report}");
    assert_eq!(report["complete"], true, "{report}");
    assert_eq!(report["violations"], 0, "{report}");
    let (code, report) = check_json(&["check", "--mode", "conclave", "--depth", "6", "--no-process-gone", "--json"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["process_gone"], false, "{report}");
}

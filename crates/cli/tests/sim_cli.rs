//! `conclave sim` as a user runs it: the built binary, its exit status and what it
//! prints. The simulator needs no network, so neither do these tests.

use std::process::{Command, Output};

use conclave_core::ElectionMode;
use serde_json::Value;

/// Runs `conclave` with `args` and returns what it did.
fn conclave(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_conclave"))
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("cannot run conclave {args:?}: {error}"))
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("stderr is UTF-8")
}

/// Runs `conclave` with `args`, requires success, and parses stdout as one JSON value.
fn conclave_json(args: &[&str]) -> Value {
    let output = conclave(args);
    assert!(output.status.success(), "conclave {args:?} failed: {}\n{}", stderr(&output), stdout(&output));
    serde_json::from_str(&stdout(&output))
        .unwrap_or_else(|error| panic!("stdout of conclave {args:?} is not one JSON value: {error}"))
}

fn count(value: &Value, key: &str) -> u64 {
    value[key].as_u64().unwrap_or_else(|| panic!("`{key}` is not a count in {value}"))
}

#[test]
fn a_json_sweep_prints_one_object_with_every_measure() {
    let report =
        conclave_json(&["sim", "--nodes", "3", "--seeds", "20", "--first-seed", "0", "--faults", "all", "--json"]);
    assert!(report.is_object(), "{report}");
    assert_eq!(report["mode"], "conclave", "the default mode");
    assert_eq!(count(&report, "nodes"), 3);
    assert_eq!(count(&report, "runs"), 20);
    assert_eq!(count(&report, "violations"), 0, "{report:#}");
    assert!(count(&report, "elections") > 0, "every run elects a leader");
    assert!(count(&report, "committed_entries") > 0, "every run commits");
    count(&report, "disruptions");
    assert_eq!(count(&report, "term_gaps"), 0, "conclave's committed leader terms have no hole");
    assert_eq!(count(&report, "leaders_per_term_max"), 1, "one leader per leader term");
    assert!(count(&report, "snapshots_taken") > 0, "nodes snapshot and compact");
    count(&report, "installed_snapshots");
    let failover = &report["failover_ms"];
    let (p50, p99, max) = (count(failover, "p50"), count(failover, "p99"), count(failover, "max"));
    assert!(p50 <= p99 && p99 <= max, "{failover}");
    let faults = report["faults"].as_object().unwrap_or_else(|| panic!("`faults` is not an object: {report}"));
    for kind in ["crash", "partition", "loss", "duplicate"] {
        let injected = faults.get(kind).and_then(Value::as_u64).unwrap_or_else(|| panic!("no `{kind}` count"));
        assert!(injected > 0, "20 seeds with every fault inject some {kind}: {faults:?}");
    }
}

#[test]
fn a_readable_sweep_names_its_seeds_first_and_ends_ok() {
    let output = conclave(&["sim", "--nodes", "3", "--seeds", "20", "--first-seed", "0", "--faults", "all"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let first_line = text.lines().next().expect("something is printed");
    assert!(first_line.starts_with("seeds 0..20"), "first line: {first_line}");
    assert!(text.lines().any(|line| line.starts_with("OK:")), "{text}");
    assert!(!text.contains("VIOLATION"), "{text}");
}

#[test]
fn a_traced_replay_names_its_seed_then_prints_every_event() {
    let output = conclave(&["sim", "--seed", "5", "--trace"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("seed 5"));
    // Event lines start with the virtual time: "    252 ms  tick n3".
    let events: Vec<&str> = lines.filter(|line| line.trim_start().split_once(" ms ").is_some()).collect();
    assert!(events.len() > 100, "a run has many events, got {}:\n{text}", events.len());
    assert!(events.iter().any(|line| line.contains("tick n")), "{text}");
    assert!(events.iter().any(|line| line.contains("-> Leader")), "somebody is elected:\n{text}");
    assert!(text.lines().last().is_some_and(|line| line.starts_with("seed 5: ")), "closing summary:\n{text}");
}

#[test]
fn an_unknown_fault_is_refused_by_name() {
    let output = conclave(&["sim", "--faults", "meteor"]);
    assert!(!output.status.success(), "accepted --faults meteor");
    let error = stderr(&output);
    assert!(error.contains("meteor"), "{error}");
    assert!(error.contains("unknown fault"), "{error}");
    assert!(stdout(&output).is_empty(), "nothing ran: {}", stdout(&output));
}

#[test]
fn an_unknown_mode_is_refused_with_the_known_ones() {
    let output = conclave(&["sim", "--mode", "nosuch"]);
    assert!(!output.status.success(), "accepted --mode nosuch");
    let error = stderr(&output);
    assert!(error.contains("nosuch"), "{error}");
    for mode in ElectionMode::ALL {
        assert!(error.contains(mode.name()), "the error names known mode `{mode}`: {error}");
    }
    assert!(stdout(&output).is_empty(), "nothing ran: {}", stdout(&output));
}

#[test]
fn one_seed_replays_to_the_same_trace_hash() {
    let first = conclave_json(&["sim", "--seed", "9", "--json"]);
    let second = conclave_json(&["sim", "--seed", "9", "--json"]);
    assert_eq!(count(&first, "seed"), 9);
    let hash = first["trace_hash"].as_str().unwrap_or_else(|| panic!("no trace_hash: {first}")).to_string();
    assert_eq!(second["trace_hash"].as_str(), Some(hash.as_str()));
    assert_eq!(hash.len(), 16, "a 64-bit hash in hex");
    assert!(first["violation"].is_null(), "{first:#}");
}

#[test]
fn comparing_every_mode_shows_gapless_leader_terms_only_where_promised() {
    // Reference: invariant 2 in docs/design/invariants.md, docs/design/simulator.md (`term_gaps`, `leaders_per_term_max`).
    let args = [
        "sim",
        "--compare",
        "raft,fast,gapless,conclave",
        "--nodes",
        "3",
        "--seeds",
        "40",
        "--first-seed",
        "0",
        "--faults",
        "crash,partition",
        "--json",
    ];
    let report = conclave_json(&args);
    let modes = report["modes"].as_object().unwrap_or_else(|| panic!("no `modes` object: {report}"));
    assert_eq!(modes.keys().collect::<Vec<_>>(), ["conclave", "fast", "gapless", "raft"]);
    for (mode, summary) in modes {
        assert_eq!(count(summary, "violations"), 0, "{mode}: {summary:#}");
        assert!(count(summary, "elections_won") > 0, "{mode} elected leaders");
    }
    for mode in ["gapless", "conclave"] {
        assert_eq!(count(&modes[mode], "term_gaps"), 0, "{mode}");
        assert_eq!(count(&modes[mode], "leaders_per_term_max"), 1, "{mode}");
    }
    for mode in ["raft", "fast"] {
        assert!(count(&modes[mode], "term_gaps") > 0, "{mode} leaves terms without a leader under crashes");
        assert_eq!(count(&modes[mode], "leaders_per_term_max"), 0, "{mode} has no BecomeLeader entries");
    }
}

#[test]
fn the_help_says_what_a_disruption_and_a_miss_of_the_newest_data_count() {
    let output = conclave(&["sim", "--help"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let help = stdout(&output);
    for phrase in ["disruptions", "once per term, the same event", "in every mode", "not_newest_by_cause"] {
        assert!(help.contains(phrase), "`conclave sim --help` lacks {phrase:?}:\n{help}");
    }
}

#[test]
fn a_json_sweep_names_every_cause_of_a_miss_of_the_newest_data() {
    let report = conclave_json(&[
        "sim",
        "--mode",
        "fast",
        "--nodes",
        "5",
        "--seeds",
        "10",
        "--first-seed",
        "1",
        "--faults",
        "crash",
        "--json",
    ]);
    let causes = report["not_newest_by_cause"].as_object().unwrap_or_else(|| panic!("no causes: {report}"));
    for cause in conclave_sim::newest_wins::MissCause::ALL {
        assert!(causes.contains_key(cause.name()), "`{}` missing from {causes:?}", cause.name());
    }
    count(&report, "not_newest_avoidable");
    assert!(report["up_to_date_electable_winner_ratio"].is_f64(), "{report}");
}

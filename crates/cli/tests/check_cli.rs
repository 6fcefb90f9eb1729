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

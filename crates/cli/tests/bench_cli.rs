//! `conclave bench` against a real 3-node cluster: the
//! JSON shape, every requested write completed without an error, positive
//! figures, the temporary data dir removed; and each bad flag refused with a
//! clear message before any node starts.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

#[path = "support/process.rs"]
mod process;

/// Runs `conclave bench arguments` with `TMPDIR=tmp`, killing it if it overruns `timeout`.
fn bench(tmp: &Path, arguments: &[&str], timeout: Duration) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_conclave"));
    command.arg("bench").args(arguments).env("TMPDIR", tmp);
    process::output_within(command, "conclave bench", timeout)
}

#[test]
fn bench_json_measures_every_requested_write_at_each_client_count() {
    let tmp = tempfile::tempdir().unwrap();
    let output = bench(tmp.path(), &["--clients", "1,4", "--requests", "200", "--json"], Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{}\nstdout: {stdout}\nstderr: {stderr}", output.status);
    let result: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|error| panic!("{error}: {stdout}"));
    assert_eq!(result["nodes"], 3, "{result}");
    assert_eq!(result["fsync"], true, "{result}");
    let leader = result["leader"].as_u64().unwrap();
    assert!((1..=3).contains(&leader), "{result}");
    let runs = result["runs"].as_array().unwrap();
    assert_eq!(runs.iter().map(|run| run["clients"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 4]);
    for run in runs {
        assert_eq!(run["requests"], 200, "every requested write completed: {run}");
        assert_eq!(run["errors"], 0, "{run}");
        assert_eq!(run["verified"], 100, "a sample of the keys read back: {run}");
        let ops = run["ops_per_sec"].as_f64().unwrap();
        let (p50, p99, max) =
            (run["p50_ms"].as_f64().unwrap(), run["p99_ms"].as_f64().unwrap(), run["max_ms"].as_f64().unwrap());
        assert!(ops > 0.0, "{run}");
        assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{run}");
    }
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "the temporary data dir is removed: {left:?}");
}

/// A bad flag exits 2 with `message` on stderr, starting nothing.
fn refused(arguments: &[&str], message: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let output = bench(tmp.path(), arguments, Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{arguments:?}: {stderr}");
    assert!(stderr.contains(message), "{arguments:?}: expected {message:?} in {stderr}");
    assert!(output.stdout.is_empty(), "{arguments:?}: {}", String::from_utf8_lossy(&output.stdout));
    assert!(std::fs::read_dir(tmp.path()).unwrap().next().is_none(), "{arguments:?}: nothing created");
}

#[test]
fn bad_flags_are_refused_before_any_node_starts() {
    refused(&["--nodes", "0"], "--nodes must be between 1 and 99");
    refused(&["--clients", "1,0"], "--clients: 0 is not between 1 and 5000");
    refused(&["--clients", "9999"], "--clients: 9999 is not between 1 and 5000");
    refused(&["--clients", "1,many"], "invalid value 'many'");
    refused(&["--clients", ""], "--clients");
    refused(&["--requests", "0"], "--requests must be at least 1");
    refused(&["--duration-secs", "0"], "--duration-secs must be between 1 and 3600");
    refused(&["--requests", "10", "--duration-secs", "1"], "cannot be used with");
    refused(&["--value-bytes", "600000"], "--value-bytes: 600000 is above the server's bulk limit");
    refused(&["--target", "follower"], "invalid value 'follower'");
}

#[test]
fn a_data_dir_in_use_is_refused_and_left_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("keep.txt"), "old cluster").unwrap();
    let output = bench(tmp.path(), &["--data-dir", dir.to_str().unwrap()], Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is not empty; give a new or empty directory"), "{stderr}");
    assert_eq!(std::fs::read_to_string(dir.join("keep.txt")).unwrap(), "old cluster");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
}

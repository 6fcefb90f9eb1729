//! One seed, one run: the simulator must be reproducible to be useful.

use conclave_core::ElectionMode;
use conclave_sim::{run_seed, run_sweep, FaultSet, SimOptions};

#[test]
fn two_runs_of_one_seed_produce_the_same_trace_hash() {
    let options = SimOptions::new(ElectionMode::Raft, 5, FaultSet::all());
    for seed in [0, 1, 42, 0xDEAD_BEEF] {
        let (first, _) = run_seed(&options, seed);
        let (second, _) = run_seed(&options, seed);
        assert_eq!(first.trace_hash, second.trace_hash, "seed {seed} diverged");
        assert_eq!(first.steps, second.steps);
        assert!(first.steps > 1_000, "a run does real work ({} steps)", first.steps);
    }
}

#[test]
fn different_seeds_produce_different_runs() {
    let options = SimOptions::new(ElectionMode::Raft, 3, FaultSet::all());
    let (first, _) = run_seed(&options, 7);
    let (second, _) = run_seed(&options, 8);
    assert_ne!(first.trace_hash, second.trace_hash);
}

#[test]
fn a_sweep_does_not_depend_on_the_thread_count() {
    let options = SimOptions::new(ElectionMode::Raft, 3, FaultSet::all());
    let single = run_sweep(&options, 500, 24, 1, &|_| {});
    let parallel = run_sweep(&options, 500, 24, 2, &|_| {});
    assert_eq!(single.elections, parallel.elections);
    assert_eq!(single.committed_entries, parallel.committed_entries);
    assert_eq!(single.failover_ms, parallel.failover_ms);
    assert_eq!(single.faults, parallel.faults);
}

#[test]
fn the_full_trace_replays_every_event() {
    let mut options = SimOptions::new(ElectionMode::Raft, 3, FaultSet::all());
    options.keep_full_trace = true;
    let (report, trace) = run_seed(&options, 3);
    assert_eq!(trace.len() as u64, report.steps);
    assert!(trace.iter().any(|line| line.contains("-> Leader")), "someone was elected");
}

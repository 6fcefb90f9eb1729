//! Many seeds, run on every core, folded into one report.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::options::SimOptions;
use crate::report::{RunReport, SweepReport, Violation};
use crate::simulation::Simulation;

/// Runs `seed`; a panic inside a node or the simulator becomes a violation, so a
/// sweep reports it with its seed instead of dying.
pub fn run_seed(options: &SimOptions, seed: u64) -> (RunReport, Vec<String>) {
    let attempt = catch_unwind(AssertUnwindSafe(|| Simulation::new(options.clone(), seed).run()));
    attempt.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        let report = RunReport {
            seed,
            violation: Some(Violation {
                property: "node_panic".into(),
                seed,
                step: 0,
                at_ms: 0,
                detail: message,
                recent_events: Vec::new(),
            }),
            trace_hash: 0,
            steps: 0,
            simulated_ms: 0,
            elections: 0,
            leader_changes: 0,
            failover_ms: Vec::new(),
            failovers_without_quorum: 0,
            single_fault_failover_ms: Vec::new(),
            failover_ms_by_crash_kind: Default::default(),
            single_fault_failover_ms_by_crash_kind: Default::default(),
            committed_entries: 0,
            disruptions: 0,
            faults: Default::default(),
            proposals: 0,
            reads_issued: 0,
            reads_served: 0,
            reads_failed: 0,
            elections_won: 0,
            up_to_date_wins: 0,
            up_to_date_electable_wins: 0,
            not_newest_by_cause: Default::default(),
            term_gaps: 0,
            leaders_per_term_max: 0,
            truncated_entries: 0,
            snapshots_taken: 0,
            installed_snapshots: 0,
        };
        (report, Vec::new())
    })
}

/// Runs seeds `first_seed .. first_seed + runs` on `threads` threads (at least
/// one); `progress` is called after each run with the number done. The report
/// is the same whatever the thread count: runs are folded in seed order.
pub fn run_sweep(
    options: &SimOptions,
    first_seed: u64,
    runs: u64,
    threads: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> SweepReport {
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let results: Mutex<Vec<RunReport>> = Mutex::new(Vec::with_capacity(runs as usize));
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let offset = next.fetch_add(1, Ordering::Relaxed);
                if offset >= runs {
                    break;
                }
                let (report, _) = run_seed(options, first_seed.wrapping_add(offset));
                results.lock().expect("no thread panics holding the lock").push(report);
                progress(done.fetch_add(1, Ordering::Relaxed) + 1);
            });
        }
    });
    let mut reports = results.into_inner().expect("threads are done");
    reports.sort_by_key(|report| report.seed.wrapping_sub(first_seed));
    SweepReport::from_runs(
        options.mode.to_string(),
        options.nodes,
        options.faults.to_string(),
        first_seed,
        &reports,
        started.elapsed().as_secs_f64(),
    )
}

/// Runs seeds from `first_seed` on `threads` threads until one breaks an
/// invariant, at most `max_runs` of them; returns the violation with the lowest
/// seed among those found. Used to prove the checkers fire on a broken core.
pub fn find_violation(options: &SimOptions, first_seed: u64, max_runs: u64, threads: usize) -> Option<Violation> {
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let found: Mutex<Vec<Violation>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let offset = next.fetch_add(1, Ordering::Relaxed);
                    if offset >= max_runs {
                        break;
                    }
                    if let Some(violation) = run_seed(options, first_seed.wrapping_add(offset)).0.violation {
                        found.lock().expect("no thread panics holding the lock").push(violation);
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    found.into_inner().expect("threads are done").into_iter().min_by_key(|violation| violation.seed)
}

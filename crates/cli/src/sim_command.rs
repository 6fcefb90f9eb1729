//! `conclave sim`: the simulation sweep and single-seed replay.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Args;
use conclave_core::ElectionMode;
use conclave_sim::{run_seed, run_sweep, FaultSet, RunParams, SimOptions, SweepReport};
use indicatif::{ProgressBar, ProgressStyle};

/// Options of `conclave sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Election mode to simulate.
    #[arg(long, default_value = "raft", value_parser = parse_mode)]
    mode: ElectionMode,
    /// Cluster size.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=15))]
    nodes: u64,
    /// Number of seeds to run.
    #[arg(long, default_value_t = 1000)]
    seeds: u64,
    /// First seed of the sweep (default: drawn at random, and printed).
    #[arg(long)]
    first_seed: Option<u64>,
    /// Replay this one seed instead of sweeping.
    #[arg(long, conflicts_with_all = ["seeds", "first_seed"])]
    seed: Option<u64>,
    /// Faults to inject: all, none, network, crash, or a comma-separated list of
    /// partition, asymmetric_partition, link_break, isolate, loss, duplicate, reorder.
    #[arg(long, default_value = "all", value_parser = FaultSet::parse)]
    faults: FaultSet,
    /// Print one JSON object instead of the readable summary.
    #[arg(long)]
    json: bool,
    /// With --seed: print every event of the run.
    #[arg(long, requires = "seed")]
    trace: bool,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

fn parse_mode(text: &str) -> Result<ElectionMode, String> {
    text.parse()
}

/// Runs the command; non-zero exit on any violation.
pub fn run(args: SimArgs) -> ExitCode {
    let mut options = SimOptions::new(args.mode, args.nodes as usize, args.faults);
    if let Some(seed) = args.seed {
        options.keep_full_trace = args.trace;
        return replay(&options, seed, args.json);
    }
    let first_seed = args.first_seed.unwrap_or_else(rand_seed);
    if !args.json {
        println!("seeds {first_seed}..{} (replay one with --seed S)", first_seed.wrapping_add(args.seeds));
    }
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |count| count.get()));
    let bar = if std::io::stderr().is_terminal() { ProgressBar::new(args.seeds) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} seeds  {elapsed_precise} (eta {eta})")
            .expect("the template is valid"),
    );
    let report = run_sweep(&options, first_seed, args.seeds, threads, &|done| bar.set_position(done));
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).expect("reports serialize"));
    } else {
        print_summary(&report);
    }
    if report.violations > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn replay(options: &SimOptions, seed: u64, json: bool) -> ExitCode {
    if !json {
        println!("seed {seed}");
        let params = RunParams::from_seed(seed, options.faults);
        println!("params {}", serde_json::to_string(&params).expect("params serialize"));
    }
    let (report, trace) = run_seed(options, seed);
    if json {
        println!("{}", serde_json::to_string_pretty(&report).expect("reports serialize"));
    } else {
        let mut stdout = std::io::stdout().lock();
        for line in &trace {
            // A reader that stops early (`| head`) is not an error.
            if writeln!(stdout, "{line}").is_err() {
                return ExitCode::SUCCESS;
            }
        }
        drop(stdout);
        println!(
            "seed {seed}: {} steps, {} ms simulated, {} elections, {} leaders, failovers {:?} ms, {} committed, {} disruptions, trace hash {:016x}",
            report.steps,
            report.simulated_ms,
            report.elections,
            report.leader_changes,
            report.failover_ms,
            report.committed_entries,
            report.disruptions,
            report.trace_hash
        );
        if let Some(violation) = &report.violation {
            print_violation(violation);
        }
    }
    if report.violation.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn print_summary(report: &SweepReport) {
    println!("{}", report.summary_line());
    let faults: Vec<String> = report.faults.0.iter().map(|(name, count)| format!("{name}={count}")).collect();
    println!("faults injected: {}", faults.join(" "));
    for violation in &report.violation_details {
        print_violation(violation);
    }
    if report.violations == 0 {
        println!("OK: no invariant broken in {} runs", report.runs);
    } else {
        println!("FAILED: {} of {} runs broke an invariant", report.violations, report.runs);
    }
}

fn print_violation(violation: &conclave_sim::Violation) {
    println!(
        "VIOLATION {} — seed {} step {} at {} ms: {}",
        violation.property, violation.seed, violation.step, violation.at_ms, violation.detail
    );
    println!("  replay: conclave sim --seed {} --trace", violation.seed);
    for line in &violation.recent_events {
        println!("  {line}");
    }
}

/// A sweep's first seed when none is given; the only clock read, outside any core.
fn rand_seed() -> u64 {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_nanos());
    (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)
}

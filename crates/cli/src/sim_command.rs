//! `conclave sim`: the simulation sweep and single-seed replay.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Args;
use conclave_core::ElectionMode;
use conclave_sim::{run_seed, run_sweep, FaultSet, RunParams, SimOptions, SweepReport};
use indicatif::{ProgressBar, ProgressStyle};

/// What two of the measures count, printed after the options (the rest are in
/// docs/design/simulator.md).
pub const MEASURES_HELP: &str = "\
Measures (docs/design/simulator.md):
  disruptions              new terms bound while the leader of an older term could still
                           exchange messages with a majority, once per term, the same event
                           in every mode: a Raft candidate raising its term, or the first
                           finalized vote of the vote exchange for a ballot
  up_to_date_winner_ratio  won elections whose winner held the newest data among the nodes
                           alive on the majority side from the election's start to its end,
                           each node's data taken as it held it until it bound its vote;
                           `up_to_date_electable_winner_ratio` leaves out the nodes that
                           abstained after losing their data or crashed during the election
  not_newest_by_cause      every other won election, by why the newest node lost
                           (docs/decisions/0078)";

/// Options of `conclave sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Election mode to simulate.
    #[arg(long, default_value = "conclave", value_parser = parse_mode, conflicts_with = "compare")]
    mode: ElectionMode,
    /// Run the same seeds under each of these modes (comma-separated, e.g.
    /// `raft,fast`) and print them side by side.
    #[arg(long, value_delimiter = ',', value_parser = parse_mode)]
    compare: Vec<ElectionMode>,
    /// One-way message latency, uniform in MIN-MAX milliseconds (default: drawn per seed).
    #[arg(long, value_parser = parse_range)]
    latency_ms: Option<(u64, u64)>,
    /// Message-loss probability, 0 to 1 (default: drawn per seed when loss is a fault).
    #[arg(long, value_parser = parse_probability)]
    loss: Option<f64>,
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
    /// crash, host_crash, restart, partition, asymmetric_partition, link_break, oneway,
    /// isolate, loss, duplicate, reorder, link_flap, unsynced_loss, torn_write,
    /// membership (an operator's membership changes; part of `all`), and
    /// transfer (an operator's leader transfers; only by name).
    #[arg(long, default_value = "all", value_parser = FaultSet::parse)]
    faults: FaultSet,
    /// Print one JSON object instead of the readable summary.
    #[arg(long)]
    json: bool,
    /// With --seed: print every event of the run.
    #[arg(long, requires = "seed")]
    trace: bool,
    /// Nodes ignore the evidence that a crashed leader's process is gone (a
    /// refused redial), so a process crash is found by counted misses only, as
    /// a host crash is (`timing.fast_detection = false`).
    #[arg(long)]
    no_fast_detection: bool,
    /// Leaders wait for their own fsync before sending appends (the library
    /// default), instead of persisting in parallel as the server does.
    #[arg(long)]
    no_parallel_persist: bool,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

fn parse_mode(text: &str) -> Result<ElectionMode, String> {
    text.parse()
}

fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let (min, max) = text.split_once('-').ok_or_else(|| format!("`{text}` is not MIN-MAX (e.g. 1-10)"))?;
    let min: u64 = min.trim().parse().map_err(|_| format!("`{min}` is not a number of milliseconds"))?;
    let max: u64 = max.trim().parse().map_err(|_| format!("`{max}` is not a number of milliseconds"))?;
    if min > max {
        return Err(format!("minimum {min} exceeds maximum {max}"));
    }
    Ok((min, max))
}

fn parse_probability(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if (0.0..=1.0).contains(&value) => Ok(value),
        _ => Err(format!("`{text}` is not a probability between 0 and 1")),
    }
}

/// Runs the command; non-zero exit on any violation.
pub fn run(args: SimArgs) -> ExitCode {
    let mut options = SimOptions::new(args.mode, args.nodes as usize, args.faults);
    options.latency_ms = args.latency_ms;
    options.loss_probability = args.loss;
    options.fast_detection = !args.no_fast_detection;
    options.parallel_persist = !args.no_parallel_persist;
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
    if !args.compare.is_empty() {
        bar.set_length(args.seeds * args.compare.len() as u64);
        let mut reports = Vec::new();
        for (position, mode) in args.compare.iter().enumerate() {
            let options = SimOptions { mode: *mode, ..options.clone() };
            let offset = position as u64 * args.seeds;
            reports.push(run_sweep(&options, first_seed, args.seeds, threads, &|done| bar.set_position(offset + done)));
        }
        bar.finish_and_clear();
        return print_comparison(&reports, args.json);
    }
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
        let params = RunParams::for_run(seed, options);
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
            "seed {seed}: {} steps, {} ms simulated, {} elections, {} leaders, failovers {} ms, {} committed, {} disruptions, trace hash {:016x}",
            report.steps,
            report.simulated_ms,
            report.elections,
            report.leader_changes,
            report.failover_ms.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
            report.committed_entries,
            report.disruptions,
            report.trace_hash
        );
        if let Some(violation) = &report.violation {
            print_violation(&options.mode.to_string(), options.nodes, &options.faults.to_string(), violation);
        }
    }
    if report.violation.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// One figure of the failovers a leader's crash of `kind` started.
fn by_kind(report: &SweepReport, kind: &str, figure: fn(&conclave_sim::Percentiles) -> u64) -> String {
    report.failover_ms_by_crash_kind.get(kind).map_or("-".into(), |percentiles| figure(percentiles).to_string())
}

/// How one row of the comparison table reads a report.
type Column = Box<dyn Fn(&SweepReport) -> String>;

/// `--compare`: one column per mode over the same seeds.
fn print_comparison(reports: &[SweepReport], json: bool) -> ExitCode {
    if json {
        let modes: serde_json::Map<String, serde_json::Value> = reports
            .iter()
            .map(|report| (report.mode.clone(), serde_json::to_value(report).expect("reports serialize")))
            .collect();
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "modes": modes })).expect("serializes"));
    } else {
        let ratio = |report: &SweepReport| report.up_to_date_winner_ratio.map_or("n/a".into(), |r| format!("{r:.4}"));
        let electable_ratio =
            |report: &SweepReport| report.up_to_date_electable_winner_ratio.map_or("n/a".into(), |r| format!("{r:.4}"));
        let rows: Vec<(&str, Column)> = vec![
            ("runs", Box::new(|r| r.runs.to_string())),
            ("violations", Box::new(|r| r.violations.to_string())),
            ("elections started", Box::new(|r| r.elections.to_string())),
            ("elections won", Box::new(|r| r.elections_won.to_string())),
            ("up_to_date_winner_ratio", Box::new(ratio)),
            ("  among electable", Box::new(electable_ratio)),
            ("not newest, avoidable", Box::new(|r| r.not_newest_avoidable.to_string())),
            ("failover_ms p50", Box::new(|r| r.failover_ms.p50.to_string())),
            ("failover_ms p99", Box::new(|r| r.failover_ms.p99.to_string())),
            ("failover_ms max", Box::new(|r| r.failover_ms.max.to_string())),
            ("failovers measured", Box::new(|r| r.failover_ms.count.to_string())),
            ("failovers without quorum", Box::new(|r| r.failovers_without_quorum.to_string())),
            ("single-fault failover p50", Box::new(|r| r.single_fault_failover_ms.p50.to_string())),
            ("single-fault failover p99", Box::new(|r| r.single_fault_failover_ms.p99.to_string())),
            ("single-fault failover max", Box::new(|r| r.single_fault_failover_ms.max.to_string())),
            ("single-fault failovers", Box::new(|r| r.single_fault_failover_ms.count.to_string())),
            ("process-crash failover p50", Box::new(|r| by_kind(r, "process", |p| p.p50))),
            ("process-crash failover p99", Box::new(|r| by_kind(r, "process", |p| p.p99))),
            ("process-crash failovers", Box::new(|r| by_kind(r, "process", |p| p.count))),
            ("host-crash failover p50", Box::new(|r| by_kind(r, "host", |p| p.p50))),
            ("host-crash failover p99", Box::new(|r| by_kind(r, "host", |p| p.p99))),
            ("host-crash failovers", Box::new(|r| by_kind(r, "host", |p| p.count))),
            ("disruptions", Box::new(|r| r.disruptions.to_string())),
            ("truncated_entries", Box::new(|r| r.truncated_entries.to_string())),
            ("term_gaps", Box::new(|r| r.term_gaps.to_string())),
            ("leaders_per_term_max", Box::new(|r| r.leaders_per_term_max.to_string())),
            ("committed_entries", Box::new(|r| r.committed_entries.to_string())),
            ("snapshots_taken", Box::new(|r| r.snapshots_taken.to_string())),
            ("installed_snapshots", Box::new(|r| r.installed_snapshots.to_string())),
        ];
        print!("{:<26}", "");
        for report in reports {
            print!("{:>14}", report.mode);
        }
        println!();
        for (name, value) in rows {
            print!("{name:<26}");
            for report in reports {
                print!("{:>14}", value(report));
            }
            println!();
        }
        for report in reports {
            println!("{}: not newest, by cause: {}", report.mode, misses_by_cause(report));
        }
        for report in reports {
            for violation in &report.violation_details {
                print_violation(&report.mode, report.nodes, &report.fault_set, violation);
            }
        }
    }
    if reports.iter().any(|report| report.violations > 0) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn print_summary(report: &SweepReport) {
    println!("{}", report.summary_line());
    let faults: Vec<String> = report.faults.0.iter().map(|(name, count)| format!("{name}={count}")).collect();
    println!("faults injected: {}", faults.join(" "));
    for (kind, failovers) in &report.failover_ms_by_crash_kind {
        println!(
            "{kind}-crash failover_ms p50={} p99={} max={} (n={})",
            failovers.p50, failovers.p99, failovers.max, failovers.count
        );
    }
    println!("not newest, by cause: {}", misses_by_cause(report));
    for violation in &report.violation_details {
        print_violation(&report.mode, report.nodes, &report.fault_set, violation);
    }
    if report.violations == 0 {
        println!("OK: no invariant broken in {} runs", report.runs);
    } else {
        println!("FAILED: {} of {} runs broke an invariant", report.violations, report.runs);
    }
}

/// `not_newest_by_cause` in one line: each cause that happened, and how many
/// of them a rule of ours could avoid (docs/decisions/0078).
fn misses_by_cause(report: &SweepReport) -> String {
    let causes: Vec<String> = report
        .not_newest_by_cause
        .iter()
        .filter(|(_, count)| **count > 0)
        .map(|(cause, count)| format!("{cause}={count}"))
        .collect();
    let causes = if causes.is_empty() { "none".to_string() } else { causes.join(" ") };
    format!("{causes} (avoidable: {})", report.not_newest_avoidable)
}

fn print_violation(mode: &str, nodes: usize, fault_set: &str, violation: &conclave_sim::Violation) {
    println!(
        "VIOLATION {} — seed {} step {} at {} ms: {}",
        violation.property, violation.seed, violation.step, violation.at_ms, violation.detail
    );
    println!(
        "  replay: conclave sim --mode {} --nodes {} --faults {} --seed {} --trace",
        mode, nodes, fault_set, violation.seed
    );
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

//! `conclave check`: the exhaustive bounded model check over the real core.

use std::process::ExitCode;

use clap::Args;
use conclave_core::ElectionMode;
use conclave_sim::model_check::{check, CheckOptions};

/// Options of `conclave check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Election mode to check.
    #[arg(long, default_value = "raft", value_parser = parse_mode)]
    mode: ElectionMode,
    /// Cluster size.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=5))]
    nodes: u64,
    /// Longest action sequence explored.
    #[arg(long, default_value_t = 8)]
    depth: usize,
    /// States whose highest term exceeds this are checked but not expanded.
    #[arg(long, default_value_t = 3)]
    max_term: u64,
    /// States with a log longer than this are checked but not expanded.
    #[arg(long, default_value_t = 4)]
    max_log: usize,
    /// Client commands per execution, at most.
    #[arg(long, default_value_t = 1)]
    proposals: u32,
    /// Crashes per execution, at most (a crashed node may restart).
    #[arg(long, default_value_t = 1)]
    crashes: u32,
    /// Leave out the drop action (never delivering a message has the same effect
    /// on the nodes, so this only merges network states).
    #[arg(long)]
    no_drop: bool,
    /// Let clocks only jump to timer deadlines (no 1 ms steps in between).
    #[arg(long)]
    no_advance: bool,
    /// Turn Raft's pre-vote off (shorter elections: the same depth reaches further).
    #[arg(long)]
    no_pre_vote: bool,
    /// Stop, incomplete, after this many distinct states (about 1 KB each).
    #[arg(long, default_value_t = 8_000_000)]
    max_states: usize,
    /// Stop, incomplete, after this many seconds.
    #[arg(long, default_value_t = 600.0)]
    max_seconds: f64,
    /// Print one JSON object instead of the readable summary.
    #[arg(long)]
    json: bool,
}

fn parse_mode(text: &str) -> Result<ElectionMode, String> {
    text.parse()
}

/// Runs the check; exit 1 on a violation, 2 if the check cannot run.
pub fn run(args: CheckArgs) -> ExitCode {
    let mut options = CheckOptions::new(args.mode, args.nodes as usize, args.depth);
    options.max_term = args.max_term;
    options.max_log_length = args.max_log;
    options.max_proposals = args.proposals;
    options.max_crashes = args.crashes;
    options.drop_action = !args.no_drop;
    options.advance_action = !args.no_advance;
    options.pre_vote = !args.no_pre_vote;
    options.max_states = args.max_states;
    options.max_seconds = args.max_seconds;
    let report = match check(options) {
        Ok(report) => report,
        Err(problem) => {
            eprintln!("conclave check: {problem}");
            return ExitCode::from(2);
        }
    };
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    if report.violations() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

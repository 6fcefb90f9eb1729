//! `conclave check`: the exhaustive bounded model check over the real core.

use std::process::ExitCode;

use clap::Args;
use conclave_core::ElectionMode;
use conclave_sim::model_check::{check, CheckOptions};
use conclave_sim::seed_rules::{self, Bounds, Property, SeedVariant};
use serde_json::json;

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
    /// Leader transfers asked of a serving leader per execution, at most
    /// (docs/decisions/0099).
    #[arg(long, default_value_t = 0)]
    transfers: u32,
    /// Nodes besides `--nodes` that start empty and wait to be added
    /// (docs/design/membership.md).
    #[arg(long, default_value_t = 0)]
    joiners: u8,
    /// Membership changes a serving leader proposes per execution, at most
    /// (add a joiner as a learner, promote a learner, remove a member).
    #[arg(long, default_value_t = 0)]
    membership_changes: u32,
    /// Timer firings per execution (all nodes together; a refused redial acted
    /// on counts as one), at most; unbounded if left out.
    #[arg(long)]
    max_timers: Option<u32>,
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
    /// Only a leader may crash.
    #[arg(long)]
    crash_leaders_only: bool,
    /// A crashed node stays down (crash-stop): no restart action.
    #[arg(long)]
    no_restart: bool,
    /// Leave the transport's evidence out of the environment. By default, while
    /// a node is down, each live node may be told once per crash that its
    /// process is gone (a refused redial), at any moment.
    #[arg(long)]
    no_process_gone: bool,
    /// Leaders persist before sending their appends (the library default)
    /// instead of in parallel, as the server runs (docs/decisions/0068).
    #[arg(long)]
    no_parallel_persist: bool,
    /// Cold start (fast, conclave): every node starts on an empty disk with this
    /// node named `initial_leader`, which leads the first term once every member
    /// confirms (docs/design/cold-start.md). Shortens the first election to two deliveries.
    #[arg(long)]
    initial_leader: Option<u64>,
    /// Stop, incomplete, after this many distinct states (about 1 KB each).
    #[arg(long, default_value_t = 8_000_000)]
    max_states: usize,
    /// Stop, incomplete, after this many seconds.
    #[arg(long, default_value_t = 600.0)]
    max_seconds: f64,
    /// Print one JSON object instead of the readable summary.
    #[arg(long)]
    json: bool,
    /// Check the seed document's leader-term rules instead of the shipped core,
    /// in the abstract model of `seed_rules` (docs/design/leader-terms.md): `seed` (exactly as
    /// written), `seed-committed` (last leader term from committed entries), or
    /// `repaired` (the rules the core runs, in the same abstract model). The seed
    /// variants are expected to be violated: exit 1 and the shortest traces.
    #[arg(long, value_parser = parse_variant)]
    variant: Option<SeedVariant>,
}

fn parse_variant(text: &str) -> Result<SeedVariant, String> {
    match text {
        "seed" => Ok(SeedVariant::AsWritten),
        "seed-committed" => Ok(SeedVariant::CommittedLastLeaderTerm),
        "repaired" => Ok(SeedVariant::Repaired),
        other => Err(format!("unknown variant `{other}` (known: seed, seed-committed, repaired)")),
    }
}

fn variant_name(variant: SeedVariant) -> &'static str {
    match variant {
        SeedVariant::AsWritten => "seed",
        SeedVariant::CommittedLastLeaderTerm => "seed-committed",
        SeedVariant::Repaired => "repaired",
    }
}

/// `--variant`: each property searched on its own, so each violated one gets its
/// own shortest trace (a search stops at its first violation).
fn run_variant(variant: SeedVariant, args: &CheckArgs) -> ExitCode {
    let bounds = Bounds { max_depth: args.depth.max(1), ..Bounds::default() };
    let mut properties = serde_json::Map::new();
    let mut traces = serde_json::Map::new();
    let (mut states, mut depth, mut complete, mut violations) = (0, 0, true, 0);
    for property in Property::ALL {
        let result = seed_rules::check_properties(variant, bounds, &[property]);
        states += result.states;
        depth = depth.max(result.depth_reached);
        complete &= result.complete;
        let verdict = match &result.violation {
            Some((_, trace)) => {
                violations += 1;
                traces.insert(property.name().into(), json!(trace));
                "violated"
            }
            None => "holds",
        };
        properties.insert(property.name().into(), json!(verdict));
    }
    let report = json!({
        "mode": "gapless",
        "variant": variant_name(variant),
        "states": states,
        "depth": depth,
        "complete": complete,
        "violations": violations,
        "properties": properties,
        "traces": traces,
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "seed rules, variant {}: {states} states to depth {depth}, {}",
            variant_name(variant),
            if complete { "complete" } else { "bounded by depth" }
        );
        for (name, verdict) in &properties {
            println!("  {name:<22} {}", verdict.as_str().unwrap_or_default());
        }
        for (name, trace) in &traces {
            let steps = trace.as_array().map_or(0, Vec::len);
            println!("\n{name} violated in {steps} steps:");
            for line in trace.as_array().into_iter().flatten() {
                println!("  {}", line.as_str().unwrap_or_default());
            }
        }
    }
    if violations > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn parse_mode(text: &str) -> Result<ElectionMode, String> {
    text.parse()
}

/// Runs the check; exit 1 on a violation, 2 if the check cannot run.
pub fn run(args: CheckArgs) -> ExitCode {
    if let Some(variant) = args.variant {
        return run_variant(variant, &args);
    }
    let mut options = CheckOptions::new(args.mode, args.nodes as usize, args.depth);
    options.max_term = args.max_term;
    options.max_log_length = args.max_log;
    options.max_proposals = args.proposals;
    options.max_transfers = args.transfers;
    options.joiners = args.joiners as usize;
    options.max_membership_changes = args.membership_changes;
    options.max_crashes = args.crashes;
    options.max_timers = args.max_timers;
    options.drop_action = !args.no_drop;
    options.advance_action = !args.no_advance;
    options.pre_vote = !args.no_pre_vote;
    options.initial_leader = args.initial_leader;
    options.crash_leaders_only = args.crash_leaders_only;
    options.restart = !args.no_restart;
    options.process_gone_action = !args.no_process_gone;
    options.parallel_persist = !args.no_parallel_persist;
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

//! `conclave demo`: a 5-node cluster of real `conclave serve` processes under a
//! write load; the leader is killed (SIGKILL, or SIGSTOP with `--kill host`)
//! several times, each failover narrated from the nodes' own `/events`, naming
//! the detector that fired. Before each kill three followers fall behind by
//! different amounts (their links from the leader held in turn), so the
//! survivors' data versions differ. At the end every acknowledged write is read
//! back. The same scenario then runs on a `raft`-mode cluster for comparison
//! (`--compare raft`, the default). Prints a summary table (or `--json`) and
//! writes an HTML report with one SVG timeline per failover.

mod chart;
pub(crate) mod client;
pub(crate) mod cluster;
pub(crate) mod failover;
mod lag;
mod links;
mod load;
mod report;
mod timeline;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use conclave_server::config::Timing;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use client::{Reply, RespClient};
use cluster::DemoCluster;
pub use failover::KillKind;
use failover::SceneOptions;
use load::{Acknowledged, Load};
use report::DemoResult;

/// Nodes in the demo's cluster.
const NODES: u64 = 5;

/// Flags of `conclave demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Leader kills to perform.
    #[arg(long, default_value_t = 3)]
    pub failovers: usize,
    /// Heartbeat interval and timeout in milliseconds (default: the shipped
    /// defaults); the election timeout is the miss limit times this.
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// Where configs, data, logs and the report go (default: a new directory
    /// under the system's temporary directory, kept afterwards).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Print one JSON object instead of the narration and the table.
    #[arg(long)]
    pub json: bool,
    /// Skip the stale-leader scene (the last restart with an emptied data dir).
    #[arg(long)]
    pub no_stale_leader: bool,
    /// How the leader is taken down: `process` (SIGKILL: its connections are
    /// reset and redials refused, so the survivors know at once) or `host`
    /// (SIGSTOP: its sockets stay open and silent, as when a host hangs or
    /// loses power, so only the counted misses tell; resumed afterwards).
    #[arg(long, value_enum, default_value_t = KillKind::Process)]
    pub kill: KillKind,
    /// Run the nodes with `timing.fast_detection = false`: a refused redial is
    /// no evidence, only the counted misses detect (for comparison).
    #[arg(long)]
    pub no_fast_detection: bool,
    /// Run the same scenario on a cluster of this election mode afterwards and
    /// print both side by side (`none`: no comparison).
    #[arg(long, value_enum, default_value_t = Compare::Raft)]
    pub compare: Compare,
    /// Let no follower fall behind before a kill (every survivor then holds
    /// about the same data).
    #[arg(long)]
    pub no_lag: bool,
}

/// The cluster the demo compares against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Compare {
    /// A `raft`-mode cluster: Raft's randomized election timeouts.
    Raft,
    /// No comparison.
    None,
}

/// Why the demo could not run to the end.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Configs or the report could not be written.
    #[error("cannot prepare {path}: {source}")]
    Prepare {
        /// The directory or file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A node could not be started, killed or restarted.
    #[error("cannot start, kill or restart node {node}: {source}")]
    Process {
        /// The node.
        node: u64,
        /// The error.
        source: std::io::Error,
    },
    /// The cluster did not reach an expected state in time.
    #[error("waited {timeout_ms} ms for {what}; the node logs in the data dir say why")]
    TimedOut {
        /// What was awaited.
        what: String,
        /// The deadline.
        timeout_ms: u64,
    },
}

/// Runs `conclave demo`.
pub fn run(args: DemoArgs) -> ExitCode {
    let dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("conclave-demo-{}", std::process::id())));
    let outcome = run_in(&args, dir.join("conclave"), None).and_then(|mut result| {
        if args.compare == Compare::Raft {
            // The same scenario (no stale-leader scene: `raft` has no cold start).
            let raft = run_in(&args, dir.join("raft"), Some("raft"))?;
            result.comparison = Some(Box::new(raft));
        }
        Ok(result)
    });
    match outcome {
        Ok(result) => {
            let report = dir.join("report.html");
            if let Err(error) = std::fs::write(&report, result.html()) {
                eprintln!("conclave demo: cannot write {}: {error}", report.display());
                return ExitCode::FAILURE;
            }
            if args.json {
                let mut object = result.to_json();
                object["report"] = serde_json::Value::String(report.display().to_string());
                println!("{object}");
            } else {
                println!("\n{}", result.summary_table());
                if let Some(table) = result.comparison_table() {
                    println!("{table}");
                }
                println!("report: {}", report.display());
            }
            // Raft's own figures are shown, not judged: its winner need not
            // hold the newest data, and its terms may skip. Lost writes count
            // in both.
            let lost = !result.lost_writes.is_empty()
                || result.comparison.as_ref().is_some_and(|raft| !raft.lost_writes.is_empty());
            let failed = lost || !result.elections_correct();
            if failed {
                eprintln!("conclave demo: FAILED: lost writes or an election that did not pick the newest data");
            }
            if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(error) => {
            eprintln!("conclave demo: {error} (data in {})", dir.display());
            ExitCode::FAILURE
        }
    }
}

/// One run of the scenario, in election mode `mode` (the shipped default if `None`).
fn run_in(args: &DemoArgs, dir: PathBuf, mode: Option<&str>) -> Result<DemoResult, DemoError> {
    let mode_name = mode.unwrap_or(conclave_core::ElectionMode::default().name()).to_string();
    let mut timing = Timing::default();
    if let Some(heartbeat_ms) = args.heartbeat_ms {
        timing.heartbeat_interval_ms = heartbeat_ms;
        timing.heartbeat_timeout_ms = heartbeat_ms;
    }
    timing.fast_detection = !args.no_fast_detection;
    let election_timeout_ms = timing.heartbeat_timeout_ms * u64::from(timing.miss_limit);
    let vote_lease_ms = timing.vote_lease_ms.unwrap_or(election_timeout_ms * 4 / 5);
    let fast_detection = timing.fast_detection;
    let request_timeout = Duration::from_millis(timing.request_timeout_ms);
    let progress = if args.json { ProgressBar::hidden() } else { ProgressBar::new_spinner() };
    if !args.json {
        progress.set_draw_target(ProgressDrawTarget::stderr());
        progress.set_style(ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("a valid template"));
        progress.enable_steady_tick(Duration::from_millis(100));
    }
    let quiet = args.json;
    let mut narrate = |line: String| {
        if !quiet {
            progress.suspend(|| println!("{line}"));
        }
    };
    narrate(format!(
        "starting {NODES} nodes in `{mode_name}` mode in {} (heartbeat {} ms, election timeout {election_timeout_ms} ms, fast detection {})",
        dir.display(),
        timing.heartbeat_interval_ms,
        if fast_detection { "on" } else { "off" }
    ));
    narrate(format!(
        "each kill ({}) comes at least the vote lease ({vote_lease_ms} ms) after the last election: a voter \
         binds no other vote sooner (docs/design/leader-terms.md)",
        match args.kill {
            KillKind::Process => "SIGKILL",
            KillKind::Host => "SIGSTOP",
        }
    ));
    let heartbeat_ms = timing.heartbeat_interval_ms;
    let mut cluster = DemoCluster::start_with(&dir, NODES, timing, mode.map(str::to_string), !args.no_lag)
        .map_err(|source| DemoError::Prepare { path: dir.clone(), source })?;
    let leader = failover::wait_for_stable_leader(&cluster)?;
    let terms = match leader.leader_term {
        Some(leader_term) => format!("leader term {leader_term}"),
        None => format!("term {}", leader.term),
    };
    narrate(format!("node {} leads ({terms}); starting the write load", leader.id));
    let addresses: Vec<_> = cluster.members.iter().map(|member| member.client_address).collect();
    // Two writers per node: a writer whose write waits on the dead leader does
    // not hold up the measurement of the first new write.
    let load = Load::start(addresses.iter().chain(&addresses).copied().collect(), request_timeout);
    let mut failovers: Vec<failover::FailoverRecord> = Vec::new();
    for number in 1..=args.failovers {
        progress.set_message(format!(
            "failover {number}/{}: {} writes acknowledged",
            args.failovers,
            load.ledger.count()
        ));
        let options = SceneOptions {
            kill: args.kill,
            stale_leader: number == args.failovers && !args.no_stale_leader && mode.is_none(),
            lag: !args.no_lag,
            heartbeat: Duration::from_millis(heartbeat_ms),
            // Past the vote leases of the last election, and one heartbeat more.
            not_before: failovers
                .last()
                .map(|last| last.leases_from + Duration::from_millis(vote_lease_ms + heartbeat_ms)),
        };
        failovers.push(failover::run(&mut cluster, &load.ledger, number, options, &mut narrate)?);
    }
    progress.set_message("reading back every acknowledged write");
    let ledger = load.stop();
    let acknowledged: Vec<Acknowledged> =
        ledger.acknowledged.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let failed_writes = *ledger.failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let lost_writes = read_back(&cluster, &acknowledged, request_timeout)?;
    progress.finish_and_clear();
    cluster.stop();
    Ok(DemoResult {
        mode: mode_name,
        comparison: None,
        failovers,
        acknowledged_writes: acknowledged.len(),
        failed_writes,
        lost_writes,
        heartbeat_ms,
        election_timeout_ms,
        kill: args.kill,
        fast_detection,
    })
}

/// Reads every acknowledged key (linearizable GETs, pipelined) and returns the
/// keys that are missing or hold another value.
fn read_back(
    cluster: &DemoCluster,
    acknowledged: &[Acknowledged],
    request_timeout: Duration,
) -> Result<Vec<String>, DemoError> {
    let leader = failover::wait_for_stable_leader(cluster)?;
    let address = cluster.member(leader.id).client_address;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lost = Vec::new();
    for batch in acknowledged.chunks(256) {
        let commands: Vec<Vec<String>> = batch.iter().map(|write| vec!["GET".to_string(), write.key.clone()]).collect();
        let replies = loop {
            let attempt = RespClient::connect(address, request_timeout + Duration::from_secs(1))
                .and_then(|mut client| client.pipeline(&commands));
            match attempt {
                // An error reply (a retry hint) reads the batch again.
                Ok(replies) if !replies.iter().any(|reply| matches!(reply, Reply::Error(_))) => break replies,
                _ if Instant::now() < deadline => continue,
                _ => return Err(DemoError::TimedOut { what: "reading back the writes".into(), timeout_ms: 30_000 }),
            }
        };
        for (write, reply) in batch.iter().zip(replies) {
            if reply != Reply::Bulk(Some(write.value.clone().into_bytes())) {
                lost.push(write.key.clone());
            }
        }
    }
    Ok(lost)
}

//! `conclave bench`: write throughput and latency of a local cluster of real
//! `conclave serve` processes (started by the demo's launcher, fsync on as
//! always). For each client count: that many concurrent RESP clients, one tokio
//! task and one TCP connection each with one request in flight, a short
//! warm-up, then `SET`s of distinct keys; afterwards a sample of the written
//! keys is read back with `GET` and compared with the values sent.

mod load;
mod report;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use conclave_server::config::{Limits, Timing};

use crate::demo::client::{Reply, RespClient};
use crate::demo::cluster::DemoCluster;
use crate::demo::failover::wait_for_stable_leader;
use load::Stop;
use report::{BenchReport, RunFigures};

/// Most concurrent clients of one run.
const MAX_CLIENTS: usize = 5000;
/// Longest `--duration-secs`.
const MAX_DURATION_SECS: u64 = 3600;
/// Written keys read back after each run.
const VERIFY_SAMPLE: usize = 100;
/// Longest wait for the cluster to accept a first write.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Which node the clients send to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// The leader's client port.
    Leader,
    /// Every node's client port in turn (followers forward to the leader).
    Any,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Leader => "leader",
            Target::Any => "any",
        }
    }
}

/// Flags of `conclave bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Client counts, one run each, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,256")]
    pub clients: Vec<usize>,
    /// Measured requests per run, shared by its clients (default 10000).
    #[arg(long, conflicts_with = "duration_secs")]
    pub requests: Option<u64>,
    /// Measure each run for this many seconds instead of a number of requests.
    #[arg(long)]
    pub duration_secs: Option<u64>,
    /// Bytes per value.
    #[arg(long, default_value_t = 128)]
    pub value_bytes: usize,
    /// Where configs, data and logs go (a new or empty directory, kept
    /// afterwards); without it, a new directory under the system's temporary
    /// directory, removed after a successful bench.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Send to the leader, or to every node in turn.
    #[arg(long, value_enum, default_value_t = Target::Leader)]
    pub target: Target,
}

/// Checks the flags; the message says which is wrong and why.
fn validate(args: &BenchArgs) -> Result<Stop, String> {
    if args.nodes == 0 || args.nodes > 99 {
        return Err("--nodes must be between 1 and 99".into());
    }
    if args.clients.is_empty() {
        return Err("--clients needs at least one client count".into());
    }
    if let Some(bad) = args.clients.iter().find(|&&clients| clients == 0 || clients > MAX_CLIENTS) {
        return Err(format!("--clients: {bad} is not between 1 and {MAX_CLIENTS}"));
    }
    let max_value = Limits::default().max_bulk_bytes;
    if args.value_bytes > max_value {
        return Err(format!(
            "--value-bytes: {} is above the server's bulk limit of {max_value} bytes",
            args.value_bytes
        ));
    }
    match (args.requests, args.duration_secs) {
        (Some(0), _) => Err("--requests must be at least 1".into()),
        (_, Some(seconds)) if seconds == 0 || seconds > MAX_DURATION_SECS => {
            Err(format!("--duration-secs must be between 1 and {MAX_DURATION_SECS}"))
        }
        (_, Some(seconds)) => Ok(Stop::After(Duration::from_secs(seconds))),
        (requests, None) => Ok(Stop::Requests(requests.unwrap_or(10_000))),
    }
}

/// Creates the data dir; `true` with it if it must be removed afterwards.
fn prepare_dir(args: &BenchArgs) -> Result<(PathBuf, bool), String> {
    let (dir, temporary) = match &args.data_dir {
        Some(dir) => (dir.clone(), false),
        None => (std::env::temp_dir().join(format!("conclave-bench-{}", std::process::id())), true),
    };
    // An old cluster's data would be restored and mixed into the figures.
    match std::fs::read_dir(&dir).map(|mut entries| entries.next().is_some()) {
        Ok(true) => return Err(format!("--data-dir {} is not empty; give a new or empty directory", dir.display())),
        Ok(false) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(format!("cannot read {}: {error}", dir.display())),
    }
    std::fs::create_dir_all(&dir).map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    Ok((dir, temporary))
}

/// Runs `conclave bench`.
pub fn run(args: BenchArgs) -> ExitCode {
    let stop = match validate(&args) {
        Ok(stop) => stop,
        Err(message) => {
            eprintln!("conclave bench: {message}");
            return ExitCode::from(2);
        }
    };
    let (dir, temporary) = match prepare_dir(&args) {
        Ok(prepared) => prepared,
        Err(message) => {
            eprintln!("conclave bench: {message}");
            return ExitCode::from(2);
        }
    };
    let outcome = bench(&args, stop, &dir);
    let failed = match &outcome {
        Ok(report) => {
            if args.json {
                println!("{}", report.to_json_line());
            } else {
                print!("{}", report.table());
            }
            let failures = report.failures();
            for failure in &failures {
                eprintln!("conclave bench: {failure}");
            }
            !failures.is_empty()
        }
        Err(message) => {
            eprintln!("conclave bench: {message}");
            true
        }
    };
    if failed {
        eprintln!("conclave bench: FAILED; configs and node logs are in {}", dir.display());
        return ExitCode::FAILURE;
    }
    if temporary {
        if let Err(error) = std::fs::remove_dir_all(&dir) {
            eprintln!("conclave bench: cannot remove {}: {error}", dir.display());
        }
    }
    ExitCode::SUCCESS
}

/// Starts the cluster, runs every client count, reads back, stops the cluster.
fn bench(args: &BenchArgs, stop: Stop, dir: &Path) -> Result<BenchReport, String> {
    let say = |line: String| {
        if !args.json {
            eprintln!("{line}");
        }
    };
    say(format!("starting {} nodes in {}", args.nodes, dir.display()));
    let timing = Timing::default();
    let request_timeout = Duration::from_millis(timing.request_timeout_ms);
    let mut cluster = DemoCluster::start(dir, args.nodes, timing)
        .map_err(|error| format!("cannot start the cluster in {}: {error}", dir.display()))?;
    let leader = wait_for_stable_leader(&cluster).map_err(|error| error.to_string())?.id;
    let leader_address = cluster.member(leader).client_address;
    let targets: Vec<SocketAddr> = match args.target {
        Target::Leader => vec![leader_address],
        Target::Any => cluster.members.iter().map(|member| member.client_address).collect(),
    };
    for &target in &targets {
        wait_until_writable(target, request_timeout)?;
    }
    say(format!("node {leader} leads and serves"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))?;
    let mut runs = Vec::new();
    for (run, &clients) in args.clients.iter().enumerate() {
        say(format!("run {}: {clients} client{}", run + 1, if clients == 1 { "" } else { "s" }));
        let addresses = (0..clients).map(|client| targets[client % targets.len()]).collect();
        let before = ElectionMark::of(&cluster);
        let result = runtime.block_on(load::run(run, addresses, stop, args.value_bytes));
        let elections = ElectionMark::of(&cluster).since(before);
        if elections.leader_changes > 0 {
            say(format!(
                "run {}: the leader changed {} times with no fault injected",
                run + 1,
                elections.leader_changes
            ));
        }
        let verified = read_back(leader_address, run, &result.written, args.value_bytes, request_timeout)?;
        runs.push(RunFigures::of(&result, verified, elections));
    }
    cluster.stop();
    Ok(BenchReport {
        nodes: args.nodes,
        fsync: true,
        value_bytes: args.value_bytes,
        target: args.target.name(),
        leader,
        runs,
    })
}

/// Where the cluster's elections stand, from every live node's `/status`: the
/// highest ballot and the highest committed leader term any of them reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ElectionMark {
    ballot: u64,
    leader_term: u64,
}

impl ElectionMark {
    fn of(cluster: &DemoCluster) -> ElectionMark {
        cluster.live().into_iter().filter_map(|id| cluster.view(id)).fold(ElectionMark::default(), |mark, view| {
            ElectionMark {
                ballot: mark.ballot.max(view.term),
                leader_term: mark.leader_term.max(view.leader_term.unwrap_or(0)),
            }
        })
    }

    /// The elections between `before` and this mark. Ballots and leader terms
    /// only grow, so a leader lost and regained between two looks still counts.
    fn since(self, before: ElectionMark) -> report::Elections {
        let ballots = self.ballot.saturating_sub(before.ballot);
        // Modes with leader terms count leaders by them (a ballot may bind
        // without a new leader); the others have one leader per term at most.
        let leader_changes =
            if self.leader_term > 0 { self.leader_term.saturating_sub(before.leader_term) } else { ballots };
        report::Elections { ballots, leader_changes }
    }
}

/// Retries one `SET` until the node acknowledges it (its leader serves).
fn wait_until_writable(address: SocketAddr, request_timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last = String::new();
    while Instant::now() < deadline {
        let reply = RespClient::connect(address, request_timeout + Duration::from_secs(1))
            .and_then(|mut client| client.command(&["SET", "bench-probe", "ready"]));
        match reply {
            Ok(Reply::Simple(ok)) if ok == "OK" => return Ok(()),
            other => last = format!("{other:?}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("{address} did not acknowledge a write within {} s (last answer: {last})", READY_TIMEOUT.as_secs()))
}

/// Up to `count` of `written`, spread evenly, the last one included.
fn sample(written: &[u64], count: usize) -> Vec<u64> {
    if written.len() <= count {
        return written.to_vec();
    }
    (0..count).map(|position| written[(position * (written.len() - 1)) / (count - 1)]).collect()
}

/// Reads a sample of run `run`'s acknowledged keys from the leader
/// (linearizable `GET`s); any missing or different value is an error.
fn read_back(
    leader: SocketAddr,
    run: usize,
    written: &[u64],
    value_bytes: usize,
    request_timeout: Duration,
) -> Result<usize, String> {
    let indexes = sample(written, VERIFY_SAMPLE);
    if indexes.is_empty() {
        return Ok(0);
    }
    let commands: Vec<Vec<String>> = indexes.iter().map(|&index| vec!["GET".into(), load::key(run, index)]).collect();
    let replies = RespClient::connect(leader, request_timeout + Duration::from_secs(1))
        .and_then(|mut client| client.pipeline(&commands))
        .map_err(|error| format!("reading back the written keys from {leader}: {error}"))?;
    for (&index, reply) in indexes.iter().zip(replies) {
        if reply != Reply::Bulk(Some(load::value(index, value_bytes))) {
            return Err(format!(
                "key {} was acknowledged but reads back as {reply:?}, not the value written",
                load::key(run, index)
            ));
        }
    }
    Ok(indexes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_spreads_over_every_write() {
        let written: Vec<u64> = (0..1000).collect();
        let picked = sample(&written, 100);
        assert_eq!(picked.len(), 100);
        assert_eq!((picked[0], picked[99]), (0, 999));
        assert!(picked.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(sample(&written[..5], 100), vec![0, 1, 2, 3, 4]);
    }
}

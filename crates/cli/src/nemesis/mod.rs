//! `conclave nemesis`: a local cluster of real `conclave serve` processes,
//! clients doing GET/SET/DEL/CAS on a few keys, faults injected (kill,
//! restart, pause, partition, wipe, and disk in a test build), everything healed, every key read back,
//! and the recorded history checked for linearizability
//! ([`conclave_lincheck`]). Exit 0: linearizable; 1: not; 2: unknown, or the
//! run could not be made.

mod cluster;
mod faults;
mod proxy;
mod verdict;
mod workers;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use conclave_lincheck::history::{self, Event};
use conclave_lincheck::Limits;
use conclave_server::config::Timing;
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use cluster::Cluster;
use faults::{FaultKind, FaultList, Partition};
use workers::{Load, Outcome, Recorder, Request};

/// Which node a fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// The leader (a random node while none is known).
    Leader,
    /// Any node.
    Any,
    /// The leader or any node, half the time each.
    Mix,
}

/// Flags of `conclave nemesis`.
#[derive(Debug, Args)]
pub struct NemesisArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 5)]
    pub nodes: u64,
    /// Seconds of load and faults (then everything heals and the keys are read back).
    #[arg(long, default_value_t = 60)]
    pub time: u64,
    /// Faults to inject, comma-separated: kill, restart, pause, partition, wipe, disk; `all`; `none`.
    /// `disk` needs a build with the test-only feature `disk-faults`; `all`
    /// leaves it out of a build without it.
    #[arg(long, default_value = "kill,pause,partition")]
    pub faults: FaultList,
    /// Which node a node fault hits.
    #[arg(long, value_enum, default_value_t = Target::Mix)]
    pub target: Target,
    /// Client workers (each with its own connection, one request in flight).
    #[arg(long, default_value_t = 10)]
    pub workers: u64,
    /// Keys the workers share.
    #[arg(long, default_value_t = 4)]
    pub keys: usize,
    /// Per-operation timeout in milliseconds (an operation past it is indeterminate).
    #[arg(long, default_value_t = 2_000)]
    pub op_timeout_ms: u64,
    /// Milliseconds of calm between two faults.
    #[arg(long, default_value_t = 2_000)]
    pub interval_ms: u64,
    /// Milliseconds each fault lasts before it is healed.
    #[arg(long, default_value_t = 3_000)]
    pub fault_ms: u64,
    /// Seed of the schedule and of the clients' choices (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write the history here, as JSON lines (format in the README).
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// Where configs, data dirs and logs go (default: a new directory under the
    /// system's temporary directory, kept afterwards).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Longest the checker may search, in seconds, before it answers unknown.
    #[arg(long, default_value_t = 120)]
    pub check_time: u64,
    /// Do not run a cluster: check the history in this file (JSON lines) and
    /// print the verdict.
    #[arg(long, value_name = "PATH")]
    pub check_only: Option<PathBuf>,
    /// The nodes' state machine engine: `redb`, `fjall` or `memory`
    /// (default: the config's default).
    #[arg(long, value_parser = crate::local_command::parse_engine)]
    pub engine: Option<conclave_server::config::EngineKind>,
}

/// Runs `conclave nemesis`.
pub fn run(args: NemesisArgs) -> ExitCode {
    let limits = Limits { steps: 20_000_000, time: Duration::from_secs(args.check_time) };
    if let Some(path) = &args.check_only {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) => {
                eprintln!("conclave nemesis: cannot read {}: {error}", path.display());
                return ExitCode::from(2);
            }
        };
        let events = match history::parse_json_lines(&text) {
            Ok(events) => events,
            Err(error) => {
                eprintln!("conclave nemesis: {}: {error}", path.display());
                return ExitCode::from(2);
            }
        };
        return verdict::check_and_print(&events, None, &limits);
    }
    if !(1..=50).contains(&args.nodes) || args.workers == 0 || args.keys == 0 || args.time == 0 {
        eprintln!("conclave nemesis: --nodes must be 1 to 50; --workers, --keys and --time at least 1");
        return ExitCode::from(2);
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos() as u64)
    });
    let dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("conclave-nemesis-{}", std::process::id())));
    let interrupted = Arc::new(AtomicBool::new(false));
    watch_for_signals(interrupted.clone());
    let faults: Vec<&str> = args.faults.0.iter().map(|kind| kind.name()).collect();
    println!(
        "conclave nemesis: {} nodes, {} s, faults {}, target {}, {} workers, {} keys, seed {seed}",
        args.nodes,
        args.time,
        if faults.is_empty() { "none".to_string() } else { faults.join(",") },
        // As `--target` spells it.
        clap::ValueEnum::to_possible_value(&args.target).map_or_else(String::new, |value| value.get_name().to_string()),
        args.workers,
        args.keys
    );
    println!("data, configs and logs in {}", dir.display());
    let recorded = match run_cluster(&args, &dir, seed, &interrupted) {
        Ok(recorded) => recorded,
        Err(error) => {
            eprintln!("conclave nemesis: {error} (data in {})", dir.display());
            return ExitCode::from(2);
        }
    };
    if let Some(path) = &args.history {
        let text: String = recorded.events.iter().map(|event| event.to_json_line() + "\n").collect();
        if let Err(error) = std::fs::write(path, text) {
            eprintln!("conclave nemesis: cannot write {}: {error}", path.display());
            return ExitCode::from(2);
        }
        println!("history: {} ({} events)", path.display(), recorded.events.len());
    }
    if interrupted.load(Ordering::SeqCst) {
        println!("interrupted: every fault healed, every node stopped; checking what was recorded");
    }
    verdict::check_and_print(&recorded.events, Some(&recorded), &limits)
}

/// Ctrl-C or SIGTERM sets `interrupted`; the run then heals everything and stops.
fn watch_for_signals(interrupted: Arc<AtomicBool>) {
    let _ = std::thread::Builder::new().name("signals".into()).spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        runtime.block_on(async {
            crate::serve_command::shutdown_signal().await;
        });
        interrupted.store(true, Ordering::SeqCst);
    });
}

/// What a run recorded: the history, and how long the load ran.
pub struct Recorded {
    /// The history.
    pub events: Vec<Event>,
    /// Seconds of load.
    pub load_seconds: f64,
}

fn run_cluster(
    args: &NemesisArgs,
    dir: &std::path::Path,
    seed: u64,
    interrupted: &AtomicBool,
) -> std::io::Result<Recorded> {
    let timing = Timing {
        // The server answers TRYAGAIN before the client gives up, so most
        // failures are definite ("did not take effect") rather than unknown.
        request_timeout_ms: args.op_timeout_ms * 3 / 4,
        leader_wait_ms: args.op_timeout_ms / 2,
        ..Timing::default()
    };
    let mut cluster = Cluster::start(dir, args.nodes, timing, args.engine)?;
    let ready = Instant::now() + Duration::from_secs(30);
    while cluster.leader().is_none() {
        if Instant::now() > ready || interrupted.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("no leader was elected within 30 s"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let recorder = Recorder::new();
    let stop = Arc::new(AtomicBool::new(false));
    let load = Arc::new(Load {
        nodes: cluster.members.iter().map(|member| member.client_address).collect(),
        keys: (1..=args.keys).map(|key| format!("k{key}")).collect(),
        timeout: Duration::from_millis(args.op_timeout_ms),
        stop: stop.clone(),
        next_value: Arc::new(AtomicU64::new(1)),
        recorder: recorder.clone(),
    });
    let handles: Vec<_> = (0..args.workers)
        .map(|process| {
            let load = load.clone();
            std::thread::Builder::new()
                .name(format!("worker {process}"))
                .spawn(move || workers::worker(&load, process, seed))
        })
        .collect::<Result<_, _>>()?;

    let progress = ProgressBar::new(args.time);
    progress.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} s  {msg}").expect("a valid template").progress_chars("=> "),
    );
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.time);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let nemesis = Nemesis;
    let mut status = String::from("calm");
    let tick = |status: &str| {
        let (ok, fail, info) = recorder.counts();
        progress.set_position(started.elapsed().as_secs().min(args.time));
        progress.set_message(format!("ok {ok} fail {fail} info {info} | {status}"));
    };
    let wait = |until: Instant, status: &str| {
        while Instant::now() < until && !interrupted.load(Ordering::SeqCst) {
            tick(status);
            std::thread::sleep(Duration::from_millis(100).min(until.saturating_duration_since(Instant::now())));
        }
    };
    let outcome = (|| -> std::io::Result<()> {
        let over = || Instant::now() >= deadline || interrupted.load(Ordering::SeqCst);
        while !over() {
            wait((Instant::now() + Duration::from_millis(args.interval_ms)).min(deadline), &status);
            if over() {
                break;
            }
            // With no faults, the load just runs to the deadline.
            let Some(&kind) = args.faults.0.choose(&mut rng) else { continue };
            let description = nemesis.inject(&mut cluster, kind, args.target, &recorder, &mut rng)?;
            status = format!("{kind}: {description}");
            progress.suspend(|| println!("{:>7.1} s  {kind} {description}", started.elapsed().as_secs_f64()));
            wait((Instant::now() + Duration::from_millis(args.fault_ms)).min(deadline.max(Instant::now())), &status);
            let healed = nemesis.heal(&mut cluster, kind, &description, &recorder)?;
            if kind == FaultKind::Disk {
                progress.suspend(|| println!("{:>7.1} s  heal {healed}", started.elapsed().as_secs_f64()));
            }
            status = "calm".into();
        }
        Ok(())
    })();
    // Whatever happened, heal everything before anything else.
    let healed = cluster.heal();
    stop.store(true, Ordering::SeqCst);
    for handle in handles {
        let _ = handle.join();
    }
    let load_seconds = started.elapsed().as_secs_f64();
    progress.finish_and_clear();
    outcome?;
    healed?;
    if !interrupted.load(Ordering::SeqCst) {
        read_back(&cluster, &load, args.workers, interrupted)?;
    }
    cluster.shutdown();
    Ok(Recorded { events: recorder.events(), load_seconds })
}

/// Injects and heals faults; every one goes into the history, so the
/// figures are computed from the history alone.
struct Nemesis;

impl Nemesis {
    fn inject(
        &self,
        cluster: &mut Cluster,
        kind: FaultKind,
        target: Target,
        recorder: &Recorder,
        rng: &mut ChaCha8Rng,
    ) -> std::io::Result<String> {
        let leader = cluster.leader();
        let ids = cluster.ids();
        let victim = match (target, leader) {
            (Target::Leader, Some(leader)) => leader,
            (Target::Mix, Some(leader)) if rng.gen_bool(0.5) => leader,
            _ => *ids.choose(rng).expect("a cluster has nodes"),
        };
        let is_leader = Some(victim) == leader;
        let who = format!("node {victim}{}", if is_leader { " (leader)" } else { "" });
        let description = match kind {
            FaultKind::Kill => {
                cluster.kill(victim)?;
                who
            }
            FaultKind::Restart => {
                cluster.stop(victim, Duration::from_secs(5))?;
                who
            }
            FaultKind::Pause => {
                cluster.pause(victim)?;
                who
            }
            FaultKind::Wipe => {
                cluster.kill(victim)?;
                cluster.wipe(victim)?;
                who
            }
            FaultKind::Disk => {
                let fault = *faults::DISK_FAULTS.choose(rng).expect("there are disk faults");
                cluster.arm_disk_fault(victim, fault)?;
                format!("{who} {fault}")
            }
            FaultKind::Partition => {
                let partition = Partition::random(&ids, leader, rng);
                cluster.links.set(|a, b| partition.connected(a, b));
                partition.to_string()
            }
        };
        recorder.nemesis(kind.name(), description.clone());
        Ok(description)
    }

    fn heal(
        &self,
        cluster: &mut Cluster,
        kind: FaultKind,
        description: &str,
        recorder: &Recorder,
    ) -> std::io::Result<String> {
        // A disk fault stops its node by itself: say how it went.
        let mut healed = format!("{kind} {description}");
        if kind == FaultKind::Disk {
            let mut stopped = Vec::new();
            for id in cluster.ids() {
                if let Some(status) = cluster.exited(id)? {
                    stopped.push(format!("node {id} had stopped itself ({status})"));
                }
            }
            healed += &match stopped.is_empty() {
                true => ": no node had stopped (the armed point was not reached)".to_string(),
                false => format!(": {}", stopped.join(", ")),
            };
        }
        match kind {
            FaultKind::Partition => cluster.links.heal(),
            // Disarm every disk fault, restart whatever was stopped, resume
            // whatever was paused.
            _ => cluster.heal()?,
        }
        recorder.nemesis("heal", healed.clone());
        Ok(healed)
    }
}

/// After the heal: waits for a leader, then reads every key back (recorded
/// like any other operation, by a process of its own; a failed read is tried
/// again, a few times).
fn read_back(cluster: &Cluster, load: &Load, first_process: u64, interrupted: &AtomicBool) -> std::io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut process = first_process;
    for key in &load.keys {
        loop {
            if Instant::now() > deadline || interrupted.load(Ordering::SeqCst) {
                return Err(std::io::Error::other(format!("could not read {key} back within 60 s of the heal")));
            }
            let Some(leader) = cluster.leader() else {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            };
            let address = cluster.members[leader as usize - 1].client_address;
            let Ok(mut client) = crate::demo::client::RespClient::connect(address, load.timeout) else { continue };
            let outcome = workers::perform(&load.recorder, process, &mut client, key, &Request::Read);
            process += 1;
            if let Outcome::Ok(_) = outcome {
                break;
            }
        }
    }
    Ok(())
}

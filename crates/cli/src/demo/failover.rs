//! One failover scene: kill the leader (SIGKILL) or stop it (SIGSTOP), watch
//! the survivors detect it and elect a new one from their own event logs, wait
//! for the first acknowledged write, restart or resume the old leader and watch
//! it rejoin.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use conclave_server::observe::wall_clock_ms;
use serde_json::Value;

use super::cluster::{DemoCluster, NodeView};
use super::lag::{self, Lag};
use super::load::Ledger;
use super::DemoError;

/// How long any one step of a scene may take before the demo gives up.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// How the leader is taken down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KillKind {
    /// SIGKILL: the process is gone, its host's kernel resets its connections
    /// and refuses redials: the `process_gone` detector's case.
    Process,
    /// SIGSTOP: the process keeps its sockets open and falls silent, like a hung
    /// or powered-off host: only the counted misses can tell. Resumed with
    /// SIGCONT after the failover (it rejoins as a follower).
    Host,
}

impl KillKind {
    /// `process` or `host`, as `--kill` and the JSON name it.
    pub fn name(self) -> &'static str {
        match self {
            KillKind::Process => "process",
            KillKind::Host => "host",
        }
    }

    fn signal(self) -> &'static str {
        match self {
            KillKind::Process => "SIGKILL",
            KillKind::Host => "SIGSTOP",
        }
    }
}

/// What one scene does.
#[derive(Clone, Copy, Debug)]
pub struct SceneOptions {
    /// How the leader is taken down.
    pub kill: KillKind,
    /// Restart the old leader as the stale-leader scene (empty data dir).
    pub stale_leader: bool,
    /// The kill comes no earlier than this: the previous election's vote leases
    /// have run out by then (see `run`).
    pub not_before: Option<Instant>,
    /// Make followers fall behind before the kill ([`lag::fall_behind`]).
    pub lag: bool,
    /// The nodes' heartbeat interval.
    pub heartbeat: Duration,
}

/// Which detector told one survivor that the leader was lost, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detection {
    /// The survivor.
    pub node: u64,
    /// `process_gone` or `misses` (the core's `Detector::name`), or `report`
    /// when the node went down on its peers' reports (SDOWN without a
    /// detector of its own firing first).
    pub detector: String,
    /// Milliseconds after the kill.
    pub after_kill_ms: i64,
}

/// Where a failover's time went: the first survivor to reach each step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Phases {
    /// The first detector fired.
    pub detected_ms: Option<i64>,
    /// The first node saw its leader objectively down.
    pub objectively_down_ms: Option<i64>,
    /// The first vote became binding.
    pub first_final_vote_ms: Option<i64>,
    /// The winner won its ballot (leader-elect).
    pub elected_ms: Option<i64>,
    /// The winner's `BecomeLeader` committed: it serves.
    pub serving_ms: Option<i64>,
}

/// One event on a node's timeline, relative to the kill.
#[derive(Clone, Debug)]
pub struct TimelineEvent {
    /// The node that saw it.
    pub node: u64,
    /// Milliseconds after the kill (negative: just before).
    pub after_kill_ms: i64,
    /// The core event's name (`SubjectivelyDown`, …).
    pub kind: String,
    /// A short label for the timeline.
    pub label: String,
    /// The event as the node served it.
    pub detail: String,
}

/// The stale-leader scene: a node restarted empty, believing its config.
#[derive(Clone, Debug)]
pub struct StaleLeaderScene {
    /// The node.
    pub node: u64,
    /// Milliseconds from its restart to its `Corrected` event, if seen.
    pub corrected_after_ms: Option<u64>,
    /// The leader and ballot the corrections named.
    pub corrected_to: Option<(u64, u64)>,
    /// It waited as the cold-start candidate of term 1 (for every member to
    /// confirm an empty data dir, which none with data does).
    pub waited_as_initial_leader: bool,
    /// Milliseconds from its restart to `AbstainedAfterDataLoss`, and the ballot.
    pub abstained: Option<(u64, u64)>,
}

/// Everything measured in one failover.
#[derive(Clone, Debug)]
pub struct FailoverRecord {
    /// 1, 2, …
    pub number: usize,
    /// The leader killed.
    pub killed: u64,
    /// How.
    pub kill: KillKind,
    /// Its leader term (0 in `raft` mode, which has none).
    pub old_leader_term: u64,
    /// Its ballot (Raft's term).
    pub old_term: u64,
    /// Who was made to fall behind before the kill.
    pub lag: Lag,
    /// Every live node's data version (last log term, last index) at the kill.
    pub versions: BTreeMap<u64, (u64, u64)>,
    /// The new leader.
    pub elected_node: u64,
    /// Its leader term.
    pub new_leader_term: u64,
    /// Its ballot (Raft's term).
    pub new_term: u64,
    /// From the kill to the first acknowledged write sent after it.
    pub failover_ms: u64,
    /// From the restart to the killed node following the new leader.
    pub rejoin_ms: Option<u64>,
    /// Milliseconds after the kill of the restart.
    pub restart_after_kill_ms: u64,
    /// Every node's events around the failover.
    pub timeline: Vec<TimelineEvent>,
    /// Set when this failover's restart was the stale-leader scene.
    pub stale_leader: Option<StaleLeaderScene>,
    /// The last binding vote of this failover's election, or when the demo saw
    /// the new leader serve if later: the next kill waits out the vote leases
    /// from then on.
    pub leases_from: Instant,
}

impl FailoverRecord {
    /// The best data version among the live nodes at the kill.
    pub fn best_data_version(&self) -> (u64, u64) {
        self.versions.values().copied().max().unwrap_or_default()
    }

    /// The elected node's data version at the kill.
    pub fn elected_data_version(&self) -> (u64, u64) {
        self.versions.get(&self.elected_node).copied().unwrap_or_default()
    }

    /// Whether the winner had the newest data.
    pub fn winner_had_newest_data(&self) -> bool {
        self.elected_data_version() == self.best_data_version()
    }

    /// The new leader's term as the narration names it: its leader term, or in
    /// `raft` mode (no leader terms) its term.
    pub fn new_term_name(&self) -> String {
        match self.new_leader_term {
            0 => format!("term {}", self.new_term),
            leader_term => format!("leader term {leader_term}"),
        }
    }

    /// Every leader term from the old one + 1 to the new one was committed, as
    /// the winner's events tell: no gap. Usually the new one is the old one + 1;
    /// a leader-elect that gave up and won again commits two, in order.
    pub fn leader_terms_gapless(&self) -> bool {
        let committed: std::collections::BTreeSet<u64> = self
            .timeline
            .iter()
            .filter(|event| event.node == self.elected_node && event.kind == "LeaderTermCommitted")
            .filter_map(|event| serde_json::from_str::<Value>(&event.detail).ok()?["leader_term"].as_u64())
            .collect();
        self.new_leader_term > self.old_leader_term
            && (self.old_leader_term + 1..=self.new_leader_term).all(|term| committed.contains(&term))
    }

    /// Survivors whose data was older than the newest at the kill.
    pub fn survivors_behind(&self) -> usize {
        let best = self.best_data_version();
        self.versions.values().filter(|version| **version < best).count()
    }

    /// Whether the survivors held different data versions at the kill.
    pub fn versions_differ(&self) -> bool {
        let mut versions = self.versions.values();
        versions.next().is_some_and(|first| versions.any(|version| version != first))
    }

    /// Entries the newest survivor held past the winner's log: a winner with
    /// older data overwrites them (never committed, so never acknowledged).
    pub fn entries_thrown_away(&self) -> u64 {
        if self.winner_had_newest_data() {
            0
        } else {
            self.best_data_version().1.saturating_sub(self.elected_data_version().1).max(1)
        }
    }

    /// Each survivor's first detection of the lost leader, earliest first:
    /// its `FailureDetected` (naming the detector), or an SDOWN on its peers'
    /// reports if that came first.
    pub fn detections(&self) -> Vec<Detection> {
        let mut first: BTreeMap<u64, Detection> = BTreeMap::new();
        for event in self.survivor_events() {
            let detector = match event.kind.as_str() {
                "FailureDetected" => detector_name(&event.detail),
                "SubjectivelyDown" => "report".to_string(),
                _ => continue,
            };
            first.entry(event.node).or_insert(Detection {
                node: event.node,
                detector,
                after_kill_ms: event.after_kill_ms,
            });
        }
        let mut detections: Vec<Detection> = first.into_values().collect();
        detections.sort_by_key(|detection| (detection.after_kill_ms, detection.node));
        detections
    }

    /// How many survivors each detector told first, by detector name.
    pub fn detector_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for detection in self.detections() {
            *counts.entry(detection.detector).or_insert(0) += 1;
        }
        counts
    }

    /// The detector that fired first among the survivors, if any did.
    pub fn first_detector(&self) -> Option<String> {
        self.detections().into_iter().next().map(|detection| detection.detector)
    }

    /// Where the time went, from the survivors' events.
    pub fn phases(&self) -> Phases {
        let first =
            |kind: &str| self.survivor_events().find(|event| event.kind == kind).map(|event| event.after_kill_ms);
        let new_term = format!("\"leader_term\":{}", self.new_leader_term);
        let by_winner = |kind: &str| {
            self.timeline
                .iter()
                .find(|event| event.kind == kind && event.node == self.elected_node && event.detail.contains(&new_term))
                .map(|event| event.after_kill_ms)
        };
        Phases {
            detected_ms: self.detections().first().map(|detection| detection.after_kill_ms),
            objectively_down_ms: first("ObjectivelyDown"),
            first_final_vote_ms: first("VoteFinalized"),
            elected_ms: by_winner("LeaderElect"),
            serving_ms: by_winner("LeaderTermCommitted"),
        }
    }

    /// Events of the nodes that stayed up (the old leader's own come from
    /// after its restart or resume).
    fn survivor_events(&self) -> impl Iterator<Item = &TimelineEvent> {
        self.timeline.iter().filter(|event| event.node != self.killed)
    }
}

/// The detector a `FailureDetected` event names, as the core's `Detector::name`.
fn detector_name(detail: &str) -> String {
    let detector = serde_json::from_str::<Value>(detail)
        .ok()
        .and_then(|fields| fields["detector"].as_str().map(str::to_string))
        .unwrap_or_default();
    match detector.as_str() {
        "ProcessGone" => "process_gone".to_string(),
        "Misses" => "misses".to_string(),
        other => other.to_string(),
    }
}

/// How a detector reads in the narration.
pub fn describe_detector(detector: &str) -> &'static str {
    match detector {
        "process_gone" => "process gone (connection reset, redial refused)",
        "misses" => "missed heartbeats",
        "report" => "peers' reports",
        _ => "unknown",
    }
}

fn timed_out(what: impl Into<String>) -> DemoError {
    DemoError::TimedOut { what: what.into(), timeout_ms: STEP_TIMEOUT.as_millis() as u64 }
}

/// Waits until every node runs and follows one serving leader; returns its view.
pub fn wait_for_stable_leader(cluster: &DemoCluster) -> Result<NodeView, DemoError> {
    let nodes = cluster.members.len();
    cluster
        .wait_for(STEP_TIMEOUT, |views| {
            let leader = views.iter().find(|view| view.is_serving_leader())?;
            let all_follow = views.len() == nodes && views.iter().all(|view| view.leader == Some(leader.id));
            all_follow.then(|| leader.clone())
        })
        .ok_or_else(|| timed_out("every node following one serving leader"))
}

/// Runs one failover. `narrate` gets each line of the story as it happens.
///
/// The kill waits until `options.not_before`: a leader killed within the vote
/// lease of its own election (docs/design/leader-terms.md) is replaced only once
/// its voters' leases run out, since a voter bound to it binds no other vote
/// before then; that is the lease's purpose, and a failover measured across it
/// measures the lease, not detection.
pub fn run(
    cluster: &mut DemoCluster,
    ledger: &Ledger,
    number: usize,
    options: SceneOptions,
    narrate: &mut dyn FnMut(String),
) -> Result<FailoverRecord, DemoError> {
    let stale_leader_scene = options.stale_leader;
    wait_for_stable_leader(cluster)?;
    // Kill under load: wait for writes to flow to this leader.
    let before = ledger.count();
    let deadline = Instant::now() + STEP_TIMEOUT;
    while ledger.count() < before + 20 {
        if Instant::now() >= deadline {
            return Err(timed_out("writes acknowledged before the kill"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if let Some(wait) = options.not_before.and_then(|at| at.checked_duration_since(Instant::now())) {
        std::thread::sleep(wait);
    }
    let leader = wait_for_stable_leader(cluster)?;
    let old_leader_term = leader.leader_term.unwrap_or(0);
    let killed = leader.id;
    let lag =
        if options.lag { lag::fall_behind(cluster, ledger, killed, number, options.heartbeat) } else { Lag::default() };
    // Every link from the leader is held now: what the followers hold is what
    // they will hold at the kill.
    let held_versions = lag.kept_up.map(|_| read_versions(cluster, killed));
    let mut kill_wall_ms = wall_clock_ms();
    let mut kill_at = Instant::now();
    let taken_down = match options.kill {
        KillKind::Process => cluster.kill(killed),
        KillKind::Host => cluster.pause(killed).map(|()| {
            // SIGSTOP is sent by a `kill` child process, which takes a few
            // milliseconds to start: the leader runs until it returns.
            kill_wall_ms = wall_clock_ms();
            kill_at = Instant::now();
        }),
    };
    taken_down.map_err(|source| DemoError::Process { node: killed, source })?;
    let terms = match leader.leader_term {
        Some(leader_term) => format!("leader term {leader_term}, ballot {}", leader.term),
        None => format!("term {}", leader.term),
    };
    narrate(format!("── failover {number}: {} to leader node {killed} ({terms}) ──", options.kill.signal()));

    // No leader now appends, so the survivors' logs stay as they are until the new
    // leader's BecomeLeader: read them now, before anyone can win (the election
    // cannot end before the miss limit runs out), and until two reads agree, so
    // that appends already in flight from the dead leader have landed.
    let versions = held_versions.unwrap_or_else(|| read_versions(cluster, killed));
    if !lag.held.is_empty() {
        let held: Vec<String> = lag.held.iter().map(|node| format!("node {node}")).collect();
        narrate(format!(
            "   before the kill the links from node {killed} to {} were held in turn, so they fell behind{}",
            held.join(", then "),
            match (lag.kept_up, lag.uncommitted_tail) {
                (Some(node), true) => format!("; node {node} alone got the last, uncommitted entries"),
                _ => String::new(),
            }
        ));
    }
    narrate(format!("   data versions at the kill (last log term, last index): {}", describe_versions(&versions)));

    // A later ballot: `raft` mode has no leader terms to compare.
    let elected = cluster
        .wait_for(STEP_TIMEOUT, |views| {
            views.iter().find(|view| view.is_serving_leader() && view.term > leader.term).cloned()
        })
        .ok_or_else(|| timed_out(format!("a new serving leader after killing node {killed}")))?;
    let serving_seen_at = Instant::now();
    let deadline = Instant::now() + STEP_TIMEOUT;
    let first_write = loop {
        if let Some(write) = ledger.first_sent_after(kill_at) {
            break write;
        }
        if Instant::now() >= deadline {
            return Err(timed_out("the first acknowledged write after the kill"));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let failover_ms = first_write.acknowledged_at.duration_since(kill_at).as_millis() as u64;

    // Restart the killed node and watch it rejoin.
    let restart_at = Instant::now();
    let restart_after_kill_ms = restart_at.duration_since(kill_at).as_millis() as u64;
    let restarted = match (stale_leader_scene, options.kill) {
        (true, KillKind::Process) => cluster.restart_as_stale_leader(killed),
        (true, KillKind::Host) => cluster.kill(killed).and_then(|()| cluster.restart_as_stale_leader(killed)),
        (false, KillKind::Process) => cluster.restart(killed),
        (false, KillKind::Host) => cluster.resume(killed),
    };
    restarted.map_err(|source| DemoError::Process { node: killed, source })?;
    let new_leader_term = elected.leader_term.unwrap_or(0);
    let rejoined = cluster.wait_for(STEP_TIMEOUT, |views| {
        views
            .iter()
            .any(|view| {
                view.id == killed
                    && view.role == "Follower"
                    && view.leader == Some(elected.id)
                    && view.leader_term.unwrap_or(0) >= new_leader_term
                    && view.term >= elected.term
            })
            .then_some(())
    });
    let rejoin_ms = rejoined.map(|()| restart_at.elapsed().as_millis() as u64);

    let timeline = collect_timeline(cluster, kill_wall_ms);
    // A voter's lease runs from its own binding vote, which may come after the
    // winner already serves: the old leader's too, resumed after SIGSTOP into
    // the round it missed.
    let last_binding_vote_ms = timeline
        .iter()
        .filter(|event| event.kind == "VoteFinalized")
        .map(|event| event.after_kill_ms.max(0) as u64)
        .max()
        .unwrap_or(0);
    let stale_leader = stale_leader_scene.then(|| {
        let after_restart = |kind: &str| {
            timeline.iter().find(|event| {
                event.node == killed && event.kind == kind && event.after_kill_ms >= restart_after_kill_ms as i64
            })
        };
        let since_restart = |event: &TimelineEvent| (event.after_kill_ms - restart_after_kill_ms as i64).max(0) as u64;
        let field = |event: &TimelineEvent, name: &str| {
            serde_json::from_str::<Value>(&event.detail).ok().and_then(|value| value[name].as_u64())
        };
        let corrected = after_restart("Corrected");
        StaleLeaderScene {
            node: killed,
            corrected_after_ms: corrected.map(since_restart),
            corrected_to: corrected.and_then(|event| Some((field(event, "leader")?, field(event, "term")?))),
            waited_as_initial_leader: timeline.iter().any(|event| {
                event.node == killed
                    && event.kind == "RoleChanged"
                    && event.detail.contains("\"to\":\"Candidate\"")
                    && event.after_kill_ms >= restart_after_kill_ms as i64
            }),
            abstained: after_restart("AbstainedAfterDataLoss")
                .map(|event| (since_restart(event), field(event, "term").unwrap_or(0))),
        }
    });
    let record = FailoverRecord {
        number,
        killed,
        kill: options.kill,
        old_leader_term,
        old_term: leader.term,
        lag,
        versions,
        elected_node: elected.id,
        new_leader_term,
        new_term: elected.term,
        failover_ms,
        rejoin_ms,
        restart_after_kill_ms,
        timeline,
        stale_leader,
        leases_from: serving_seen_at.max(kill_at + Duration::from_millis(last_binding_vote_ms)),
    };
    for line in story(&record, first_write.key.as_str()) {
        narrate(line);
    }
    Ok(record)
}

fn restarted_or_resumed(kill: KillKind) -> &'static str {
    match kill {
        KillKind::Process => "restarted",
        KillKind::Host => "resumed (SIGCONT)",
    }
}

/// The data versions of the live nodes but `killed`, once two reads agree.
fn read_versions(cluster: &DemoCluster, killed: u64) -> BTreeMap<u64, (u64, u64)> {
    let read = || -> BTreeMap<u64, (u64, u64)> {
        cluster
            .live()
            .into_iter()
            .filter(|id| *id != killed)
            .filter_map(|id| cluster.view(id))
            .map(|view| (view.id, view.data_version))
            .collect()
    };
    let mut previous = read();
    for _ in 0..20 {
        let current = read();
        if current == previous {
            break;
        }
        previous = current;
    }
    previous
}

fn describe_versions(versions: &BTreeMap<u64, (u64, u64)>) -> String {
    let best = versions.values().copied().max().unwrap_or_default();
    versions
        .iter()
        .map(|(id, version)| {
            let mark = if *version == best {
                " ★newest".to_string()
            } else {
                format!(" ({} behind)", best.1.saturating_sub(version.1))
            };
            format!("node {id} {}{mark}", describe_version(*version))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A data version as the narration shows it: (last log term, last index).
pub fn describe_version((term, index): (u64, u64)) -> String {
    format!("({term}, {index})")
}

/// Election events of every live node from just before the kill on.
fn collect_timeline(cluster: &DemoCluster, kill_wall_ms: u64) -> Vec<TimelineEvent> {
    let mut timeline: Vec<TimelineEvent> = cluster
        .live()
        .into_iter()
        .flat_map(|id| cluster.events(id))
        .filter_map(|recorded| {
            let at_ms = recorded["at_ms"].as_u64()?;
            let node = recorded["node"].as_u64()?;
            let (kind, fields) = recorded["event"].as_object()?.iter().next()?;
            let after_kill_ms = at_ms as i64 - kill_wall_ms as i64;
            // What happened before the kill is the previous scene's.
            (after_kill_ms >= 0).then(|| TimelineEvent {
                node,
                after_kill_ms,
                kind: kind.clone(),
                label: label(kind, fields),
                detail: fields.to_string(),
            })
        })
        .collect();
    timeline.sort_by_key(|event| (event.after_kill_ms, event.node));
    timeline
}

fn label(kind: &str, fields: &Value) -> String {
    let field = |name: &str| fields[name].as_u64().map_or_else(|| "none".to_string(), |value| value.to_string());
    match kind {
        "FailureDetected" => format!("{} {}", detector_label(&fields.to_string()), field("leader")),
        "SubjectivelyDown" => format!("SDOWN {}", field("leader")),
        "ObjectivelyDown" => format!("ODOWN {}", field("leader")),
        "ElectionStarted" => format!("election b{}", field("term")),
        "VoteChanged" => format!("vote→{}", field("candidate")),
        "VoteFinalized" => format!("final→{}", field("candidate")),
        "LeaderElect" => format!("won b{} LT{}", field("ballot"), field("leader_term")),
        "LeaderTermCommitted" => format!("LT{} ✓", field("leader_term")),
        "LeaderElectGaveUp" => format!("gave up LT{}", field("leader_term")),
        "Corrected" => format!("corrected→{}", field("leader")),
        "AbstainedAfterDataLoss" => "abstains".to_string(),
        "RoleChanged" => fields["to"].as_str().unwrap_or("?").to_string(),
        "LeaderChanged" => format!("leader {}", field("leader")),
        "QuorumLost" => "quorum lost".to_string(),
        other => other.to_string(),
    }
}

/// A detector's short name on the timeline.
fn detector_label(detail: &str) -> &'static str {
    match detector_name(detail).as_str() {
        "process_gone" => "gone",
        "misses" => "misses",
        _ => "detected",
    }
}

/// The narration of a finished failover, from the nodes' events.
fn story(record: &FailoverRecord, first_key: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let first = |kind: &str| -> Vec<&TimelineEvent> {
        let mut seen = BTreeMap::new();
        // The killed node's own events come from its next run: told apart below.
        for event in record.timeline.iter().filter(|event| event.kind == kind && event.node != record.killed) {
            seen.entry(event.node).or_insert(event);
        }
        let mut events: Vec<&TimelineEvent> = seen.into_values().collect();
        events.sort_by_key(|event| event.after_kill_ms);
        events
    };
    let who = |events: &[&TimelineEvent]| {
        events
            .iter()
            .map(|event| format!("node {} +{} ms", event.node, event.after_kill_ms))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let detections = record.detections();
    let detected = detections
        .iter()
        .map(|detection| {
            format!(
                "node {} +{} ms by {}",
                detection.node,
                detection.after_kill_ms,
                describe_detector(&detection.detector)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    lines.push(format!("   detected: {detected}"));
    // `raft` mode has no SDOWN or ODOWN: its timers just run out.
    let subjective = first("SubjectivelyDown");
    if !subjective.is_empty() {
        lines.push(format!("   subjectively down (lost the leader): {}", who(&subjective)));
    }
    let objective = first("ObjectivelyDown");
    if !objective.is_empty() {
        lines.push(format!("   objectively down (a majority agrees): {}", who(&objective)));
    }
    let mut votes: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for event in record.timeline.iter().filter(|event| event.node != record.killed) {
        match event.kind.as_str() {
            "VoteChanged" | "VoteFinalized" => {
                votes.entry(event.node).or_default().push(format!("{} (+{} ms)", event.label, event.after_kill_ms))
            }
            _ => {}
        }
    }
    for (node, steps) in &votes {
        let version = record
            .versions
            .get(node)
            .map_or_else(String::new, |version| format!(" data {}", describe_version(*version)));
        lines.push(format!("   votes of node {node}{version}: {}", steps.join(", ")));
    }
    if let Some(won) = record.timeline.iter().find(|event| event.kind == "LeaderElect") {
        lines.push(format!("   +{} ms node {} {}", won.after_kill_ms, won.node, won.label));
    }
    let new_term = format!("\"leader_term\":{}", record.new_leader_term);
    if let Some(committed) = record.timeline.iter().find(|event| {
        event.kind == "LeaderTermCommitted" && event.node == record.elected_node && event.detail.contains(&new_term)
    }) {
        lines.push(format!(
            "   +{} ms BecomeLeader committed: node {} leads leader term {} (was {}: {})",
            committed.after_kill_ms,
            record.elected_node,
            record.new_leader_term,
            record.old_leader_term,
            if record.new_leader_term == record.old_leader_term + 1 {
                "exactly +1".to_string()
            } else if record.leader_terms_gapless() {
                // A leader-elect that gave up and won again: its first
                // `BecomeLeader` commits with the second, in order.
                let terms: Vec<String> =
                    (record.old_leader_term + 1..=record.new_leader_term).map(|term| term.to_string()).collect();
                format!("leader terms {} committed in order, no gap", terms.join(", "))
            } else {
                "A GAP".to_string()
            }
        ));
    }
    if record.old_leader_term == 0 {
        // `raft` mode: no leader terms; its terms may skip.
        lines.push(format!(
            "   node {} leads term {} (was {}{})",
            record.elected_node,
            record.new_term,
            record.old_term,
            if record.new_term == record.old_term + 1 { "" } else { ": terms skipped" }
        ));
    }
    lines.push(format!(
        "   winner node {} data {}, newest among the live nodes {}: {}",
        record.elected_node,
        describe_version(record.elected_data_version()),
        describe_version(record.best_data_version()),
        if record.winner_had_newest_data() {
            "the newest data won".to_string()
        } else {
            format!("NOT the newest: {} uncommitted entries thrown away", record.entries_thrown_away())
        }
    ));
    let best = record.best_data_version();
    let behind: Vec<String> = record
        .versions
        .iter()
        .filter(|(node, version)| **version < best && **node != record.elected_node)
        .map(|(node, version)| format!("node {node} {}", describe_version(*version)))
        .collect();
    if !behind.is_empty() {
        lines.push(format!("   lagging survivors, not elected: {}", behind.join(", ")));
    }
    lines.push(format!("   +{} ms first acknowledged write sent after the kill ({first_key})", record.failover_ms));
    let phases = record.phases();
    let at = |ms: Option<i64>| ms.map_or_else(|| "-".to_string(), |ms| format!("+{ms}"));
    lines.push(format!(
        "   where the time went (ms after the kill): detected {} ({}), objectively down {}, first binding vote {}, \
         won {}, serving {}, first write +{}",
        at(phases.detected_ms),
        record.first_detector().as_deref().map_or("none", describe_detector),
        at(phases.objectively_down_ms),
        at(phases.first_final_vote_ms),
        at(phases.elected_ms),
        at(phases.serving_ms),
        record.failover_ms
    ));
    match (&record.stale_leader, record.rejoin_ms) {
        (Some(scene), rejoin_ms) => {
            lines.push(format!(
                "   stale-leader scene: node {} restarted with an EMPTY data dir and a config naming itself the initial leader",
                scene.node
            ));
            if scene.waited_as_initial_leader {
                lines.push(
                    "     it claimed term 1 as cold-start candidate, which needs every member to confirm an empty data dir: none did, so it never led"
                        .to_string(),
                );
            }
            if let (Some(ms), Some((leader, term))) = (scene.corrected_after_ms, scene.corrected_to) {
                lines.push(format!("     +{ms} ms corrected: follows node {leader} (ballot {term})"));
            }
            if let Some((ms, ballot)) = scene.abstained {
                lines.push(format!(
                    "     +{ms} ms learned the cluster is at ballot {ballot}: abstains from voting (it may have voted before its data was lost)"
                ));
            }
            match rejoin_ms {
                Some(ms) => lines.push(format!(
                    "     +{ms} ms follower of node {} in leader term {}, catching up from index 1",
                    record.elected_node, record.new_leader_term
                )),
                None => lines.push("     did not rejoin in time".to_string()),
            }
        }
        (None, Some(ms)) => lines.push(format!(
            "   node {} {}: follower of node {} in {} after {ms} ms",
            record.killed,
            restarted_or_resumed(record.kill),
            record.elected_node,
            record.new_term_name()
        )),
        (None, None) => lines.push(format!(
            "   node {} {} but did not rejoin in time",
            record.killed,
            restarted_or_resumed(record.kill)
        )),
    }
    lines
}

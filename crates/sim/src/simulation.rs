//! One simulated run: N real cores on virtual time, a faulty network and disk,
//! a client, and the invariant checkers watching every step.
//!
//! A run has two phases (as in TigerBeetle's VOPR): a *safety* phase in which
//! faults are injected at random, then a *liveness* phase in which every fault is
//! healed and the cluster must elect a leader and commit every new proposal on
//! every node within a bound.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};

use conclave_core::{
    Body, Config, DurableMark, Entry, Event, HardState, LogIndex, LogWrite, MemberAddresses, MembershipChange, Message,
    Node, NodeId, Output, PeerState, ReadState, Role, Snapshot, Term,
};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::disk::SimDisk;
use crate::faults::{FaultCounts, FaultKind};
use crate::invariants::{Broken, Invariants};
use crate::network::{between, one_way, Fate, Network};
use crate::newest_wins::ElectionAudit;
use crate::options::{derive_seed, RunParams, SimOptions, SIM_CLUSTER_ID};
use crate::report::{RunReport, Violation};
use crate::state_machine::SimStateMachine;
use crate::trace::{DropCause, Trace, TraceEvent};

/// Hard cap on trace steps per run, so that a livelock cannot hang a sweep.
const MAX_STEPS: u64 = 20_000_000;
/// How often the liveness-phase client looks for a leader.
const LIVENESS_CLIENT_INTERVAL_MS: u64 = 20;
/// When the liveness-phase client proposes a command again.
const LIVENESS_RETRY_MS: u64 = 1_000;
/// The most unsettled safety-phase commands the client keeps to propose again.
const MAX_UNSETTLED: usize = 64;
/// How long the client keeps an unsettled command to propose again.
const UNSETTLED_MS: u64 = 5_000;
/// At most this many network cuts at once.
const MAX_ACTIVE_CUTS: usize = 2;

#[derive(Debug)]
enum SimEvent {
    Deliver {
        message: Message,
        sent_at_ms: u64,
    },
    /// `observer`'s redial to crashed `gone` is refused (a process crash): evidence.
    ProcessGone {
        observer: usize,
        gone: usize,
        incarnation: u64,
    },
    Durable {
        node: usize,
        incarnation: u64,
    },
    Tick {
        node: usize,
        incarnation: u64,
    },
    Propose,
    Read,
    InjectFault,
    Restart {
        node: usize,
    },
    HealCut {
        id: u64,
    },
    StartLiveness,
}

#[derive(Debug)]
struct Scheduled {
    at_ms: u64,
    sequence: u64,
    event: SimEvent,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at_ms, self.sequence) == (other.at_ms, other.sequence)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    // Reversed: BinaryHeap is a max-heap and the earliest event must come first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at_ms, other.sequence).cmp(&(self.at_ms, self.sequence))
    }
}

/// An output batch waiting for its fsync.
#[derive(Debug)]
struct PendingBatch {
    number: u64,
    durable_at_ms: u64,
    hard_state: Option<HardState>,
    log_write: Option<LogWrite>,
    snapshot: Option<Snapshot>,
    messages: Vec<Message>,
    committed_entries: Vec<Entry>,
    read_states: Vec<ReadState>,
    failed_reads: Vec<u64>,
    /// Reported to the core once the batch is durable (`Node::persisted`).
    durable_mark: Option<DurableMark>,
}

#[derive(Debug)]
struct SimNode {
    id: NodeId,
    core: Option<Node>,
    disk: SimDisk,
    pending: VecDeque<PendingBatch>,
    incarnation: u64,
    tick_at_ms: Option<u64>,
    last_durable_at_ms: u64,
    batches: u64,
    known_commit: LogIndex,
    /// Last index of the node's in-memory log, to count truncations.
    last_index: LogIndex,
    liveness_applied: BTreeSet<u64>,
    /// What the node applied (its state machine), since its last start.
    machine: SimStateMachine,
    /// Reads its core confirmed, waiting for the state machine to reach their
    /// index: (context, read index). Volatile, like the driver's.
    awaiting_reads: Vec<(u64, LogIndex)>,
    /// Started empty to join a running cluster (its data wiped after a
    /// removal): its configuration names no voters.
    joins: bool,
    /// Removed, and to be wiped once its removal committed (an operator
    /// replaces a machine only after `remove` returned).
    wipe_when_removed: bool,
    /// When it was last wiped: it is added back only a while later, as an
    /// operator would, once nothing its old process sent can still arrive
    /// (docs/design/membership.md).
    wiped_at_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Safety,
    Liveness { deadline_ms: u64 },
}

#[derive(Clone, Copy, Debug)]
struct PendingFailover {
    started_at_ms: u64,
    old_term: Term,
    old_leader: NodeId,
    /// The kind of crash that started it, if a crash of the leader did.
    crash_kind: Option<&'static str>,
    /// At some point no majority of the other nodes was alive and connected, so
    /// no election could finish: the time measures the outage, not the protocol.
    quorum_lost: bool,
    /// Faults injected since it started, the one that started it included, plus
    /// one if another fault came within an election timeout before it (the
    /// cluster was not settled: e.g. a member crashed just before the leader).
    faults_seen: u32,
}

/// One run of one seed.
pub struct Simulation {
    options: SimOptions,
    params: RunParams,
    now_ms: u64,
    queue: BinaryHeap<Scheduled>,
    next_sequence: u64,
    nodes: Vec<SimNode>,
    network: Network,
    fault_rng: ChaCha8Rng,
    disk_rng: ChaCha8Rng,
    client_rng: ChaCha8Rng,
    /// Draws the reads (its own stream, so proposals draw what they did before reads).
    read_rng: ChaCha8Rng,
    next_read_context: u64,
    reads_issued: u64,
    invariants: Invariants,
    trace: Trace,
    phase: Phase,
    failover: Option<PendingFailover>,
    /// When the latest crash, cut, heal or restart happened.
    last_fault_at_ms: Option<u64>,
    violation: Option<Violation>,
    faults: FaultCounts,
    elections: u64,
    leader_changes: u64,
    failover_ms: Vec<u64>,
    failovers_without_quorum: u64,
    single_fault_failover_ms: Vec<u64>,
    failover_ms_by_crash_kind: BTreeMap<String, Vec<u64>>,
    single_fault_failover_ms_by_crash_kind: BTreeMap<String, Vec<u64>>,
    /// When each directed link last flapped (its connection reset).
    flapped_at_ms: BTreeMap<(NodeId, NodeId), u64>,
    disruptions: u64,
    proposals: u64,
    next_command_id: u64,
    applied_commands: BTreeSet<u64>,
    /// Safety-phase commands appended but applied nowhere yet: (id, the node
    /// that appended it, when). When another node leads, the client proposes
    /// them again under the same id, as a server sends a lost leader's writes
    /// to the next one (docs/decisions/0060-exactly-once-writes.md).
    unsettled: VecDeque<(u64, NodeId, u64)>,
    liveness_commands: Vec<(u64, Option<u64>)>,
    /// The election in progress, watched for whether the newest data wins it.
    election: Option<ElectionAudit>,
    /// When a leader last committed an entry: the cluster worked then.
    leader_committed_at_ms: u64,
    /// The highest term any node has held: a node that goes above it binds a new term.
    highest_term: Term,
    elections_won: u64,
    up_to_date_wins: u64,
    up_to_date_electable_wins: u64,
    not_newest_by_cause: BTreeMap<String, u64>,
    truncated_entries: u64,
    snapshots_taken: u64,
    installed_snapshots: u64,
}

impl Simulation {
    /// Prepares the run of `seed`.
    pub fn new(options: SimOptions, seed: u64) -> Simulation {
        assert!(options.nodes >= 1, "a cluster has at least one node");
        let params = RunParams::for_run(seed, &options);
        let stream = |label: &str| ChaCha8Rng::seed_from_u64(derive_seed(seed, label));
        let nodes = (1..=options.nodes as NodeId)
            .map(|id| SimNode {
                id,
                core: None,
                disk: SimDisk::default(),
                pending: VecDeque::new(),
                incarnation: 0,
                tick_at_ms: None,
                last_durable_at_ms: 0,
                batches: 0,
                known_commit: 0,
                last_index: 0,
                liveness_applied: BTreeSet::new(),
                machine: SimStateMachine::new(options.apply_duplicates),
                awaiting_reads: Vec::new(),
                joins: false,
                wipe_when_removed: false,
                wiped_at_ms: 0,
            })
            .collect();
        Simulation {
            network: Network::new(&params, stream("network")),
            fault_rng: stream("faults"),
            disk_rng: stream("disk"),
            client_rng: stream("client"),
            read_rng: stream("reads"),
            trace: Trace::new(options.keep_full_trace),
            options,
            params,
            now_ms: 0,
            queue: BinaryHeap::new(),
            next_sequence: 0,
            nodes,
            invariants: Invariants::default(),
            phase: Phase::Safety,
            failover: None,
            last_fault_at_ms: None,
            violation: None,
            faults: FaultCounts::default(),
            elections: 0,
            leader_changes: 0,
            failover_ms: Vec::new(),
            failovers_without_quorum: 0,
            single_fault_failover_ms: Vec::new(),
            failover_ms_by_crash_kind: BTreeMap::new(),
            single_fault_failover_ms_by_crash_kind: BTreeMap::new(),
            flapped_at_ms: BTreeMap::new(),
            disruptions: 0,
            proposals: 0,
            next_command_id: 1,
            next_read_context: 1,
            reads_issued: 0,
            applied_commands: BTreeSet::new(),
            unsettled: VecDeque::new(),
            liveness_commands: Vec::new(),
            election: None,
            leader_committed_at_ms: 0,
            highest_term: 0,
            elections_won: 0,
            up_to_date_wins: 0,
            up_to_date_electable_wins: 0,
            not_newest_by_cause: BTreeMap::new(),
            truncated_entries: 0,
            snapshots_taken: 0,
            installed_snapshots: 0,
        }
    }

    /// The parameters the seed chose.
    pub fn params(&self) -> &RunParams {
        &self.params
    }

    /// Runs to the end (or the first violation) and reports.
    pub fn run(mut self) -> (RunReport, Vec<String>) {
        for index in 0..self.nodes.len() {
            self.start_node(index);
        }
        self.schedule(self.params.proposal_interval_ms, SimEvent::Propose);
        self.schedule(self.params.read_interval_ms, SimEvent::Read);
        let first_fault = self.fault_gap_ms();
        self.schedule(first_fault, SimEvent::InjectFault);
        self.schedule(self.params.safety_phase_ms, SimEvent::StartLiveness);
        self.trace.record(0, TraceEvent::Phase { name: "safety" });

        while self.violation.is_none() {
            let Some(next) = self.queue.pop() else {
                self.fail("liveness", "no event left to run".into());
                break;
            };
            debug_assert!(next.at_ms >= self.now_ms, "virtual time never goes back");
            self.now_ms = next.at_ms;
            if let Phase::Liveness { deadline_ms } = self.phase {
                if self.now_ms > deadline_ms {
                    let detail = self.liveness_failure();
                    self.fail("liveness", detail);
                    break;
                }
            }
            self.handle(next.event);
            if self.trace.steps() > MAX_STEPS {
                self.fail("liveness", format!("more than {MAX_STEPS} steps"));
            }
            if matches!(self.phase, Phase::Liveness { .. }) && self.liveness_reached() {
                break;
            }
        }
        let full_trace = self.trace.full_lines();
        let report = RunReport {
            seed: self.params.seed,
            violation: self.violation.take(),
            trace_hash: self.trace.hash(),
            steps: self.trace.steps(),
            simulated_ms: self.now_ms,
            elections: self.elections,
            leader_changes: self.leader_changes,
            failover_ms: self.failover_ms.clone(),
            failovers_without_quorum: self.failovers_without_quorum,
            single_fault_failover_ms: self.single_fault_failover_ms.clone(),
            failover_ms_by_crash_kind: self.failover_ms_by_crash_kind.clone(),
            single_fault_failover_ms_by_crash_kind: self.single_fault_failover_ms_by_crash_kind.clone(),
            committed_entries: self.invariants.state_machine_safety.applied_len(),
            disruptions: self.disruptions,
            faults: self.faults.clone(),
            proposals: self.proposals,
            reads_issued: self.reads_issued,
            reads_served: self.invariants.linearizable_reads.served(),
            reads_failed: self.invariants.linearizable_reads.failed(),
            elections_won: self.elections_won,
            up_to_date_wins: self.up_to_date_wins,
            up_to_date_electable_wins: self.up_to_date_electable_wins,
            not_newest_by_cause: self.not_newest_by_cause.clone(),
            truncated_entries: self.truncated_entries,
            term_gaps: self.invariants.gapless_terms.term_gaps(),
            leaders_per_term_max: self.invariants.gapless_terms.leaders_per_term_max(),
            snapshots_taken: self.snapshots_taken,
            installed_snapshots: self.installed_snapshots,
        };
        (report, full_trace)
    }

    fn handle(&mut self, event: SimEvent) {
        match event {
            SimEvent::Deliver { message, sent_at_ms } => self.deliver(message, sent_at_ms),
            SimEvent::ProcessGone { observer, gone, incarnation } => self.process_gone(observer, gone, incarnation),
            SimEvent::Durable { node, incarnation } => {
                if self.nodes[node].incarnation == incarnation && self.nodes[node].core.is_some() {
                    let batch = self.nodes[node].pending.pop_front().expect("one durable event per pending batch");
                    assert!(batch.durable_at_ms <= self.now_ms, "batches become durable in order");
                    self.release(node, batch);
                }
            }
            SimEvent::Tick { node, incarnation } => self.tick(node, incarnation),
            SimEvent::Propose => self.propose(),
            SimEvent::Read => self.read(),
            SimEvent::InjectFault => self.inject_fault(),
            SimEvent::Restart { node } => self.restart(node),
            SimEvent::HealCut { id } => {
                if let Some(description) = self.network.heal(id) {
                    self.trace.record(self.now_ms, TraceEvent::Heal { description });
                    self.last_fault_at_ms = Some(self.now_ms);
                }
            }
            SimEvent::StartLiveness => self.start_liveness(),
        }
    }

    fn schedule(&mut self, delay_ms: u64, event: SimEvent) {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.queue.push(Scheduled { at_ms: self.now_ms + delay_ms, sequence, event });
    }

    fn fail(&mut self, property: &str, detail: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation {
                property: property.to_string(),
                seed: self.params.seed,
                step: self.trace.steps(),
                at_ms: self.now_ms,
                detail,
                recent_events: self.trace.recent_lines(),
            });
        }
    }

    fn check(&mut self, result: Result<(), Broken>) {
        if let Err(broken) = result {
            self.fail(broken.property, broken.detail);
        }
    }

    // ----- nodes ---------------------------------------------------------------

    fn node_config(&self, id: NodeId) -> Config {
        let joins = self.nodes.iter().any(|node| node.id == id && node.joins);
        let voters = if joins { Vec::new() } else { self.nodes.iter().map(|node| node.id).collect() };
        let mut config = Config::new(id, SIM_CLUSTER_ID, voters);
        config.election_mode = self.options.mode;
        config.max_entries_per_message = self.params.max_entries_per_message;
        config.max_bytes_per_message = self.params.max_bytes_per_message;
        config.snapshot_chunk_bytes = self.params.snapshot_chunk_bytes;
        config.fast_detection = self.options.fast_detection;
        config.parallel_persist = self.options.parallel_persist;
        if let Some(hook) = self.options.config_hook {
            hook(&mut config);
        }
        config
    }

    fn start_node(&mut self, index: usize) {
        let id = self.nodes[index].id;
        let config = self.node_config(id);
        let restored = self.nodes[index].disk.restore();
        let rng_seed = derive_seed(self.params.seed, &format!("node-{id}-{}", self.nodes[index].incarnation));
        match Node::new(config, restored, ChaCha8Rng::seed_from_u64(rng_seed), self.now_ms) {
            Ok(core) => {
                let log = core.log().all().to_vec();
                let snapshot = core.snapshot().cloned();
                self.nodes[index].known_commit = core.log().committed();
                self.nodes[index].last_index = core.log().last_index();
                self.nodes[index].core = Some(core);
                let base = snapshot
                    .as_ref()
                    .map(|snapshot| (snapshot.meta.last_included_index, snapshot.meta.last_included_term));
                let result = self.invariants.log_matching.on_restart(id, base, &log);
                self.check(result);
                self.invariants.state_machine_safety.on_restart(id);
                self.invariants.exactly_once.on_restart(id);
                self.invariants.gapless_terms.on_restart(id);
                self.nodes[index].liveness_applied.clear();
                self.nodes[index].machine = SimStateMachine::new(self.options.apply_duplicates);
                if let Some(snapshot) = &snapshot {
                    self.load_snapshot(index, snapshot);
                }
                self.schedule_tick(index);
            }
            Err(error) => self.fail("restart", format!("n{id} cannot start from its disk: {error}")),
        }
    }

    fn tick(&mut self, index: usize, incarnation: u64) {
        let node = &mut self.nodes[index];
        if node.incarnation != incarnation || node.tick_at_ms != Some(self.now_ms) {
            return; // Superseded by an earlier tick, or the node crashed.
        }
        node.tick_at_ms = None;
        let Some(core) = node.core.as_mut() else { return };
        if core.next_deadline_ms() > self.now_ms {
            self.schedule_tick(index);
            return;
        }
        let output = core.tick(self.now_ms);
        self.trace.record(self.now_ms, TraceEvent::Tick { node: node.id });
        self.absorb(index, output);
    }

    /// Ticks `index` at the current time if its clock is behind.
    fn advance_clock(&mut self, index: usize) {
        let core = self.nodes[index].core.as_mut().expect("only live nodes get input");
        let output = core.tick(self.now_ms);
        if !output.is_empty() {
            self.trace.record(self.now_ms, TraceEvent::Tick { node: self.nodes[index].id });
            self.absorb(index, output);
        }
    }

    fn schedule_tick(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        let Some(core) = node.core.as_ref() else { return };
        let deadline_ms = core.next_deadline_ms().max(self.now_ms);
        if node.tick_at_ms.is_none_or(|at_ms| deadline_ms < at_ms) {
            node.tick_at_ms = Some(deadline_ms);
            let incarnation = node.incarnation;
            self.schedule(deadline_ms - self.now_ms, SimEvent::Tick { node: index, incarnation });
        }
    }

    /// Observes one output batch, then queues it behind its fsync.
    fn absorb(&mut self, index: usize, mut output: Output) {
        self.observe(index, &output);
        // A leader's replication traffic leaves at once, before its own persist
        // (and any earlier one) completes: the core counts those entries for
        // itself only once reported durable.
        for message in std::mem::take(&mut output.early_messages) {
            self.send(message);
        }
        let needs_persist = output.needs_persist();
        let node = &mut self.nodes[index];
        node.batches += 1;
        let fsync_ms = self.disk_rng.gen_range(0..=self.params.fsync_max_ms);
        let batch = PendingBatch {
            number: node.batches,
            durable_at_ms: (self.now_ms + fsync_ms).max(node.last_durable_at_ms),
            hard_state: output.hard_state,
            log_write: output.log_write,
            snapshot: output.snapshot,
            messages: output.messages,
            committed_entries: output.committed_entries,
            read_states: output.read_states,
            failed_reads: output.failed_reads,
            durable_mark: output.durable_mark,
        };
        if !needs_persist && node.pending.is_empty() {
            self.release(index, batch);
        } else {
            node.last_durable_at_ms = batch.durable_at_ms;
            let delay_ms = batch.durable_at_ms - self.now_ms;
            let incarnation = node.incarnation;
            node.pending.push_back(batch);
            self.schedule(delay_ms, SimEvent::Durable { node: index, incarnation });
        }
        self.schedule_tick(index);
    }

    /// Feeds the checkers what the node's in-memory state now shows.
    fn observe(&mut self, index: usize, output: &Output) {
        let id = self.nodes[index].id;
        self.note_new_term(index);
        for event in &output.events {
            match event {
                Event::RoleChanged { to, term, .. } => {
                    self.trace.record(self.now_ms, TraceEvent::Role { node: id, role: *to, term: *term });
                    if *to == Role::Leader {
                        self.leader_changes += 1;
                        self.on_election_won(index);
                        let core = self.nodes[index].core.as_ref().expect("a live node produced this output");
                        let log = (core.log().first_index(), core.log().all());
                        let result = self
                            .invariants
                            .election_safety
                            .on_leader(id, *term)
                            .and_then(|()| self.invariants.leader_completeness.on_leader(id, *term, log));
                        self.check(result);
                    }
                }
                Event::ElectionStarted { pre_vote: false, .. } => {
                    self.elections += 1;
                    // An audit open since before a leader last committed belongs to
                    // a round that was given up: this is a new election.
                    if self.election.as_ref().is_none_or(|audit| audit.started_at_ms < self.leader_committed_at_ms) {
                        self.start_election_audit();
                    }
                    if let Some(audit) = &mut self.election {
                        audit.on_looking(id);
                    }
                    self.trace.record(self.now_ms, TraceEvent::Node { node: id, event: format!("{event:?}") });
                }
                Event::LeaderChanged { .. } => {}
                Event::AbstainedAfterDataLoss { .. } => {
                    if let Some(audit) = &mut self.election {
                        audit.on_abstain(id);
                    }
                    self.trace.record(self.now_ms, TraceEvent::Node { node: id, event: format!("{event:?}") });
                }
                Event::VoteFinalized { .. } => {
                    if let Some(audit) = &mut self.election {
                        audit.on_bound(id);
                    }
                    self.trace.record(self.now_ms, TraceEvent::Node { node: id, event: format!("{event:?}") });
                }
                _ => self.trace.record(self.now_ms, TraceEvent::Node { node: id, event: format!("{event:?}") }),
            }
        }
        if let Some(snapshot) = &output.snapshot {
            // The log now starts after the installed snapshot; whatever it
            // discarded was replaced by committed state, not truncated.
            let last_index = self.nodes[index].core.as_ref().expect("live").log().last_index();
            self.nodes[index].last_index = last_index;
            let core = self.nodes[index].core.as_ref().expect("a live node produced this output");
            let meta = &snapshot.meta;
            let result = self.invariants.log_matching.on_snapshot(
                id,
                meta.last_included_index,
                meta.last_included_term,
                core.log().all(),
            );
            self.check(result);
        }
        if let Some(write) = &output.log_write {
            // Entries the node held past the rewrite point were thrown away.
            let old_last = self.nodes[index].last_index;
            self.truncated_entries += old_last.saturating_sub(write.first_index - 1);
            let last_index = self.nodes[index].core.as_ref().expect("live").log().last_index();
            self.nodes[index].last_index = last_index;
            let core = self.nodes[index].core.as_ref().expect("a live node produced this output");
            let result = self.invariants.log_matching.on_log_changed(
                id,
                write.first_index,
                core.log().first_index(),
                core.log().all(),
            );
            self.check(result);
        }
        let core = self.nodes[index].core.as_ref().expect("a live node produced this output");
        let commit = core.log().committed();
        let known_commit = self.nodes[index].known_commit;
        if commit > known_commit {
            let (role, term) = (core.role(), core.term());
            let leaders: Vec<(NodeId, Term, LogIndex, &[Entry])> = self
                .nodes
                .iter()
                .filter_map(|node| node.core.as_ref().map(|core| (node.id, core)))
                .filter(|(_, core)| core.role() == Role::Leader)
                .map(|(id, core)| (id, core.term(), core.log().first_index(), core.log().all()))
                .collect();
            let result = self.invariants.leader_completeness.on_commit(
                id,
                term,
                known_commit,
                commit,
                (core.log().first_index(), core.log().all()),
                &leaders,
            );
            self.check(result);
            self.nodes[index].known_commit = commit;
            self.trace.record(self.now_ms, TraceEvent::Commit { node: id, index: commit });
            if role == Role::Leader {
                self.leader_committed_at_ms = self.now_ms;
                let core = self.nodes[index].core.as_ref().expect("a live node produced this output");
                let entry_term = core.log().term_at(commit).expect("a commit is in the log");
                // A majority of the voters the leader counts now (its latest
                // membership, docs/design/membership.md).
                let voters = core.membership().voters();
                let holders = self
                    .nodes
                    .iter()
                    .filter(|node| voters.contains(&node.id) && node.disk.holds(commit, entry_term))
                    .count();
                let members = voters.len();
                let result = self.invariants.durable_commits.on_leader_commit(id, commit, entry_term, holders, members);
                self.check(result);
                self.on_leader_commit(term);
            }
        }
        let core = self.nodes[index].core.as_ref().expect("a live node produced this output");
        if let Some(audit) = &mut self.election {
            audit.on_version(id, (core.log().last_term(), core.log().last_index()));
        }
        if let Err(problem) = core.validate() {
            self.fail("node_invariant", format!("n{id}: {problem}"));
        }
    }

    /// A batch is durable: write it to the disk, send its messages, apply its entries.
    fn release(&mut self, index: usize, batch: PendingBatch) {
        let node = &mut self.nodes[index];
        node.disk.persist(batch.snapshot.as_ref(), batch.hard_state, batch.log_write.as_ref());
        if batch.hard_state.is_some() || batch.log_write.is_some() || batch.snapshot.is_some() {
            self.trace.record(self.now_ms, TraceEvent::Persisted { node: node.id, batch: batch.number });
        }
        for message in batch.messages {
            self.send(message);
        }
        if let Some(snapshot) = &batch.snapshot {
            // Installed from the leader: the state machine becomes the snapshot.
            self.installed_snapshots += 1;
            let event = format!("installed snapshot up to {}", snapshot.meta.last_included_index);
            self.trace.record(self.now_ms, TraceEvent::Node { node: self.nodes[index].id, event });
            self.load_snapshot(index, snapshot);
        }
        if !batch.committed_entries.is_empty() {
            let id = self.nodes[index].id;
            let result = self.invariants.state_machine_safety.on_apply(id, &batch.committed_entries);
            self.check(result);
            let result = self.invariants.gapless_terms.on_apply(id, &batch.committed_entries);
            self.check(result);
            let node = &mut self.nodes[index];
            let first_command = node.machine.commands.len();
            node.machine.apply(&batch.committed_entries);
            for command in &node.machine.commands[first_command..] {
                self.applied_commands.insert(*command);
                node.liveness_applied.insert(*command);
            }
            let result = self.invariants.exactly_once.on_effects(id, &node.machine.commands[first_command..]);
            self.check(result);
            self.maybe_compact(index);
        }
        for context in batch.failed_reads {
            self.invariants.linearizable_reads.on_fail(context);
        }
        let node = &mut self.nodes[index];
        node.awaiting_reads.extend(batch.read_states.iter().map(|read| (read.context, read.index)));
        self.serve_reads(index);
        if let Some(mark) = batch.durable_mark {
            let Some(core) = self.nodes[index].core.as_mut() else { return };
            let output = core.persisted(mark);
            if !output.is_empty() {
                self.absorb(index, output);
            }
        }
    }

    /// Serves the confirmed reads whose index the node's state machine reached.
    fn serve_reads(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        let (id, state_index) = (node.id, node.machine.index);
        let (ready, waiting): (Vec<_>, Vec<_>) =
            node.awaiting_reads.drain(..).partition(|(_, read_index)| *read_index <= state_index);
        node.awaiting_reads = waiting;
        for (context, read_index) in ready {
            let result = self.invariants.linearizable_reads.on_serve(id, context, read_index, state_index);
            self.check(result);
        }
    }

    /// The node's state machine is replaced by `snapshot` (installed, or found
    /// on its disk at a restart); the checkers see it jump there.
    fn load_snapshot(&mut self, index: usize, snapshot: &Snapshot) {
        let id = self.nodes[index].id;
        let machine = match SimStateMachine::decode(&snapshot.data) {
            Ok(machine) => machine,
            Err(problem) => return self.fail("state_machine_safety", format!("n{id}: unreadable snapshot: {problem}")),
        };
        if machine.index != snapshot.meta.last_included_index {
            let detail = format!(
                "n{id}: snapshot up to {} holds the state at {}",
                snapshot.meta.last_included_index, machine.index
            );
            return self.fail("state_machine_safety", detail);
        }
        let result = self.invariants.state_machine_safety.on_snapshot(id, machine.index, machine.chain);
        self.check(result);
        let result = self.invariants.exactly_once.on_snapshot(id, &machine.commands);
        self.check(result);
        let machine = machine.with_apply_duplicates(self.options.apply_duplicates);
        let leader_term = snapshot.meta.last_leader_term.map_or(0, |record| record.leader_term);
        self.invariants.gapless_terms.on_snapshot(id, leader_term);
        let node = &mut self.nodes[index];
        node.liveness_applied = machine.commands.iter().copied().collect();
        self.applied_commands.extend(machine.commands.iter().copied());
        node.machine = machine;
    }

    /// Every `snapshot_every` applied entries the node snapshots its state
    /// machine and compacts its log, as a server would.
    fn maybe_compact(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        let Some(core) = node.core.as_mut() else { return };
        let applied = node.machine.index;
        if applied < node.disk.snapshot_index() + self.params.snapshot_every {
            return;
        }
        let Ok(snapshot) = core.compact(applied, node.machine.encode()) else {
            return; // The core already holds a newer snapshot (one it installed).
        };
        node.disk.save_snapshot(&snapshot);
        self.snapshots_taken += 1;
        let event = format!("compacted up to {applied}");
        self.trace.record(self.now_ms, TraceEvent::Node { node: node.id, event });
    }

    /// Stops node `index`. A process crash (`FaultKind::Crash`) keeps what it
    /// wrote (the page cache survives) but loses its volatile state; a power loss
    /// (`UnsyncedLoss`) also loses every write not yet fsynced; a torn write keeps
    /// only the hard-state record of the oldest unsynced batch.
    fn crash(&mut self, index: usize, kind: FaultKind) {
        let leader_before = self.current_leader();
        let node = &mut self.nodes[index];
        if node.core.take().is_none() {
            return;
        }
        let pending: Vec<PendingBatch> = node.pending.drain(..).collect();
        // Reads die with the process; the checker stops waiting for them.
        let lost_reads: Vec<u64> = node
            .awaiting_reads
            .drain(..)
            .map(|(context, _)| context)
            .chain(pending.iter().flat_map(|batch| batch.read_states.iter().map(|read| read.context)))
            .collect();
        for context in lost_reads {
            self.invariants.linearizable_reads.on_fail(context);
        }
        let node = &mut self.nodes[index];
        let mut kind = kind;
        match kind {
            FaultKind::Crash => {
                for batch in &pending {
                    node.disk.persist(batch.snapshot.as_ref(), batch.hard_state, batch.log_write.as_ref());
                }
            }
            FaultKind::TornWrite => match pending.first() {
                Some(batch) if batch.hard_state.is_some() && batch.log_write.is_some() && batch.snapshot.is_none() => {
                    node.disk.persist(None, batch.hard_state, None);
                }
                _ => kind = FaultKind::UnsyncedLoss,
            },
            _ => {}
        }
        if pending.is_empty() && matches!(kind, FaultKind::UnsyncedLoss | FaultKind::TornWrite) {
            kind = FaultKind::HostCrash; // Nothing unsynced to lose: a plain power loss.
        }
        node.incarnation += 1;
        let incarnation = node.incarnation;
        node.tick_at_ms = None;
        node.last_durable_at_ms = 0;
        let id = node.id;
        self.faults.record(kind);
        self.trace.record(self.now_ms, TraceEvent::Crash { node: id });
        if let Some(audit) = &mut self.election {
            audit.on_crash(id);
        }
        if kind != FaultKind::Crash && !pending.is_empty() {
            let event = format!("{} lost {} unsynced batch(es)", kind.name(), pending.len());
            self.trace.record(self.now_ms, TraceEvent::Node { node: id, event });
        }
        if kind == FaultKind::Crash {
            // The host answers for the dead process: each peer's connection
            // resets and its redial is refused, about one network delay later.
            for observer in (0..self.nodes.len()).filter(|other| *other != index) {
                let delay_ms = self.network.draw_delay_ms();
                self.schedule(delay_ms, SimEvent::ProcessGone { observer, gone: index, incarnation });
            }
        }
        if let Some((leader, term)) = leader_before {
            if leader == index {
                self.start_failover(id, term);
                if let Some(failover) = &mut self.failover {
                    if failover.started_at_ms == self.now_ms && failover.old_leader == id {
                        failover.crash_kind.get_or_insert(crash_kind_name(kind));
                    }
                }
            }
        }
        self.note_quorum_for_failover();
        self.last_fault_at_ms = Some(self.now_ms);
    }

    fn restart(&mut self, index: usize) {
        if self.nodes[index].core.is_some() {
            return;
        }
        self.faults.record(FaultKind::Restart);
        self.trace.record(self.now_ms, TraceEvent::Restart { node: self.nodes[index].id });
        // A node coming back mid-failover (maybe the old leader, with the newest
        // data) changes the election: the failover is no longer single-fault.
        if let Some(failover) = &mut self.failover {
            failover.faults_seen += 1;
        }
        self.last_fault_at_ms = Some(self.now_ms);
        self.start_node(index);
    }

    // ----- network ---------------------------------------------------------------

    fn send(&mut self, message: Message) {
        match self.network.fate(message.from, message.to, self.now_ms) {
            Fate::Lost => {
                self.faults.record(FaultKind::Loss);
                let event = TraceEvent::Drop {
                    from: message.from,
                    to: message.to,
                    kind: message.body.kind(),
                    cause: DropCause::Loss,
                };
                self.trace.record(self.now_ms, event);
            }
            Fate::Delivered { delays_ms, reordered } => {
                if reordered {
                    self.faults.record(FaultKind::Reorder);
                }
                if delays_ms.len() > 1 {
                    self.faults.record(FaultKind::Duplicate);
                }
                for delay_ms in delays_ms {
                    let sent_at_ms = self.now_ms;
                    self.schedule(delay_ms, SimEvent::Deliver { message: message.clone(), sent_at_ms });
                }
            }
        }
    }

    fn deliver(&mut self, message: Message, sent_at_ms: u64) {
        let (from, to, kind) = (message.from, message.to, message.body.kind());
        let index = (to - 1) as usize;
        let cause = if self.nodes[index].core.is_none() {
            Some(DropCause::Down)
        } else if !self.network.is_open(from, to) {
            Some(DropCause::Cut)
        } else if self.flapped_at_ms.get(&(from, to)).is_some_and(|at_ms| *at_ms > sent_at_ms) {
            Some(DropCause::Flap)
        } else {
            None
        };
        if let Some(cause) = cause {
            self.trace.record(self.now_ms, TraceEvent::Drop { from, to, kind, cause });
            return;
        }
        self.trace.record(self.now_ms, TraceEvent::Deliver { from, to, term: message.term, kind });
        if let Body::Vote { ballot, vote, state } = &message.body {
            let event = format!(
                "got vote from n{from}: ballot {ballot}, n{} ({}, {}), {state:?}",
                vote.candidate, vote.last_log_term, vote.last_log_index
            );
            self.trace.record(self.now_ms, TraceEvent::Node { node: to, event });
        }
        let own_vote = match &message.body {
            Body::Vote { vote, state: PeerState::Looking, .. } => vote.candidate == from,
            Body::RequestVote { pre_vote, .. } => !pre_vote,
            _ => false,
        };
        if let (true, Some(audit)) = (own_vote, &mut self.election) {
            audit.on_own_vote_delivered(from, to);
        }
        // The core's clock is the time of its latest tick: bring it to now first,
        // as a real driver does, so that timers reset by this message start now.
        self.advance_clock(index);
        let core = self.nodes[index].core.as_mut().expect("checked above");
        let output = core.step(message);
        self.absorb(index, output);
    }

    /// A process crash's evidence reaches `observer`: its redial to `gone` was
    /// refused. Only while `gone` is still down (a restarted process accepts the
    /// redial) and the link between them is open (a cut link times out instead).
    fn process_gone(&mut self, observer: usize, gone: usize, incarnation: u64) {
        let still_down = self.nodes[gone].core.is_none() && self.nodes[gone].incarnation == incarnation;
        let (observer_id, gone_id) = (self.nodes[observer].id, self.nodes[gone].id);
        let linked = self.network.is_open(observer_id, gone_id) && self.network.is_open(gone_id, observer_id);
        if !still_down || !linked || self.nodes[observer].core.is_none() {
            return;
        }
        self.advance_clock(observer);
        let event = format!("redial to n{gone_id} refused: its process is gone");
        self.trace.record(self.now_ms, TraceEvent::Node { node: observer_id, event });
        let output = self.nodes[observer].core.as_mut().expect("checked above").peer_process_gone(gone_id);
        self.absorb(observer, output);
    }

    /// A connection between two nodes resets and is redialled at once: what was
    /// in flight on it is lost, both ways. No evidence: the redial succeeds.
    fn inject_flap(&mut self) {
        let ids: Vec<NodeId> = self.nodes.iter().map(|node| node.id).collect();
        if ids.len() < 2 {
            return;
        }
        // Half the time a link of the leader: the flap must not cost it its term.
        let leader = self.current_leader().map(|(index, _)| self.nodes[index].id);
        let first = match leader {
            Some(leader) if self.fault_rng.gen_bool(0.5) => leader,
            _ => *ids.choose(&mut self.fault_rng).expect("at least two nodes"),
        };
        let others: Vec<NodeId> = ids.iter().copied().filter(|id| *id != first).collect();
        let second = *others.choose(&mut self.fault_rng).expect("at least two nodes");
        self.flapped_at_ms.insert((first, second), self.now_ms);
        self.flapped_at_ms.insert((second, first), self.now_ms);
        self.faults.record(FaultKind::LinkFlap);
        let event = format!("link to n{second} flapped: in-flight messages lost, the redial succeeds");
        self.trace.record(self.now_ms, TraceEvent::Node { node: first, event });
        self.last_fault_at_ms = Some(self.now_ms);
    }

    /// The leader is asked to hand over: half the time to a random member,
    /// else to the most up-to-date one. A refusal (not serving yet, a transfer
    /// in progress) changes nothing.
    fn inject_transfer(&mut self) {
        let Some((leader, _)) = self.current_leader() else { return };
        let leader_id = self.nodes[leader].id;
        let others: Vec<NodeId> = self.nodes.iter().map(|node| node.id).filter(|id| *id != leader_id).collect();
        let target = if self.fault_rng.gen_bool(0.5) { others.choose(&mut self.fault_rng).copied() } else { None };
        self.advance_clock(leader);
        let Some(core) = self.nodes[leader].core.as_mut() else { return };
        let event = match core.transfer_leadership(target) {
            Ok(started) => {
                let target = started.target;
                self.absorb(leader, started.output);
                self.faults.record(FaultKind::Transfer);
                self.last_fault_at_ms = Some(self.now_ms);
                format!("asked to hand over to n{target}")
            }
            Err(error) => format!("asked to hand over ({target:?}), refused: {error}"),
        };
        self.trace.record(self.now_ms, TraceEvent::Node { node: leader_id, event });
    }

    /// An operator's membership change through the leader
    /// (`FaultKind::Membership`): promote a learner if there is one, else add
    /// back a node outside the membership (wiped first unless it already
    /// waits to join), else remove a voter other than the leader or set a
    /// priority. A refusal (a change in progress, a learner behind) changes
    /// nothing.
    fn inject_membership_change(&mut self) {
        let Some((leader, _)) = self.current_leader() else { return };
        let leader_id = self.nodes[leader].id;
        let core = self.nodes[leader].core.as_ref().expect("a leader is up");
        let membership = core.membership().clone();
        // Wiping a node is safe only once its removal committed: until then
        // it may still be a voter whose vote counts.
        let removal_committed = core.membership_index().1;
        if removal_committed {
            for index in 0..self.nodes.len() {
                if self.nodes[index].wipe_when_removed && !membership.contains(self.nodes[index].id) {
                    self.nodes[index].wipe_when_removed = false;
                    self.wipe(index);
                }
            }
        }
        let learners = membership.learners();
        let voters = membership.voters();
        let outsiders: Vec<usize> =
            (0..self.nodes.len()).filter(|index| !membership.contains(self.nodes[*index].id)).collect();
        let min_voters = if self.nodes.len() >= 4 { 3 } else { 2 };
        let change = if let Some(id) = learners.choose(&mut self.fault_rng).copied() {
            MembershipChange::Promote { id }
        } else if let Some(index) = outsiders.choose(&mut self.fault_rng).copied() {
            if !self.nodes[index].joins {
                if removal_committed {
                    self.wipe(index);
                }
                return; // Added back later.
            }
            if self.now_ms < self.nodes[index].wiped_at_ms + REJOIN_AFTER_WIPE_MS {
                return;
            }
            let id = self.nodes[index].id;
            let addresses = MemberAddresses { peer: format!("n{id}"), client: String::new(), http: String::new() };
            MembershipChange::AddLearner { id, addresses }
        } else if voters.len() > min_voters && self.fault_rng.gen_bool(0.7) {
            let others: Vec<NodeId> = voters.iter().copied().filter(|id| *id != leader_id).collect();
            MembershipChange::Remove { id: *others.choose(&mut self.fault_rng).expect("more than one voter") }
        } else {
            let id = *voters.choose(&mut self.fault_rng).expect("a voter");
            MembershipChange::SetPriority { id, priority: self.fault_rng.gen_range(0..3) }
        };
        self.advance_clock(leader);
        let Some(core) = self.nodes[leader].core.as_mut() else { return };
        let (event, made) = match core.change_membership(change.clone()) {
            Ok(proposal) => {
                self.absorb(leader, proposal.output);
                self.faults.record(FaultKind::Membership);
                self.last_fault_at_ms = Some(self.now_ms);
                (format!("membership change {change:?} at index {}", proposal.index), true)
            }
            Err(error) => (format!("membership change {change:?} refused: {error}"), false),
        };
        self.trace.record(self.now_ms, TraceEvent::Node { node: leader_id, event });
        if let (MembershipChange::Remove { id }, true) = (&change, made) {
            let id = *id;
            // Half the removed nodes are replaced machines: wiped once the
            // removal committed. The others keep running on their old data,
            // unaware, until added back.
            let index = (id - 1) as usize;
            if !self.nodes[index].joins && self.fault_rng.gen_bool(0.5) {
                self.nodes[index].wipe_when_removed = true;
            }
        }
    }

    /// A removed node's machine is replaced: its process stops, its disk is
    /// wiped, and it starts empty, waiting to be added.
    fn wipe(&mut self, index: usize) {
        let id = self.nodes[index].id;
        if self.nodes[index].core.is_some() {
            self.crash(index, FaultKind::Crash);
        }
        self.nodes[index].disk = SimDisk::default();
        self.nodes[index].joins = true;
        self.nodes[index].wiped_at_ms = self.now_ms;
        self.trace.record(self.now_ms, TraceEvent::Node { node: id, event: "wiped: starts empty to join".into() });
        self.start_node(index);
    }

    // ----- faults ---------------------------------------------------------------

    fn fault_gap_ms(&mut self) -> u64 {
        let uniform: f64 = self.fault_rng.gen_range(f64::EPSILON..1.0);
        ((-uniform.ln() * self.params.fault_interval_mean_ms as f64) as u64).max(1)
    }

    fn inject_fault(&mut self) {
        if self.phase != Phase::Safety {
            return;
        }
        let faults = self.options.faults;
        let cuts_allowed = self.network.active_cuts() < MAX_ACTIVE_CUTS;
        let kinds: Vec<FaultKind> = [
            FaultKind::Crash,
            FaultKind::HostCrash,
            FaultKind::UnsyncedLoss,
            FaultKind::TornWrite,
            FaultKind::LinkFlap,
            FaultKind::Partition,
            FaultKind::AsymmetricPartition,
            FaultKind::LinkBreak,
            FaultKind::OneWayLink,
            FaultKind::Isolate,
            FaultKind::Transfer,
            FaultKind::Membership,
        ]
        .into_iter()
        .filter(|kind| {
            faults.contains(*kind)
                && (is_crash(*kind)
                    || matches!(kind, FaultKind::LinkFlap | FaultKind::Transfer | FaultKind::Membership)
                    || cuts_allowed)
        })
        .collect();
        if let Some(kind) = kinds.choose(&mut self.fault_rng).copied() {
            if is_crash(kind) {
                self.inject_crash(kind);
            } else if kind == FaultKind::LinkFlap {
                self.inject_flap();
            } else if kind == FaultKind::Transfer {
                self.inject_transfer();
            } else if kind == FaultKind::Membership {
                self.inject_membership_change();
            } else {
                self.inject_cut(kind);
            }
        }
        if ![
            FaultKind::Crash,
            FaultKind::HostCrash,
            FaultKind::UnsyncedLoss,
            FaultKind::TornWrite,
            FaultKind::LinkFlap,
            FaultKind::Transfer,
            FaultKind::Membership,
        ]
        .into_iter()
        .any(|kind| faults.contains(kind))
            && ![
                FaultKind::Partition,
                FaultKind::AsymmetricPartition,
                FaultKind::LinkBreak,
                FaultKind::OneWayLink,
                FaultKind::Isolate,
            ]
            .into_iter()
            .any(|kind| faults.contains(kind))
        {
            return; // Nothing structural to inject; message faults need no schedule.
        }
        let gap_ms = self.fault_gap_ms();
        self.schedule(gap_ms, SimEvent::InjectFault);
    }

    /// Half of the targeted faults hit the leader: failovers are what we measure.
    fn pick_target(&mut self) -> Option<usize> {
        if let Some((leader, _)) = self.current_leader() {
            if self.fault_rng.gen_bool(0.5) {
                return Some(leader);
            }
        }
        let up: Vec<usize> = (0..self.nodes.len()).filter(|index| self.nodes[*index].core.is_some()).collect();
        up.choose(&mut self.fault_rng).copied()
    }

    fn inject_crash(&mut self, kind: FaultKind) {
        // A disk fault needs unsynced writes to act on: prefer a node that has some.
        let with_pending: Vec<usize> = (0..self.nodes.len())
            .filter(|index| self.nodes[*index].core.is_some() && !self.nodes[*index].pending.is_empty())
            .collect();
        let disk_fault = matches!(kind, FaultKind::UnsyncedLoss | FaultKind::TornWrite);
        let target = if disk_fault && !with_pending.is_empty() {
            with_pending.choose(&mut self.fault_rng).copied()
        } else {
            self.pick_target()
        };
        let Some(target) = target else { return };
        self.crash(target, kind);
        if self.options.faults.contains(FaultKind::Restart) || kind != FaultKind::Crash {
            let downtime_ms = self.fault_rng.gen_range(50..=2_000);
            self.schedule(downtime_ms, SimEvent::Restart { node: target });
        }
    }

    fn inject_cut(&mut self, kind: FaultKind) {
        let ids: Vec<NodeId> = self.nodes.iter().map(|node| node.id).collect();
        if ids.len() < 2 {
            return;
        }
        let (blocked, description) = match kind {
            FaultKind::Partition | FaultKind::AsymmetricPartition => {
                let mut shuffled = ids.clone();
                shuffled.shuffle(&mut self.fault_rng);
                let split = self.fault_rng.gen_range(1..shuffled.len());
                let (left, right) = shuffled.split_at(split);
                if kind == FaultKind::Partition {
                    (between(left, right), format!("partition {left:?} | {right:?}"))
                } else {
                    (one_way(left, right), format!("one-way {left:?} -> {right:?} blocked"))
                }
            }
            FaultKind::LinkBreak => {
                let pair: Vec<NodeId> = ids.choose_multiple(&mut self.fault_rng, 2).copied().collect();
                (between(&pair[..1], &pair[1..]), format!("link n{} <-> n{}", pair[0], pair[1]))
            }
            FaultKind::OneWayLink => {
                // Half the time the leader's link to one follower: that follower
                // alone loses the leader (the case the fast mode must not elect on).
                let leader = self.current_leader().map(|(index, _)| self.nodes[index].id);
                let from = match leader {
                    Some(leader) if self.fault_rng.gen_bool(0.5) => leader,
                    _ => *ids.choose(&mut self.fault_rng).expect("at least two nodes"),
                };
                let others: Vec<NodeId> = ids.iter().copied().filter(|id| *id != from).collect();
                let to = *others.choose(&mut self.fault_rng).expect("at least two nodes");
                (one_way(&[from], &[to]), format!("one-way n{from} -> n{to} blocked"))
            }
            FaultKind::Isolate => {
                let Some(target) = self.pick_target() else { return };
                let target_id = self.nodes[target].id;
                let others: Vec<NodeId> = ids.iter().copied().filter(|id| *id != target_id).collect();
                (between(&[target_id], &others), format!("isolate n{target_id}"))
            }
            _ => unreachable!("only cuts reach here"),
        };
        let leader_before = self.current_leader();
        let id = self.network.add_cut(blocked, description.clone());
        self.faults.record(kind);
        self.trace.record(self.now_ms, TraceEvent::Cut { description });
        if let Some((leader, term)) = leader_before {
            if !self.leader_reaches_majority() {
                self.start_failover(self.nodes[leader].id, term);
            }
        }
        self.note_quorum_for_failover();
        self.last_fault_at_ms = Some(self.now_ms);
        let duration_ms = self.fault_rng.gen_range(200..=3_000);
        self.schedule(duration_ms, SimEvent::HealCut { id });
    }

    // ----- leadership and failover ---------------------------------------------------

    /// The live leader of the highest term, if any.
    fn current_leader(&self) -> Option<(usize, Term)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(index, node)| node.core.as_ref().map(|core| (index, core)))
            .filter(|(_, core)| core.role() == Role::Leader)
            .map(|(index, core)| (index, core.term()))
            .max_by_key(|(_, term)| *term)
    }

    /// Whether the current leader can exchange messages with a majority (itself included).
    fn leader_reaches_majority(&self) -> bool {
        let Some((leader, _)) = self.current_leader() else { return false };
        let leader_id = self.nodes[leader].id;
        let reachable = self
            .nodes
            .iter()
            .filter(|node| node.core.is_some())
            .filter(|node| {
                node.id == leader_id
                    || (self.network.is_open(leader_id, node.id) && self.network.is_open(node.id, leader_id))
            })
            .count();
        reachable >= conclave_core::quorum::majority(self.nodes.len())
    }

    /// A disruption is the same event in every mode: a term above every term
    /// any node held becomes binding (a Raft candidate raises its term, or a
    /// vote-exchange node finalizes its vote for a ballot) while the leader of
    /// an older term can still exchange messages with a majority. Counted
    /// once per term, at the first node that binds it
    /// (docs/decisions/0079-a-disruption-is-a-term-bound-beside-a-working-leader.md).
    fn note_new_term(&mut self, index: usize) {
        let term = self.nodes[index].core.as_ref().expect("a live node produced this output").term();
        if term <= self.highest_term {
            return;
        }
        self.highest_term = term;
        let Some((leader, leader_term)) = self.current_leader() else { return };
        if leader_term < term && leader != index && self.leader_reaches_majority() {
            self.disruptions += 1;
            let event = format!(
                "disruption: binds term {term} while leader n{} of term {leader_term} still reaches a majority",
                self.nodes[leader].id
            );
            self.trace.record(self.now_ms, TraceEvent::Node { node: self.nodes[index].id, event });
        }
    }

    /// The live nodes that can all reach each other and form a majority (every
    /// live node if no side has a majority), with their data versions.
    fn majority_side_versions(&self) -> BTreeMap<NodeId, (Term, LogIndex)> {
        let live: Vec<usize> = (0..self.nodes.len()).filter(|index| self.nodes[*index].core.is_some()).collect();
        let linked = |a: usize, b: usize| {
            let (a, b) = (self.nodes[a].id, self.nodes[b].id);
            self.network.is_open(a, b) && self.network.is_open(b, a)
        };
        let mut unvisited: BTreeSet<usize> = live.iter().copied().collect();
        let mut side: Vec<usize> = live.clone();
        while let Some(start) = unvisited.pop_first() {
            let mut component = vec![start];
            let mut cursor = 0;
            while cursor < component.len() {
                let current = component[cursor];
                cursor += 1;
                let neighbours: Vec<usize> =
                    unvisited.iter().copied().filter(|other| linked(current, *other)).collect();
                for neighbour in neighbours {
                    unvisited.remove(&neighbour);
                    component.push(neighbour);
                }
            }
            if component.len() >= conclave_core::quorum::majority(self.nodes.len()) {
                side = component;
                break;
            }
        }
        side.into_iter()
            .map(|index| {
                let log = self.nodes[index].core.as_ref().expect("live").log();
                (self.nodes[index].id, (log.last_term(), log.last_index()))
            })
            .collect()
    }

    /// An election starts: what data each node on the majority side holds,
    /// and whether it is durable (docs/design/simulator.md).
    fn start_election_audit(&mut self) {
        let versions = self.majority_side_versions();
        let durable: BTreeSet<NodeId> = versions
            .iter()
            .filter(|(id, (term, index))| self.nodes[(**id - 1) as usize].disk.holds(*index, *term))
            .map(|(id, _)| *id)
            .collect();
        let shown: Vec<String> = versions
            .iter()
            .map(|(id, (term, index))| {
                format!("n{id} ({term}, {index}){}", if durable.contains(id) { "" } else { " not durable" })
            })
            .collect();
        let event = format!("election starts; data: {}", shown.join(", "));
        self.trace.record(self.now_ms, TraceEvent::Phase { name: "election" });
        self.trace.record(self.now_ms, TraceEvent::Node { node: 0, event });
        self.election = Some(ElectionAudit::start(self.now_ms, versions, durable));
    }

    /// A leader was elected: was its data the newest among the nodes alive in
    /// the majority side when the election started (and still alive), and if
    /// not, why not (`crate::newest_wins`)?
    fn on_election_won(&mut self, winner: usize) {
        let Some(audit) = self.election.take() else { return };
        let winner_id = self.nodes[winner].id;
        let quorum = conclave_core::quorum::majority(self.nodes.len());
        let verdict = audit.judge(winner_id, &self.majority_side_versions(), quorum);
        self.elections_won += 1;
        if verdict.up_to_date() {
            self.up_to_date_wins += 1;
        }
        if verdict.up_to_date_among_electable() {
            self.up_to_date_electable_wins += 1;
        }
        if let Some(cause) = verdict.miss {
            *self.not_newest_by_cause.entry(cause.name().to_string()).or_default() += 1;
        }
        let shown = |version: Option<(Term, LogIndex)>| {
            version.map_or("none".to_string(), |(term, index)| format!("({term}, {index})"))
        };
        let event = format!(
            "won with data {}; newest eligible {}{}",
            shown(verdict.winner_version),
            shown(verdict.newest),
            match verdict.miss {
                None => String::new(),
                Some(cause) => format!(
                    " (NOT the newest: {cause}, {}; newest electable {})",
                    if cause.unavoidable() { "unavoidable" } else { "avoidable" },
                    shown(verdict.newest_electable)
                ),
            }
        );
        self.trace.record(self.now_ms, TraceEvent::Node { node: winner_id, event });
    }

    fn start_failover(&mut self, old_leader: NodeId, old_term: Term) {
        if self.failover.is_none() {
            let election_timeout_ms = self.node_config(old_leader).election_timeout_ms();
            let unsettled = self.last_fault_at_ms.is_some_and(|at_ms| self.now_ms < at_ms + election_timeout_ms);
            self.failover = Some(PendingFailover {
                started_at_ms: self.now_ms,
                old_term,
                old_leader,
                crash_kind: None,
                quorum_lost: false,
                faults_seen: u32::from(unsettled),
            });
        }
    }

    /// After a fault during a failover: can the nodes other than the old leader
    /// still form a connected majority?
    fn note_quorum_for_failover(&mut self) {
        let Some(mut failover) = self.failover else { return };
        failover.faults_seen += 1;
        let side = self.majority_side_versions();
        let others = side.keys().filter(|id| **id != failover.old_leader).count();
        if others < conclave_core::quorum::majority(self.nodes.len()) {
            failover.quorum_lost = true;
        }
        self.failover = Some(failover);
    }

    fn on_leader_commit(&mut self, term: Term) {
        let Some(failover) = self.failover else { return };
        if term > failover.old_term {
            let elapsed_ms = self.now_ms - failover.started_at_ms;
            if failover.quorum_lost {
                self.failovers_without_quorum += 1;
            } else {
                self.failover_ms.push(elapsed_ms);
                if let Some(kind) = failover.crash_kind {
                    self.failover_ms_by_crash_kind.entry(kind.to_string()).or_default().push(elapsed_ms);
                }
                if failover.faults_seen <= 1 {
                    self.single_fault_failover_ms.push(elapsed_ms);
                    if let Some(kind) = failover.crash_kind {
                        self.single_fault_failover_ms_by_crash_kind
                            .entry(kind.to_string())
                            .or_default()
                            .push(elapsed_ms);
                    }
                }
            }
            let event = format!(
                "failover from n{} t{} done in {elapsed_ms} ms{}",
                failover.old_leader,
                failover.old_term,
                if failover.quorum_lost { " (no quorum for a while: not measured)" } else { "" }
            );
            self.trace.record(self.now_ms, TraceEvent::Phase { name: "failover" });
            self.trace.record(self.now_ms, TraceEvent::Node { node: failover.old_leader, event });
            self.failover = None;
        } else if term == failover.old_term {
            // The old leader got through again: no failover happened.
            self.failover = None;
        }
    }

    // ----- client ---------------------------------------------------------------

    fn propose(&mut self) {
        match self.phase {
            Phase::Safety => {
                self.propose_unsettled_again();
                let command = self.next_command_id;
                self.next_command_id += 1;
                if let Some(node) = self.propose_command(command) {
                    self.unsettled.push_back((command, node, self.now_ms));
                    if self.unsettled.len() > MAX_UNSETTLED {
                        self.unsettled.pop_front();
                    }
                }
                let jitter = self.client_rng.gen_range(0..=self.params.proposal_interval_ms);
                self.schedule(self.params.proposal_interval_ms / 2 + jitter, SimEvent::Propose);
            }
            Phase::Liveness { .. } => {
                for position in 0..self.liveness_commands.len() {
                    let (command, proposed_at) = self.liveness_commands[position];
                    let due = proposed_at.is_none_or(|at_ms| self.now_ms >= at_ms + LIVENESS_RETRY_MS);
                    if due && !self.applied_commands.contains(&command) && self.propose_command(command).is_some() {
                        self.liveness_commands[position].1 = Some(self.now_ms);
                    }
                }
                self.schedule(LIVENESS_CLIENT_INTERVAL_MS, SimEvent::Propose);
            }
        }
    }

    /// Asks a node that believes it leads for a linearizable read. Any such
    /// node, not only the newest leader: an old leader cut off in a minority is
    /// the case ReadIndex exists for, and the checker must see it refuse to
    /// answer stale.
    fn read(&mut self) {
        let leaders: Vec<usize> = (0..self.nodes.len())
            .filter(|index| self.nodes[*index].core.as_ref().is_some_and(|core| core.role() == Role::Leader))
            .collect();
        if let Some(&index) = leaders.choose(&mut self.read_rng) {
            self.advance_clock(index);
            let context = self.next_read_context;
            self.next_read_context += 1;
            let acknowledged = self.invariants.state_machine_safety.applied_len();
            let core = self.nodes[index].core.as_mut().expect("chosen among live nodes");
            if let Ok(output) = core.read_index(context) {
                let id = self.nodes[index].id;
                self.reads_issued += 1;
                self.invariants.linearizable_reads.on_issue(context, id, acknowledged);
                let event = format!("read {context} issued (applied somewhere: {acknowledged})");
                self.trace.record(self.now_ms, TraceEvent::Node { node: id, event });
                self.absorb(index, output);
            }
        }
        let jitter = self.read_rng.gen_range(0..=self.params.read_interval_ms);
        self.schedule(self.params.read_interval_ms / 2 + jitter, SimEvent::Read);
    }

    /// Proposes again, to the current leader, the unsettled commands another
    /// node appended (its leadership may be lost); forgets the settled and the
    /// old ones.
    fn propose_unsettled_again(&mut self) {
        let now_ms = self.now_ms;
        let applied = &self.applied_commands;
        self.unsettled.retain(|(command, _, at_ms)| !applied.contains(command) && now_ms < at_ms + UNSETTLED_MS);
        let Some((leader, _)) = self.current_leader() else { return };
        let leader = self.nodes[leader].id;
        for position in 0..self.unsettled.len() {
            let (command, node, _) = self.unsettled[position];
            if node != leader {
                if let Some(node) = self.propose_command(command) {
                    self.unsettled[position].1 = node;
                }
            }
        }
    }

    /// Hands `command` to the current leader; the leader's id if it was appended.
    fn propose_command(&mut self, command: u64) -> Option<NodeId> {
        let (leader, _) = self.current_leader()?;
        self.advance_clock(leader);
        let core = self.nodes[leader].core.as_mut().expect("leaders are live");
        match core.propose(command.to_le_bytes().to_vec()) {
            Ok(proposal) => {
                self.proposals += 1;
                let node = self.nodes[leader].id;
                self.trace.record(self.now_ms, TraceEvent::Proposed { node, index: proposal.index, id: command });
                self.absorb(leader, proposal.output);
                Some(node)
            }
            Err(_) => None,
        }
    }

    // ----- liveness ---------------------------------------------------------------

    fn start_liveness(&mut self) {
        self.trace.record(self.now_ms, TraceEvent::Phase { name: "liveness" });
        self.phase = Phase::Liveness { deadline_ms: self.now_ms + self.params.liveness_bound_ms };
        self.network.faulty = false;
        for description in self.network.heal_all() {
            self.trace.record(self.now_ms, TraceEvent::Heal { description });
        }
        for index in 0..self.nodes.len() {
            self.restart(index);
        }
        let first = self.next_command_id;
        self.next_command_id += self.params.liveness_proposals;
        self.liveness_commands = (first..first + self.params.liveness_proposals).map(|id| (id, None)).collect();
    }

    /// Every member is up and has applied every liveness-phase command (a
    /// node the leader's membership no longer names has nothing to apply).
    fn liveness_reached(&self) -> bool {
        let Some((leader, _)) = self.current_leader() else { return false };
        let membership = self.nodes[leader].core.as_ref().expect("a leader is up").membership();
        self.nodes.iter().filter(|node| membership.contains(node.id)).all(|node| {
            node.core.is_some()
                && self.liveness_commands.iter().all(|(command, _)| node.liveness_applied.contains(command))
        })
    }

    fn liveness_failure(&self) -> String {
        let leader = self.current_leader().map(|(index, term)| format!("n{} t{term}", self.nodes[index].id));
        let lagging: Vec<String> = self
            .nodes
            .iter()
            .map(|node| {
                let applied = self
                    .liveness_commands
                    .iter()
                    .filter(|(command, _)| node.liveness_applied.contains(command))
                    .count();
                let role = node.core.as_ref().map(|core| format!("{:?} t{}", core.role(), core.term()));
                format!(
                    "n{} {} applied {applied}/{}",
                    node.id,
                    role.unwrap_or("down".into()),
                    self.liveness_commands.len()
                )
            })
            .collect();
        format!(
            "faults healed for {} ms, yet not every node applied every new command (leader: {}; {})",
            self.params.liveness_bound_ms,
            leader.unwrap_or_else(|| "none".into()),
            lagging.join(", ")
        )
    }
}

/// How long after a wipe a node may be added back: longer than any message
/// of its old process can stay in flight.
const REJOIN_AFTER_WIPE_MS: u64 = 2_000;

/// Faults that stop a node (the rest cut links).
fn is_crash(kind: FaultKind) -> bool {
    matches!(kind, FaultKind::Crash | FaultKind::HostCrash | FaultKind::UnsyncedLoss | FaultKind::TornWrite)
}

/// How a crashed leader's peers find out: `process` (its host refuses their
/// redials) or `host` (silence), the keys of `failover_ms_by_crash_kind`.
fn crash_kind_name(kind: FaultKind) -> &'static str {
    if kind == FaultKind::Crash {
        "process"
    } else {
        "host"
    }
}

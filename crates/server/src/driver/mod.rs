//! The node driver: one task that owns the core [`Node`], feeds it a real
//! monotonic clock, peer frames and client commands, and carries out each
//! [`Output`] in the contract's order — persist (group commit, [`persist`]),
//! then send, then apply to the KV store. Linearizable reads skip the log
//! ([`reads`]: ReadIndex through the leader).

pub mod admin;
mod apply;
mod persist;
mod reads;
pub mod requests;
mod snapshot;
mod staging;
mod steps;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use conclave_core::{Event, LogIndex, Node, NodeId, Output, ProposeError};
use conclave_storage::Wal;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::kv::{Envelope, KvCommand};
use crate::membership::MemberTable;
use crate::observe::metrics::{increment, increment_by};
use crate::observe::{wall_clock_ms, Observability};
use crate::peer::frame::{ForwardOutcome, ForwardResult, PeerFrame};
use crate::peer::{PeerInput, Transport};
use crate::status::{ElectionRound, NodeStatus};
pub(crate) use apply::FlushPolicy;
use apply::{Applier, ApplyItem, ApplyReport, ReadTarget};
use persist::GroupCommit;
use requests::{ReplySender, RequestError, Requests};
pub(crate) use snapshot::{restore_store, Restored};
use steps::{StepStart, StepWatch, Wake};

/// The most forwards a leader-elect holds until it serves; more are turned away.
const MAX_HELD_FORWARDS: usize = 65_536;

/// How often waiting requests are checked for their deadlines.
const SWEEP_INTERVAL: Duration = Duration::from_millis(20);

/// A client's command on its way to the driver.
#[derive(Debug)]
pub struct ClientRequest {
    /// The command.
    pub command: KvCommand,
    /// Serve a read from this node's state without going through the log.
    pub stale_read: bool,
    /// The client connection it came on: a connection's commands take effect
    /// in the order sent.
    pub connection: u64,
    /// Where the answer goes.
    pub reply: ReplySender,
}

/// Owns the node and everything that must stay in step with it.
pub(crate) struct Driver {
    node: Node,
    /// The apply thread, which owns the state machine.
    applier: Applier,
    /// What the apply thread reports.
    reports: mpsc::UnboundedReceiver<ApplyReport>,
    /// The last index sent to the apply thread: a read placed now sees it.
    submitted_index: u64,
    /// Keys in the store, as last reported.
    keys: u64,
    /// The store's durable applied index, as last reported.
    durable_applied_index: u64,
    /// With a state machine durable on its own (the engine), where a snapshot
    /// made to send is written: the log is compacted without one
    /// (docs/decisions/0086). `None` for the in-memory store.
    outgoing_dir: Option<std::path::PathBuf>,
    /// Writes the chunks of a leader's snapshot to a scratch file as they
    /// arrive, with a state machine durable on its own (docs/decisions/0090).
    stager: Option<staging::Stager>,
    /// A snapshot to send is being made, at this index.
    outgoing_in_flight: Option<LogIndex>,
    group_commit: GroupCommit,
    transport: Transport,
    requests: Requests,
    status: watch::Sender<NodeStatus>,
    start: Instant,
    last_tick_ms: u64,
    incarnation: u64,
    applied_index: u64,
    /// Forwards this node proposed as leader, by log index: (origin, incarnation,
    /// request id). When the entry there is applied, the origin gets its result.
    accepted_forwards: BTreeMap<LogIndex, (NodeId, u64, u64)>,
    /// Forwards that reached this node while it was a leader-elect, in arrival
    /// order: proposed once it serves, turned away (`NotLeader`) if it does
    /// not get to. Turning them away at once would make their origin send them
    /// again after later writes of the same connection.
    held_forwards: std::collections::VecDeque<(NodeId, u64, u64, Vec<u8>)>,
    election_mode: conclave_core::ElectionMode,
    observe: Arc<Observability>,
    /// The vote exchange in progress, from this node's events.
    election: Option<ElectionRound>,
    /// When this node last lost its leader, until a new leader's first commit.
    leader_lost_at: Option<Instant>,
    /// The newest completed persist not yet reported to the core.
    unreported_mark: Option<conclave_core::DurableMark>,
    /// When to snapshot; see [`snapshot`].
    triggers: snapshot::Triggers,
    /// A refused snapshot doomed the core: drop its outputs, restart it from the WAL.
    reload_pending: bool,
    /// A snapshot from the leader being checked off this task, with the
    /// outputs waiting behind it ([`snapshot::Screening`]).
    screening: Option<snapshot::Screening>,
    /// Core restarts after refused snapshots.
    reloads: u64,
    core_config: conclave_core::Config,
    snapshots_installed: u64,
    snapshots_rejected: u64,
    /// How late the driver loop's timers fire, worst so far (milliseconds).
    lateness_max_ms: u64,
    /// The driver loop's steps, to explain a late timer.
    steps: StepWatch,
    engine_name: &'static str,
    cache_bytes: u64,
    /// Linearizable reads this node's core holds as leader.
    reads: reads::Reads,
    /// The membership the core acts on, resolved, for the transport and the
    /// client API (`membership::MemberTable`).
    members: watch::Sender<Arc<MemberTable>>,
    /// To resolve the members' addresses the log leaves empty.
    server_config: ServerConfig,
    /// The membership last published: (index, committed).
    published_membership: (LogIndex, bool),
}

/// What the driver publishes for the other tasks to read.
pub(crate) struct Published {
    /// The node's status, after every step.
    pub(crate) status: watch::Sender<NodeStatus>,
    /// The membership, resolved, when it changes.
    pub(crate) members: watch::Sender<Arc<MemberTable>>,
}

impl Driver {
    pub(crate) fn new(
        config: &ServerConfig,
        restored: Restored,
        wal: Wal,
        transport: Transport,
        published: Published,
        incarnation: u64,
        observe: Arc<Observability>,
    ) -> Driver {
        let Published { status, members } = published;
        let timing = &config.timing;
        let Restored { node, machine, applied_index, incoming } = restored;
        let (report_sender, reports) = mpsc::unbounded_channel();
        let policy = FlushPolicy {
            interval: Duration::from_millis(config.state_machine.flush_interval_ms),
            bytes: config.state_machine.flush_bytes,
        };
        Driver {
            node,
            applier: Applier::start(config.node_id, machine, policy, report_sender),
            reports,
            submitted_index: applied_index,
            keys: 0,
            durable_applied_index: applied_index,
            outgoing_dir: config.state_machine.engine().is_on_disk().then(|| config.data_dir.clone()),
            outgoing_in_flight: None,
            stager: incoming.map(|file| staging::Stager::start(config.node_id, file)),
            group_commit: GroupCommit::new(wal, observe.clone()),
            transport,
            requests: Requests::new(
                Duration::from_millis(timing.leader_wait_ms),
                Duration::from_millis(timing.request_timeout_ms),
            ),
            status,
            start: Instant::now(),
            last_tick_ms: 0,
            incarnation,
            applied_index,
            accepted_forwards: BTreeMap::new(),
            held_forwards: std::collections::VecDeque::new(),
            election_mode: config.election_mode().unwrap_or_default(),
            observe,
            election: None,
            leader_lost_at: None,
            unreported_mark: None,
            triggers: snapshot::Triggers::new(config),
            reload_pending: false,
            screening: None,
            reloads: 0,
            core_config: config.core_config(),
            snapshots_installed: 0,
            snapshots_rejected: 0,
            lateness_max_ms: 0,
            steps: StepWatch::default(),
            engine_name: config.state_machine.engine().name(),
            cache_bytes: config.state_machine.cache_bytes_bound(),
            reads: reads::Reads::default(),
            members,
            server_config: config.clone(),
            published_membership: (0, false),
        }
    }

    /// The core's membership changed: dial the new members, stop dialling
    /// the ones that left, and publish the table (docs/design/membership.md).
    pub(crate) fn publish_members(&mut self) {
        let at = self.node.membership_index();
        self.published_membership = at;
        let index = at.0;
        let table = MemberTable::resolve(self.node.membership(), at, &self.server_config);
        if **self.members.borrow() == table {
            return;
        }
        info!(
            node = self.node.id(),
            index,
            voters = ?self.node.membership().voters(),
            learners = ?self.node.membership().learners(),
            voter = self.node.status().voter,
            "membership changed"
        );
        self.transport.set_members(&table);
        self.members.send_replace(Arc::new(table));
    }

    /// The status a driver for `config` publishes before it starts.
    pub(crate) fn initial_status(config: &ServerConfig) -> NodeStatus {
        NodeStatus {
            node_id: config.node_id,
            cluster_id: config.cluster_id,
            election_mode: config.election_mode().unwrap_or_default(),
            role: conclave_core::Role::Follower,
            term: 0,
            leader: None,
            commit_index: 0,
            applied_index: 0,
            last_index: 0,
            keys: 0,
            pending_requests: 0,
            dropped_peer_frames: 0,
            wal_syncs: 0,
            serving: false,
            membership_index: 0,
            voter: !config.join,
            leader_term: None,
            leader_term_in_log: None,
            last_term: 0,
            followers: BTreeMap::new(),
            dropped: BTreeMap::new(),
            election: None,
            snapshot_index: 0,
            snapshots_taken: 0,
            snapshots_installed: 0,
            snapshots_rejected: 0,
            durable_applied_index: 0,
            driver_lateness_ms_max: 0,
            state_machine_engine: config.state_machine.engine().name(),
            state_machine_cache_bytes: config.state_machine.cache_bytes_bound(),
        }
    }

    /// Runs until `shutdown` turns true, or until storage fails (fatal: the node
    /// must not go on when it cannot make its state durable).
    pub(crate) async fn run(
        mut self,
        mut peers: mpsc::Receiver<PeerInput>,
        mut process_gone: mpsc::Receiver<NodeId>,
        mut clients: mpsc::Receiver<ClientRequest>,
        mut admin: mpsc::Receiver<admin::AdminRequest>,
        mut shutdown: watch::Receiver<bool>,
        grace: Duration,
    ) -> Result<(), ServerError> {
        // Once shutdown starts, in-flight requests get `grace` to finish.
        let mut drain_deadline: Option<Instant> = None;
        let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let first = self.node.tick(0);
        self.enqueue(first);
        // One clock reading ends a step and starts the next housekeeping.
        let mut housekeeping = StepStart::now();
        loop {
            if let Some(deadline) = drain_deadline {
                // Requests a connection handed over before the drain began are
                // in flight too: they are answered, not failed.
                if (self.requests.len() == 0 && clients.is_empty()) || Instant::now() >= deadline {
                    break;
                }
            }
            for output in self.group_commit.start_if_idle() {
                self.release(output);
            }
            self.report_persisted();
            self.reload_if_due()?;
            self.publish_status();
            self.steps.step(housekeeping.finish(Wake::Housekeeping, 0).0);
            // A deadline at or before the last tick already fired: wait a millisecond
            // rather than spin on it.
            let deadline_ms = self.node.next_deadline_ms().max(self.last_tick_ms + 1);
            let deadline = self.start + Duration::from_millis(deadline_ms);
            let step = tokio::select! {
                _ = shutdown.changed(), if drain_deadline.is_none() => {
                    info!(node = self.node.id(), pending = self.requests.len(), "draining in-flight requests");
                    let woke = StepStart::now();
                    drain_deadline = Some(Instant::now() + grace);
                    (Wake::Shutdown, woke, 0)
                }
                done = self.group_commit.completion() => {
                    let woke = StepStart::now();
                    for output in done? {
                        self.release(output);
                    }
                    self.report_persisted();
                    if let Some((index, data)) = self.group_commit.take_saved_snapshot_data() {
                        // The same bytes, now the page cache's rather than the
                        // process's; a marker of a log compacted without a
                        // snapshot has none.
                        if !data.is_empty() {
                            self.node.replace_snapshot_data(index, data);
                        }
                    }
                    (Wake::Persisted, woke, 1)
                }
                Some(input) = peers.recv() => {
                    let woke = StepStart::now();
                    self.on_peer(input);
                    // Take what else has arrived, so one persist covers it all.
                    let mut inputs = 1;
                    for _ in 0..256 {
                        match peers.try_recv() {
                            Ok(input) => self.on_peer(input),
                            Err(_) => break,
                        }
                        inputs += 1;
                    }
                    (Wake::Peers, woke, inputs)
                }
                Some(peer) = process_gone.recv() => {
                    let woke = StepStart::now();
                    self.on_process_gone(peer);
                    (Wake::ProcessGone, woke, 1)
                }
                Some(request) = admin.recv() => {
                    let woke = StepStart::now();
                    self.on_admin(request);
                    (Wake::Clients, woke, 1)
                }
                checked = async { self.screening.as_mut().expect("checked").wait().await }, if self.screening.is_some() => {
                    let woke = StepStart::now();
                    self.on_screened(checked);
                    (Wake::Screened, woke, 1)
                }
                Some(request) = clients.recv() => {
                    let woke = StepStart::now();
                    self.on_client(request);
                    let mut inputs = 1;
                    for _ in 0..1024 {
                        match clients.try_recv() {
                            Ok(request) => self.on_client(request),
                            Err(_) => break,
                        }
                        inputs += 1;
                    }
                    (Wake::Clients, woke, inputs)
                }
                Some(report) = self.reports.recv() => {
                    let woke = StepStart::now();
                    self.on_report(report)?;
                    let mut inputs = 1;
                    for _ in 0..256 {
                        match self.reports.try_recv() {
                            Ok(report) => self.on_report(report)?,
                            Err(_) => break,
                        }
                        inputs += 1;
                    }
                    (Wake::Applied, woke, inputs)
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let woke = StepStart::now();
                    self.observe_lateness(deadline);
                    self.advance_clock();
                    (Wake::Timer, woke, 1)
                }
                _ = sweep.tick() => {
                    let woke = StepStart::now();
                    // Forwards stuck in the queue of a node that is no longer the
                    // leader (it crashed, say) were never sent: send them anew.
                    let unsent = self.transport.take_unsent_forwards(self.node.leader());
                    self.requests.retry_all(unsent);
                    self.requests.sweep(Instant::now());
                    self.requests.forget_settled_writes(self.applied_index);
                    (Wake::Sweep, woke, 1)
                }
            };
            self.propose_held_forwards();
            self.dispatch_waiting();
            let (wake, woke, inputs) = step;
            let (step, now) = woke.finish(wake, inputs);
            self.steps.step(step);
            housekeeping = now;
        }
        // Finish the sync in flight so that what was acknowledged to peers is durable.
        if let Some(done) = self.group_commit.finish().await {
            for output in done? {
                self.release(output);
            }
        }
        self.requests.fail_all(RequestError::ShuttingDown);
        // The apply thread makes what it applied durable and closes the store.
        let mut applier = self.applier.detach();
        let _ = tokio::task::spawn_blocking(move || applier.stop()).await;
        info!(node = self.node.id(), "driver stopped");
        Ok(())
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Ticks the node if the clock moved: the core expects a tick before a step
    /// or proposal whenever time passed (docs/decisions/0001-time-enters-through-tick.md).
    fn advance_clock(&mut self) {
        let now_ms = self.now_ms().max(self.last_tick_ms);
        if now_ms > self.last_tick_ms || now_ms >= self.node.next_deadline_ms() {
            self.last_tick_ms = now_ms;
            let output = self.node.tick(now_ms);
            self.enqueue(output);
        }
    }

    /// Queues an output behind every earlier one: nothing of it happens before
    /// the persists ahead of it completed.
    fn enqueue(&mut self, output: Output) {
        if output.is_empty() || self.reload_pending {
            return;
        }
        let mut output = output;
        // Chunks of a leader's snapshot go to the staging thread at once, in
        // order: they need no persist (a crash loses the transfer).
        for chunk in std::mem::take(&mut output.snapshot_chunks) {
            match &mut self.stager {
                Some(stager) => stager.chunk(chunk),
                None => unreachable!("the core stages chunks only when the driver stages them"),
            }
        }
        if std::mem::take(&mut output.snapshot_wanted) {
            self.make_outgoing_snapshot();
        }
        // A leader's appends and heartbeats leave at once, while its own
        // persist (and any earlier one) runs: the core counts those entries for
        // itself only once `persisted` reports them (docs/decisions/0068).
        for message in std::mem::take(&mut output.early_messages) {
            self.transport.send(message.to, &PeerFrame::Raft(message));
        }
        self.enqueue_durable(output);
    }

    /// Queues the part of an output that waits for persists: behind a snapshot
    /// being checked, if one is (`snapshot::Screening`), else in the group commit.
    fn enqueue_durable(&mut self, output: Output) {
        if let Some(screening) = &mut self.screening {
            screening.held.push_back(output);
            return;
        }
        if output.snapshot.is_some() {
            self.screening = Some(match &mut self.stager {
                Some(stager) => snapshot::Screening::start_staged(output, stager, &self.applier),
                None => snapshot::Screening::start(output),
            });
            return;
        }
        if let Some(output) = self.group_commit.push(output) {
            self.release(output);
        }
    }

    /// Carries out a durable output: send, then apply, then report.
    fn release(&mut self, output: Output) {
        for message in output.messages {
            self.transport.send(message.to, &PeerFrame::Raft(message));
        }
        if let Some(snapshot) = &output.snapshot {
            self.install_snapshot(snapshot);
        }
        self.on_failed_reads(output.failed_reads);
        // Reads confirmed in this batch are served between its entries, as soon
        // as their index is applied: before any entry proposed after them
        // (`Node::read_index`), so a connection's pipelined commands take
        // effect in the order sent. The apply stream keeps that order.
        self.on_read_states(output.read_states);
        if !output.committed_entries.is_empty() {
            increment_by(&self.observe.metrics.commits, output.committed_entries.len() as u64);
            self.triggers.count(&output.committed_entries);
            let mut batch = Vec::with_capacity(output.committed_entries.len());
            for entry in output.committed_entries {
                self.submitted_index = self.submitted_index.max(entry.index);
                batch.push(entry);
                if self.reads_due() {
                    self.applier.send(ApplyItem::Apply(std::mem::take(&mut batch)));
                    self.serve_applied_reads();
                }
            }
            if !batch.is_empty() {
                self.applier.send(ApplyItem::Apply(batch));
            }
        }
        self.serve_stale_reads();
        self.maybe_snapshot();
        for event in output.events {
            log_event(self.node.id(), &event);
            self.observe_event(&event);
            self.observe.events.record(wall_clock_ms(), event);
        }
        if output.durable_mark.is_some() {
            // Reported once every output released with it is carried out
            // (`report_persisted`): what the report produces must not overtake
            // them.
            self.unreported_mark = output.durable_mark;
        }
    }

    /// Tells the core the newest persist that completed, once every output
    /// it released is carried out: the leader may now count its own entries
    /// toward a commit (docs/decisions/0068).
    fn report_persisted(&mut self) {
        if let Some(mark) = self.unreported_mark.take() {
            let output = self.node.persisted(mark);
            self.enqueue(output);
        }
    }

    /// Updates the election metrics and the round in progress from one event.
    fn observe_event(&mut self, event: &Event) {
        let metrics = &self.observe.metrics;
        match *event {
            Event::ElectionStarted { .. } => increment(&metrics.elections_started),
            Event::FailureDetected { detector, .. } => {
                metrics.failure_detected(detector);
                self.leader_lost_at.get_or_insert_with(Instant::now);
            }
            Event::LeaderElect { .. } => increment(&metrics.elections_won),
            Event::SubjectivelyDown { .. } | Event::ObjectivelyDown { .. } | Event::QuorumLost { .. } => {
                self.leader_lost_at.get_or_insert_with(Instant::now);
            }
            Event::LeaderChanged { leader: None, .. } => {
                self.leader_lost_at.get_or_insert_with(Instant::now);
                self.requests.retry_forwarded_reads();
            }
            Event::VoteChanged { ballot, candidate } => {
                self.election = Some(ElectionRound { ballot, candidate, finalized: false })
            }
            Event::VoteFinalized { ballot, candidate } => {
                self.election = Some(ElectionRound { ballot, candidate, finalized: true })
            }
            Event::LeaderTermCommitted { .. } => self.end_failover(),
            Event::MembershipChanged { .. } => self.publish_members(),
            // Only a leader refuses a removed node's handshake: it knows
            // whether the node was added back since (docs/design/membership.md).
            Event::RoleChanged { to, .. } => self.transport.set_leading(to == conclave_core::Role::Leader),
            // Modes without leader terms have no BecomeLeader entry to wait for.
            Event::LeaderChanged { leader: Some(leader), .. } => {
                // Writes sent to the lost leader go to the new one under the
                // same request id (applied once), and so do forwarded reads.
                let resent = self.requests.resend_after_leader_change(leader);
                if resent > 0 {
                    info!(node = self.node.id(), leader, resent, "requests sent again to the new leader");
                    increment_by(&self.observe.metrics.requests_resent, resent as u64);
                }
                if !self.election_mode.has_leader_terms() {
                    self.end_failover()
                }
            }
            _ => {}
        }
    }

    fn end_failover(&mut self) {
        self.election = None;
        if let Some(lost_at) = self.leader_lost_at.take() {
            self.observe.metrics.failover_ms.observe(lost_at.elapsed().as_secs_f64() * 1000.0);
        }
    }

    /// What the apply thread reports: answers go to their askers.
    fn on_report(&mut self, report: ApplyReport) -> Result<(), ServerError> {
        match report {
            ApplyReport::Applied { index, commands, keys } => {
                for command in commands {
                    self.answer_applied(command);
                }
                self.applied_index = index;
                self.keys = keys;
                self.requests.applied(index);
                // Forwards accepted at this index or below are settled either way.
                while let Some(first) = self.accepted_forwards.first_entry() {
                    if *first.key() > index {
                        break;
                    }
                    first.remove();
                }
            }
            ApplyReport::Read { context, reply } => self.answer_read(context, reply),
            ApplyReport::Installed { index, keys } => {
                self.applied_index = index;
                self.keys = keys;
                info!(node = self.node.id(), index, keys, "installed the leader's snapshot");
            }
            ApplyReport::SnapshotTaken { index, data } => self.on_snapshot_taken(index, data),
            ApplyReport::Durable { index } => {
                self.durable_applied_index = index;
                // More of the log may be compacted behind the store now.
                self.maybe_snapshot();
            }
            ApplyReport::Failed(failure) => return Err(ServerError::Machine(failure)),
        }
        Ok(())
    }

    fn answer_applied(&mut self, command: apply::AppliedCommand) {
        let apply::AppliedCommand { index, origin: key, reply } = command;
        let (origin, incarnation, request_id) = key;
        if origin == self.node.id() && incarnation == self.incarnation {
            self.requests.answer(request_id, reply);
        } else if self.accepted_forwards.get(&index) == Some(&key) {
            let result = ForwardResult { incarnation, request_id, reply };
            self.transport.send(origin, &PeerFrame::ForwardResult(result));
        }
    }

    /// Records how late a timer fired against its deadline.
    fn observe_lateness(&mut self, deadline: Instant) {
        let now = Instant::now();
        let late = now.saturating_duration_since(deadline);
        self.steps.timer_fired(self.node.id(), late, now);
        let late_ms = late.as_secs_f64() * 1000.0;
        self.observe.metrics.driver_lateness_ms.observe(late_ms);
        self.lateness_max_ms = self.lateness_max_ms.max(late.as_millis() as u64);
        self.observe
            .metrics
            .driver_lateness_ms_max
            .fetch_max(self.lateness_max_ms, std::sync::atomic::Ordering::Relaxed);
    }

    fn on_peer(&mut self, input: PeerInput) {
        self.advance_clock();
        match input.frame {
            PeerFrame::Raft(message) => {
                let output = self.node.step(message);
                self.enqueue(output);
            }
            PeerFrame::Forward { incarnation, request_id, command } => {
                self.on_forward(input.from, incarnation, request_id, command)
            }
            PeerFrame::ForwardRead { incarnation, request_id, command, min_index } => {
                self.on_forward_read(input.from, incarnation, request_id, command, min_index)
            }
            // Replies meant for an earlier run of this node are ignored.
            PeerFrame::ForwardReply { incarnation, .. }
            | PeerFrame::ForwardResult(ForwardResult { incarnation, .. })
                if incarnation != self.incarnation => {}
            PeerFrame::ForwardResult(result) => self.requests.answer(result.request_id, result.reply),
            PeerFrame::ForwardReply { request_id, outcome, .. } => match outcome {
                ForwardOutcome::Accepted { index, term } => {
                    self.requests.mark_placed(request_id, index, term, self.applied_index)
                }
                ForwardOutcome::NotLeader { .. } => self.requests.retry(request_id),
                ForwardOutcome::Refused(reason) => self.requests.fail(request_id, RequestError::Refused(reason)),
            },
        }
    }

    /// The transport found `peer`'s process gone (a refused redial): evidence
    /// for the core, which acts on it only if `peer` is its leader.
    fn on_process_gone(&mut self, peer: NodeId) {
        self.advance_clock();
        let output = self.node.peer_process_gone(peer);
        self.enqueue(output);
    }

    /// An operator's request: started here, its outcome watched by the caller
    /// on the published status (`admin::hand_over`).
    fn on_admin(&mut self, request: admin::AdminRequest) {
        self.advance_clock();
        match request {
            admin::AdminRequest::Transfer { target, reply } => {
                let term = self.node.term();
                let leader_term = self.node.committed_leader_term().map(|record| record.leader_term);
                let answer = match self.node.transfer_leadership(target) {
                    Ok(started) => {
                        let target = started.target;
                        info!(node = self.node.id(), target, term, "handing leadership over");
                        self.enqueue(started.output);
                        Ok(admin::TransferAccepted { target, term, leader_term })
                    }
                    Err(error) => {
                        info!(node = self.node.id(), %error, "leader transfer refused");
                        Err(error)
                    }
                };
                let _ = reply.send(answer);
            }
            admin::AdminRequest::Change { change, reply } => {
                let answer = match self.node.change_membership(change.clone()) {
                    Ok(proposal) => {
                        info!(node = self.node.id(), ?change, index = proposal.index, "membership change proposed");
                        let accepted = admin::ChangeAccepted { index: proposal.index, term: proposal.term };
                        self.enqueue(proposal.output);
                        Ok(accepted)
                    }
                    Err(error) => {
                        info!(node = self.node.id(), ?change, %error, "membership change refused");
                        Err(error)
                    }
                };
                let _ = reply.send(answer);
            }
        }
    }

    /// A follower's client command: propose it if we lead, and say where it went.
    fn on_forward(&mut self, from: NodeId, incarnation: u64, request_id: u64, command: Vec<u8>) {
        if !self.held_forwards.is_empty() {
            // Behind the ones held already, to keep their order.
            return self.hold_forward(from, incarnation, request_id, command);
        }
        let outcome = match self.node.propose(command.clone()) {
            Ok(proposal) => {
                let outcome = ForwardOutcome::Accepted { index: proposal.index, term: proposal.term };
                self.accepted_forwards.insert(proposal.index, (from, incarnation, request_id));
                increment(&self.observe.metrics.proposals);
                self.enqueue(proposal.output);
                outcome
            }
            Err(ProposeError::NotLeader { leader }) => ForwardOutcome::NotLeader { leader },
            // A leader-elect serves once its BecomeLeader commits, a leader
            // handing over stops: held until then (the next leader gets them).
            Err(ProposeError::NotYetServing { .. } | ProposeError::Transferring { .. }) => {
                return self.hold_forward(from, incarnation, request_id, command)
            }
            Err(error) => ForwardOutcome::Refused(error.to_string()),
        };
        self.transport.send(from, &PeerFrame::ForwardReply { incarnation, request_id, outcome });
    }

    fn hold_forward(&mut self, from: NodeId, incarnation: u64, request_id: u64, command: Vec<u8>) {
        if self.held_forwards.len() >= MAX_HELD_FORWARDS {
            let outcome = ForwardOutcome::NotLeader { leader: Some(self.node.id()) };
            return self.transport.send(from, &PeerFrame::ForwardReply { incarnation, request_id, outcome });
        }
        self.held_forwards.push_back((from, incarnation, request_id, command));
    }

    /// Proposes the held forwards once this node serves, in arrival order, or
    /// turns them all away if it no longer may lead.
    fn propose_held_forwards(&mut self) {
        if self.held_forwards.is_empty() {
            return;
        }
        self.advance_clock();
        while let Some((from, incarnation, request_id, command)) = self.held_forwards.pop_front() {
            let outcome = match self.node.propose(command.clone()) {
                Ok(proposal) => {
                    self.accepted_forwards.insert(proposal.index, (from, incarnation, request_id));
                    increment(&self.observe.metrics.proposals);
                    self.enqueue(proposal.output);
                    ForwardOutcome::Accepted { index: proposal.index, term: proposal.term }
                }
                Err(ProposeError::NotYetServing { .. } | ProposeError::Transferring { .. }) => {
                    self.held_forwards.push_front((from, incarnation, request_id, command));
                    return;
                }
                Err(ProposeError::NotLeader { leader }) => ForwardOutcome::NotLeader { leader },
                Err(error) => ForwardOutcome::Refused(error.to_string()),
            };
            self.transport.send(from, &PeerFrame::ForwardReply { incarnation, request_id, outcome });
        }
    }

    fn on_client(&mut self, request: ClientRequest) {
        let id = self.requests.next_id();
        if request.stale_read && request.command.is_read() {
            // A stale read still sees its connection's earlier writes: it waits
            // until they are sent to be applied here.
            self.requests.add_stale_read(id, request.connection, request.command, request.reply, Instant::now());
            self.serve_stale_reads();
            return;
        }
        if request.command.is_read() {
            self.requests.add_read(id, request.connection, request.command, request.reply, Instant::now());
            return;
        }
        let envelope = Envelope {
            origin: self.node.id(),
            incarnation: self.incarnation,
            request_id: id,
            command: request.command,
            settled_below: self.requests.settled_below(id),
        };
        self.requests.add(id, request.connection, envelope.encode(), request.reply, Instant::now());
    }

    /// Sends requests that wait for a leader to the leader, if one is known,
    /// oldest first. A connection's requests keep their order: a read whose
    /// connection's earlier write has no log index yet waits (and so does
    /// everything after it on that connection), other connections go on.
    fn dispatch_waiting(&mut self) {
        if self.requests.needs_leader.is_empty() {
            return;
        }
        let Some(leader) = self.node.leader() else { return };
        if leader == self.node.id() {
            self.advance_clock();
        }
        let mut kept = std::collections::VecDeque::new();
        let mut blocked = std::collections::HashSet::new();
        // This leader's writes, proposed together: one append per follower
        // for a pipelined burst, not one per command.
        let mut writes: Vec<(u64, Vec<u8>)> = Vec::new();
        while let Some(id) = self.requests.needs_leader.pop_front() {
            let Some(connection) = self.requests.connection(id) else { continue };
            if blocked.contains(&connection) {
                kept.push_back(id);
                continue;
            }
            if let Some(read) = self.requests.read(id).cloned() {
                // The writes before it go first: a read waits for its
                // connection's earlier write by that write's index.
                if let Err(unplaced) = self.propose_writes(std::mem::take(&mut writes)) {
                    kept.extend(unplaced);
                    kept.push_back(id);
                    kept.extend(self.requests.needs_leader.drain(..));
                    break;
                }
                let min_index = match self.requests.read_after(id) {
                    requests::ReadAfter::Unplaced(_) => {
                        blocked.insert(connection);
                        kept.push_back(id);
                        continue;
                    }
                    requests::ReadAfter::Index(index) => index,
                    requests::ReadAfter::Nothing => 0,
                };
                if !self.dispatch_read(id, read, leader, min_index) {
                    // No leader takes reads now: keep the rest for the next try.
                    kept.push_back(id);
                    kept.extend(self.requests.needs_leader.drain(..));
                    break;
                }
                continue;
            }
            let Some(command) = self.requests.command(id).map(<[u8]>::to_vec) else { continue };
            if leader != self.node.id() {
                let frame = PeerFrame::Forward { incarnation: self.incarnation, request_id: id, command };
                self.transport.send(leader, &frame);
                self.requests.mark_forwarded(id, leader);
                continue;
            }
            writes.push((id, command));
        }
        if let Err(unplaced) = self.propose_writes(writes) {
            // Leader-elect not yet serving: they wait for the next event, in order.
            let rest = std::mem::take(&mut kept);
            kept.extend(unplaced);
            kept.extend(rest);
        }
        self.requests.needs_leader = kept;
    }

    /// Proposes this leader's `writes` as one batch. The ids of a batch this
    /// node cannot take now (a leader-elect not yet serving, or no longer the
    /// leader) come back, in order, to wait for the next event.
    fn propose_writes(&mut self, writes: Vec<(u64, Vec<u8>)>) -> Result<(), Vec<u64>> {
        if writes.is_empty() {
            return Ok(());
        }
        let me = self.node.id();
        let (ids, commands): (Vec<u64>, Vec<Vec<u8>>) = writes.into_iter().unzip();
        let batch = self.node.propose_batch(commands.into_iter().map(bytes::Bytes::from));
        let mut unplaced = Vec::new();
        for (id, result) in ids.into_iter().zip(batch.results) {
            match result {
                Ok(index) => {
                    self.requests.mark_proposed(id, me);
                    self.requests.mark_placed(id, index, batch.term, self.applied_index);
                    increment(&self.observe.metrics.proposals);
                }
                Err(
                    ProposeError::NotLeader { .. }
                    | ProposeError::NotYetServing { .. }
                    | ProposeError::Transferring { .. },
                ) => unplaced.push(id),
                Err(error) => self.requests.fail(id, RequestError::Refused(error.to_string())),
            }
        }
        self.enqueue(batch.output);
        if unplaced.is_empty() {
            Ok(())
        } else {
            Err(unplaced)
        }
    }

    /// Serves the `READONLY` reads whose connection's earlier write is applied
    /// here (or did not take effect).
    fn serve_stale_reads(&mut self) {
        if self.requests.stale_reads.is_empty() {
            return;
        }
        let waiting = std::mem::take(&mut self.requests.stale_reads);
        for id in waiting {
            let ready = match self.requests.read_after(id) {
                requests::ReadAfter::Nothing => true,
                requests::ReadAfter::Index(index) => index <= self.submitted_index,
                requests::ReadAfter::Unplaced(_) => false,
            };
            if !ready {
                self.requests.stale_reads.push(id);
                continue;
            }
            let Some(read) = self.requests.stale_read(id) else { continue };
            // Answered by the apply thread under its request id (`answer_read`).
            let command = read.clone();
            self.applier.send(ApplyItem::ServeRead { target: ReadTarget::Driver(id), command });
        }
    }

    fn publish_status(&mut self) {
        // A membership that committed since it was published: the transport
        // acts on committed removals only.
        if self.node.membership_index() != self.published_membership {
            self.publish_members();
        }
        let node = &self.node;
        let core = node.status();
        let dropped = conclave_core::DropReason::ALL
            .into_iter()
            .filter(|&reason| core.dropped.get(reason) > 0)
            .map(|reason| (reason.name(), core.dropped.get(reason)))
            .collect();
        let status = NodeStatus {
            node_id: node.id(),
            cluster_id: node.config().cluster_id,
            election_mode: self.election_mode,
            role: node.role(),
            term: node.term(),
            leader: node.leader(),
            commit_index: node.log().committed(),
            applied_index: self.applied_index,
            last_index: node.log().last_index(),
            keys: self.keys as usize,
            pending_requests: self.requests.len(),
            dropped_peer_frames: self.transport.dropped_frames(),
            wal_syncs: self.group_commit.syncs,
            serving: core.serving,
            membership_index: core.membership_index,
            voter: core.voter,
            leader_term: core.leader_term,
            leader_term_in_log: core.leader_term_in_log,
            last_term: core.last_term,
            followers: core.followers,
            dropped,
            election: self.election,
            snapshot_index: self.group_commit.durable_snapshot_index,
            snapshots_taken: self.group_commit.snapshots_saved,
            snapshots_installed: self.snapshots_installed,
            snapshots_rejected: self.snapshots_rejected,
            durable_applied_index: self.durable_applied_index,
            driver_lateness_ms_max: self.lateness_max_ms,
            state_machine_engine: self.engine_name,
            state_machine_cache_bytes: self.cache_bytes,
        };
        self.status.send_if_modified(|current| {
            if *current == status {
                false
            } else {
                *current = status;
                true
            }
        });
    }
}

fn log_event(node: NodeId, event: &Event) {
    match event {
        Event::RoleChanged { from, to, term } => info!(node, ?from, ?to, term, "role changed"),
        Event::LeaderChanged { leader, term } => info!(node, ?leader, term, "leader changed"),
        Event::QuorumLost { term } => warn!(node, term, "stepped down: no quorum answered"),
        // Every other event is a step of an election: worth a line each.
        other => info!(node, event = ?other, "election event"),
    }
}

//! Shared test harness: builders for entries and messages, single-node helpers,
//! and an in-memory [`Cluster`] that delivers messages between nodes.
//!
//! Persist-before-send is trivial here: the core keeps its log and hard state in
//! memory, so the harness ignores `hard_state` and `log_write` (the tests assert
//! them where they matter) and "sends" a batch's messages right after the input.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use conclave_core::{
    AppendOutcome, Body, ClusterId, Config, Entry, HardState, LogIndex, Message, Node, NodeId, Output, Payload,
    RestoredState, Role, Term,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The cluster id every test uses.
pub const CLUSTER_ID: ClusterId = 7;
/// Default election timeout T (Config::new).
pub const ELECTION_TIMEOUT_MS: u64 = 250;
/// Default heartbeat interval (Config::new).
pub const HEARTBEAT_MS: u64 = 50;

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// A `raft`-mode config: most tests check Raft's own rules (the mode-specific
/// suites set their mode).
pub fn config(id: NodeId, voters: &[NodeId]) -> Config {
    let mut config = Config::new(id, CLUSTER_ID, voters.to_vec());
    config.election_mode = conclave_core::ElectionMode::Raft;
    config
}

/// A brand-new node at time 0.
pub fn new_node(id: NodeId, voters: &[NodeId], seed: u64) -> Node {
    node_from(config(id, voters), RestoredState::default(), seed)
}

pub fn node_from(config: Config, restored: RestoredState, seed: u64) -> Node {
    node_at(config, restored, seed, 0)
}

/// A node started at `now_ms`.
pub fn node_at(config: Config, restored: RestoredState, seed: u64, now_ms: u64) -> Node {
    Node::new(config, restored, rng(seed), now_ms).expect("valid node")
}

/// A node restarted from `hard_state` and a log whose entry `i + 1` has term `terms[i]`.
pub fn restored_node(config: Config, hard_state: HardState, terms: &[Term], seed: u64) -> Node {
    node_from(config, RestoredState { hard_state, entries: log_with_terms(terms), snapshot: None }, seed)
}

pub fn hard_state(term: Term, voted_for: Option<NodeId>, commit: LogIndex) -> HardState {
    HardState { term, voted_for, commit }
}

/// A command entry whose payload names its position, so that two entries at the
/// same index but from different terms differ.
pub fn entry(term: Term, index: LogIndex) -> Entry {
    Entry { term, index, payload: Payload::Command(format!("{index}@{term}").into_bytes().into()) }
}

pub fn noop(term: Term, index: LogIndex) -> Entry {
    Entry { term, index, payload: Payload::Noop }
}

pub fn log_with_terms(terms: &[Term]) -> Vec<Entry> {
    terms.iter().zip(1..).map(|(term, index)| entry(*term, index)).collect()
}

pub fn log_terms(node: &Node) -> Vec<Term> {
    node.log().all().iter().map(|entry| entry.term).collect()
}

pub fn msg(from: NodeId, to: NodeId, term: Term, body: Body) -> Message {
    Message { cluster_id: CLUSTER_ID, from, to, term, body }
}

pub fn append(prev_log_index: LogIndex, prev_log_term: Term, entries: Vec<Entry>, leader_commit: LogIndex) -> Body {
    let heartbeat = entries.is_empty();
    Body::AppendEntries { prev_log_index, prev_log_term, entries, leader_commit, read_round: 0, heartbeat }
}

pub fn heartbeat(prev_log_index: LogIndex, prev_log_term: Term, leader_commit: LogIndex) -> Body {
    append(prev_log_index, prev_log_term, Vec::new(), leader_commit)
}

pub fn vote_request(last_log_term: Term, last_log_index: LogIndex) -> Body {
    Body::RequestVote { pre_vote: false, last_log_term, last_log_index, transfer: false }
}

pub fn pre_vote_request(last_log_term: Term, last_log_index: LogIndex) -> Body {
    Body::RequestVote { pre_vote: true, last_log_term, last_log_index, transfer: false }
}

pub fn vote(granted: bool) -> Body {
    Body::VoteResponse { pre_vote: false, granted }
}

pub fn pre_vote(granted: bool) -> Body {
    Body::VoteResponse { pre_vote: true, granted }
}

pub fn accepted(match_index: LogIndex) -> Body {
    Body::AppendResponse { outcome: AppendOutcome::Accepted { match_index }, read_round: 0 }
}

pub fn rejected(prev_log_index: LogIndex, hint_index: LogIndex) -> Body {
    Body::AppendResponse { outcome: AppendOutcome::Rejected { prev_log_index, hint_index }, read_round: 0 }
}

/// An output that only sends `messages`.
pub fn only_messages(messages: Vec<Message>) -> Output {
    Output { messages, ..Output::default() }
}

/// Elects `node` without real peers: fires its election timer, then injects
/// pre-vote and vote grants from the other voters in id order until it leads.
/// Returns the output of the step that made it leader.
pub fn elect_alone(node: &mut Node) -> Output {
    let now = node.next_deadline_ms();
    let _ = node.tick(now);
    let peers: Vec<NodeId> = node.config().voters.iter().copied().filter(|id| *id != node.id()).collect();
    for peer in &peers {
        if node.role() != Role::PreCandidate {
            break;
        }
        let _ = node.step(msg(*peer, node.id(), node.term() + 1, pre_vote(true)));
    }
    assert_eq!(node.role(), Role::Candidate, "the pre-vote round was won");
    for peer in &peers {
        let output = node.step(msg(*peer, node.id(), node.term(), vote(true)));
        if node.role() == Role::Leader {
            return output;
        }
    }
    panic!("node {} did not win", node.id());
}

/// In-memory nodes with a FIFO network between them.
///
/// Time is shared: before a node handles a message it is ticked up to the
/// cluster's time, as a real driver's clock would have moved on.
pub struct Cluster {
    pub nodes: BTreeMap<NodeId, Node>,
    /// The time each node was last given.
    pub clocks: BTreeMap<NodeId, u64>,
    pub now_ms: u64,
    /// Messages sent and not yet delivered.
    pub queue: VecDeque<Message>,
    /// Every message delivered, with the output its receiver produced.
    pub trace: Vec<(Message, Output)>,
    /// Messages the network dropped (partitioned, or addressed to a node that is
    /// not simulated).
    pub lost: Vec<Message>,
    /// Nodes cut off from everyone.
    pub isolated: BTreeSet<NodeId>,
    /// Committed entries each node handed out, in the order it handed them out
    /// (a snapshot installed in place of entries shows as `Noop`s of term 0).
    pub applied: BTreeMap<NodeId, Vec<Entry>>,
    /// Snapshots each node installed from its leader (`Output::snapshot`;
    /// with `Config::stage_snapshot_chunks`, with the bytes it staged).
    pub installed: BTreeMap<NodeId, Vec<conclave_core::Snapshot>>,
    /// Snapshot bytes each node staged (`Output::snapshot_chunks`), as a
    /// driver would: a chunk at 0 starts over, every other continues.
    pub staged: BTreeMap<NodeId, Vec<u8>>,
    /// Reads each node released (`Output::read_states`), in order.
    pub reads: BTreeMap<NodeId, Vec<conclave_core::ReadState>>,
    /// Reads each node failed (`Output::failed_reads`), in order.
    pub failed_reads: BTreeMap<NodeId, Vec<u64>>,
}

impl Cluster {
    /// Nodes `1..=size`; node `i` uses seed `seed + i`. Node 1 boots at time 0 and
    /// the others one election timeout later, so node 1 is the first to time out.
    pub fn new(size: u64, seed: u64) -> Cluster {
        Cluster::with_config(size, seed, |_| {})
    }

    pub fn with_config(size: u64, seed: u64, tweak: impl Fn(&mut Config)) -> Cluster {
        let voters: Vec<NodeId> = (1..=size).collect();
        let nodes = voters
            .iter()
            .map(|id| {
                let mut config = config(*id, &voters);
                tweak(&mut config);
                let boot_ms = if *id == 1 { 0 } else { ELECTION_TIMEOUT_MS };
                (node_at(config, RestoredState::default(), seed + id, boot_ms), boot_ms)
            })
            .collect();
        Cluster::from_nodes(nodes)
    }

    /// Simulates exactly these nodes, each with the time it was started at;
    /// messages to other voters are lost.
    pub fn from_nodes(nodes: Vec<(Node, u64)>) -> Cluster {
        Cluster {
            clocks: nodes.iter().map(|(node, boot_ms)| (node.id(), *boot_ms)).collect(),
            nodes: nodes.into_iter().map(|(node, _)| (node.id(), node)).collect(),
            now_ms: 0,
            queue: VecDeque::new(),
            trace: Vec::new(),
            lost: Vec::new(),
            isolated: BTreeSet::new(),
            applied: BTreeMap::new(),
            installed: BTreeMap::new(),
            staged: BTreeMap::new(),
            reads: BTreeMap::new(),
            failed_reads: BTreeMap::new(),
        }
    }

    /// Asks node `id` for a linearizable read with `context`.
    pub fn read_index(&mut self, id: NodeId, context: u64) -> Result<(), conclave_core::ReadIndexError> {
        let output = self.node_mut(id).read_index(context)?;
        let _ = self.absorb(id, output);
        Ok(())
    }

    /// The index node `id` released the read `context` at, if it did.
    pub fn read_released(&self, id: NodeId, context: u64) -> Option<LogIndex> {
        self.reads.get(&id)?.iter().find(|read| read.context == context).map(|read| read.index)
    }

    /// Whether node `id` failed the read `context`.
    pub fn read_failed(&self, id: NodeId, context: u64) -> bool {
        self.failed_reads.get(&id).is_some_and(|failed| failed.contains(&context))
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[&id]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        self.nodes.get_mut(&id).expect("simulated node")
    }

    /// Acts on one output of node `id`: checks and records the committed entries
    /// (in order, exactly once, equal to the node's log), then sends the messages.
    pub fn absorb(&mut self, id: NodeId, output: Output) -> Output {
        let node = &self.nodes[&id];
        let staged = self.staged.entry(id).or_default();
        for chunk in &output.snapshot_chunks {
            assert!(node.config().stage_snapshot_chunks, "node {id} stages chunks only when told to");
            if chunk.offset == 0 {
                staged.clear();
            }
            assert_eq!(chunk.offset, staged.len() as u64, "node {id} hands out chunks in order, without gaps");
            staged.extend_from_slice(&chunk.data);
        }
        let applied = self.applied.entry(id).or_default();
        if let Some(snapshot) = &output.snapshot {
            let index = snapshot.meta.last_included_index;
            assert!(index > applied.len() as LogIndex, "node {id} installs only snapshots beyond what it applied");
            while (applied.len() as LogIndex) < index {
                let index = applied.len() as LogIndex + 1;
                applied.push(Entry { term: 0, index, payload: conclave_core::Payload::Noop });
            }
            let mut snapshot = snapshot.clone();
            if node.config().stage_snapshot_chunks {
                assert!(snapshot.data.is_empty(), "node {id} installs staged bytes: the core holds none");
                snapshot.data = std::mem::take(staged).into();
            }
            self.installed.entry(id).or_default().push(snapshot);
        }
        for entry in &output.committed_entries {
            assert_eq!(entry.index, applied.len() as LogIndex + 1, "node {id} applies in order, exactly once");
            assert_eq!(node.log().entry(entry.index), Some(entry), "node {id} applies what its log holds");
            applied.push(entry.clone());
        }
        for message in output.early_messages.iter().chain(&output.messages) {
            assert_eq!(message.from, id, "a node sends in its own name");
            self.queue.push_back(message.clone());
        }
        self.reads.entry(id).or_default().extend(output.read_states.iter().copied());
        self.failed_reads.entry(id).or_default().extend(output.failed_reads.iter().copied());
        // This harness persists at once: report it, as a driver must with
        // `parallel_persist`.
        if let Some(mark) = output.durable_mark.filter(|_| self.nodes[&id].config().parallel_persist) {
            let reported = self.node_mut(id).persisted(mark);
            let _ = self.absorb(id, reported);
        }
        output
    }

    pub fn tick(&mut self, id: NodeId, now_ms: u64) -> Output {
        self.now_ms = self.now_ms.max(now_ms);
        self.clocks.insert(id, now_ms);
        let output = self.node_mut(id).tick(now_ms);
        self.absorb(id, output)
    }

    /// Brings node `id`'s clock up to the cluster's time.
    fn sync(&mut self, id: NodeId) {
        if self.clocks[&id] < self.now_ms {
            let _ = self.tick(id, self.now_ms);
        }
    }

    /// Ticks every node at `now_ms`.
    pub fn tick_all(&mut self, now_ms: u64) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            let _ = self.tick(id, now_ms);
        }
    }

    pub fn propose(&mut self, id: NodeId, command: &[u8]) -> LogIndex {
        let proposal = self.node_mut(id).propose(command.to_vec()).expect("leader accepts");
        let _ = self.absorb(id, proposal.output);
        proposal.index
    }

    fn is_cut(&self, message: &Message) -> bool {
        self.isolated.contains(&message.from)
            || self.isolated.contains(&message.to)
            || !self.nodes.contains_key(&message.to)
    }

    /// Delivers `message` now (unless the network drops it); returns the output.
    pub fn deliver(&mut self, message: Message) -> Option<Output> {
        if self.is_cut(&message) {
            self.lost.push(message);
            return None;
        }
        let to = message.to;
        self.sync(to);
        let output = self.node_mut(to).step(message.clone());
        let output = self.absorb(to, output);
        self.trace.push((message, output.clone()));
        Some(output)
    }

    /// Delivers the oldest queued message.
    pub fn deliver_one(&mut self) -> Option<(Message, Option<Output>)> {
        let message = self.queue.pop_front()?;
        let output = self.deliver(message.clone());
        Some((message, output))
    }

    /// Delivers in FIFO order until the network is quiet.
    pub fn deliver_all(&mut self) {
        let mut budget = 100_000;
        while self.deliver_one().is_some() {
            budget -= 1;
            assert!(budget > 0, "the network never goes quiet");
        }
    }

    /// Delivers until quiet in a random order, duplicating each message with
    /// probability `duplicate`.
    pub fn deliver_all_chaotic(&mut self, rng: &mut ChaCha8Rng, duplicate: f64) {
        let mut budget = 100_000;
        while !self.queue.is_empty() {
            budget -= 1;
            assert!(budget > 0, "the network never goes quiet");
            let position = rng.gen_range(0..self.queue.len());
            let message = self.queue.remove(position).expect("in range");
            if rng.gen_bool(duplicate) {
                self.queue.push_back(message.clone());
            }
            let _ = self.deliver(message);
        }
    }

    /// Elects `id` by firing its election timer and delivering until quiet.
    pub fn elect(&mut self, id: NodeId) {
        let now = self.node(id).next_deadline_ms().max(self.now_ms);
        let _ = self.tick(id, now);
        self.deliver_all();
        assert_eq!(self.node(id).role(), Role::Leader, "node {id} won its election");
    }

    /// Advances time in `step_ms` steps up to `end_ms`, ticking every node and
    /// delivering everything after each step.
    pub fn run_until(&mut self, end_ms: u64, step_ms: u64) {
        while self.now_ms < end_ms {
            let now = (self.now_ms + step_ms).min(end_ms);
            self.tick_all(now);
            self.deliver_all();
        }
    }

    pub fn leaders(&self) -> Vec<NodeId> {
        self.nodes.values().filter(|node| node.role() == Role::Leader).map(|node| node.id()).collect()
    }
}

/// A message in flight: when it arrives, and a sequence number that keeps the
/// order of messages due at the same millisecond.
type InFlightKey = (u64, u64);

/// Decides, when a message is sent, whether the network drops it.
pub type DropRule = Box<dyn Fn(&Message) -> bool>;

/// In-memory nodes on virtual time, with a network whose messages take time.
///
/// Unlike [`Cluster`], which delivers instantly in steps, every message here
/// arrives a little later: a delay drawn (seeded) from `delay_ms` unless a link
/// has a fixed delay of its own. Each directed link is FIFO, so a message never
/// arrives before one sent earlier on the same link. Time advances event by
/// event: the earliest due timer or message is handled next (a timer first on a
/// tie), and a node is ticked up to the current time before it steps a message.
///
/// Faults: a crashed node is gone (messages to it are lost); it can restart
/// from a disk (its in-memory state when it crashed: the harness persists every
/// batch at once) or from a wiped disk. Directed links can be cut, and a
/// [`DropRule`] can drop chosen messages when they are sent.
pub struct TimedCluster {
    /// Nodes that are up.
    pub nodes: BTreeMap<NodeId, Node>,
    /// The configuration each member (re)starts with.
    pub configs: BTreeMap<NodeId, Config>,
    pub now_ms: u64,
    /// Default one-way delay, drawn uniformly from `[min, max]`.
    pub delay_ms: (u64, u64),
    /// Fixed one-way delays of some directed links, overriding `delay_ms`.
    pub link_delay_ms: BTreeMap<(NodeId, NodeId), u64>,
    /// Directed links that lose every message sent on them.
    pub cut: BTreeSet<(NodeId, NodeId)>,
    /// Drops chosen messages when they are sent.
    pub drop_rule: Option<DropRule>,
    in_flight: BTreeMap<InFlightKey, Message>,
    next_seq: u64,
    /// Latest arrival time scheduled on each directed link (FIFO).
    link_last_arrival: BTreeMap<(NodeId, NodeId), u64>,
    clocks: BTreeMap<NodeId, u64>,
    rng: ChaCha8Rng,
    seed: u64,
    restarts: u64,
    /// Every event, with the time and the node that emitted it.
    pub events: Vec<(u64, NodeId, conclave_core::Event)>,
    /// Every message sent, with its send time.
    pub sent: Vec<(u64, Message)>,
    /// Every message delivered, with its arrival time.
    pub delivered: Vec<(u64, Message)>,
    /// Messages the network lost (cut link, drop rule, or receiver down).
    pub lost: Vec<(u64, Message)>,
    /// Committed entries each node handed out since it last (re)started.
    pub applied: BTreeMap<NodeId, Vec<Entry>>,
}

impl TimedCluster {
    /// Members `1..=size`, all started at time 0 from empty data dirs, with
    /// configs from [`config`] adjusted by `tweak`.
    pub fn new(size: u64, seed: u64, delay_ms: (u64, u64), tweak: impl Fn(&mut Config)) -> TimedCluster {
        let mut cluster = TimedCluster::unstarted(size, seed, delay_ms, tweak);
        for id in 1..=size {
            cluster.start(id, RestoredState::default());
        }
        cluster
    }

    /// Members `1..=size` configured but none started: start each with
    /// [`TimedCluster::start_empty`] (brand new) or [`TimedCluster::restart`].
    pub fn unstarted(size: u64, seed: u64, delay_ms: (u64, u64), tweak: impl Fn(&mut Config)) -> TimedCluster {
        assert!(delay_ms.0 <= delay_ms.1, "delay range");
        let voters: Vec<NodeId> = (1..=size).collect();
        let configs: BTreeMap<NodeId, Config> = voters
            .iter()
            .map(|id| {
                let mut config = config(*id, &voters);
                tweak(&mut config);
                (*id, config)
            })
            .collect();
        TimedCluster {
            nodes: BTreeMap::new(),
            configs,
            now_ms: 0,
            delay_ms,
            link_delay_ms: BTreeMap::new(),
            cut: BTreeSet::new(),
            drop_rule: None,
            in_flight: BTreeMap::new(),
            next_seq: 0,
            link_last_arrival: BTreeMap::new(),
            clocks: BTreeMap::new(),
            rng: rng(seed),
            seed,
            restarts: 0,
            events: Vec::new(),
            sent: Vec::new(),
            delivered: Vec::new(),
            lost: Vec::new(),
            applied: BTreeMap::new(),
        }
    }

    pub fn node(&self, id: NodeId) -> &Node {
        self.nodes.get(&id).unwrap_or_else(|| panic!("node {id} is down"))
    }

    pub fn is_up(&self, id: NodeId) -> bool {
        self.nodes.contains_key(&id)
    }

    /// The largest one-way delay any message can take on a default link.
    pub fn max_delay_ms(&self) -> u64 {
        self.delay_ms.1
    }

    /// Starts `id` now from `restored`, and hands out what starting produced (a
    /// cold-started initial leader's first appends, say).
    fn start(&mut self, id: NodeId, restored: RestoredState) {
        assert!(!self.is_up(id), "node {id} is already up");
        self.restarts += 1;
        let node_seed = self.seed.wrapping_mul(1_000).wrapping_add(id).wrapping_add(self.restarts * 100);
        let node = node_at(self.configs[&id].clone(), restored, node_seed, self.now_ms);
        self.nodes.insert(id, node);
        self.applied.insert(id, Vec::new());
        self.tick(id);
    }

    /// Node `id` crashes: it is gone, with its volatile state.
    pub fn crash(&mut self, id: NodeId) {
        assert!(self.nodes.remove(&id).is_some(), "node {id} was up");
        self.clocks.remove(&id);
    }

    /// What `id` would find on its disk if it stopped now (the harness persists
    /// every batch as soon as it is produced).
    pub fn disk(&self, id: NodeId) -> RestoredState {
        let status = self.node(id).status();
        RestoredState {
            hard_state: HardState { term: status.term, voted_for: status.voted_for, commit: status.commit },
            entries: self.node(id).log().all().to_vec(),
            snapshot: self.node(id).snapshot().cloned(),
        }
    }

    /// Restarts a crashed node from `restored`.
    pub fn restart(&mut self, id: NodeId, restored: RestoredState) {
        self.start(id, restored);
    }

    /// Starts node `id` now with an empty data dir (a brand-new member).
    pub fn start_empty(&mut self, id: NodeId) {
        self.start(id, RestoredState::default());
    }

    /// Restarts a crashed node with an empty data dir (its disk was replaced).
    pub fn restart_wiped(&mut self, id: NodeId) {
        self.start(id, RestoredState::default());
    }

    /// `observer`'s transport found the process of `gone` dead (a refused redial).
    pub fn process_gone(&mut self, observer: NodeId, gone: NodeId) {
        self.sync(observer);
        let output = self.nodes.get_mut(&observer).expect("up").peer_process_gone(gone);
        self.absorb(observer, output);
    }

    /// Cuts the directed link `from` → `to`.
    pub fn cut_link(&mut self, from: NodeId, to: NodeId) {
        self.cut.insert((from, to));
    }

    /// Cuts every link between the two sides, both ways.
    pub fn partition(&mut self, side_a: &[NodeId], side_b: &[NodeId]) {
        for a in side_a {
            for b in side_b {
                self.cut.insert((*a, *b));
                self.cut.insert((*b, *a));
            }
        }
    }

    /// Restores every cut link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Every message `id` sends from now on takes exactly `delay_ms`.
    pub fn delay_from(&mut self, id: NodeId, delay_ms: u64) {
        for peer in self.configs.keys().copied().filter(|peer| *peer != id) {
            self.link_delay_ms.insert((id, peer), delay_ms);
        }
    }

    pub fn propose(&mut self, id: NodeId, command: &[u8]) -> LogIndex {
        self.sync(id);
        let proposal = self.nodes.get_mut(&id).expect("up").propose(command.to_vec()).expect("leader accepts");
        self.absorb(id, proposal.output);
        proposal.index
    }

    /// Asks node `id` to change the membership; returns the entry's index.
    pub fn change(
        &mut self,
        id: NodeId,
        change: conclave_core::MembershipChange,
    ) -> Result<LogIndex, conclave_core::ChangeError> {
        self.sync(id);
        let proposal = self.nodes.get_mut(&id).expect("up").change_membership(change)?;
        self.absorb(id, proposal.output);
        Ok(proposal.index)
    }

    /// Configures node `id` as a new, empty node that waits to be added
    /// (no voters in its configuration), adjusted by `tweak`, and starts it.
    pub fn start_joiner(&mut self, id: NodeId, tweak: impl Fn(&mut Config)) {
        let mut joiner = config(id, &[]);
        tweak(&mut joiner);
        self.configs.insert(id, joiner);
        self.start(id, RestoredState::default());
    }

    /// Asks node `id` to hand its leadership over; returns the target.
    pub fn transfer(&mut self, id: NodeId, target: Option<NodeId>) -> Result<NodeId, conclave_core::TransferError> {
        self.sync(id);
        let started = self.nodes.get_mut(&id).expect("up").transfer_leadership(target)?;
        self.absorb(id, started.output);
        Ok(started.target)
    }

    /// Runs until `end_ms` (inclusive), handling every timer and message due.
    pub fn run_until(&mut self, end_ms: u64) {
        let mut budget = 5_000_000u64;
        loop {
            let now_ms = self.now_ms;
            let next_tick = self.nodes.iter().map(|(id, node)| (node.next_deadline_ms().max(now_ms), *id)).min();
            let next_message = self.in_flight.keys().next().copied();
            let tick_first = match (next_tick, next_message) {
                (Some((tick_ms, _)), Some((message_ms, _))) => tick_ms <= message_ms,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let at_ms = if tick_first { next_tick.expect("some").0 } else { next_message.expect("some").0 };
            if at_ms > end_ms {
                break;
            }
            budget -= 1;
            assert!(budget > 0, "no progress in virtual time at {at_ms} ms (a timer that never moves?)");
            self.now_ms = at_ms;
            if tick_first {
                self.tick(next_tick.expect("some").1);
            } else {
                let message = self.in_flight.remove(&next_message.expect("some")).expect("queued");
                self.deliver(message);
            }
        }
        self.now_ms = self.now_ms.max(end_ms);
    }

    /// Runs for `duration_ms` more.
    pub fn run_for(&mut self, duration_ms: u64) {
        self.run_until(self.now_ms + duration_ms);
    }

    /// Runs in steps of `step_ms` until `done` holds (checked after each step) or
    /// `end_ms` passes; returns whether it held.
    pub fn run_until_or(&mut self, end_ms: u64, step_ms: u64, done: impl Fn(&TimedCluster) -> bool) -> bool {
        while !done(self) {
            if self.now_ms >= end_ms {
                return false;
            }
            self.run_until((self.now_ms + step_ms).min(end_ms));
        }
        true
    }

    fn tick(&mut self, id: NodeId) {
        let now_ms = self.now_ms;
        self.clocks.insert(id, now_ms);
        let output = self.nodes.get_mut(&id).expect("up").tick(now_ms);
        self.absorb(id, output);
    }

    /// Brings node `id`'s clock up to the cluster's time.
    fn sync(&mut self, id: NodeId) {
        if self.clocks.get(&id).is_none_or(|clock| *clock < self.now_ms) {
            self.tick(id);
        }
    }

    fn deliver(&mut self, message: Message) {
        let to = message.to;
        if !self.is_up(to) {
            self.lost.push((self.now_ms, message));
            return;
        }
        self.sync(to);
        self.delivered.push((self.now_ms, message.clone()));
        let output = self.nodes.get_mut(&to).expect("up").step(message);
        self.absorb(to, output);
    }

    /// Records the events and applied entries of one output, and sends its messages.
    fn absorb(&mut self, id: NodeId, output: Output) {
        let node = &self.nodes[&id];
        let applied = self.applied.entry(id).or_default();
        for entry in &output.committed_entries {
            assert_eq!(entry.index, applied.len() as LogIndex + 1, "node {id} applies in order, exactly once");
            assert_eq!(node.log().entry(entry.index), Some(entry), "node {id} applies what its log holds");
            applied.push(entry.clone());
        }
        for event in output.events {
            self.events.push((self.now_ms, id, event));
        }
        for message in output.messages {
            assert_eq!(message.from, id, "a node sends in its own name");
            self.send(message);
        }
    }

    fn send(&mut self, message: Message) {
        self.sent.push((self.now_ms, message.clone()));
        let link = (message.from, message.to);
        if self.cut.contains(&link) || self.drop_rule.as_ref().is_some_and(|drop| drop(&message)) {
            self.lost.push((self.now_ms, message));
            return;
        }
        let delay_ms = match self.link_delay_ms.get(&link) {
            Some(delay_ms) => *delay_ms,
            None => self.rng.gen_range(self.delay_ms.0..=self.delay_ms.1),
        };
        let last = self.link_last_arrival.get(&link).copied().unwrap_or(0);
        let arrival_ms = (self.now_ms + delay_ms).max(last);
        self.link_last_arrival.insert(link, arrival_ms);
        self.in_flight.insert((arrival_ms, self.next_seq), message);
        self.next_seq += 1;
    }

    /// The events node `id` emitted, with their times.
    pub fn events_of(&self, id: NodeId) -> Vec<(u64, conclave_core::Event)> {
        self.events.iter().filter(|(_, node, _)| *node == id).map(|(at, _, event)| (*at, event.clone())).collect()
    }

    pub fn leaders(&self) -> Vec<NodeId> {
        self.nodes.values().filter(|node| node.role() == Role::Leader).map(|node| node.id()).collect()
    }
}

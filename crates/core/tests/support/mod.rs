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

pub fn config(id: NodeId, voters: &[NodeId]) -> Config {
    Config::new(id, CLUSTER_ID, voters.to_vec())
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
    node_from(config, RestoredState { hard_state, entries: log_with_terms(terms) }, seed)
}

pub fn hard_state(term: Term, voted_for: Option<NodeId>, commit: LogIndex) -> HardState {
    HardState { term, voted_for, commit }
}

/// A command entry whose payload names its position, so that two entries at the
/// same index but from different terms differ.
pub fn entry(term: Term, index: LogIndex) -> Entry {
    Entry { term, index, payload: Payload::Command(format!("{index}@{term}").into_bytes()) }
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
    Body::AppendEntries { prev_log_index, prev_log_term, entries, leader_commit }
}

pub fn heartbeat(prev_log_index: LogIndex, prev_log_term: Term, leader_commit: LogIndex) -> Body {
    append(prev_log_index, prev_log_term, Vec::new(), leader_commit)
}

pub fn vote_request(last_log_term: Term, last_log_index: LogIndex) -> Body {
    Body::RequestVote { pre_vote: false, last_log_term, last_log_index }
}

pub fn pre_vote_request(last_log_term: Term, last_log_index: LogIndex) -> Body {
    Body::RequestVote { pre_vote: true, last_log_term, last_log_index }
}

pub fn vote(granted: bool) -> Body {
    Body::VoteResponse { pre_vote: false, granted }
}

pub fn pre_vote(granted: bool) -> Body {
    Body::VoteResponse { pre_vote: true, granted }
}

pub fn accepted(match_index: LogIndex) -> Body {
    Body::AppendResponse(AppendOutcome::Accepted { match_index })
}

pub fn rejected(prev_log_index: LogIndex, hint_index: LogIndex) -> Body {
    Body::AppendResponse(AppendOutcome::Rejected { prev_log_index, hint_index })
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
    /// Committed entries each node handed out, in the order it handed them out.
    pub applied: BTreeMap<NodeId, Vec<Entry>>,
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
        }
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
        let applied = self.applied.entry(id).or_default();
        for entry in &output.committed_entries {
            assert_eq!(entry.index, applied.len() as LogIndex + 1, "node {id} applies in order, exactly once");
            assert_eq!(node.log().entry(entry.index), Some(entry), "node {id} applies what its log holds");
            applied.push(entry.clone());
        }
        for message in &output.messages {
            assert_eq!(message.from, id, "a node sends in its own name");
            self.queue.push_back(message.clone());
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

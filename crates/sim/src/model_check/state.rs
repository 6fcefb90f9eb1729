//! The model's state: the nodes (live cores or what their disks hold), the
//! messages in flight, the bounded counters, and the history the temporal
//! properties need.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use super::fingerprint::Fingerprinter;
use conclave_core::{
    AppendOutcome, Body, DurableMark, Entry, HardState, LogIndex, LogWrite, Message, Node, NodeId, Term,
};

/// A message in flight with its content hash, which orders the network and
/// names the message in actions.
#[derive(Clone, Debug)]
pub(crate) struct Packet {
    pub key: u64,
    pub message: Rc<Message>,
}

impl Packet {
    pub fn new(message: Message) -> Packet {
        // `Debug` covers every field of every message kind, so new kinds need no
        // change here; it runs once per message sent.
        let mut hasher = Fingerprinter::default();
        hash_message(&message, &mut hasher);
        Packet { key: hasher.finish(), message: Rc::new(message) }
    }
}

/// Hashes every field of `message`. Kinds not listed fall back to their `Debug`
/// text (slower, but a new kind needs no change here to be hashed in full).
fn hash_message(message: &Message, hasher: &mut Fingerprinter) {
    (message.cluster_id, message.from, message.to, message.term).hash(hasher);
    std::mem::discriminant(&message.body).hash(hasher);
    #[allow(unreachable_patterns)]
    match &message.body {
        Body::RequestVote { pre_vote, last_log_term, last_log_index, transfer } => {
            (pre_vote, last_log_term, last_log_index, transfer).hash(hasher)
        }
        Body::VoteResponse { pre_vote, granted } => (pre_vote, granted).hash(hasher),
        Body::AppendEntries { prev_log_index, prev_log_term, entries, leader_commit, read_round, heartbeat } => {
            (prev_log_index, prev_log_term, entries, leader_commit, read_round, heartbeat).hash(hasher)
        }
        Body::AppendResponse { outcome: AppendOutcome::Accepted { match_index }, read_round } => {
            (0u8, match_index, read_round).hash(hasher)
        }
        Body::AppendResponse { outcome: AppendOutcome::Rejected { prev_log_index, hint_index }, read_round } => {
            (1u8, prev_log_index, hint_index, read_round).hash(hasher)
        }
        Body::SubjectiveDown { leader, leader_term, down, last_log_term, last_log_index } => {
            (leader, leader_term, down, last_log_term, last_log_index).hash(hasher)
        }
        Body::ObjectiveDown { leader, leader_term } => (leader, leader_term).hash(hasher),
        Body::Vote { ballot, vote, state } => (ballot, vote, state).hash(hasher),
        Body::Correction { leader, leader_term } => (leader, leader_term).hash(hasher),
        other => write!(hasher, "{other:?}").expect("hashing cannot fail"),
    }
}

/// What a node's disk holds: everything its outputs asked to persist.
#[derive(Clone, Debug, Default, Hash)]
pub(crate) struct Disk {
    pub hard_state: HardState,
    pub entries: Vec<Entry>,
}

impl Disk {
    pub fn persist(&mut self, hard_state: Option<HardState>, log_write: Option<&LogWrite>) {
        if let Some(hard_state) = hard_state {
            self.hard_state = hard_state;
        }
        if let Some(write) = log_write {
            self.entries.truncate(write.first_index.saturating_sub(1) as usize);
            self.entries.extend(write.entries.iter().cloned());
        }
    }
}

/// A batch whose messages left before its write was durable (a leader's
/// appends, `Config::parallel_persist`).
#[derive(Clone, Debug, Hash)]
pub(crate) struct Unsynced {
    pub hard_state: Option<HardState>,
    pub log_write: Option<LogWrite>,
    pub mark: Option<DurableMark>,
}

/// One member: its core while it runs, its disk always.
#[derive(Clone, Debug)]
pub(crate) struct ModelNode {
    pub id: NodeId,
    /// `None` while crashed.
    pub core: Option<Node>,
    /// The node's own clock (not in the fingerprint: only times relative to it
    /// are, inside the core's fingerprint).
    pub clock_ms: u64,
    /// Starts so far, to seed each incarnation's RNG.
    pub incarnation: u64,
    pub disk: Disk,
    /// Writes not yet on `disk`, oldest first (lost in a crash).
    pub unsynced: Vec<Unsynced>,
    /// Entries this incarnation applied, in order (volatile: lost in a crash).
    pub applied: Vec<Entry>,
    /// Hash of the node's state, kept up to date by every change.
    pub fingerprint: u64,
}

impl ModelNode {
    /// Writes every unsynced batch to the disk, in order; returns the newest
    /// mark to report to the core.
    pub fn flush_unsynced(&mut self) -> Option<DurableMark> {
        let mut mark = None;
        for batch in self.unsynced.drain(..) {
            self.disk.persist(batch.hard_state, batch.log_write.as_ref());
            mark = batch.mark.or(mark);
        }
        mark
    }

    pub fn refresh_fingerprint(&mut self) {
        let mut hasher = Fingerprinter::default();
        self.id.hash(&mut hasher);
        match &self.core {
            // A live node's disk equals its state but for the unsynced writes
            // (persist happens at each step otherwise), and its applied
            // entries are its log's applied prefix.
            Some(core) => {
                1u8.hash(&mut hasher);
                core.model_fingerprint(&mut hasher);
                self.unsynced.hash(&mut hasher);
            }
            None => {
                0u8.hash(&mut hasher);
                self.disk.hash(&mut hasher);
            }
        }
        self.fingerprint = hasher.finish();
    }

    /// The node's log and commit index: the core's, or its disk's while down.
    pub fn log_and_commit(&self) -> (&[Entry], LogIndex) {
        match &self.core {
            Some(core) => (core.log().all(), core.log().committed()),
            None => {
                let commit = self.disk.hard_state.commit.min(self.disk.entries.len() as LogIndex);
                (&self.disk.entries, commit)
            }
        }
    }

    /// The term the node is at (its disk's while down).
    pub fn term(&self) -> Term {
        self.core.as_ref().map_or(self.disk.hard_state.term, Node::term)
    }
}

/// What happened along the path to a state, for properties about the past.
#[derive(Clone, Debug, Default, Hash)]
pub(crate) struct History {
    /// Leaders established in each term (the mode's `LeaderRule` says what counts).
    pub leaders: BTreeMap<Term, BTreeSet<NodeId>>,
    /// Every entry ever known committed at an index, with the lowest term in which
    /// a node knew it committed. Two entries at one index is a violation.
    pub committed: BTreeMap<LogIndex, Vec<(Entry, Term)>>,
    /// The longest sequence any node applied.
    pub applied: Vec<Entry>,
    /// Per node (by position): the highest committed leader term it ever held.
    pub committed_leader_term: Vec<u64>,
    /// The highest term (leader term under `ByCommittedClaim`) whose leader was
    /// established and still led when it crashed: a later leader replaced it.
    pub crashed_leader_term: Option<Term>,
    /// A node's core panicked or refused its own disk: (node, what it said).
    pub node_failure: Option<(NodeId, String)>,
}

/// One state of the model. Nodes, network and history are shared between states
/// until changed, so a successor costs one node clone.
#[derive(Clone, Debug)]
pub(crate) struct ModelState {
    pub nodes: Vec<Rc<ModelNode>>,
    /// Sorted by key, no two alike: a message is in flight or not; duplication
    /// is a delivery that keeps it.
    pub network: Rc<Vec<Packet>>,
    pub proposals: u32,
    /// Leader transfers asked for so far.
    pub transfers: u32,
    /// Membership changes proposed so far.
    pub changes: u32,
    pub crashes: u32,
    /// Timer firings so far (counted only under `max_timers`).
    pub timers: u32,
    pub history: Rc<History>,
}

impl ModelState {
    pub fn fingerprint(&self) -> u64 {
        let mut hasher = Fingerprinter::default();
        for node in &self.nodes {
            node.fingerprint.hash(&mut hasher);
        }
        for packet in self.network.iter() {
            packet.key.hash(&mut hasher);
        }
        (self.proposals, self.transfers, self.changes, self.crashes, self.timers).hash(&mut hasher);
        self.history.hash(&mut hasher);
        hasher.finish()
    }

    pub fn packet(&self, key: u64) -> Option<&Packet> {
        let position = self.network.binary_search_by_key(&key, |packet| packet.key).ok()?;
        self.network.get(position)
    }

    pub fn send(&mut self, messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        let network = Rc::make_mut(&mut self.network);
        for message in messages {
            let packet = Packet::new(message);
            if let Err(position) = network.binary_search_by_key(&packet.key, |packet| packet.key) {
                network.insert(position, packet);
            }
        }
    }

    pub fn remove_packet(&mut self, key: u64) {
        let network = Rc::make_mut(&mut self.network);
        if let Ok(position) = network.binary_search_by_key(&key, |packet| packet.key) {
            network.remove(position);
        }
    }

    /// Highest term of any node, and longest log: the expansion bounds.
    pub fn max_term_and_log_length(&self) -> (Term, usize) {
        let term = self.nodes.iter().map(|node| node.term()).max().unwrap_or(0);
        let length = self.nodes.iter().map(|node| node.log_and_commit().0.len()).max().unwrap_or(0);
        (term, length)
    }
}

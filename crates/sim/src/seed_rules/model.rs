//! The abstract protocol: state, actions and the three rule variants.
//!
//! A state is the three nodes plus the set of in-flight messages and a little
//! ghost state the properties need (who ever served as leader of which leader
//! term; whether a committed entry was ever overwritten). Actions are the
//! environment's choices; [`State::apply`] runs one of them atomically.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

/// Nodes in the model.
pub const NODES: usize = 3;
/// Votes (self included) that make a majority of [`NODES`].
const MAJORITY: u32 = 2;
/// Longest log the model can hold (`Bounds::max_log` may be lower).
pub const MAX_LOG: usize = 4;
/// Most in-flight messages the model can hold (`Bounds::max_messages` may be lower).
pub const MAX_MESSAGES: usize = 5;
/// Ghost slots for leader terms `0..LEADER_TERM_SLOTS`; `Bounds::max_term` stays below it.
pub const LEADER_TERM_SLOTS: usize = 6;

/// Which rules the nodes follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SeedVariant {
    /// The seed exactly as written: `last_leader_term` is the term of the newest
    /// `BecomeLeader` anywhere in the node's log, committed or not.
    AsWritten,
    /// As written, but `last_leader_term` is taken from committed entries only.
    CommittedLastLeaderTerm,
    /// docs/design/leader-terms.md's repaired rules: a Raft ballot orders votes and entries,
    /// the leader term is data in `BecomeLeader`, the lease only withholds votes.
    Repaired,
}

impl SeedVariant {
    fn is_seed(self) -> bool {
        self != SeedVariant::Repaired
    }

    /// What traces call the number votes and entries carry.
    fn term_word(self) -> &'static str {
        if self.is_seed() {
            "term"
        } else {
            "ballot"
        }
    }
}

/// Limits that keep the state space finite. Every loop in the checker is bounded by them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Highest term (seed variants) or ballot (repaired) a candidate may use.
    pub max_term: u8,
    /// Longest log any node may hold.
    pub max_log: usize,
    /// Client commands leaders may append, in total.
    pub max_commands: u8,
    /// In-flight messages; a send to a full network is lost (the network is lossy anyway).
    pub max_messages: usize,
    /// Crash-and-restarts, in total.
    pub max_crashes: u8,
    /// Longest trace explored, in actions.
    pub max_depth: usize,
    /// Distinct states after which the search gives up (reported as incomplete).
    pub max_states: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        // The bounds the tests use: a few seconds per search in release mode.
        Bounds {
            max_term: 2,
            max_log: 3,
            max_commands: 1,
            max_messages: 2,
            max_crashes: 1,
            max_depth: 13,
            max_states: 3_000_000,
        }
    }
}

/// A fixed-capacity sequence: states stay `Copy`, so the search allocates nothing per state.
#[derive(Clone, Copy, Debug)]
pub struct Bounded<T, const N: usize> {
    len: u8,
    slots: [T; N],
}

impl<T: Copy + Default, const N: usize> Bounded<T, N> {
    fn new() -> Self {
        Bounded { len: 0, slots: [T::default(); N] }
    }

    fn from_slice(items: &[T]) -> Self {
        let mut out = Self::new();
        out.slots[..items.len()].copy_from_slice(items);
        out.len = items.len() as u8;
        out
    }

    fn push(&mut self, item: T) {
        self.insert(self.len(), item);
    }

    fn insert(&mut self, at: usize, item: T) {
        let len = self.len();
        self.slots.copy_within(at..len, at + 1);
        self.slots[at] = item;
        self.len += 1;
    }

    fn remove(&mut self, at: usize) -> T {
        let (item, len) = (self.slots[at], self.len());
        self.slots.copy_within(at + 1..len, at);
        self.truncate(len - 1);
        item
    }

    fn truncate(&mut self, len: usize) {
        self.slots[len..].fill(T::default());
        self.len = len as u8;
    }
}

impl<T, const N: usize> Deref for Bounded<T, N> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        &self.slots[..usize::from(self.len)]
    }
}

impl<T: PartialEq, const N: usize> PartialEq for Bounded<T, N> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Eq, const N: usize> Eq for Bounded<T, N> {}

impl<T: Hash, const N: usize> Hash for Bounded<T, N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (**self).hash(state);
    }
}

impl<T: Ord, const N: usize> PartialOrd for Bounded<T, N> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T: Ord, const N: usize> Ord for Bounded<T, N> {
    fn cmp(&self, other: &Self) -> Ordering {
        (**self).cmp(&**other)
    }
}

/// A log, or the entries an append carries.
pub type Log = Bounded<Entry, MAX_LOG>;

/// What an entry says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// The seed's `become_leader` entry. In the seed variants `leader_term` is
    /// the entry's own term; in the repaired rules it is the gapless leader term.
    BecomeLeader {
        /// The leader term this entry establishes.
        leader_term: u8,
        /// The node that appended it.
        leader: u8,
    },
    /// A client command, with a unique id.
    Command(u8),
}

/// A log entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entry {
    /// The seed's term, or the repaired rules' ballot: what Raft's checks compare.
    pub term: u8,
    /// The payload.
    pub kind: Kind,
}

impl Default for Entry {
    fn default() -> Self {
        Entry { term: 0, kind: Kind::Command(0) }
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::BecomeLeader { leader_term, leader } if leader_term == self.term => {
                write!(f, "BecomeLeader(t{}, n{leader})", self.term)
            }
            Kind::BecomeLeader { leader_term, leader } => {
                write!(f, "BecomeLeader(lt{leader_term}, n{leader})@b{}", self.term)
            }
            Kind::Command(id) => write!(f, "Command({id})@t{}", self.term),
        }
    }
}

/// A node's volatile role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Neither campaigning nor leading.
    Follower,
    /// Campaigning for `term`.
    Candidate,
    /// Won a majority; its `BecomeLeader` is not yet committed.
    LeaderElect,
    /// Its `BecomeLeader` committed: it serves.
    Leader,
}

/// One node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    /// Persistent: the term it last voted in (seed) or its ballot promise (repaired).
    pub term: u8,
    /// Persistent: whom it voted for in `term`.
    pub voted_for: Option<u8>,
    /// Persistent: the log.
    pub log: Log,
    /// Persistent: entries `..commit` are known committed.
    pub commit: usize,
    /// Volatile.
    pub role: Role,
    /// Volatile: the vote lease (the seed's on_vote_timeout) is running.
    pub lease: bool,
    /// Volatile: bitmask of voters for `term` (candidates).
    pub votes: u8,
    /// Volatile: highest index known replicated on each peer (leader-elects and leaders).
    pub matched: [u8; NODES],
}

impl Node {
    fn new() -> Self {
        Node {
            term: 0,
            voted_for: None,
            log: Log::new(),
            commit: 0,
            role: Role::Follower,
            lease: false,
            votes: 0,
            matched: [0; NODES],
        }
    }

    fn last_term(&self) -> u8 {
        self.log.last().map_or(0, |entry| entry.term)
    }

    /// The leader term of the newest `BecomeLeader` among the first `upto` entries.
    fn newest_leader_term(&self, upto: usize) -> u8 {
        self.log[..upto]
            .iter()
            .rev()
            .find_map(|entry| match entry.kind {
                Kind::BecomeLeader { leader_term, .. } => Some(leader_term),
                Kind::Command(_) => None,
            })
            .unwrap_or(0)
    }

    /// The seed's `last_leader_term` under the given variant.
    fn last_leader_term(&self, variant: SeedVariant) -> u8 {
        match variant {
            SeedVariant::CommittedLastLeaderTerm => self.newest_leader_term(self.commit),
            SeedVariant::AsWritten | SeedVariant::Repaired => self.newest_leader_term(self.log.len()),
        }
    }

    /// Raft's voting restriction: a candidate's log ending at (`term`, `index`) is at least as up-to-date.
    fn behind_or_equal(&self, last_term: u8, last_index: usize) -> bool {
        (last_term, last_index) >= (self.last_term(), self.log.len())
    }
}

/// A message. Only granted votes and successful appends are answered: a refusal
/// informs nobody of anything safety depends on, and a lossy network may lose it anyway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Msg {
    /// A candidate asks for a vote.
    RequestVote {
        /// Sender (the candidate).
        from: u8,
        /// Receiver.
        to: u8,
        /// The term asked for.
        term: u8,
        /// The candidate's last log term.
        last_term: u8,
        /// The candidate's last log index.
        last_index: u8,
    },
    /// A vote granted.
    Vote {
        /// The voter.
        from: u8,
        /// The candidate.
        to: u8,
        /// The term voted in.
        term: u8,
    },
    /// Raft's AppendEntries.
    Append {
        /// The leader-elect or leader.
        from: u8,
        /// Receiver.
        to: u8,
        /// The sender's term.
        term: u8,
        /// Index of the entry before `entries`.
        prev_index: u8,
        /// Term of that entry.
        prev_term: u8,
        /// Entries from `prev_index + 1` on.
        entries: Log,
        /// The sender's commit index.
        commit: u8,
    },
    /// The receiver now matches the sender's log up to `matched`.
    AppendOk {
        /// The follower.
        from: u8,
        /// The leader.
        to: u8,
        /// The term of the append answered.
        term: u8,
        /// Index matched.
        matched: u8,
    },
}

impl Default for Msg {
    fn default() -> Self {
        Msg::Vote { from: 0, to: 0, term: 0 }
    }
}

impl fmt::Display for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Msg::RequestVote { from, to, term, last_term, last_index } => {
                write!(f, "RequestVote(t{term}, last ({last_term},{last_index})) n{from}->n{to}")
            }
            Msg::Vote { from, to, term } => write!(f, "Vote(t{term}) n{from}->n{to}"),
            Msg::Append { from, to, term, prev_index, prev_term, entries, commit } => {
                let list: Vec<String> = entries.iter().map(Entry::to_string).collect();
                write!(
                    f,
                    "Append(t{term}, prev ({prev_term},{prev_index}), [{}], commit {commit}) n{from}->n{to}",
                    list.join(", ")
                )
            }
            Msg::AppendOk { from, to, term, matched } => write!(f, "AppendOk(t{term}, match {matched}) n{from}->n{to}"),
        }
    }
}

/// An environment choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// The node's election timer fires: it campaigns.
    Timeout(u8),
    /// The node's vote lease ends.
    ExpireLease(u8),
    /// The node crashes and restarts: persistent state kept, volatile lost.
    Crash(u8),
    /// A leader-elect or leader sends AppendEntries to a peer, from the index it
    /// knows the peer matches. While log matching holds, an accepted append from
    /// any other `prev_index` has the same effect as this one and a rejected one
    /// has none, so one choice covers every `next_index` strategy.
    Send {
        /// Sender.
        from: u8,
        /// Receiver.
        to: u8,
    },
    /// A leader appends a client command.
    Client(u8),
    /// The `i`-th in-flight message (in the network's order) is delivered and removed.
    Deliver(u8),
    /// The `i`-th in-flight message is delivered and a copy stays in flight.
    Duplicate(u8),
    /// The `i`-th in-flight message is lost.
    Drop(u8),
}

/// Collects trace text while replaying a counterexample; costs nothing during the search.
#[derive(Debug, Default)]
pub struct Notes(Option<Vec<String>>);

impl Notes {
    /// A sink that records.
    pub fn recording() -> Self {
        Notes(Some(Vec::new()))
    }

    /// A sink that drops everything (the search).
    pub fn quiet() -> Self {
        Notes(None)
    }

    fn add(&mut self, text: impl FnOnce() -> String) {
        if let Some(lines) = &mut self.0 {
            lines.push(text());
        }
    }

    /// The text recorded, joined.
    pub fn take(self) -> String {
        self.0.unwrap_or_default().join("; ")
    }
}

/// The whole system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct State {
    /// The nodes.
    pub nodes: [Node; NODES],
    /// In-flight messages, sorted and without duplicates (a set).
    pub net: Bounded<Msg, MAX_MESSAGES>,
    /// Crashes so far.
    pub crashes: u8,
    /// Client commands so far.
    pub commands: u8,
    /// Ghost: bitmask of the nodes that ever served as leader of each leader term.
    pub leaders: [u8; LEADER_TERM_SLOTS],
    /// Ghost: some node truncated an entry it had known committed.
    pub overwrote_committed: bool,
}

impl State {
    /// No terms, empty logs, empty network.
    pub fn initial() -> Self {
        State {
            nodes: [Node::new(), Node::new(), Node::new()],
            net: Bounded::new(),
            crashes: 0,
            commands: 0,
            leaders: [0; LEADER_TERM_SLOTS],
            overwrote_committed: false,
        }
    }

    /// Every action the environment may choose here (some may turn out to be no-ops).
    pub fn actions(&self, bounds: &Bounds, out: &mut Vec<Action>) {
        out.clear();
        for id in 0..NODES as u8 {
            let node = &self.nodes[usize::from(id)];
            // The lease is shorter than the election timeout (the seed's rule), so
            // it has always ended when the election timer fires.
            if node.role != Role::Leader {
                out.push(Action::Timeout(id));
            }
            if node.lease {
                out.push(Action::ExpireLease(id));
            }
            if self.crashes < bounds.max_crashes {
                out.push(Action::Crash(id));
            }
            if matches!(node.role, Role::LeaderElect | Role::Leader) {
                out.extend((0..NODES as u8).filter(|&to| to != id).map(|to| Action::Send { from: id, to }));
            }
            if node.role == Role::Leader && self.commands < bounds.max_commands && node.log.len() < bounds.max_log {
                out.push(Action::Client(id));
            }
        }
        for index in 0..self.net.len() as u8 {
            out.push(Action::Deliver(index));
            out.push(Action::Duplicate(index));
            // A loss only matters once the network lacks room for a broadcast; before
            // that, keeping the message and never delivering it reaches the same node states.
            if self.net.len() + 2 > bounds.max_messages {
                out.push(Action::Drop(index));
            }
        }
    }

    /// The state after `action`, or `None` when it changes nothing.
    pub fn apply(&self, variant: SeedVariant, bounds: &Bounds, action: Action, notes: &mut Notes) -> Option<State> {
        let mut next = *self;
        match action {
            Action::Timeout(id) => next.timeout(variant, bounds, id, notes),
            Action::ExpireLease(id) => {
                next.nodes[usize::from(id)].lease = false;
                notes.add(|| format!("n{id}'s vote lease expires"));
            }
            Action::Crash(id) => {
                next.crashes += 1;
                let node = &mut next.nodes[usize::from(id)];
                node.role = Role::Follower;
                node.lease = false;
                node.votes = 0;
                node.matched = [0; NODES];
                notes.add(|| format!("n{id} crashes and restarts (term, vote, log, commit kept)"));
            }
            Action::Send { from, to } => {
                {
                    let node = &next.nodes[usize::from(from)];
                    // A stale reply may report more than a log truncated since then holds.
                    let prev = node.matched[usize::from(to)].min(node.log.len() as u8);
                    let prev_index = usize::from(prev);
                    let msg = Msg::Append {
                        from,
                        to,
                        term: node.term,
                        prev_index: prev,
                        prev_term: if prev_index == 0 { 0 } else { node.log[prev_index - 1].term },
                        entries: Log::from_slice(&node.log[prev_index..]),
                        commit: node.commit as u8,
                    };
                    notes.add(|| format!("n{from} sends {msg}"));
                    next.send(bounds, msg, notes);
                }
            }
            Action::Client(id) => {
                next.commands += 1;
                let command = next.commands;
                let node = &mut next.nodes[usize::from(id)];
                let entry = Entry { term: node.term, kind: Kind::Command(command) };
                node.log.push(entry);
                node.matched[usize::from(id)] = node.log.len() as u8;
                notes.add(|| format!("leader n{id} appends {entry} at index {}", node.log.len()));
            }
            Action::Deliver(index) | Action::Duplicate(index) => {
                let msg = next.net[usize::from(index)];
                if matches!(action, Action::Deliver(_)) {
                    next.net.remove(usize::from(index));
                    notes.add(|| format!("deliver {msg}"));
                } else {
                    notes.add(|| format!("deliver a copy of {msg} (it stays in flight)"));
                }
                next.receive(variant, bounds, msg, notes);
            }
            Action::Drop(index) => {
                let msg = next.net.remove(usize::from(index));
                notes.add(|| format!("the network loses {msg}"));
            }
        }
        if !variant.is_seed() {
            next.collect_dead_messages();
        }
        (next != *self).then_some(next)
    }

    /// Repaired rules only: drops messages whose delivery can never change a
    /// node again. Ballots never decrease, so such a message stays dead; losing
    /// it is a behaviour the lossy network has anyway, and merging the states
    /// that differ only by it keeps the search small. (In the seed's rules a
    /// node's term can go back, so nothing is provably dead there.)
    fn collect_dead_messages(&mut self) {
        let nodes = &self.nodes;
        let live = |msg: &Msg| match *msg {
            Msg::RequestVote { to, term, .. } | Msg::Append { to, term, .. } => term >= nodes[usize::from(to)].term,
            // A vote counts only for a candidate of that ballot, which never comes back once left.
            Msg::Vote { to, term, .. } => {
                let node = &nodes[usize::from(to)];
                term > node.term || (term == node.term && node.role == Role::Candidate)
            }
            // Only a leader-elect or leader of that ballot counts replies.
            Msg::AppendOk { to, term, .. } => {
                let node = &nodes[usize::from(to)];
                term > node.term || (term == node.term && node.role != Role::Follower)
            }
        };
        if self.net.iter().all(live) {
            return;
        }
        let kept: Vec<Msg> = self.net.iter().copied().filter(live).collect();
        self.net = Bounded::from_slice(&kept);
    }

    fn send(&mut self, bounds: &Bounds, msg: Msg, notes: &mut Notes) {
        match self.net.binary_search(&msg) {
            Ok(_) => {}
            Err(_) if self.net.len() >= bounds.max_messages => notes.add(|| format!("(network full: {msg} lost)")),
            Err(at) => self.net.insert(at, msg),
        }
    }

    fn timeout(&mut self, variant: SeedVariant, bounds: &Bounds, id: u8, notes: &mut Notes) {
        let node = &self.nodes[usize::from(id)];
        // The seed has no give-up rule for a leader-elect; the repaired rules do.
        if variant.is_seed() && node.role == Role::LeaderElect {
            return;
        }
        // Seed: last_leader_term + 1, kept until a leader for it appears. Repaired: Raft's term + 1.
        let term = if variant.is_seed() { node.last_leader_term(variant) + 1 } else { node.term + 1 };
        if term > bounds.max_term {
            return;
        }
        let keep_votes = variant.is_seed() && node.role == Role::Candidate && node.term == term;
        let node = &mut self.nodes[usize::from(id)];
        node.term = term;
        node.voted_for = Some(id);
        node.role = Role::Candidate;
        node.lease = true;
        if !keep_votes {
            node.votes = 1 << id;
        }
        let (last_term, last_index) = (node.last_term(), node.log.len() as u8);
        let word = variant.term_word();
        notes.add(|| format!("n{id} times out and campaigns for {word} {term} (votes for itself)"));
        for to in (0..NODES as u8).filter(|&to| to != id) {
            self.send(bounds, Msg::RequestVote { from: id, to, term, last_term, last_index }, notes);
        }
    }

    fn receive(&mut self, variant: SeedVariant, bounds: &Bounds, msg: Msg, notes: &mut Notes) {
        match msg {
            Msg::RequestVote { from, to, term, last_term, last_index } => {
                let node = &mut self.nodes[usize::from(to)];
                let term_ok = if variant.is_seed() {
                    // The seed compares with the last leader's term, not with the voter's own term.
                    term == node.last_leader_term(variant) + 1
                } else {
                    if term > node.term {
                        node.term = term;
                        node.voted_for = None;
                        node.role = Role::Follower;
                    }
                    term == node.term && node.voted_for.is_none_or(|voted| voted == from)
                };
                if node.lease || !term_ok || !node.behind_or_equal(last_term, usize::from(last_index)) {
                    notes.add(|| format!("n{to} refuses"));
                    return;
                }
                node.term = term;
                node.voted_for = Some(from);
                node.role = Role::Follower;
                node.lease = true;
                let word = variant.term_word();
                notes.add(|| format!("n{to} grants its vote for {word} {term} to n{from} and starts its lease"));
                self.send(bounds, Msg::Vote { from: to, to: from, term }, notes);
            }
            Msg::Vote { from, to, term } => {
                let node = &mut self.nodes[usize::from(to)];
                if node.role != Role::Candidate || node.term != term {
                    return;
                }
                node.votes |= 1 << from;
                if node.votes.count_ones() < MAJORITY {
                    return;
                }
                if node.log.len() >= bounds.max_log {
                    notes.add(|| format!("n{to} has a majority but its log is full (bound)"));
                    return;
                }
                let leader_term = if variant.is_seed() { term } else { node.newest_leader_term(node.log.len()) + 1 };
                let entry = Entry { term, kind: Kind::BecomeLeader { leader_term, leader: to } };
                node.role = Role::LeaderElect;
                node.log.push(entry);
                node.matched = [0; NODES];
                node.matched[usize::from(to)] = node.log.len() as u8;
                notes
                    .add(|| format!("n{to} has a majority: leader-elect, appends {entry} at index {}", node.log.len()));
            }
            Msg::Append { from, to, term, prev_index, prev_term, entries, commit } => {
                self.receive_append(variant, bounds, from, to, term, prev_index, prev_term, &entries, commit, notes)
            }
            Msg::AppendOk { from, to, term, matched } => {
                let node = &mut self.nodes[usize::from(to)];
                if !matches!(node.role, Role::LeaderElect | Role::Leader) || node.term != term {
                    return;
                }
                let slot = &mut node.matched[usize::from(from)];
                *slot = (*slot).max(matched);
                self.advance_commit(to, notes);
            }
        }
    }

    #[allow(clippy::too_many_arguments)] // the fields of one message
    fn receive_append(
        &mut self,
        variant: SeedVariant,
        bounds: &Bounds,
        from: u8,
        to: u8,
        term: u8,
        prev_index: u8,
        prev_term: u8,
        entries: &[Entry],
        leader_commit: u8,
        notes: &mut Notes,
    ) {
        let node = &mut self.nodes[usize::from(to)];
        if variant.is_seed() {
            // Seed: only the node it voted for in that term.
            if term != node.term || node.voted_for != Some(from) {
                notes.add(|| format!("n{to} rejects: it did not vote for n{from} in term {term}"));
                return;
            }
        } else {
            // Repaired: Raft's rule, ballot >= promise.
            if term < node.term {
                notes.add(|| format!("n{to} rejects: ballot {term} below its promise {}", node.term));
                return;
            }
            if term > node.term {
                node.term = term;
                node.voted_for = None;
            }
            node.role = Role::Follower;
        }
        let prev = usize::from(prev_index);
        if prev > node.log.len() || (prev > 0 && node.log[prev - 1].term != prev_term) {
            notes.add(|| format!("n{to} rejects: consistency check fails at index {prev}"));
            return;
        }
        // Raft: an entry whose index and term match is assumed identical and kept;
        // a term conflict truncates from there.
        for (offset, entry) in entries.iter().enumerate() {
            let at = prev + offset;
            match node.log.get(at) {
                Some(existing) if existing.term == entry.term => {}
                Some(_) => {
                    if at < node.commit {
                        self.overwrote_committed = true;
                        node.commit = at;
                    }
                    node.log.truncate(at);
                    node.log.push(*entry);
                }
                None if at < bounds.max_log => node.log.push(*entry),
                None => break,
            }
        }
        let last_new = prev + entries.len();
        node.commit = node.commit.max(usize::from(leader_commit).min(last_new).min(node.log.len()));
        notes.add(|| {
            let log: Vec<String> = node.log.iter().map(Entry::to_string).collect();
            format!("n{to} accepts: log [{}], commit {}", log.join(", "), node.commit)
        });
        let reply = Msg::AppendOk { from: to, to: from, term, matched: last_new.min(node.log.len()) as u8 };
        self.send(bounds, reply, notes);
    }

    /// Raft's commit rule: the highest index on a majority whose entry has the leader's own term.
    fn advance_commit(&mut self, id: u8, notes: &mut Notes) {
        let node = &mut self.nodes[usize::from(id)];
        let len = node.log.len();
        node.matched[usize::from(id)] = len as u8;
        let on_majority = |index: usize| node.matched.iter().filter(|&&m| usize::from(m) >= index).count() as u32;
        let Some(index) = (node.commit + 1..=len)
            .rev()
            .find(|&index| node.log[index - 1].term == node.term && on_majority(index) >= MAJORITY)
        else {
            return;
        };
        node.commit = index;
        notes.add(|| format!("n{id} commits up to index {index}"));
        if node.role != Role::LeaderElect {
            return;
        }
        let own = node.log[..index].iter().rev().find_map(|entry| match entry.kind {
            Kind::BecomeLeader { leader_term, leader } if leader == id && entry.term == node.term => Some(leader_term),
            _ => None,
        });
        if let Some(leader_term) = own {
            node.role = Role::Leader;
            self.leaders[usize::from(leader_term)] |= 1 << id;
            notes.add(|| format!("n{id}'s BecomeLeader is committed: n{id} serves as leader of term {leader_term}"));
        }
    }

    /// One line per node, for the end of a trace.
    pub fn summary(&self) -> Vec<String> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(id, node)| {
                let log: Vec<String> = node.log.iter().map(Entry::to_string).collect();
                let voted = node.voted_for.map_or_else(|| "-".to_string(), |v| format!("n{v}"));
                format!(
                    "n{id}: {:?}, term {}, voted {voted}, commit {}, log [{}]",
                    node.role,
                    node.term,
                    node.commit,
                    log.join(", ")
                )
            })
            .collect()
    }
}

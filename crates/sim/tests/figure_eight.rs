//! Raft §5.4.2, Figure 8, scripted on five real cores.
//!
//! The random sweep reaches this interleaving only about once in several thousand
//! seeds (docs/decisions/0007-checkers-proved-by-injected-bugs.md), so it is played by hand here: the
//! script chooses which of the nodes' own messages arrive and which are lost, and
//! "crashes" a node by dropping it and later rebuilding it with `Node::new` from
//! its disk. Every output is fed to the simulator's checkers exactly as
//! `crates/sim/src/simulation.rs` does.
//!
//! Leaders append a no-op when elected (Raft §8), so the entries of the figure are
//! those no-ops: index 1 is the term-1 leader's, index 2 holds the term-2 entry
//! that the figure is about.

use std::collections::{BTreeMap, VecDeque};

use conclave_core::{
    AppendOutcome, Body, Config, Entry, Event, InjectedBug, LogIndex, Message, Node, NodeId, Output, Payload, Role,
    Term,
};
use conclave_sim::disk::SimDisk;
use conclave_sim::invariants::{Broken, ElectionSafety, LeaderCompleteness, LogMatching, StateMachineSafety};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const VOTERS: [NodeId; 5] = [1, 2, 3, 4, 5];
const CLUSTER_ID: u64 = 8;
/// Time between two panels of the figure: longer than the longest election
/// timeout (2T = 500 ms), so every leader lease has expired and every election
/// timer is due.
const PAUSE_MS: u64 = 1_000;

/// A checker that fired, and the step of the script during which it did.
#[derive(Debug)]
struct Caught {
    step: &'static str,
    broken: Broken,
}

/// Five cores, their disks, an in-flight message list the script picks from, and
/// the checkers.
struct Cluster {
    bug: Option<InjectedBug>,
    now_ms: u64,
    /// `None` while the node is crashed.
    nodes: BTreeMap<NodeId, Option<Node>>,
    disks: BTreeMap<NodeId, SimDisk>,
    incarnations: BTreeMap<NodeId, u64>,
    /// The commit index each node was last seen with (as the simulator tracks it).
    known_commit: BTreeMap<NodeId, LogIndex>,
    /// Sent and not yet delivered or lost, in sending order.
    network: VecDeque<Message>,
    election_safety: ElectionSafety,
    log_matching: LogMatching,
    leader_completeness: LeaderCompleteness,
    state_machine_safety: StateMachineSafety,
    step: &'static str,
    caught: Vec<Caught>,
}

impl Cluster {
    fn new(bug: Option<InjectedBug>) -> Cluster {
        let mut cluster = Cluster {
            bug,
            now_ms: 0,
            nodes: VOTERS.iter().map(|id| (*id, None)).collect(),
            disks: VOTERS.iter().map(|id| (*id, SimDisk::default())).collect(),
            incarnations: VOTERS.iter().map(|id| (*id, 0)).collect(),
            known_commit: BTreeMap::new(),
            network: VecDeque::new(),
            election_safety: ElectionSafety::default(),
            log_matching: LogMatching::default(),
            leader_completeness: LeaderCompleteness::default(),
            state_machine_safety: StateMachineSafety::default(),
            step: "start",
            caught: Vec::new(),
        };
        for id in VOTERS {
            cluster.start(id);
        }
        cluster
    }

    /// Names the step of the script that follows, for the report of any checker.
    fn step(&mut self, name: &'static str) {
        self.step = name;
    }

    fn config(&self, id: NodeId) -> Config {
        let mut config = Config::new(id, CLUSTER_ID, VOTERS.to_vec());
        // Figure 8 is about Raft's commit rule: the raft mode shows it plainest.
        config.election_mode = conclave_core::ElectionMode::Raft;
        // One entry per AppendEntries, so that the old-term entry can travel alone.
        config.max_entries_per_message = 1;
        config.injected_bug = self.bug;
        config
    }

    // ----- nodes, crashes and restarts -------------------------------------------------

    /// Starts `id` from its disk (empty at first), as the simulator's `start_node`.
    fn start(&mut self, id: NodeId) {
        let incarnation = self.incarnations[&id];
        let rng = ChaCha8Rng::seed_from_u64(id * 1_000 + incarnation);
        let restored = self.disks[&id].restore();
        let core = Node::new(self.config(id), restored, rng, self.now_ms).expect("the node starts from its disk");
        let log = core.log().all().to_vec();
        self.known_commit.insert(id, core.log().committed());
        self.nodes.insert(id, Some(core));
        let result = self.log_matching.on_restart(id, None, &log);
        self.check(result);
        self.state_machine_safety.on_restart(id);
    }

    /// The node stops: its volatile state is gone, and nothing reaches it or leaves it.
    fn crash(&mut self, id: NodeId) {
        assert!(self.nodes.insert(id, None).flatten().is_some(), "n{id} was up");
        *self.incarnations.get_mut(&id).expect("a voter") += 1;
        self.network.retain(|message| message.from != id && message.to != id);
    }

    /// The node starts again from what it persisted.
    fn restart(&mut self, id: NodeId) {
        assert!(self.nodes[&id].is_none(), "n{id} was down");
        self.start(id);
    }

    fn node(&self, id: NodeId) -> &Node {
        self.nodes[&id].as_ref().unwrap_or_else(|| panic!("n{id} is down"))
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node {
        self.nodes.get_mut(&id).and_then(Option::as_mut).unwrap_or_else(|| panic!("n{id} is down"))
    }

    fn is_up(&self, id: NodeId) -> bool {
        self.nodes[&id].is_some()
    }

    /// The terms of `id`'s log, read from memory or, while it is down, from its disk.
    fn log_terms(&self, id: NodeId) -> Vec<Term> {
        let entries = match &self.nodes[&id] {
            Some(core) => core.log().all().to_vec(),
            None => self.disks[&id].restore().entries,
        };
        entries.iter().map(|entry| entry.term).collect()
    }

    fn commit(&self, id: NodeId) -> LogIndex {
        self.node(id).log().committed()
    }

    // ----- time and messages ------------------------------------------------------------

    /// Time passes between two panels of the figure.
    fn pause(&mut self) {
        self.now_ms += PAUSE_MS;
    }

    /// Time moves to `leader`'s next heartbeat, which it sends.
    fn heartbeat(&mut self, leader: NodeId) {
        self.now_ms = self.node(leader).next_deadline_ms();
        self.tick(leader);
        assert_eq!(self.node(leader).role(), Role::Leader, "n{leader} still leads");
    }

    /// Gives `id` the current time; its due timers fire.
    fn tick(&mut self, id: NodeId) {
        let now_ms = self.now_ms;
        let output = self.node_mut(id).tick(now_ms);
        self.absorb(id, output);
    }

    /// Delivers `message`, ticking the receiver to the current time first (the
    /// core's clock is that of its latest tick).
    fn deliver(&mut self, message: Message) {
        let to = message.to;
        self.tick(to);
        let output = self.node_mut(to).step(message);
        self.absorb(to, output);
    }

    /// Delivers the oldest message in flight from `from` to `to` and returns it.
    fn deliver_next(&mut self, from: NodeId, to: NodeId) -> Message {
        let position = self
            .network
            .iter()
            .position(|message| message.from == from && message.to == to)
            .unwrap_or_else(|| panic!("no message in flight from n{from} to n{to}"));
        let message = self.network.remove(position).expect("in range");
        self.deliver(message.clone());
        message
    }

    /// Delivers, oldest first, every message in flight that `wanted` selects,
    /// including those sent in reply, until none is left.
    fn deliver_while(&mut self, wanted: impl Fn(&Message) -> bool) {
        for _ in 0..10_000 {
            let Some(position) = self.network.iter().position(&wanted) else { return };
            let message = self.network.remove(position).expect("in range");
            self.deliver(message);
        }
        panic!("the exchange never ends");
    }

    /// `candidate`'s election timer fires and only `voters` hear its campaign; it
    /// campaigns again at its next timeout until it leads (a refusal can teach it
    /// a newer term first, as PreVote requires). What the voters say on their own
    /// behalf (their own timers have fired too) is lost.
    fn elect(&mut self, candidate: NodeId, voters: &[NodeId]) {
        for _attempt in 0..3 {
            self.now_ms = self.now_ms.max(self.node(candidate).next_deadline_ms());
            self.tick(candidate);
            self.deliver_while(|message| match message.body {
                Body::RequestVote { .. } => message.from == candidate && voters.contains(&message.to),
                Body::VoteResponse { .. } => message.to == candidate && voters.contains(&message.from),
                _ => false,
            });
            if self.node(candidate).role() == Role::Leader {
                self.network
                    .retain(|message| message.from == candidate && matches!(message.body, Body::AppendEntries { .. }));
                return;
            }
        }
        panic!("n{candidate} was not elected by {voters:?}");
    }

    /// Delivers replication traffic between `leader` and `followers` until quiet.
    fn replicate(&mut self, leader: NodeId, followers: &[NodeId]) {
        self.deliver_while(|message| match message.body {
            Body::AppendEntries { .. } => message.from == leader && followers.contains(&message.to),
            Body::AppendResponse { .. } => message.to == leader && followers.contains(&message.from),
            _ => false,
        });
    }

    // ----- the driver's side of each output, as in simulation.rs ---------------------------

    /// Observes the batch, persists it, sends its messages and applies its entries.
    /// (Every write is durable at once here; crashes lose nothing that was output.)
    fn absorb(&mut self, id: NodeId, output: Output) {
        self.observe(id, &output);
        self.disks.get_mut(&id).expect("a voter").persist(
            output.snapshot.as_ref(),
            output.hard_state,
            output.log_write.as_ref(),
        );
        for message in output.messages {
            if self.is_up(message.to) {
                self.network.push_back(message);
            }
        }
        if !output.committed_entries.is_empty() {
            let result = self.state_machine_safety.on_apply(id, &output.committed_entries);
            self.check(result);
        }
    }

    /// Feeds the checkers what the node's state now shows (`Simulation::observe`).
    fn observe(&mut self, id: NodeId, output: &Output) {
        for event in &output.events {
            if let Event::RoleChanged { to: Role::Leader, term, .. } = event {
                let log = self.nodes[&id].as_ref().expect("up").log().all();
                let result = self
                    .election_safety
                    .on_leader(id, *term)
                    .and_then(|()| self.leader_completeness.on_leader(id, *term, (1, log)));
                self.check(result);
            }
        }
        if let Some(write) = &output.log_write {
            let log = self.nodes[&id].as_ref().expect("up").log().all();
            let result = self.log_matching.on_log_changed(id, write.first_index, 1, log);
            self.check(result);
        }
        let core = self.nodes[&id].as_ref().expect("up");
        let commit = core.log().committed();
        let known_commit = self.known_commit[&id];
        if commit > known_commit {
            let leaders: Vec<(NodeId, Term, LogIndex, &[Entry])> = self
                .nodes
                .iter()
                .filter_map(|(id, core)| core.as_ref().map(|core| (*id, core)))
                .filter(|(_, core)| core.role() == Role::Leader)
                .map(|(id, core)| (id, core.term(), 1, core.log().all()))
                .collect();
            let log = (1, core.log().all());
            let result = self.leader_completeness.on_commit(id, core.term(), known_commit, commit, log, &leaders);
            self.check(result);
            self.known_commit.insert(id, commit);
        }
        if let Err(problem) = self.node(id).validate() {
            self.check(Err(Broken { property: "node_invariant", detail: format!("n{id}: {problem}") }));
        }
    }

    fn check(&mut self, result: Result<(), Broken>) {
        if let Err(broken) = result {
            self.caught.push(Caught { step: self.step, broken });
        }
    }
}

fn noop(term: Term, index: LogIndex) -> Entry {
    Entry { term, index, payload: Payload::Noop }
}

/// What the script saw at the one moment the two tests disagree about.
struct Figure8 {
    cluster: Cluster,
    /// S1's commit index right after S3 acknowledged the term-2 entry in term 4.
    s1_commit_in_term_4: LogIndex,
}

/// Plays Figure 8 (plus a first panel that fills index 1 everywhere). Both tests
/// run this very script; only the injected bug differs.
fn play_figure_eight(bug: Option<InjectedBug>) -> Figure8 {
    let mut cluster = Cluster::new(bug);

    // Step 0 — S1 leads term 1; its entry (index 1) reaches everyone and commits,
    // and a heartbeat tells every follower so.
    cluster.step("0: index 1 committed everywhere");
    cluster.elect(1, &[2, 3, 4, 5]);
    cluster.replicate(1, &[2, 3, 4, 5]);
    cluster.heartbeat(1);
    cluster.replicate(1, &[2, 3, 4, 5]);
    for id in VOTERS {
        assert_eq!(cluster.log_terms(id), [1], "n{id}");
        assert_eq!(cluster.commit(id), 1, "n{id}");
    }
    // S1 restarts (say, for an upgrade), so that it can campaign for term 2.
    cluster.crash(1);
    cluster.pause();
    cluster.restart(1);

    // (a) S1 is leader in term 2 and replicates its entry at index 2 to S2 only.
    cluster.step("(a) S1 leads term 2");
    cluster.elect(1, &[2, 3, 4, 5]);
    assert_eq!(cluster.node(1).term(), 2);
    let append = cluster.deliver_next(1, 2);
    assert!(matches!(append.body, Body::AppendEntries { ref entries, .. } if entries[..] == [noop(2, 2)]));
    assert_eq!(cluster.log_terms(2), [1, 2]);
    // S1 crashes; its other appends (and S2's answer) are lost.
    cluster.crash(1);

    // (b) S1 is down. S5 is elected in term 3 with votes from S3, S4 and itself,
    // and accepts a different entry at index 2, which never leaves S5.
    cluster.step("(b) S5 leads term 3");
    cluster.pause();
    cluster.elect(5, &[3, 4]);
    assert_eq!(cluster.node(5).term(), 3);
    assert_eq!(cluster.log_terms(5), [1, 3]);

    // (c) S5 crashes; S1 restarts, is elected in term 4 (votes from S2, S3, S4)
    // and continues replicating its term-2 entry.
    cluster.step("(c) S1 leads term 4");
    cluster.crash(5);
    cluster.pause();
    cluster.restart(1);
    cluster.elect(1, &[2, 3, 4]);
    assert_eq!(cluster.node(1).term(), 4);
    assert_eq!(cluster.log_terms(1), [1, 2, 4]);
    //   S2 already holds index 2, and takes S1's term-4 entry at index 3.
    cluster.deliver_next(1, 2);
    cluster.deliver_next(2, 1);
    assert_eq!(cluster.node(1).status().followers[&2].match_index, 3);
    //   S3 lacks index 2: it refuses the append that follows index 2 ...
    cluster.deliver_next(1, 3);
    let refusal = cluster.deliver_next(3, 1);
    assert!(matches!(
        refusal.body,
        Body::AppendResponse { outcome: AppendOutcome::Rejected { prev_log_index: 2, .. }, .. }
    ));
    //   ... so S1 sends the term-2 entry alone (one entry per message) ...
    let append = cluster.deliver_next(1, 3);
    assert!(matches!(append.body, Body::AppendEntries { ref entries, .. } if entries[..] == [noop(2, 2)]));
    assert_eq!(cluster.log_terms(3), [1, 2]);
    //   ... and S3's acknowledgement puts the term-2 entry on S1, S2 and S3: a
    //   majority of replicas, though not of S1's current term.
    cluster.deliver_next(3, 1);
    assert_eq!(cluster.node(1).status().followers[&3].match_index, 2);
    let s1_commit_in_term_4 = cluster.commit(1);

    // (d) S1 crashes before its term-4 entry reaches S3 (that append is lost).
    // S5 restarts and is elected in term 5 by S3, S4 and itself: its last term, 3,
    // beats S3's 2 (S2, holding S1's term-4 entry, would refuse it). It overwrites
    // index 2 with its own term-3 entry on S2, S3 and S4.
    cluster.step("(d) S5 is elected in term 5");
    cluster.crash(1);
    cluster.pause();
    cluster.restart(5);
    cluster.elect(5, &[3, 4]);
    assert_eq!(cluster.node(5).term(), 5);
    cluster.step("(d) S5 overwrites index 2");
    cluster.replicate(5, &[2, 3, 4]);
    cluster.heartbeat(5);
    cluster.replicate(5, &[2, 3, 4]);
    for id in [2, 3, 4, 5] {
        assert_eq!(cluster.log_terms(id), [1, 3, 5], "n{id} holds S5's log");
        assert_eq!(cluster.commit(id), 3, "n{id} knows S5's term-5 entry committed");
    }
    assert_eq!(cluster.log_terms(1), [1, 2, 4], "S1 (down) still holds the term-2 entry");

    Figure8 { cluster, s1_commit_in_term_4 }
}

#[test]
fn figure_eight_with_the_commit_rule_removed_is_caught_by_the_checkers() {
    // Reference: Raft §5.4.2, Figure 8 — "a leader cannot immediately conclude
    // that an entry from a previous term is committed once it is stored on a
    // majority of servers". With that rule removed, S1 commits its term-2 entry in
    // term 4 by counting replicas, S5 then overwrites it, and the checkers say so.
    let Figure8 { cluster, s1_commit_in_term_4 } = play_figure_eight(Some(InjectedBug::CommitPreviousTermEntries));

    assert_eq!(s1_commit_in_term_4, 2, "S1 reported the term-2 entry at index 2 committed");
    assert_eq!(cluster.disks[&1].restore().hard_state.commit, 2, "and persisted that");
    assert_eq!(cluster.node(3).log().entry(2), Some(&noop(3, 2)), "yet S5 overwrote it on S3");

    // The simulator would stop at the first: leader completeness, the moment S5
    // becomes leader of term 5 without the entry S1 committed in term 4.
    let first = cluster.caught.first().expect("a checker fired");
    assert_eq!(first.broken.property, LeaderCompleteness::PROPERTY, "{first:?}");
    assert_eq!(first.step, "(d) S5 is elected in term 5", "{first:?}");
    assert_eq!(first.broken.detail, "leader n5 of term 5 lacks index 2 (term 2), committed in term 4");
    // Had the run gone on, state machine safety would have fired too: S5 applies
    // a term-3 entry at the index where S1 applied the term-2 one.
    assert!(
        cluster.caught.iter().any(|caught| caught.step == "(d) S5 overwrites index 2"
            && caught.broken.property == StateMachineSafety::PROPERTY
            && caught.broken.detail == "n5 applied a different entry (term 3) at index 2 than another node"),
        "{:#?}",
        cluster.caught
    );
    // Only the properties this bug breaks: one leader per term, logs still match.
    for caught in &cluster.caught {
        assert!(
            ![ElectionSafety::PROPERTY, LogMatching::PROPERTY, "node_invariant"].contains(&caught.broken.property),
            "{caught:?}"
        );
    }
}

#[test]
fn figure_eight_with_the_commit_rule_kept_commits_nothing_unsafe() {
    // Reference: Raft §5.4.2, Figure 8 — "Raft never commits log entries from
    // previous terms by counting replicas": S1 does not commit its term-2 entry in
    // term 4, so S5 may overwrite it, and every checker stays quiet.
    let Figure8 { cluster, s1_commit_in_term_4 } = play_figure_eight(None);

    assert_eq!(s1_commit_in_term_4, 1, "on a majority, but of term 2: not committed in term 4");
    assert_eq!(cluster.disks[&1].restore().hard_state.commit, 1);
    assert!(cluster.caught.is_empty(), "{:?}", cluster.caught);
    assert_eq!(cluster.node(5).log().entry(2), Some(&noop(3, 2)), "index 2 committed with term 3");
}

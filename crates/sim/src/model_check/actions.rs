//! The actions of the model and their effect on a state: each one feeds the
//! real core one input and does what its `Output` asks (persist at once, put the
//! messages in flight, apply the committed entries).

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use conclave_core::{
    Body, Config, MemberAddresses, MembershipChange, Message, Node, NodeId, Output, RestoredState, Role,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::properties;
use super::state::{Disk, History, ModelNode, ModelState, Unsynced};
use super::CheckOptions;

/// The cluster id of the model's nodes.
const MODEL_CLUSTER_ID: u64 = 0xC0C1A7E;

/// One step of the model. Messages are named by their content hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// The node's clock jumps to its next deadline and the timer fires.
    Timer {
        /// Position of the node (0-based).
        node: usize,
    },
    /// The node's clock moves 1 ms, short of its next deadline: leases and
    /// report windows can expire between timers.
    Advance {
        /// Position of the node.
        node: usize,
    },
    /// The message is delivered and leaves the network.
    Deliver {
        /// The message's key.
        packet: u64,
    },
    /// The message is delivered and a copy stays in flight.
    Duplicate {
        /// The message's key.
        packet: u64,
    },
    /// The message is lost.
    Drop {
        /// The message's key.
        packet: u64,
    },
    /// The node stops; its disk keeps what its outputs persisted.
    Crash {
        /// Position of the node.
        node: usize,
    },
    /// `observer`'s redial to the crashed node `gone` is refused: the
    /// transport's evidence that its process is gone (`Node::peer_process_gone`).
    ProcessGone {
        /// Position of the node told.
        observer: usize,
        /// Position of the crashed node.
        gone: usize,
    },
    /// The node's writes that are still unsynced (a leader's appends, sent
    /// before they were durable) reach its disk, and the core is told.
    Sync {
        /// Position of the node.
        node: usize,
    },
    /// A crashed node starts again from its disk.
    Restart {
        /// Position of the node.
        node: usize,
    },
    /// The node, a leader, is handed a client command.
    Propose {
        /// Position of the node.
        node: usize,
    },
    /// The node, a serving leader, proposes a membership change about the
    /// node at `target` (docs/design/membership.md).
    Change {
        /// Position of the leader.
        node: usize,
        /// What changes.
        kind: ChangeKind,
        /// Position of the member (or joiner) it is about.
        target: usize,
    },
    /// The node, a serving leader, is asked to hand over to `target`
    /// (docs/decisions/0099).
    Transfer {
        /// Position of the leader.
        node: usize,
        /// Position of the member that is to lead.
        target: usize,
    },
}

/// A membership change of the model (positions, not ids, so that actions stay `Copy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// Add the node as a learner.
    AddLearner,
    /// Promote the learner.
    Promote,
    /// Remove the member.
    Remove,
}

/// One input to a core: what it is given, and its clock to move.
type CoreInput<'a> = Box<dyn FnOnce(&mut Node, &mut u64) -> Output + 'a>;

/// What the actions need to know about the run.
pub(crate) struct Model {
    pub options: CheckOptions,
    configs: Vec<Config>,
}

impl Model {
    pub fn new(options: CheckOptions) -> Model {
        let voters: Vec<NodeId> = (1..=options.nodes as NodeId).collect();
        let everyone: Vec<NodeId> = (1..=(options.nodes + options.joiners) as NodeId).collect();
        let configs = everyone
            .iter()
            .map(|id| {
                // A joiner knows no voter: it waits to be added.
                let joins = !voters.contains(id);
                let mut config = Config::new(*id, MODEL_CLUSTER_ID, if joins { Vec::new() } else { voters.clone() });
                config.election_mode = options.mode;
                // Tiny timings keep every time relative to a node's clock within a
                // few milliseconds, so relative times fit the fingerprint without
                // multiplying the states (election timeout 2 ms, raft draws 2–3 ms).
                config.heartbeat_interval_ms = 1;
                config.heartbeat_timeout_ms = 1;
                config.miss_limit = 2;
                config.finalize_wait_ms = 1;
                // Below the 2 ms election timeout, as validated; it may expire at
                // any 1 ms step (`Advance`), the worst case for safety.
                config.vote_lease_ms = 1;
                config.pre_vote = options.pre_vote;
                config.initial_leader = if joins { None } else { options.initial_leader };
                // Members wait for the cold start as long as an election timeout:
                // the wait's end stays within the fingerprint's horizon.
                config.cold_start_wait_ms = 2;
                config.parallel_persist = options.parallel_persist;
                if let Some(hook) = options.config_hook {
                    hook(&mut config);
                }
                config
            })
            .collect();
        Model { options, configs }
    }

    /// Every node freshly started on an empty disk at time 0.
    pub fn initial_state(&self) -> Result<ModelState, String> {
        let mut state = ModelState {
            nodes: Vec::new(),
            network: Rc::new(Vec::new()),
            proposals: 0,
            transfers: 0,
            changes: 0,
            crashes: 0,
            timers: 0,
            history: Rc::new(History { committed_leader_term: vec![0; self.configs.len()], ..History::default() }),
        };
        for config in &self.configs {
            state.nodes.push(Rc::new(ModelNode {
                id: config.id,
                core: None,
                clock_ms: 0,
                incarnation: 0,
                disk: Disk::default(),
                unsynced: Vec::new(),
                applied: Vec::new(),
                fingerprint: 0,
            }));
        }
        for index in 0..self.configs.len() {
            self.start(&mut state, index);
        }
        match &state.history.node_failure {
            Some((id, problem)) => Err(format!("n{id} cannot start: {problem}")),
            None => Ok(state),
        }
    }

    /// Every action enabled in `state`, in a fixed order.
    pub fn actions(&self, state: &ModelState) -> Vec<Action> {
        let mut actions = Vec::new();
        for (index, node) in state.nodes.iter().enumerate() {
            match &node.core {
                Some(core) => {
                    let deadline_ms = core.next_deadline_ms();
                    let time_left = self.options.max_timers.is_none_or(|limit| state.timers < limit);
                    // No timer at all (`u64::MAX`): only the clock can move.
                    if deadline_ms != u64::MAX && time_left {
                        actions.push(Action::Timer { node: index });
                    }
                    if self.options.advance_action && time_left && deadline_ms > node.clock_ms + 1 {
                        actions.push(Action::Advance { node: index });
                    }
                    if core.role() == Role::Leader && core.is_serving() && state.proposals < self.options.max_proposals
                    {
                        actions.push(Action::Propose { node: index });
                    }
                    let may_transfer = core.role() == Role::Leader
                        && core.is_serving()
                        && core.transfer_target().is_none()
                        && state.transfers < self.options.max_transfers;
                    if may_transfer {
                        for target in (0..state.nodes.len()).filter(|target| *target != index) {
                            actions.push(Action::Transfer { node: index, target });
                        }
                    }
                    if core.role() == Role::Leader
                        && core.is_serving()
                        && state.changes < self.options.max_membership_changes
                    {
                        self.membership_changes(core, index, &mut actions);
                    }
                    if !node.unsynced.is_empty() {
                        actions.push(Action::Sync { node: index });
                    }
                    let may_crash = !self.options.crash_leaders_only || core.role() == Role::Leader;
                    if state.crashes < self.options.max_crashes && may_crash {
                        actions.push(Action::Crash { node: index });
                    }
                }
                None if self.options.restart => actions.push(Action::Restart { node: index }),
                None => {}
            }
        }
        if self.options.process_gone_action {
            for gone in (0..state.nodes.len()).filter(|index| state.nodes[*index].core.is_none()) {
                // The evidence stands for the timer that would have found the
                // node gone: under a timer budget it spends one firing.
                let affordable = self.options.max_timers.is_none_or(|limit| state.timers < limit);
                // Only a follower of the gone node acts on it (`peer_process_gone`):
                // told anyone else, nothing changes.
                let gone_id = self.configs[gone].id;
                let follows_gone = |index: &usize| {
                    state.nodes[*index]
                        .core
                        .as_ref()
                        .is_some_and(|core| core.role() == Role::Follower && core.leader() == Some(gone_id))
                };
                for observer in (0..state.nodes.len()).filter(follows_gone).filter(|_| affordable) {
                    actions.push(Action::ProcessGone { observer, gone });
                }
            }
        }
        for packet in state.network.iter() {
            let receiver_up = self.position(packet.message.to).is_some_and(|to| state.nodes[to].core.is_some());
            if receiver_up && self.options.consuming_delivery {
                actions.push(Action::Deliver { packet: packet.key });
            }
            if receiver_up {
                actions.push(Action::Duplicate { packet: packet.key });
            }
            // A message to a crashed node can only wait or be lost.
            if self.options.drop_action || !receiver_up {
                actions.push(Action::Drop { packet: packet.key });
            }
        }
        actions
    }

    /// The next step of the membership plan that leader `core` (at `index`)
    /// would accept now. The plan grows the cluster by the joiners and shrinks
    /// it back: add each joiner as a learner, promote it, then remove the
    /// lowest original voter other than the leader — 3 → 4 → 3 voters with one
    /// joiner. One step at a time keeps the search on the changes an operator
    /// makes; when and at which leader each happens is still explored.
    fn membership_changes(&self, core: &Node, index: usize, actions: &mut Vec<Action>) {
        let membership = core.membership();
        let joiners = self.options.nodes..self.configs.len();
        let step = joiners
            .clone()
            .find(|target| !membership.contains(self.configs[*target].id))
            .map(|target| (ChangeKind::AddLearner, target))
            .or_else(|| {
                joiners
                    .clone()
                    .find(|target| !membership.is_voter(self.configs[*target].id))
                    .map(|target| (ChangeKind::Promote, target))
            })
            .or_else(|| {
                (0..self.options.nodes)
                    .find(|target| *target != index && membership.is_voter(self.configs[*target].id))
                    .map(|target| (ChangeKind::Remove, target))
            });
        if let Some((kind, target)) = step {
            if core.clone().change_membership(self.change(kind, target)).is_ok() {
                actions.push(Action::Change { node: index, kind, target });
            }
        }
    }

    fn change(&self, kind: ChangeKind, target: usize) -> MembershipChange {
        let id = self.configs[target].id;
        match kind {
            ChangeKind::AddLearner => {
                let addresses = MemberAddresses { peer: format!("n{id}"), client: String::new(), http: String::new() };
                MembershipChange::AddLearner { id, addresses }
            }
            ChangeKind::Promote => MembershipChange::Promote { id },
            ChangeKind::Remove => MembershipChange::Remove { id },
        }
    }

    /// The state after `action`. The action must be enabled in `state`.
    pub fn apply(&self, state: &ModelState, action: Action) -> ModelState {
        let mut next = state.clone();
        if self.options.max_timers.is_some() && matches!(action, Action::Timer { .. } | Action::Advance { .. }) {
            next.timers += 1;
        }
        match action {
            Action::Timer { node } => self.input(&mut next, node, |core, clock_ms| {
                let at_ms = core.next_deadline_ms().max(*clock_ms);
                *clock_ms = at_ms;
                core.tick(at_ms)
            }),
            Action::Advance { node } => self.input(&mut next, node, |core, clock_ms| {
                *clock_ms += 1;
                core.tick(*clock_ms)
            }),
            Action::Deliver { packet } | Action::Duplicate { packet } => {
                let message = state.packet(packet).expect("enabled actions name messages in flight").message.clone();
                if matches!(action, Action::Deliver { .. }) {
                    next.remove_packet(packet);
                }
                let to = self.position(message.to).expect("messages go to members");
                self.input(&mut next, to, |core, _| core.step(Message::clone(&message)));
            }
            Action::Drop { packet } => next.remove_packet(packet),
            Action::Crash { node } => {
                next.crashes += 1;
                self.note_leader_crash(&mut next, node);
                let model_node = Rc::make_mut(&mut next.nodes[node]);
                model_node.core = None;
                model_node.applied.clear();
                // What was not synced is lost; followers may hold it already.
                model_node.unsynced.clear();
                model_node.refresh_fingerprint();
            }
            Action::ProcessGone { observer, gone } => {
                let gone_id = self.configs[gone].id;
                self.input(&mut next, observer, |core, _| core.peer_process_gone(gone_id));
                // Told again, a node that already acted on it changes nothing: the
                // same state, not one that merely spent more of the budget.
                let changed = next.nodes[observer].fingerprint != state.nodes[observer].fingerprint
                    || !Rc::ptr_eq(&next.network, &state.network);
                if self.options.max_timers.is_some() && changed {
                    next.timers += 1;
                }
            }
            Action::Sync { node } => self.sync(&mut next, node),
            Action::Restart { node } => self.start(&mut next, node),
            Action::Change { node, kind, target } => {
                next.changes += 1;
                let change = self.change(kind, target);
                self.input(&mut next, node, |core, _| match core.change_membership(change) {
                    Ok(proposal) => proposal.output,
                    Err(error) => panic!("a change is only enabled where the leader accepts it: {error}"),
                });
            }
            Action::Transfer { node, target } => {
                next.transfers += 1;
                let target_id = self.configs[target].id;
                self.input(&mut next, node, |core, _| match core.transfer_leadership(Some(target_id)) {
                    Ok(started) => started.output,
                    Err(error) => panic!("a transfer is only enabled at a serving leader without one: {error}"),
                });
            }
            Action::Propose { node } => {
                let command = vec![b'a' + next.proposals as u8];
                next.proposals += 1;
                self.input(&mut next, node, |core, _| match core.propose(command) {
                    Ok(proposal) => proposal.output,
                    Err(error) => panic!("propose is only enabled on a leader: {error}"),
                });
            }
        }
        next
    }

    /// Before node `index` crashes: if it is the established leader of the
    /// highest term led so far, the history remembers that term, so that the
    /// milestone `leader_crashed_and_replaced` means what it says.
    fn note_leader_crash(&self, state: &mut ModelState, index: usize) {
        let node = &state.nodes[index];
        let leads = node.core.as_ref().is_some_and(|core| core.role() == Role::Leader);
        let Some((&term, leaders)) = state.history.leaders.iter().next_back() else { return };
        if leads && leaders.contains(&node.id) && state.history.crashed_leader_term < Some(term) {
            Rc::make_mut(&mut state.history).crashed_leader_term = Some(term);
        }
    }

    fn position(&self, id: NodeId) -> Option<usize> {
        self.configs.iter().position(|config| config.id == id)
    }

    /// Starts node `index` from its disk (at its own clock, which never moves
    /// back), then lets it flush what starting produced.
    fn start(&self, state: &mut ModelState, index: usize) {
        let node = Rc::make_mut(&mut state.nodes[index]);
        node.incarnation += 1;
        let restored =
            RestoredState { hard_state: node.disk.hard_state, entries: node.disk.entries.clone(), snapshot: None };
        let rng = ChaCha8Rng::seed_from_u64(node.id * 1_000 + node.incarnation);
        let config = self.configs[index].clone();
        let clock_ms = node.clock_ms;
        let started = catch_unwind(AssertUnwindSafe(|| Node::new(config, restored, rng, clock_ms)));
        match started {
            Ok(Ok(core)) => {
                node.core = Some(core);
                node.applied.clear();
                self.input(state, index, |core, clock_ms| core.tick(*clock_ms));
            }
            Ok(Err(error)) => self.fail(state, index, format!("cannot restart from its disk: {error}")),
            Err(panic) => self.fail(state, index, format!("panicked while starting: {}", panic_text(&panic))),
        }
    }

    /// Feeds node `index` one input and acts on the output.
    fn input(&self, state: &mut ModelState, index: usize, input: impl FnOnce(&mut Node, &mut u64) -> Output) {
        self.input_boxed(state, index, Box::new(input));
    }

    /// [`Model::input`] without a type parameter, so that reporting a persist
    /// (an input that follows an input) can recurse.
    fn input_boxed(&self, state: &mut ModelState, index: usize, input: CoreInput<'_>) {
        let node = Rc::make_mut(&mut state.nodes[index]);
        let mut clock_ms = node.clock_ms;
        let core = node.core.as_mut().expect("only live nodes get input");
        let output = match catch_unwind(AssertUnwindSafe(|| input(core, &mut clock_ms))) {
            Ok(output) => output,
            Err(panic) => {
                // A panicking core is a failed node; keep it as it was for the trace.
                let text = panic_text(&panic);
                node.refresh_fingerprint();
                return self.fail(state, index, format!("panicked: {text}"));
            }
        };
        node.clock_ms = clock_ms;
        // Applying a committed entry needs no local copy on disk: a majority
        // holds it durably.
        node.applied.extend(output.committed_entries.iter().cloned());
        let early = !output.early_messages.is_empty();
        let deferred = early && output.messages.is_empty() && output.snapshot.is_none();
        if deferred {
            // A leader's appends went out before its own write: the write stays
            // unsynced until a `Sync` (or is lost in a crash).
            if output.needs_persist() {
                node.unsynced.push(Unsynced {
                    hard_state: output.hard_state,
                    log_write: output.log_write,
                    mark: output.durable_mark,
                });
            }
        } else if output.needs_persist() || !output.messages.is_empty() {
            // Anything else waits for every earlier write (persists are ordered).
            let mut mark = node.flush_unsynced();
            node.disk.persist(output.hard_state, output.log_write.as_ref());
            mark = output.durable_mark.or(mark);
            node.refresh_fingerprint();
            state.send(output.early_messages);
            state.send(output.messages);
            properties::observe(self, state, index);
            if let Some(mark) = mark {
                self.input_boxed(state, index, Box::new(move |core, _| core.persisted(mark)));
            }
            return;
        }
        node.refresh_fingerprint();
        state.send(output.early_messages);
        properties::observe(self, state, index);
    }

    /// Node `index`'s unsynced writes reach its disk; its core is told.
    fn sync(&self, state: &mut ModelState, index: usize) {
        let node = Rc::make_mut(&mut state.nodes[index]);
        let mark = node.flush_unsynced();
        node.refresh_fingerprint();
        if let Some(mark) = mark {
            self.input_boxed(state, index, Box::new(move |core, _| core.persisted(mark)));
        }
    }

    fn fail(&self, state: &mut ModelState, index: usize, problem: String) {
        let history = Rc::make_mut(&mut state.history);
        if history.node_failure.is_none() {
            history.node_failure = Some((self.configs[index].id, problem));
        }
    }

    /// One line for a trace: the action, then what it changed.
    pub fn describe(&self, before: &ModelState, action: Action, after: &ModelState) -> String {
        let name = |index: usize| format!("n{}", self.configs[index].id);
        let mut line = match action {
            Action::Timer { node } => {
                format!("{} timer fires at {} ms", name(node), after.nodes[node].clock_ms)
            }
            Action::Advance { node } => format!("{} clock moves to {} ms", name(node), after.nodes[node].clock_ms),
            Action::Deliver { packet } => {
                format!("deliver {} (consumed)", describe_message(&before.packet(packet).expect("in flight").message))
            }
            Action::Duplicate { packet } => {
                format!("deliver {}", describe_message(&before.packet(packet).expect("in flight").message))
            }
            Action::Drop { packet } => {
                format!("drop {}", describe_message(&before.packet(packet).expect("in flight").message))
            }
            Action::Crash { node } => format!("{} crashes", name(node)),
            Action::ProcessGone { observer, gone } => {
                format!("{}'s redial to {} is refused (its process is gone)", name(observer), name(gone))
            }
            Action::Sync { node } => format!("{}'s unsynced writes reach its disk", name(node)),
            Action::Restart { node } => format!("{} restarts from its disk", name(node)),
            Action::Propose { node } => format!("client proposes command #{} to {}", before.proposals + 1, name(node)),
            Action::Transfer { node, target } => format!("{} is asked to hand over to {}", name(node), name(target)),
            Action::Change { node, kind, target } => format!("{} proposes {kind:?} of {}", name(node), name(target)),
        };
        for (index, (old, new)) in before.nodes.iter().zip(&after.nodes).enumerate() {
            if Rc::ptr_eq(old, new) {
                continue;
            }
            let _ = fmt::Write::write_fmt(&mut line, format_args!("  [{}: {}]", name(index), node_summary(new)));
        }
        let sent: Vec<String> = after
            .network
            .iter()
            .filter(|packet| before.packet(packet.key).is_none())
            .map(|packet| describe_message(&packet.message))
            .collect();
        if !sent.is_empty() {
            line.push_str(&format!("  sends {}", sent.join(", ")));
        }
        line
    }
}

fn node_summary(node: &ModelNode) -> String {
    match &node.core {
        None => format!("down, disk term {} log {}", node.disk.hard_state.term, node.disk.entries.len()),
        Some(core) => {
            let log = core.log();
            let mut summary = format!("{:?} term {}", core.role(), core.term());
            if let Some(voted_for) = core.status().voted_for {
                summary.push_str(&format!(" voted n{voted_for}"));
            }
            let terms: Vec<String> = log.all().iter().map(|entry| entry.term.to_string()).collect();
            summary.push_str(&format!(" log [{}] commit {}", terms.join(","), log.committed()));
            summary
        }
    }
}

/// "n1→n2 RequestVote(t2, last 1/1)": sender, receiver, kind, term and the
/// fields that decide what the receiver does.
pub(crate) fn describe_message(message: &Message) -> String {
    #[allow(unreachable_patterns)]
    let detail = match &message.body {
        Body::RequestVote { last_log_term, last_log_index, .. } => {
            format!(", last {last_log_index}/t{last_log_term}")
        }
        Body::VoteResponse { granted, .. } => format!(", granted {granted}"),
        Body::AppendEntries { prev_log_index, prev_log_term, entries, leader_commit, .. } => {
            let terms: Vec<String> = entries.iter().map(|entry| format!("t{}", entry.term)).collect();
            format!(", prev {prev_log_index}/t{prev_log_term}, [{}], commit {leader_commit}", terms.join(","))
        }
        Body::AppendResponse { outcome, .. } => format!(", {outcome:?}"),
        Body::SubjectiveDown { leader, leader_term, .. } | Body::ObjectiveDown { leader, leader_term } => {
            format!(", leader {leader:?} of t{leader_term}")
        }
        Body::Vote { ballot, vote, state } => {
            format!(", ballot {ballot}, n{} {}/t{}, {state:?}", vote.candidate, vote.last_log_index, vote.last_log_term)
        }
        Body::Correction { leader, leader_term } => format!(", leader n{leader} of t{leader_term}"),
        // A kind added later still shows all its fields.
        other => format!(", {other:?}"),
    };
    format!("n{}→n{} {}(t{}{detail})", message.from, message.to, message.body.kind(), message.term)
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_core::ElectionMode;

    fn model(configure: impl FnOnce(&mut CheckOptions)) -> Model {
        let mut options = CheckOptions::new(ElectionMode::Conclave, 3, 1);
        configure(&mut options);
        Model::new(options)
    }

    fn timer_actions(actions: &[Action]) -> usize {
        actions.iter().filter(|action| matches!(action, Action::Timer { .. } | Action::Advance { .. })).count()
    }

    #[test]
    fn the_timer_budget_counts_firings_and_then_disables_timers() {
        let model = model(|options| options.max_timers = Some(1));
        let state = model.initial_state().expect("starts");
        assert_eq!(timer_actions(&model.actions(&state)), 3, "each node's timer (1 ms away: no step before it)");
        let after = model.apply(&state, Action::Timer { node: 0 });
        assert_eq!(after.timers, 1);
        assert_eq!(timer_actions(&model.actions(&after)), 0, "the budget is spent");
        assert_ne!(state.fingerprint(), after.fingerprint());
    }

    #[test]
    fn without_a_timer_budget_timers_are_not_counted() {
        let model = model(|_| {});
        let state = model.initial_state().expect("starts");
        let after = model.apply(&state, Action::Timer { node: 0 });
        assert_eq!(after.timers, 0);
        assert_eq!(timer_actions(&model.actions(&after)), 3);
    }

    #[test]
    fn only_leaders_crash_when_asked_and_crash_stop_has_no_restart() {
        let model = model(|options| {
            options.crash_leaders_only = true;
            options.restart = false;
            options.initial_leader = Some(1);
            options.consuming_delivery = true;
        });
        let state = model.initial_state().expect("starts");
        let crashes = |state: &ModelState| {
            model.actions(state).iter().filter(|action| matches!(action, Action::Crash { .. })).count()
        };
        assert_eq!(crashes(&state), 0, "no leader yet");
        // The cold start: both confirmations reach n1, which then leads term 1.
        let mut state = state;
        for _ in 0..2 {
            let key = state.network.iter().find(|packet| packet.message.to == 1).expect("a confirmation").key;
            state = model.apply(&state, Action::Deliver { packet: key });
        }
        assert_eq!(state.nodes[0].core.as_ref().map(Node::role), Some(Role::Leader));
        assert!(model.actions(&state).contains(&Action::Crash { node: 0 }));
        assert_eq!(crashes(&state), 1, "only the leader may crash");
        let crashed = model.apply(&state, Action::Crash { node: 0 });
        assert!(!model.actions(&crashed).iter().any(|action| matches!(action, Action::Restart { .. })));
        assert_eq!(crashed.history.crashed_leader_term, None, "its BecomeLeader had not committed");
    }

    fn deliver(model: &Model, state: &ModelState, matches: impl Fn(&Message) -> bool) -> ModelState {
        let key = state.network.iter().find(|packet| matches(&packet.message)).expect("in flight").key;
        model.apply(state, Action::Deliver { packet: key })
    }

    #[test]
    fn the_crash_of_an_established_leader_is_remembered() {
        let model = model(|options| {
            options.initial_leader = Some(1);
            options.consuming_delivery = true;
        });
        let mut state = model.initial_state().expect("starts");
        for _ in 0..2 {
            state = deliver(&model, &state, |message| message.to == 1);
        }
        state = deliver(&model, &state, |message| {
            message.to == 2 && matches!(&message.body, Body::AppendEntries { entries, .. } if !entries.is_empty())
        });
        state =
            deliver(&model, &state, |message| message.to == 1 && matches!(message.body, Body::AppendResponse { .. }));
        assert_eq!(state.history.leaders.get(&1).map(|ids| ids.contains(&1)), Some(true), "BecomeLeader(1) committed");
        let follower_crashed = model.apply(&state, Action::Crash { node: 2 });
        assert_eq!(follower_crashed.history.crashed_leader_term, None);
        let leader_crashed = model.apply(&state, Action::Crash { node: 0 });
        assert_eq!(leader_crashed.history.crashed_leader_term, Some(1));
    }
}

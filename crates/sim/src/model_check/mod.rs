//! An exhaustive, bounded model checker over the real [`conclave_core::Node`]
//! (docs/design/invariants.md; docs/model_check.md says how to read its output).
//!
//! A breadth-first search from a fresh cluster explores every interleaving of
//! these actions, up to a depth: a node's next timer fires, a node's clock moves
//! one millisecond, a message in flight is delivered (consumed, or kept so it can
//! be delivered again: duplication) or dropped, a node crashes (keeping what its
//! outputs asked to persist) or restarts, a live node is told a crashed node's
//! process is gone (a refused redial), the leader accepts a client command.
//! Each distinct state is expanded once (a fingerprint set; absolute clocks are
//! left out, see `Node::model_fingerprint`), and every new state is checked
//! against the property table ([`properties::PROPERTIES`]). A violation comes
//! with its shortest trace, rebuilt by replaying the actions from the start.

mod actions;
mod fingerprint;
pub mod properties;
mod search;
mod state;

use std::collections::BTreeMap;
use std::fmt::Write;

use conclave_core::{Config, ElectionMode, Entry, Term};
use serde_json::{json, Value};

pub use actions::Action;
pub use properties::{
    leader_claims_for_mode, no_leader_claims, LeaderClaim, LeaderClaimFn, LeaderRule, Property, PROPERTIES,
};
pub use search::check;

/// What to check and within which bounds.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Election mode of every node.
    pub mode: ElectionMode,
    /// Cluster size (3 is the practical maximum for an exhaustive search).
    pub nodes: usize,
    /// Longest action sequence explored.
    pub depth: usize,
    /// States whose highest term (ballot) exceeds this are checked, not expanded.
    pub max_term: Term,
    /// States with a log longer than this are checked, not expanded.
    pub max_log_length: usize,
    /// Client commands proposed in one execution, at most.
    pub max_proposals: u32,
    /// Leader transfers asked for in one execution, at most (each to every
    /// other member in turn).
    pub max_transfers: u32,
    /// Nodes besides `nodes` that start empty and wait to be added
    /// (`Config::voters` empty: docs/design/membership.md).
    pub joiners: usize,
    /// Membership changes a serving leader proposes in one execution, at
    /// most, following the plan: add each joiner as a learner, promote it,
    /// then remove the lowest original voter other than the leader (3 → 4 → 3
    /// voters with one joiner), each step only when the leader accepts it.
    pub max_membership_changes: u32,
    /// Timer firings (`Timer` and `Advance`, all nodes together) in one
    /// execution, at most; a `ProcessGone` that changes its observer spends one,
    /// as the timer it stands for. `None` leaves time unbounded.
    pub max_timers: Option<u32>,
    /// Crashes in one execution, at most (each crashed node may restart).
    pub max_crashes: u32,
    /// Offer the separate drop action. Never delivering a message has the same
    /// effect on the nodes, so turning it off keeps every node behaviour and only
    /// merges network states (fewer states for the same depth).
    pub drop_action: bool,
    /// Offer the 1 ms clock step between timers (leases and report windows
    /// expiring before the next timer). Off, clocks only jump to deadlines.
    pub advance_action: bool,
    /// Offer delivery that consumes the message besides delivery that keeps a
    /// copy. Off, every delivery keeps a copy (any message may be delivered any
    /// number of times, or never): the same node behaviours in fewer states.
    pub consuming_delivery: bool,
    /// Only a node whose role is `Leader` may crash (a follower never does).
    pub crash_leaders_only: bool,
    /// A crashed node may restart from its disk. Off, crashes are crash-stop.
    pub restart: bool,
    /// While a node is down, each live node may be handed the evidence that its
    /// process is gone (a refused redial: `Node::peer_process_gone`), at any
    /// moment and at most once per crash, as the transport redials a lost
    /// connection once. On by default; `conclave check --no-process-gone`
    /// leaves the input out (docs/decisions/0073).
    pub process_gone_action: bool,
    /// Leaders send their appends before their own write is durable
    /// (`Config::parallel_persist`); the write waits for a `Sync` action or is
    /// lost in a crash. On by default, as the server runs; `--no-parallel-persist`
    /// checks the library default.
    pub parallel_persist: bool,
    /// The search stops (incomplete) after this many distinct states.
    pub max_states: usize,
    /// The search stops (incomplete) after this many seconds.
    pub max_seconds: f64,
    /// Run Raft's pre-vote round (the shipped default). Off, elections take two
    /// actions fewer per candidate, so the same depth reaches further.
    pub pre_vote: bool,
    /// Start every node from the cold-start configuration naming this node
    /// (1-based id) `initial_leader` (docs/design/cold-start.md, fast and conclave modes):
    /// the first term is led without an election once every member confirms an
    /// empty disk. `None` starts leaderless, as the shipped default does.
    pub initial_leader: Option<u64>,
    /// Adjusts each node's config after the model's timings are set (tests inject
    /// bugs with it).
    pub config_hook: Option<fn(&mut Config)>,
    /// Which nodes count as leaders of which term, for election safety.
    pub leader_rule: LeaderRule,
    /// Reads `(leader_term, leader_id)` from a log entry, if it carries one.
    pub leader_claims: LeaderClaimFn,
}

impl CheckOptions {
    /// The bounds as `key=value` words, for the report.
    pub fn bounds(&self) -> String {
        format!(
            "nodes={} joiners={} depth={} max_term={} max_log={} proposals={} transfers={} membership_changes={} \
             crashes={} timers={} drop={} advance={} consuming_delivery={} restart={} pre_vote={} initial_leader={}",
            self.nodes,
            self.joiners,
            self.depth,
            self.max_term,
            self.max_log_length,
            self.max_proposals,
            self.max_transfers,
            self.max_membership_changes,
            self.max_crashes,
            self.max_timers.map_or("unbounded".to_string(), |timers| timers.to_string()),
            self.drop_action,
            self.advance_action,
            self.consuming_delivery,
            self.restart,
            self.pre_vote,
            self.initial_leader.map_or("none".to_string(), |leader| leader.to_string()),
        )
    }

    /// Defaults for `mode` on `nodes` nodes, to depth `depth`.
    pub fn new(mode: ElectionMode, nodes: usize, depth: usize) -> CheckOptions {
        CheckOptions {
            mode,
            nodes,
            depth,
            max_term: 3,
            max_log_length: 4,
            max_proposals: 1,
            max_transfers: 0,
            joiners: 0,
            max_membership_changes: 0,
            max_crashes: 1,
            max_timers: None,
            drop_action: true,
            advance_action: true,
            consuming_delivery: false,
            crash_leaders_only: false,
            restart: true,
            process_gone_action: true,
            parallel_persist: true,
            max_states: 8_000_000,
            max_seconds: 600.0,
            pre_vote: true,
            initial_leader: None,
            config_hook: None,
            leader_rule: LeaderRule::for_mode(mode),
            leader_claims: properties::leader_claims_for_mode(mode),
        }
    }
}

/// A property that failed, with the shortest action sequence that breaks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counterexample {
    /// The property's name.
    pub property: &'static str,
    /// What exactly is wrong in the final state.
    pub detail: String,
    /// One line per action from the initial state, then the broken property.
    pub trace: Vec<String>,
}

/// What a search found.
#[derive(Clone, Debug)]
pub struct CheckReport {
    /// The mode checked.
    pub mode: ElectionMode,
    /// Whether the environment had the `ProcessGone` input
    /// ([`CheckOptions::process_gone_action`]).
    pub process_gone: bool,
    /// The bounds the search ran within, as `key=value` words.
    pub bounds: String,
    /// Distinct states reached (the initial one included).
    pub states: u64,
    /// Deepest level at which new states were found.
    pub depth: usize,
    /// Every state within the depth and bounds was explored (no state or time
    /// limit hit, and the search did not stop early at a violation).
    pub complete: bool,
    /// Each property of the table and whether a counterexample was found.
    pub properties: BTreeMap<&'static str, bool>,
    /// The shortest counterexample of each violated property.
    pub counterexamples: Vec<Counterexample>,
    /// Wall time of the search.
    pub elapsed_seconds: f64,
    /// States reached at each depth (index = depth).
    pub states_per_depth: Vec<u64>,
    /// The first depth at which some state reached each milestone:
    /// `leader_elected`, `entry_committed`, `reelected_after_commit` (a leader of
    /// a term above the term in which an entry was known committed), and
    /// `crash_and_reelected_after_commit` (the same, with a crash in the run),
    /// and `leader_crashed_and_replaced` (the full cycle: the established leader
    /// of the highest term so far crashed, then a leader of a later term was
    /// established; under `ByCommittedClaim` its `BecomeLeader` committed).
    pub milestones: BTreeMap<&'static str, usize>,
    /// The path to the first state that completed the cycle
    /// (`leader_crashed_and_replaced`), one line per action, if one was reached.
    pub cycle_trace: Option<Vec<String>>,
}

impl CheckReport {
    /// Number of violated properties.
    pub fn violations(&self) -> usize {
        self.counterexamples.len()
    }

    /// `{"mode","process_gone","states","depth","complete","violations","properties"}`, plus the
    /// depth at which each milestone was first reached (`"milestones"`), a
    /// `"trace"` (the first counterexample's lines) when a property is violated,
    /// and `"cycle_trace"` (the path to the first full cycle) when one was reached.
    pub fn to_json(&self) -> Value {
        let properties: serde_json::Map<String, Value> = self
            .properties
            .iter()
            .map(|(name, holds)| (name.to_string(), json!(if *holds { "holds" } else { "violated" })))
            .collect();
        let mut value = json!({
            "bounds": self.bounds,
            "mode": self.mode.name(),
            "process_gone": self.process_gone,
            "states": self.states,
            "depth": self.depth,
            "complete": self.complete,
            "violations": self.violations(),
            "properties": properties,
            "milestones": self.milestones,
        });
        if let Some(first) = self.counterexamples.first() {
            value["trace"] = json!(first.trace);
        }
        if let Some(cycle) = &self.cycle_trace {
            value["cycle_trace"] = json!(cycle);
        }
        value
    }

    /// The readable summary, with every counterexample's trace.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        let rate = self.states as f64 / self.elapsed_seconds.max(1e-9);
        let _ = writeln!(
            text,
            "mode {}: {} states to depth {} in {:.1} s ({:.0} states/s), {}",
            self.mode,
            self.states,
            self.depth,
            self.elapsed_seconds,
            rate,
            if self.complete { "complete" } else { "incomplete" }
        );
        let _ = writeln!(text, "  bounds: {}", self.bounds);
        let levels: Vec<String> = self.states_per_depth.iter().map(u64::to_string).collect();
        let _ = writeln!(text, "  states per depth: {}", levels.join(" "));
        let reached: Vec<String> = self.milestones.iter().map(|(name, depth)| format!("{name} at {depth}")).collect();
        let _ = writeln!(
            text,
            "  first reached: {}",
            if reached.is_empty() { "nothing".into() } else { reached.join(", ") }
        );
        for (name, holds) in &self.properties {
            let _ = writeln!(text, "  {name:<34} {}", if *holds { "holds" } else { "VIOLATED" });
        }
        if let Some(cycle) = &self.cycle_trace {
            let _ = writeln!(text, "\nthe first full cycle (leader_crashed_and_replaced) in {} actions:", cycle.len());
            for line in cycle {
                let _ = writeln!(text, "  {line}");
            }
        }
        for counterexample in &self.counterexamples {
            let _ = writeln!(
                text,
                "\n{} violated in {} steps: {}",
                counterexample.property,
                counterexample.trace.len().saturating_sub(1),
                counterexample.detail
            );
            for line in &counterexample.trace {
                let _ = writeln!(text, "  {line}");
            }
        }
        text
    }
}

/// Entries of a log prefix, as the properties see them.
pub(crate) type Log<'a> = &'a [Entry];

//! The run's trace: a hash over every event (two runs of one seed must agree)
//! and the last events, printed when a checker fires.

use std::collections::VecDeque;
use std::fmt;

use conclave_core::{NodeId, Role, Term};

/// FNV-1a, 64-bit: stable across platforms and Rust versions, unlike `std`'s hasher.
#[derive(Clone, Copy, Debug)]
pub struct Fnv64(u64);

impl Fnv64 {
    /// The FNV offset basis.
    pub fn new() -> Fnv64 {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }

    /// Mixes in bytes.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// Mixes in a number.
    pub fn write_u64(&mut self, value: u64) {
        self.write_bytes(&value.to_le_bytes());
    }

    /// The hash so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64::new()
    }
}

/// Why the network did not deliver a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropCause {
    /// Random loss.
    Loss,
    /// A partition, broken link or isolation.
    Cut,
    /// The receiver is down.
    Down,
    /// In flight on a connection that reset (a link flap).
    Flap,
}

/// One step of a run. Field names (from, to, node, term, index) say what they hold.
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceEvent {
    /// A message reached its receiver.
    Deliver { from: NodeId, to: NodeId, term: Term, kind: &'static str },
    /// A message was not delivered.
    Drop { from: NodeId, to: NodeId, kind: &'static str, cause: DropCause },
    /// A node's timer fired.
    Tick { node: NodeId },
    /// A node's batch became durable.
    Persisted { node: NodeId, batch: u64 },
    /// The client's command was appended at `index`.
    Proposed { node: NodeId, index: u64, id: u64 },
    /// A node crashed.
    Crash { node: NodeId },
    /// A node restarted from its disk.
    Restart { node: NodeId },
    /// A network fault started.
    Cut { description: String },
    /// A network fault healed.
    Heal { description: String },
    /// A node changed role.
    Role { node: NodeId, role: Role, term: Term },
    /// A node's commit index advanced.
    Commit { node: NodeId, index: u64 },
    /// The run moved to another phase.
    Phase { name: &'static str },
    /// Another event a node reported (elections, votes, detector verdicts).
    Node { node: NodeId, event: String },
}

impl TraceEvent {
    /// Mixes every field into `hash` without formatting (this runs on every step).
    fn fold_into(&self, hash: &mut Fnv64) {
        let mut numbers = |tag: u64, values: &[u64]| {
            hash.write_u64(tag);
            for value in values {
                hash.write_u64(*value);
            }
        };
        match self {
            TraceEvent::Deliver { from, to, term, kind } => {
                numbers(1, &[*from, *to, *term]);
                hash.write_bytes(kind.as_bytes());
            }
            TraceEvent::Drop { from, to, kind, cause } => {
                numbers(2, &[*from, *to, *cause as u64]);
                hash.write_bytes(kind.as_bytes());
            }
            TraceEvent::Tick { node } => numbers(3, &[*node]),
            TraceEvent::Persisted { node, batch } => numbers(4, &[*node, *batch]),
            TraceEvent::Proposed { node, index, id } => numbers(5, &[*node, *index, *id]),
            TraceEvent::Crash { node } => numbers(6, &[*node]),
            TraceEvent::Restart { node } => numbers(7, &[*node]),
            TraceEvent::Cut { description } => {
                numbers(8, &[]);
                hash.write_bytes(description.as_bytes());
            }
            TraceEvent::Heal { description } => {
                numbers(9, &[]);
                hash.write_bytes(description.as_bytes());
            }
            TraceEvent::Role { node, role, term } => numbers(10, &[*node, *role as u64, *term]),
            TraceEvent::Commit { node, index } => numbers(11, &[*node, *index]),
            TraceEvent::Phase { name } => {
                numbers(12, &[]);
                hash.write_bytes(name.as_bytes());
            }
            TraceEvent::Node { node, event } => {
                numbers(13, &[*node]);
                hash.write_bytes(event.as_bytes());
            }
        }
    }
}

impl fmt::Display for TraceEvent {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceEvent::Deliver { from, to, term, kind } => write!(formatter, "deliver {kind} n{from}->n{to} t{term}"),
            TraceEvent::Drop { from, to, kind, cause } => write!(formatter, "drop {kind} n{from}->n{to} ({cause:?})"),
            TraceEvent::Tick { node } => write!(formatter, "tick n{node}"),
            TraceEvent::Persisted { node, batch } => write!(formatter, "persisted n{node} batch {batch}"),
            TraceEvent::Proposed { node, index, id } => write!(formatter, "proposed #{id} at n{node} index {index}"),
            TraceEvent::Crash { node } => write!(formatter, "CRASH n{node}"),
            TraceEvent::Restart { node } => write!(formatter, "RESTART n{node}"),
            TraceEvent::Cut { description } => write!(formatter, "CUT {description}"),
            TraceEvent::Heal { description } => write!(formatter, "HEAL {description}"),
            TraceEvent::Role { node, role, term } => write!(formatter, "n{node} -> {role:?} t{term}"),
            TraceEvent::Commit { node, index } => write!(formatter, "n{node} commit {index}"),
            TraceEvent::Phase { name } => write!(formatter, "=== {name} phase ==="),
            TraceEvent::Node { node, event } => write!(formatter, "n{node} {event}"),
        }
    }
}

/// How many recent events a violation report shows.
pub const RECENT_EVENTS: usize = 40;

/// The events of a run.
#[derive(Debug, Default)]
pub struct Trace {
    hash: Fnv64,
    steps: u64,
    recent: VecDeque<(u64, TraceEvent)>,
    full: Option<Vec<(u64, TraceEvent)>>,
}

impl Trace {
    /// A trace that keeps every event if `keep_full`.
    pub fn new(keep_full: bool) -> Trace {
        Trace { hash: Fnv64::new(), steps: 0, recent: VecDeque::new(), full: keep_full.then(Vec::new) }
    }

    /// Records `event` at virtual time `now_ms`.
    pub fn record(&mut self, now_ms: u64, event: TraceEvent) {
        self.steps += 1;
        self.hash.write_u64(now_ms);
        event.fold_into(&mut self.hash);
        if let Some(full) = &mut self.full {
            full.push((now_ms, event.clone()));
        }
        if self.recent.len() == RECENT_EVENTS {
            self.recent.pop_front();
        }
        self.recent.push_back((now_ms, event));
    }

    /// Hash of every event so far.
    pub fn hash(&self) -> u64 {
        self.hash.finish()
    }

    /// Events recorded so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The last events, formatted.
    pub fn recent_lines(&self) -> Vec<String> {
        self.recent.iter().map(|(at, event)| format!("{at:>7} ms  {event}")).collect()
    }

    /// Every event, formatted (empty unless kept).
    pub fn full_lines(&self) -> Vec<String> {
        self.full.iter().flatten().map(|(at, event)| format!("{at:>7} ms  {event}")).collect()
    }
}

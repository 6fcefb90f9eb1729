//! The simulated network: latency, loss, duplication, reordering, and cuts
//! (partitions, one-way partitions, broken links, isolated nodes).
//!
//! Like the TCP connections the server uses, each directed link delivers in
//! order unless a `reorder` or `duplicate` fault says otherwise: jitter alone
//! never makes a message overtake an earlier one on the same link.

use std::collections::{BTreeMap, BTreeSet};

use conclave_core::NodeId;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::options::RunParams;

/// A network fault that is currently in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cut {
    /// Identifies the cut so that its healing event finds it.
    pub id: u64,
    /// Blocked directed links (from, to).
    pub blocked: BTreeSet<(NodeId, NodeId)>,
    /// For traces.
    pub description: String,
}

/// What the network decided for one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Lost at random.
    Lost,
    /// Delivered after each of these delays (two for a duplicate).
    Delivered {
        /// One delay per copy.
        delays_ms: Vec<u64>,
        /// Held back far longer than usual.
        reordered: bool,
    },
}

/// Links, cuts and the random draws for each message.
#[derive(Debug)]
pub struct Network {
    rng: ChaCha8Rng,
    cuts: Vec<Cut>,
    next_cut_id: u64,
    /// Latest in-order delivery time per directed link.
    last_delivery_ms: BTreeMap<(NodeId, NodeId), u64>,
    /// While false (the liveness phase) no message is lost, duplicated or held back.
    pub faulty: bool,
    latency_min_ms: u64,
    latency_mean_ms: f64,
    latency_uniform_ms: Option<(u64, u64)>,
    loss_probability: f64,
    duplicate_probability: f64,
    reorder_probability: f64,
}

impl Network {
    /// A network whose behaviour `params` describes.
    pub fn new(params: &RunParams, rng: ChaCha8Rng) -> Network {
        Network {
            rng,
            cuts: Vec::new(),
            next_cut_id: 0,
            last_delivery_ms: BTreeMap::new(),
            faulty: true,
            latency_min_ms: params.latency_min_ms,
            latency_mean_ms: params.latency_mean_ms,
            latency_uniform_ms: params.latency_uniform_ms,
            loss_probability: params.loss_probability,
            duplicate_probability: params.duplicate_probability,
            reorder_probability: params.reorder_probability,
        }
    }

    /// Decides what happens to one message sent at `now_ms` from `from` to `to`.
    pub fn fate(&mut self, from: NodeId, to: NodeId, now_ms: u64) -> Fate {
        if self.faulty && self.rng.gen_bool(self.loss_probability) {
            return Fate::Lost;
        }
        let reordered = self.faulty && self.rng.gen_bool(self.reorder_probability);
        let mut delays_ms = Vec::with_capacity(1);
        if reordered {
            delays_ms.push(self.latency(true));
        } else {
            // In order: never before the previous in-order message on this link.
            let latency_ms = self.latency(false);
            let last = self.last_delivery_ms.entry((from, to)).or_insert(0);
            let at_ms = (now_ms + latency_ms).max(*last);
            *last = at_ms;
            delays_ms.push(at_ms - now_ms);
        }
        if self.faulty && self.rng.gen_bool(self.duplicate_probability) {
            delays_ms.push(self.latency(false));
        }
        Fate::Delivered { delays_ms, reordered }
    }

    /// The exponential part of the latency, capped at 20 means.
    fn jitter_ms(&mut self) -> u64 {
        let uniform: f64 = self.rng.gen_range(f64::EPSILON..1.0);
        (-uniform.ln() * self.latency_mean_ms).min(self.latency_mean_ms * 20.0) as u64
    }

    /// One network delay, drawn as for a message: how long a peer's kernel takes
    /// to answer (a reset, a refused connect).
    pub fn draw_delay_ms(&mut self) -> u64 {
        self.latency(false)
    }

    /// Minimum plus jitter; a reordered message waits 20 to 300 ms more.
    fn latency(&mut self, reordered: bool) -> u64 {
        let held_back = if reordered { self.rng.gen_range(20..=300) } else { 0 };
        let base = match self.latency_uniform_ms {
            Some((min, max)) => self.rng.gen_range(min..=max),
            None => self.latency_min_ms + self.jitter_ms(),
        };
        base + held_back
    }

    /// Whether `from` can currently reach `to`.
    pub fn is_open(&self, from: NodeId, to: NodeId) -> bool {
        !self.cuts.iter().any(|cut| cut.blocked.contains(&(from, to)))
    }

    /// Puts a cut in force; returns its id.
    pub fn add_cut(&mut self, blocked: BTreeSet<(NodeId, NodeId)>, description: String) -> u64 {
        let id = self.next_cut_id;
        self.next_cut_id += 1;
        self.cuts.push(Cut { id, blocked, description });
        id
    }

    /// Heals the cut `id`; returns its description if it was still in force.
    pub fn heal(&mut self, id: u64) -> Option<String> {
        let position = self.cuts.iter().position(|cut| cut.id == id)?;
        Some(self.cuts.remove(position).description)
    }

    /// Heals every cut; returns their descriptions.
    pub fn heal_all(&mut self) -> Vec<String> {
        self.cuts.drain(..).map(|cut| cut.description).collect()
    }

    /// Cuts in force.
    pub fn active_cuts(&self) -> usize {
        self.cuts.len()
    }
}

/// Both directions of every link between `left` and `right`.
pub fn between(left: &[NodeId], right: &[NodeId]) -> BTreeSet<(NodeId, NodeId)> {
    let mut blocked = BTreeSet::new();
    for a in left {
        for b in right {
            blocked.insert((*a, *b));
            blocked.insert((*b, *a));
        }
    }
    blocked
}

/// Only the direction from `left` to `right`.
pub fn one_way(left: &[NodeId], right: &[NodeId]) -> BTreeSet<(NodeId, NodeId)> {
    left.iter().flat_map(|a| right.iter().map(move |b| (*a, *b))).collect()
}

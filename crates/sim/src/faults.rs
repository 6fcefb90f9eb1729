//! Which faults a run may inject, and how many of each it did.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// One kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// A node's *process* stops (a crash, an OOM kill, `kill -9`); its host stays
    /// up and its written data survives in the page cache. Its peers' connections
    /// reset and their redials are refused, about one network delay later: the
    /// evidence `Node::peer_process_gone` acts on.
    Crash,
    /// A crashed node starts again from what it had persisted.
    Restart,
    /// The cluster splits into two groups that cannot talk.
    Partition,
    /// Messages flow one way only between two groups.
    AsymmetricPartition,
    /// A single link between two nodes breaks, both ways.
    LinkBreak,
    /// A single link breaks one way only (e.g. one follower stops hearing the
    /// leader while the leader still hears it).
    OneWayLink,
    /// One node is cut off from every other.
    Isolate,
    /// A message is lost.
    Loss,
    /// A message is delivered twice.
    Duplicate,
    /// A message is held back long enough to overtake (be overtaken by) others.
    Reorder,
    /// The machine loses power: every write not yet fsynced is lost (a plain
    /// `crash` is a process crash, whose written data survives in the page cache).
    UnsyncedLoss,
    /// The machine loses power mid-write: the oldest unsynced batch keeps its
    /// hard-state record but loses its log record; later batches are lost.
    TornWrite,
    /// The node's *host* stops (power loss, kernel panic, a hang): its peers hear
    /// silence, not a refusal, and every write not yet fsynced is lost.
    HostCrash,
    /// A connection between two nodes resets and its redial succeeds at once:
    /// the messages in flight on it are lost, nothing else (no evidence either).
    LinkFlap,
    /// Not a fault: an operator asks the leader to hand over, to a named
    /// member or to the most up-to-date one (a rolling restart's step). Only
    /// by name: `all` keeps meaning every fault, and its sweeps their seeds.
    Transfer,
    /// Not a fault either: an operator changes the membership through the
    /// leader (docs/design/membership.md): adds a removed node back as a
    /// learner (its data wiped, as a replaced machine), promotes a learner,
    /// removes a voter (keeping at least two, three from four nodes up), sets a
    /// priority. Part of `all`.
    Membership,
}

impl FaultKind {
    /// Every kind, in report order.
    pub const ALL: [FaultKind; 16] = [
        FaultKind::Crash,
        FaultKind::Restart,
        FaultKind::Partition,
        FaultKind::AsymmetricPartition,
        FaultKind::LinkBreak,
        FaultKind::OneWayLink,
        FaultKind::Isolate,
        FaultKind::Loss,
        FaultKind::Duplicate,
        FaultKind::Reorder,
        FaultKind::UnsyncedLoss,
        FaultKind::TornWrite,
        FaultKind::HostCrash,
        FaultKind::LinkFlap,
        FaultKind::Transfer,
        FaultKind::Membership,
    ];

    /// Name in reports, JSON and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::Restart => "restart",
            FaultKind::Partition => "partition",
            FaultKind::AsymmetricPartition => "asymmetric_partition",
            FaultKind::LinkBreak => "link_break",
            FaultKind::OneWayLink => "oneway",
            FaultKind::Isolate => "isolate",
            FaultKind::Loss => "loss",
            FaultKind::Duplicate => "duplicate",
            FaultKind::Reorder => "reorder",
            FaultKind::UnsyncedLoss => "unsynced_loss",
            FaultKind::TornWrite => "torn_write",
            FaultKind::HostCrash => "host_crash",
            FaultKind::LinkFlap => "link_flap",
            FaultKind::Transfer => "transfer",
            FaultKind::Membership => "membership",
        }
    }
}

/// The set of faults a run may inject.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultSet {
    bits: u32,
}

impl FaultSet {
    /// No faults at all.
    pub const NONE: FaultSet = FaultSet { bits: 0 };

    /// Every fault this simulator knows (leader transfers, an operator's
    /// action, only by name).
    pub fn all() -> FaultSet {
        FaultKind::ALL.into_iter().filter(|kind| *kind != FaultKind::Transfer).fold(FaultSet::NONE, FaultSet::with)
    }

    /// This set plus `kind`.
    pub fn with(self, kind: FaultKind) -> FaultSet {
        FaultSet { bits: self.bits | 1 << kind as u32 }
    }

    /// Whether `kind` may be injected.
    pub fn contains(self, kind: FaultKind) -> bool {
        self.bits & (1 << kind as u32) != 0
    }

    /// Parses `all`, `none`, or a comma-separated list of kinds and groups
    /// (`network` = partitions, links, one-way links, isolation, loss, duplication, reordering,
    /// link flaps; `crash` = process crashes, host crashes and restarts).
    pub fn parse(text: &str) -> Result<FaultSet, String> {
        let mut set = FaultSet::NONE;
        for word in text.split(',').map(str::trim).filter(|word| !word.is_empty()) {
            set = match word {
                "all" => FaultSet::all(),
                "none" => set,
                "network" => [
                    FaultKind::Partition,
                    FaultKind::AsymmetricPartition,
                    FaultKind::LinkBreak,
                    FaultKind::OneWayLink,
                    FaultKind::Isolate,
                    FaultKind::Loss,
                    FaultKind::Duplicate,
                    FaultKind::Reorder,
                    FaultKind::LinkFlap,
                ]
                .into_iter()
                .fold(set, FaultSet::with),
                "crash" => set.with(FaultKind::Crash).with(FaultKind::HostCrash).with(FaultKind::Restart),
                "disk" => set.with(FaultKind::UnsyncedLoss).with(FaultKind::TornWrite).with(FaultKind::Restart),
                other => match FaultKind::ALL.into_iter().find(|kind| kind.name() == other) {
                    Some(kind) => set.with(kind),
                    None => {
                        let known: Vec<&str> = FaultKind::ALL.iter().map(|kind| kind.name()).collect();
                        return Err(format!(
                            "unknown fault `{other}` (known: all, none, network, disk, {})",
                            known.join(", ")
                        ));
                    }
                },
            };
        }
        Ok(set)
    }
}

impl fmt::Display for FaultSet {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> =
            FaultKind::ALL.into_iter().filter(|kind| self.contains(*kind)).map(FaultKind::name).collect();
        if names.is_empty() {
            formatter.write_str("none")
        } else {
            formatter.write_str(&names.join(","))
        }
    }
}

/// How many faults of each kind were injected.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultCounts(pub BTreeMap<String, u64>);

impl FaultCounts {
    /// Counts one injection of `kind`.
    pub fn record(&mut self, kind: FaultKind) {
        *self.0.entry(kind.name().to_string()).or_insert(0) += 1;
    }

    /// Injections of `kind`.
    pub fn get(&self, kind: FaultKind) -> u64 {
        self.0.get(kind.name()).copied().unwrap_or(0)
    }

    /// Adds another run's counts.
    pub fn add(&mut self, other: &FaultCounts) {
        for (name, count) in &other.0 {
            *self.0.entry(name.clone()).or_insert(0) += count;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_groups_and_kinds_and_names_unknown_ones() {
        assert_eq!(FaultSet::parse("all").unwrap(), FaultSet::all());
        assert_eq!(FaultSet::parse("none").unwrap(), FaultSet::NONE);
        let set = FaultSet::parse("crash,loss").unwrap();
        assert!(set.contains(FaultKind::Crash) && set.contains(FaultKind::Restart) && set.contains(FaultKind::Loss));
        assert!(!set.contains(FaultKind::Partition));
        let error = FaultSet::parse("crash,meteor").unwrap_err();
        assert!(error.contains("unknown fault `meteor`"), "{error}");
    }
}

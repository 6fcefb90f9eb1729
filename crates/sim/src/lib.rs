//! # conclave-sim
//!
//! A deterministic simulator for Conclave, after TigerBeetle's VOPR: N real
//! [`conclave_core::Node`]s run on virtual time over a network that delays,
//! loses, duplicates and reorders messages and can be cut (partitions, one-way
//! partitions, single links, isolated nodes), with nodes that crash (losing
//! everything not yet fsynced) and restart from their disk. One `u64` seed
//! derives every choice, so a seed replays its run exactly.
//!
//! Invariant checkers ([`invariants`]) watch every step from outside the nodes;
//! a run has a safety phase under faults, then a liveness phase with faults
//! healed in which the cluster must commit every new proposal on every node.
//!
//! [`model_check`] explores, exhaustively to a bounded depth, every interleaving
//! of timers, deliveries, losses, duplicates, crashes and restarts of the same
//! real cores, and reports each property of docs/design/invariants.md with a shortest trace
//! when one breaks (`conclave check`; docs/model_check.md).
#![deny(missing_docs)]

pub mod disk;
pub mod faults;
pub mod invariants;
pub mod model_check;
pub mod network;
pub mod newest_wins;
pub mod options;
pub mod report;
pub mod seed_rules;
pub mod simulation;
pub mod state_machine;
pub mod sweep;
pub mod trace;

pub use faults::{FaultKind, FaultSet};
pub use options::{RunParams, SimOptions};
pub use report::{Percentiles, RunReport, SweepReport, Violation};
pub use simulation::Simulation;
pub use sweep::{find_violation, run_seed, run_sweep};

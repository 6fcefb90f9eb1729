//! # The seed's election rules as an abstract model (seed 003, docs/design/leader-terms.md)
//!
//! The seed "one legal leader per term" cannot run inside the shipped core,
//! which enforces Raft's monotonic terms and one vote per term. This module
//! models it on its own, exactly as written, with a small exhaustive
//! explicit-state checker, so that a test can show the checker finding the
//! counterexamples docs/design/leader-terms.md lists, and the same search at the same bounds
//! finding none for the repaired rules. See `docs/seed_rules_counterexamples.md`.
//!
//! The model: 3 nodes; per node a persistent term, vote, log and commit index,
//! and a volatile role, vote lease and vote count. Entries are `(term, kind)`,
//! kind a `BecomeLeader` or a client command. The environment chooses every
//! step: any node's election timer fires and it campaigns (its own lease is
//! over by then: the seed requires the lease to be shorter than the election
//! timeout), any lease expires, one node may crash and restart, a leader-elect
//! or leader sends AppendEntries to a peer, a leader appends a command, and any
//! in-flight message is delivered, delivered with a copy kept (duplication),
//! or lost. Messages in flight are a set, so any order is possible. The
//! reductions the search keeps, and why none loses a behaviour that matters,
//! are in the docs file above and next to the code.
//!
//! [`check`] runs a breadth-first search within [`Bounds`] and reports the
//! first, hence shortest, trace to a state breaking a [`Property`].
//!
//! The three rule sets ([`SeedVariant`]):
//! - **As written**: a candidate campaigns for `last_leader_term + 1`, where
//!   `last_leader_term` is the term of the newest `BecomeLeader` in its log; a
//!   voter grants iff its lease is over, the requested term is its own
//!   `last_leader_term + 1` and the candidate is at least as up-to-date, and
//!   then starts its lease; a follower accepts appends of a term only from the
//!   node it voted for in that term (then Raft's consistency check and conflict
//!   truncation); the leader-elect commits by Raft's rule and serves once its
//!   `BecomeLeader` commits.
//! - **Committed last leader term**: the same, with `last_leader_term` taken from committed entries only.
//! - **Repaired**: a Raft ballot (term + 1 per campaign, one vote per ballot,
//!   promises never go back) orders votes and entries; `BecomeLeader` carries
//!   leader term = own log's last + 1; voters do not check leader terms;
//!   followers accept appends with ballot ≥ promise; the lease only withholds votes.

mod model;
mod properties;
mod search;

pub use model::{Action, Bounds, Entry, Kind, Msg, Node, Notes, Role, SeedVariant, State, NODES};
pub use properties::Property;
pub use search::{check, check_properties, find, CheckResult};

//! Invariant checkers, outside the nodes, one per file (docs/design/invariants.md). Each
//! names the property it checks; the simulator feeds them what it observes after
//! every step and stops the run at the first violation.

mod durable_commits;
mod election_safety;
mod exactly_once;
mod gapless_terms;
mod leader_completeness;
mod linearizable_reads;
mod log_matching;
mod state_machine_safety;

pub use durable_commits::DurableCommits;
pub use election_safety::ElectionSafety;
pub use exactly_once::ExactlyOnce;
pub use gapless_terms::GaplessTerms;
pub use leader_completeness::LeaderCompleteness;
pub use linearizable_reads::LinearizableReads;
pub use log_matching::LogMatching;
pub use state_machine_safety::StateMachineSafety;

use conclave_core::{Entry, Payload};

use crate::trace::Fnv64;

/// A broken property, as found by a checker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broken {
    /// The property's name.
    pub property: &'static str,
    /// What exactly was seen.
    pub detail: String,
}

/// A fingerprint of an entry's content (term and payload), stable across runs.
pub fn entry_fingerprint(entry: &Entry) -> u64 {
    let mut hash = Fnv64::new();
    hash.write_u64(entry.term);
    match &entry.payload {
        Payload::Noop => hash.write_u64(0),
        Payload::Command(bytes) => {
            hash.write_u64(1);
            hash.write_bytes(bytes);
        }
        Payload::BecomeLeader { leader_term, leader } => {
            hash.write_u64(2);
            hash.write_u64(*leader_term);
            hash.write_u64(*leader);
        }
        Payload::Membership(membership) => {
            hash.write_u64(3);
            for (id, member) in &membership.members {
                hash.write_u64(*id);
                hash.write_u64(u64::from(member.voter));
                hash.write_u64(u64::from(member.priority));
            }
            for id in &membership.removed {
                hash.write_u64(u64::MAX - id);
            }
        }
    }
    hash.finish()
}

/// All the checkers of one run.
#[derive(Debug, Default)]
pub struct Invariants {
    /// At most one leader per term.
    pub election_safety: ElectionSafety,
    /// Same (index, term) implies the same prefix.
    pub log_matching: LogMatching,
    /// Committed entries are in every later leader's log.
    pub leader_completeness: LeaderCompleteness,
    /// Applied sequences are prefixes of one another.
    pub state_machine_safety: StateMachineSafety,
    /// Committed `BecomeLeader` leader terms are 1, 2, 3, … with one leader each.
    pub gapless_terms: GaplessTerms,
    /// A read sees every write acknowledged before it was issued.
    pub linearizable_reads: LinearizableReads,
    /// No command id takes effect twice on a node.
    pub exactly_once: ExactlyOnce,
    /// A leader's commits are on a majority of disks.
    pub durable_commits: DurableCommits,
}

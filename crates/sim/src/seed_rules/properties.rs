//! Safety properties, checked on every state the search reaches.

use super::model::{State, NODES};

/// A safety property of the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Property {
    /// Two logs with an entry at the same index and term are identical up to it:
    /// two different entries sharing (index, term) is a violation.
    LogMatching,
    /// At most one node ever serves as leader (its `BecomeLeader` committed) per leader term.
    ElectionSafety,
    /// Committed prefixes agree across nodes, and no node truncates an entry it knew committed.
    StateMachineSafety,
}

impl Property {
    /// Every property, in the order they are checked.
    pub const ALL: [Property; 3] = [Property::LogMatching, Property::ElectionSafety, Property::StateMachineSafety];

    /// The property's name, as reported.
    pub fn name(self) -> &'static str {
        match self {
            Property::LogMatching => "log_matching",
            Property::ElectionSafety => "election_safety",
            Property::StateMachineSafety => "state_machine_safety",
        }
    }

    /// Whether `state` satisfies the property.
    pub fn holds(self, state: &State) -> bool {
        match self {
            Property::LogMatching => log_matching(state),
            Property::ElectionSafety => state.leaders.iter().all(|mask| mask.count_ones() <= 1),
            Property::StateMachineSafety => !state.overwrote_committed && committed_prefixes_agree(state),
        }
    }
}

fn pairs() -> impl Iterator<Item = (usize, usize)> {
    (0..NODES).flat_map(|a| (a + 1..NODES).map(move |b| (a, b)))
}

fn log_matching(state: &State) -> bool {
    pairs().all(|(a, b)| {
        let (left, right) = (&state.nodes[a].log, &state.nodes[b].log);
        // The highest shared (index, term) must have identical prefixes up to it.
        let shared = (0..left.len().min(right.len())).rev().find(|&at| left[at].term == right[at].term);
        shared.is_none_or(|at| left[..=at] == right[..=at])
    })
}

fn committed_prefixes_agree(state: &State) -> bool {
    pairs().all(|(a, b)| {
        let (left, right) = (&state.nodes[a], &state.nodes[b]);
        let shorter = left.commit.min(right.commit);
        left.log[..shorter] == right.log[..shorter]
    })
}

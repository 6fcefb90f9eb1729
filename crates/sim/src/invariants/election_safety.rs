//! Election safety (Raft §5.2, invariant 1 in docs/design/invariants.md): at most one leader per term.

use std::collections::BTreeMap;

use conclave_core::{NodeId, Term};

use super::Broken;

/// Remembers who led each term.
#[derive(Debug, Default)]
pub struct ElectionSafety {
    leaders: BTreeMap<Term, NodeId>,
}

impl ElectionSafety {
    /// The property checked.
    pub const PROPERTY: &'static str = "election_safety";

    /// `node` became leader of `term`.
    pub fn on_leader(&mut self, node: NodeId, term: Term) -> Result<(), Broken> {
        match self.leaders.insert(term, node) {
            Some(other) if other != node => Err(Broken {
                property: Self::PROPERTY,
                detail: format!("n{node} and n{other} both became leader of term {term}"),
            }),
            _ => Ok(()),
        }
    }

    /// Terms that had a leader.
    pub fn terms_with_leader(&self) -> usize {
        self.leaders.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_on_two_leaders_in_one_term() {
        let mut checker = ElectionSafety::default();
        checker.on_leader(1, 3).unwrap();
        checker.on_leader(1, 3).unwrap();
        checker.on_leader(2, 4).unwrap();
        assert!(checker.on_leader(2, 3).is_err());
    }
}

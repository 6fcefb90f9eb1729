//! Election modes: the one place where the node asks "how do we elect?".
//!
//! Log replication, commit and persistence are shared by every mode; only the
//! election path dispatches on [`ElectionMode`]. DESIGN.md §3 describes the
//! modes; `fast`, `gapless` and `conclave` plug in here as further variants.

mod raft;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::node::Node;
use crate::types::{LogIndex, NodeId, Term};

/// Which election protocol a cluster runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ElectionMode {
    /// Raft §5 with PreVote and CheckQuorum: the measured baseline (DESIGN.md §3.1).
    #[default]
    Raft,
}

impl ElectionMode {
    /// Every mode this build knows.
    pub const ALL: [ElectionMode; 1] = [ElectionMode::Raft];

    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ElectionMode::Raft => "raft",
        }
    }
}

impl fmt::Display for ElectionMode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

impl FromStr for ElectionMode {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        ElectionMode::ALL.into_iter().find(|mode| mode.name() == name).ok_or_else(|| {
            let known: Vec<&str> = ElectionMode::ALL.iter().map(|mode| mode.name()).collect();
            format!("unknown election mode `{name}` (known: {})", known.join(", "))
        })
    }
}

impl Node {
    /// The election timer fired on a non-leader.
    pub(crate) fn on_election_timeout(&mut self) {
        match self.config.election_mode {
            ElectionMode::Raft => raft::on_election_timeout(self),
        }
    }

    /// A (pre-)vote request at a term not older than ours.
    pub(crate) fn on_vote_request(
        &mut self,
        from: NodeId,
        term: Term,
        pre_vote: bool,
        last_log_term: Term,
        last_log_index: LogIndex,
    ) {
        match self.config.election_mode {
            ElectionMode::Raft => raft::on_vote_request(self, from, term, pre_vote, last_log_term, last_log_index),
        }
    }

    /// An answer to our (pre-)vote request.
    pub(crate) fn on_vote_response(&mut self, from: NodeId, term: Term, pre_vote: bool, granted: bool) {
        match self.config.election_mode {
            ElectionMode::Raft => raft::on_vote_response(self, from, term, pre_vote, granted),
        }
    }

    /// The next election timeout to wait for.
    pub(crate) fn draw_election_timeout_ms(&mut self) -> u64 {
        match self.config.election_mode {
            ElectionMode::Raft => raft::draw_election_timeout_ms(self),
        }
    }
}

//! Election modes: the one place where the node asks "how do we elect?".
//!
//! Log replication, commit and persistence are shared by every mode; only the
//! election path dispatches on [`ElectionMode`]. DESIGN.md §3 describes the
//! modes; `fast`, `gapless` and `conclave` plug in here as further variants.

pub(crate) mod fast;
mod raft;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::message::{Body, Message};
use crate::node::Node;
use crate::status::DropReason;
use crate::types::{LogIndex, NodeId, Term};

/// Which election protocol a cluster runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ElectionMode {
    /// Raft §5 with PreVote and CheckQuorum: the measured baseline (DESIGN.md §3.1).
    #[default]
    Raft,
    /// Counted misses, subjective/objective down, and a vote exchange that elects
    /// the node with the newest data (DESIGN.md §3.2, §3.3, §3.5).
    Fast,
}

impl ElectionMode {
    /// Every mode this build knows.
    pub const ALL: [ElectionMode; 2] = [ElectionMode::Raft, ElectionMode::Fast];

    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ElectionMode::Raft => "raft",
            ElectionMode::Fast => "fast",
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
    /// Mode-specific start-up (cold start from `initial_leader` in `fast`).
    pub(crate) fn on_start(&mut self, restored_empty: bool) {
        match self.config.election_mode {
            ElectionMode::Raft => {}
            ElectionMode::Fast => fast::cold_start(self, restored_empty),
        }
    }

    /// A non-leader's timers are due.
    pub(crate) fn on_election_timer(&mut self) {
        match self.config.election_mode {
            ElectionMode::Raft => {
                if self.now_ms >= self.election_deadline_ms {
                    raft::on_election_timeout(self)
                }
            }
            ElectionMode::Fast => fast::on_tick(self),
        }
    }

    /// When a non-leader's next timer is due.
    pub(crate) fn election_deadline_ms(&self) -> u64 {
        match self.config.election_mode {
            ElectionMode::Raft => self.election_deadline_ms,
            ElectionMode::Fast => fast::deadline(self),
        }
    }

    /// Lets the mode take messages before the shared term rules; returns the
    /// message if the shared path should handle it.
    pub(crate) fn route_election_message(&mut self, message: Message) -> Option<Message> {
        match self.config.election_mode {
            ElectionMode::Raft => match message.body {
                Body::SubjectiveDown { .. }
                | Body::ObjectiveDown { .. }
                | Body::Vote { .. }
                | Body::Correction { .. } => {
                    self.dropped.record(DropReason::WrongElectionMode);
                    None
                }
                _ => Some(message),
            },
            ElectionMode::Fast => fast::route(self, message),
        }
    }

    /// The node accepted an `AppendEntries` from its leader of the current term.
    pub(crate) fn on_heard_from_leader(&mut self) {
        match self.config.election_mode {
            ElectionMode::Raft => {}
            ElectionMode::Fast => fast::on_heard_from_leader(self),
        }
    }

    /// The node became a follower.
    pub(crate) fn on_follow(&mut self) {
        match self.config.election_mode {
            ElectionMode::Raft => {}
            ElectionMode::Fast => fast::on_follow(self),
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
            ElectionMode::Fast => self.dropped.record(DropReason::WrongElectionMode),
        }
    }

    /// An answer to our (pre-)vote request.
    pub(crate) fn on_vote_response(&mut self, from: NodeId, term: Term, pre_vote: bool, granted: bool) {
        match self.config.election_mode {
            ElectionMode::Raft => raft::on_vote_response(self, from, term, pre_vote, granted),
            ElectionMode::Fast => self.dropped.record(DropReason::WrongElectionMode),
        }
    }

    /// The next election timeout to wait for.
    pub(crate) fn draw_election_timeout_ms(&mut self) -> u64 {
        match self.config.election_mode {
            ElectionMode::Raft => raft::draw_election_timeout_ms(self),
            // The fast mode counts misses instead (`fast::detector`).
            ElectionMode::Fast => self.config.election_timeout_ms(),
        }
    }
}

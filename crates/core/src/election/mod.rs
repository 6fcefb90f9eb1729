//! Election modes: the one place where the node asks "how do we elect?".
//!
//! Log replication, commit and persistence are shared by every mode; only the
//! election path dispatches on [`ElectionMode`]. docs/design/elections.md describes the
//! modes. Two questions decide a mode's behaviour, and each has one module:
//! *who is elected and when* — Raft campaigns (`raft`: modes `raft`, `gapless`)
//! or the vote exchange (`fast`: modes `fast`, `conclave`) — and *which leader
//! term, and when the winner serves* — at once with a `Noop` (`raft`, `fast`) or
//! through a committed `BecomeLeader` with a vote lease (`leader_terms`: modes
//! `gapless`, `conclave`).

pub(crate) mod fast;
pub(crate) mod leader_terms;
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
    /// Raft §5 with PreVote and CheckQuorum: the measured baseline (docs/design/elections.md).
    Raft,
    /// Counted misses, subjective/objective down, and a vote exchange that elects
    /// the node with the newest data (docs/design/detection.md, docs/design/vote-exchange.md, docs/design/cold-start.md).
    Fast,
    /// Raft campaigns with gapless leader terms: a vote lease, a `BecomeLeader`
    /// entry carrying leader term = previous + 1, and a leader-elect that serves
    /// only once that entry commits (docs/design/leader-terms.md, the repaired rules).
    Gapless,
    /// The default: the fast election decides who and when, the gapless rules
    /// decide which leader term and when the winner serves (docs/design/elections.md).
    #[default]
    Conclave,
}

impl ElectionMode {
    /// Every mode this build knows.
    pub const ALL: [ElectionMode; 4] =
        [ElectionMode::Raft, ElectionMode::Fast, ElectionMode::Gapless, ElectionMode::Conclave];

    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ElectionMode::Raft => "raft",
            ElectionMode::Fast => "fast",
            ElectionMode::Gapless => "gapless",
            ElectionMode::Conclave => "conclave",
        }
    }

    /// Elects through the vote exchange (seed 000) rather than Raft campaigns.
    pub fn exchanges_votes(self) -> bool {
        matches!(self, ElectionMode::Fast | ElectionMode::Conclave)
    }

    /// Has gapless leader terms (seed 003): `BecomeLeader` entries, leader-elects
    /// and the vote lease.
    pub fn has_leader_terms(self) -> bool {
        matches!(self, ElectionMode::Gapless | ElectionMode::Conclave)
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

/// Raft campaigns: the leader handed over to `node` (`TimeoutNow`).
pub(crate) fn campaign_now(node: &mut Node) {
    raft::start_campaign(node, true);
}

impl Node {
    /// Mode-specific start-up (cold start from `initial_leader` in `fast`).
    pub(crate) fn on_start(&mut self, restored_empty: bool) {
        if self.config.election_mode.exchanges_votes() {
            fast::cold_start(self, restored_empty)
        }
    }

    /// A non-leader's timers are due.
    pub(crate) fn on_election_timer(&mut self) {
        if !self.is_voter() {
            // A learner, a node waiting to join, a removed node: never campaigns.
            self.reset_election_timer();
            return;
        }
        if self.config.election_mode.exchanges_votes() {
            fast::on_tick(self)
        } else if self.now_ms >= self.election_deadline_ms {
            raft::on_election_timeout(self)
        }
    }

    /// When a non-leader's next timer is due.
    pub(crate) fn election_deadline_ms(&self) -> u64 {
        if self.config.election_mode.exchanges_votes() && self.is_voter() {
            fast::deadline(self)
        } else {
            self.election_deadline_ms
        }
    }

    /// Lets the mode take messages before the shared term rules; returns the
    /// message if the shared path should handle it.
    pub(crate) fn route_election_message(&mut self, message: Message) -> Option<Message> {
        if self.config.election_mode.exchanges_votes() {
            return fast::route(self, message);
        }
        match message.body {
            Body::SubjectiveDown { .. }
            | Body::ObjectiveDown { .. }
            | Body::Vote { .. }
            | Body::Correction { .. }
            | Body::Liveness { .. } => {
                self.dropped.record(DropReason::WrongElectionMode);
                None
            }
            _ => Some(message),
        }
    }

    /// The node accepted an `AppendEntries` or `InstallSnapshot` from its leader
    /// of the current term; `heartbeat` says whether it was a heartbeat (an
    /// `AppendEntries` without entries), the only kind that clears missed counts;
    /// `previous_contact_ms` when it last heard from that leader before.
    pub(crate) fn on_heard_from_leader(&mut self, heartbeat: bool, previous_contact_ms: Option<u64>) {
        if self.config.election_mode.exchanges_votes() {
            fast::on_heard_from_leader(self, heartbeat, previous_contact_ms)
        }
    }

    /// The transport's evidence that `peer`'s process is gone (`Node::peer_process_gone`).
    pub(crate) fn on_peer_process_gone(&mut self, peer: NodeId) {
        if !self.is_voter() {
            return;
        }
        if self.config.election_mode.exchanges_votes() {
            fast::on_peer_process_gone(self, peer)
        } else {
            raft::on_peer_process_gone(self, peer)
        }
    }

    /// The node became a follower.
    pub(crate) fn on_follow(&mut self) {
        if self.config.election_mode.exchanges_votes() {
            fast::on_follow(self)
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
        transfer: bool,
    ) {
        if self.config.election_mode.exchanges_votes() {
            self.dropped.record(DropReason::WrongElectionMode)
        } else {
            raft::on_vote_request(self, from, term, pre_vote, last_log_term, last_log_index, transfer)
        }
    }

    /// An answer to our (pre-)vote request.
    pub(crate) fn on_vote_response(&mut self, from: NodeId, term: Term, pre_vote: bool, granted: bool) {
        if self.config.election_mode.exchanges_votes() {
            self.dropped.record(DropReason::WrongElectionMode)
        } else {
            raft::on_vote_response(self, from, term, pre_vote, granted)
        }
    }

    /// The next election timeout to wait for.
    pub(crate) fn draw_election_timeout_ms(&mut self) -> u64 {
        if self.config.election_mode.exchanges_votes() {
            // The vote exchange counts misses instead (`fast::detector`).
            self.config.election_timeout_ms()
        } else {
            raft::draw_election_timeout_ms(self)
        }
    }
}

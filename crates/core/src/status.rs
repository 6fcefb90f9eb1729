//! A read-only snapshot of a node, for drivers, tests and operators.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::{LogIndex, NodeId, Term};

/// What a node currently is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asks whether it could win before disturbing anyone (thesis §9.6).
    PreCandidate,
    /// `fast` mode: exchanges votes to find the node with the newest data.
    Looking,
    /// Campaigns in a new term (`fast` mode: has finalized a vote for itself and
    /// waits for a quorum's binding votes).
    Candidate,
    /// Leads its term.
    Leader,
}

/// Why an incoming message was dropped without effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DropReason {
    /// Carried another cluster's id.
    WrongCluster,
    /// Sent by an id that is not a member (or by this node itself).
    UnknownSender,
    /// Addressed to another node.
    Misdirected,
    /// Sent by a node removed from the membership (docs/design/membership.md).
    Removed,
    /// Fields that no correct sender can produce (term 0, entries not contiguous,
    /// a commit index beyond what the message carries, …).
    ImpossibleFields,
    /// From an older term; answered when Raft says so, otherwise ignored.
    StaleTerm,
    /// A vote request while a leader is known to be alive (CheckQuorum lease).
    LeaderLease,
    /// Entries that contradict this node's committed prefix: only a broken
    /// leader can send them, so they are refused rather than applied.
    ConflictsWithCommitted,
    /// A message of another election mode's protocol (a misconfigured peer).
    WrongElectionMode,
    /// A vote request while this node's vote lease for another candidate runs
    /// (docs/design/leader-terms.md).
    VoteLease,
    /// An `InstallSnapshot` chunk for a snapshot that ends at or below this
    /// node's commit index: it already holds all of it (a late duplicate). It
    /// changes nothing but is answered "installed", so the leader moves on.
    StaleSnapshot,
    /// Election gossip at a leader that just handed over: it stays out of the
    /// election it started, for an election timeout (docs/decisions/0099).
    HandedOver,
}

impl DropReason {
    /// Every reason, for reports.
    pub const ALL: [DropReason; 12] = [
        DropReason::WrongCluster,
        DropReason::UnknownSender,
        DropReason::Misdirected,
        DropReason::Removed,
        DropReason::ImpossibleFields,
        DropReason::StaleTerm,
        DropReason::LeaderLease,
        DropReason::ConflictsWithCommitted,
        DropReason::WrongElectionMode,
        DropReason::VoteLease,
        DropReason::StaleSnapshot,
        DropReason::HandedOver,
    ];

    /// The snake_case name used in metrics and JSON.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::WrongCluster => "wrong_cluster",
            DropReason::UnknownSender => "unknown_sender",
            DropReason::Misdirected => "misdirected",
            DropReason::Removed => "removed",
            DropReason::ImpossibleFields => "impossible_fields",
            DropReason::StaleTerm => "stale_term",
            DropReason::LeaderLease => "leader_lease",
            DropReason::ConflictsWithCommitted => "conflicts_with_committed",
            DropReason::WrongElectionMode => "wrong_election_mode",
            DropReason::VoteLease => "vote_lease",
            DropReason::StaleSnapshot => "stale_snapshot",
            DropReason::HandedOver => "handed_over",
        }
    }
}

/// Messages dropped, counted per reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropCounters {
    counts: BTreeMap<DropReason, u64>,
}

impl DropCounters {
    /// Counts one dropped message.
    pub fn record(&mut self, reason: DropReason) {
        *self.counts.entry(reason).or_insert(0) += 1;
    }

    /// How many messages were dropped for `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.counts.get(&reason).copied().unwrap_or(0)
    }

    /// Total over every reason.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }
}

/// A leader's view of one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowerStatus {
    /// Highest index known replicated on the follower.
    pub match_index: LogIndex,
    /// Next index the leader will send.
    pub next_index: LogIndex,
    /// Milliseconds since the leader last heard from it (its clock; from the
    /// leader's start in this term if never).
    pub heard_ms_ago: u64,
}

/// A snapshot of a node's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The node's id.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its current term (ballot).
    pub term: Term,
    /// Whom it voted for in `term`.
    pub voted_for: Option<NodeId>,
    /// The leader it knows for `term`.
    pub leader: Option<NodeId>,
    /// Commit index.
    pub commit: LogIndex,
    /// Applied index.
    pub applied: LogIndex,
    /// Index of the last log entry.
    pub last_index: LogIndex,
    /// Term of the last log entry.
    pub last_term: Term,
    /// Last index of the latest snapshot (0 without one): the log holds entries
    /// from the next index on.
    pub snapshot_index: LogIndex,
    /// Leads and takes proposals (false for a leader-elect, docs/design/leader-terms.md).
    pub serving: bool,
    /// Where the membership it acts on sits in its log (0: the bootstrap
    /// membership of its configuration).
    pub membership_index: LogIndex,
    /// Whether it votes in that membership (false for a learner, a node
    /// waiting to join, or a removed node that knows it).
    pub voter: bool,
    /// `gapless`/`conclave`: the newest committed leader term, if any.
    pub leader_term: Option<u64>,
    /// `gapless`/`conclave`: the leader term of the newest `BecomeLeader` in the
    /// log, committed or not (it can go back when an uncommitted one is truncated).
    pub leader_term_in_log: Option<u64>,
    /// Per follower, when leading.
    pub followers: BTreeMap<NodeId, FollowerStatus>,
    /// Dropped messages by reason.
    pub dropped: DropCounters,
}

//! Messages exchanged between nodes.
//!
//! Every message carries the cluster id and the sender's id; the receiving node
//! checks both before anything else (docs/design/architecture.md, `Node::step`).

use serde::{Deserialize, Serialize};

use crate::entry::Entry;
use crate::snapshot::SnapshotMeta;
use crate::types::{ClusterId, LogIndex, NodeId, Term};

/// A message from one node to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The cluster the sender belongs to.
    pub cluster_id: ClusterId,
    /// The sender.
    pub from: NodeId,
    /// The intended receiver.
    pub to: NodeId,
    /// The sender's term. For a pre-vote request it is the term the sender
    /// *would* campaign in (its own term + 1); its own term is unchanged.
    pub term: Term,
    /// What the message says.
    pub body: Body,
}

/// The kinds of message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// Raft §5.2 RequestVote, or a PreVote probe (thesis §9.6) when `pre_vote`.
    RequestVote {
        /// A pre-vote asks "would you vote for me?" without anyone changing term.
        pre_vote: bool,
        /// Term of the candidate's last log entry (Raft §5.4.1).
        last_log_term: Term,
        /// Index of the candidate's last log entry.
        last_log_index: LogIndex,
        /// The candidate campaigns because its leader handed over to it
        /// (`TimeoutNow`): voters grant even while they hear that leader.
        transfer: bool,
    },
    /// The answer to a `RequestVote`.
    VoteResponse {
        /// Answers a pre-vote rather than a real vote.
        pre_vote: bool,
        /// Whether the vote was granted.
        granted: bool,
    },
    /// Raft §5.3 AppendEntries; with no entries it is a heartbeat.
    AppendEntries {
        /// Index of the entry just before `entries`.
        prev_log_index: LogIndex,
        /// Term of that entry (0 for index 0).
        prev_log_term: Term,
        /// Entries to store, contiguous from `prev_log_index + 1`.
        entries: Vec<Entry>,
        /// The leader's commit index, capped at `prev_log_index + entries.len()`:
        /// a follower may only commit what this very message proves it shares with
        /// the leader, so a larger value is impossible and the message is dropped.
        leader_commit: LogIndex,
        /// The leader's latest ReadIndex confirmation round (thesis §6.4) when it
        /// sent this message; 0 before its first. The follower echoes it, so the
        /// answer proves the sender still led this term after the round began.
        read_round: u64,
        /// Sent by the leader's periodic heartbeat (never with entries), not by
        /// replication or a read probe: followers count missed heartbeats only
        /// (docs/design/detection.md), so neither write nor read load delays the detection
        /// of a crashed leader.
        heartbeat: bool,
    },
    /// The answer to an `AppendEntries`.
    AppendResponse {
        /// What the follower did with it.
        outcome: AppendOutcome,
        /// The `read_round` of the `AppendEntries` answered. A value above the
        /// leader's latest round is impossible and the message is dropped.
        read_round: u64,
    },
    /// Raft §7 InstallSnapshot, one chunk: the leader compacted the entries this
    /// follower needs, so it sends its snapshot instead, `data` being the bytes
    /// at `offset..offset + data.len()` of `total_bytes`. Chunks go one at a time;
    /// the follower answers each with the bytes it holds (`SnapshotResponse`), so
    /// a lost chunk is resent from there and a restarted follower from 0.
    InstallSnapshot {
        /// What the snapshot covers.
        meta: SnapshotMeta,
        /// Size of the whole snapshot data.
        total_bytes: u64,
        /// Where `data` starts in it.
        offset: u64,
        /// The chunk: a slice of the leader's snapshot bytes, shared, so that
        /// reading them (a mapped file's pages) happens where the message is
        /// encoded, not on the task that drives the node.
        data: bytes::Bytes,
        /// True for the last chunk (`offset + data.len() == total_bytes`).
        done: bool,
    },
    /// The answer to an `InstallSnapshot`: how much of the snapshot ending at
    /// `last_included_index` the follower holds.
    SnapshotResponse {
        /// The snapshot's last index, so the leader can ignore stale answers.
        last_included_index: LogIndex,
        /// Bytes held, contiguous from 0: the leader continues from there.
        received_bytes: u64,
        /// The follower installed the snapshot: its log now matches the leader's
        /// up to `last_included_index`.
        installed: bool,
    },
    /// `fast` mode (docs/design/detection.md): the sender has lost (`down`) or regained
    /// (`!down`) its link to `leader` of `leader_term`.
    SubjectiveDown {
        /// The leader concerned (`None`: the sender knew no leader in that term).
        leader: Option<NodeId>,
        /// The term that leader leads.
        leader_term: Term,
        /// True when reporting the loss, false when retracting it.
        down: bool,
        /// The sender's data version when it reported: term of its last log
        /// entry. Lets the round that follows start from the best version
        /// already known (docs/decisions/0038-failover-speed.md).
        last_log_term: Term,
        /// Index of the sender's last log entry.
        last_log_index: LogIndex,
    },
    /// `fast` mode: a majority holds `leader` of `leader_term` down; receivers
    /// start the election at once.
    ObjectiveDown {
        /// The leader concerned.
        leader: Option<NodeId>,
        /// The term it led.
        leader_term: Term,
    },
    /// `fast` mode (docs/design/vote-exchange.md): the sender's current vote in the round that
    /// binds `ballot`, or, if it is not looking, the leader it follows.
    Vote {
        /// The term the round will bind.
        ballot: Term,
        /// The candidate the sender currently backs, with its data version.
        vote: VoteChoice,
        /// Whether the sender is looking, following or leading.
        state: PeerState,
    },
    /// `fast` mode (docs/design/vote-exchange.md): the leader's CheckQuorum view, sent once per
    /// election timeout: the members it heard from during the last one. When the
    /// leader is lost, a member it had not heard from is known down, so a round
    /// need not wait `finalize_wait` for that member's vote.
    Liveness {
        /// Members (the leader excluded) that answered the leader recently.
        active: Vec<NodeId>,
    },
    /// Leader transfer (docs/decisions/0099): the leader of the message's term
    /// hands over to the receiver, which holds its whole log: elect yourself now.
    TimeoutNow,
    /// `fast` mode (docs/design/cold-start.md): "the leader is `leader` of `leader_term`",
    /// sent to a node that acts on another belief.
    Correction {
        /// The leader the sender follows (or is).
        leader: NodeId,
        /// Its term.
        leader_term: Term,
    },
}

/// A candidate and its data version. Votes are ordered by
/// (last log term, last log index, priority, node id): ids are unique, so
/// there is always exactly one best vote (docs/design/vote-exchange.md);
/// priority only breaks ties between equal data versions
/// (docs/design/membership.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VoteChoice {
    /// The candidate.
    pub candidate: NodeId,
    /// Term of the candidate's last log entry.
    pub last_log_term: Term,
    /// Index of the candidate's last log entry.
    pub last_log_index: LogIndex,
    /// The candidate's priority in its own membership: equal data versions
    /// mean equal logs, so every node orders two candidates alike.
    pub priority: u32,
}

impl VoteChoice {
    fn key(&self) -> (Term, LogIndex, u32, NodeId) {
        (self.last_log_term, self.last_log_index, self.priority, self.candidate)
    }
}

impl PartialOrd for VoteChoice {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for VoteChoice {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

/// Where a `Vote`'s sender stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PeerState {
    /// Exchanging votes.
    Looking,
    /// Following `leader` in the message's term.
    Following {
        /// The leader it follows.
        leader: NodeId,
    },
    /// Leading the message's term.
    Leading,
}

/// Outcome of an `AppendEntries` at the follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppendOutcome {
    /// The follower's log matches the leader's up to and including `match_index`.
    Accepted {
        /// Highest index known to match the leader's log.
        match_index: LogIndex,
    },
    /// The consistency check failed at `prev_log_index`.
    Rejected {
        /// The `prev_log_index` of the rejected request, so that the leader can
        /// ignore stale rejections.
        prev_log_index: LogIndex,
        /// The leader may retry from `hint_index + 1`: the indexes in
        /// `(hint_index, prev_log_index]` do not match, except maybe some of
        /// the run of the follower's conflicting term, which the leader then
        /// sends again (harmless: the follower keeps the entries it has).
        hint_index: LogIndex,
    },
}

impl Body {
    /// A short name for logs, traces and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::RequestVote { pre_vote: true, .. } => "PreVote",
            Body::RequestVote { pre_vote: false, .. } => "RequestVote",
            Body::VoteResponse { pre_vote: true, .. } => "PreVoteResponse",
            Body::VoteResponse { pre_vote: false, .. } => "VoteResponse",
            Body::AppendEntries { entries, .. } if entries.is_empty() => "Heartbeat",
            Body::AppendEntries { .. } => "AppendEntries",
            Body::AppendResponse { .. } => "AppendResponse",
            Body::InstallSnapshot { .. } => "InstallSnapshot",
            Body::SnapshotResponse { .. } => "SnapshotResponse",
            Body::SubjectiveDown { down: true, .. } => "SubjectiveDown",
            Body::SubjectiveDown { down: false, .. } => "SubjectiveUp",
            Body::ObjectiveDown { .. } => "ObjectiveDown",
            Body::Vote { .. } => "Vote",
            Body::Correction { .. } => "Correction",
            Body::Liveness { .. } => "Liveness",
            Body::TimeoutNow => "TimeoutNow",
        }
    }
}

//! Messages exchanged between nodes.
//!
//! Every message carries the cluster id and the sender's id; the receiving node
//! checks both before anything else (DESIGN.md §2, `Node::step`).

use serde::{Deserialize, Serialize};

use crate::entry::Entry;
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
    },
    /// The answer to an `AppendEntries`.
    AppendResponse(AppendOutcome),
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
        /// The leader may retry from `hint_index + 1`: every index in
        /// `(hint_index, prev_log_index]` is known not to match.
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
            Body::AppendResponse(_) => "AppendResponse",
        }
    }
}

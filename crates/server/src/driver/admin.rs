//! Operator requests to the driver (`ADMIN …` on the client port, and the
//! hand-over on SIGTERM): the driver starts them on its node; the caller
//! waits for their outcome on the node's published status, so the driver
//! never waits for anything (docs/operations.md, "Leader transfer" and
//! "Membership changes").

use std::time::Duration;

use conclave_core::{ChangeError, LogIndex, MembershipChange, NodeId, Term, TransferError};
use tokio::sync::{mpsc, oneshot, watch};

use crate::membership::MemberTable;
use crate::status::NodeStatus;

/// What an operator asks of the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminCommand {
    /// Hand leadership over to `target`, or to the most up-to-date member.
    Transfer {
        /// The member that is to lead; `None` for the most up-to-date one.
        target: Option<NodeId>,
    },
    /// The members as the leader sees them (answered from its status).
    Members,
    /// A membership change (docs/design/membership.md).
    Change(MembershipChange),
}

/// `ADMIN MEMBERS` at the leader: every member with its role, priority and
/// addresses and, as the leader sees it, how far its log is and when it was
/// last heard; JSON. `None` on a node that does not lead (only the leader
/// knows the followers).
pub fn members_json(status: &NodeStatus, members: &MemberTable) -> Option<String> {
    if status.role != conclave_core::Role::Leader {
        return None;
    }
    let rows: Vec<serde_json::Value> = members
        .members
        .iter()
        .map(|member| {
            let (match_index, heard_ms_ago) = match status.followers.get(&member.id) {
                Some(follower) => (follower.match_index, Some(follower.heard_ms_ago)),
                None if member.id == status.node_id => (status.last_index, Some(0)),
                None => (0, None), // Not tracked yet.
            };
            serde_json::json!({
                "id": member.id,
                "role": member.role,
                "priority": member.priority,
                "leader": member.id == status.node_id,
                "peer_address": member.peer_address.map(|address| address.to_string()),
                "client_address": member.client_address,
                "http_address": member.http_address,
                "match_index": match_index,
                "lag": status.last_index.saturating_sub(match_index),
                "heard_ms_ago": heard_ms_ago,
            })
        })
        .collect();
    let answer = serde_json::json!({
        "leader": status.node_id,
        "term": status.term,
        "leader_term": status.leader_term,
        "last_index": status.last_index,
        "commit_index": status.commit_index,
        "membership_index": members.index,
        "removed": members.removed,
        "members": rows,
    });
    Some(answer.to_string())
}

/// The redirect of an `ADMIN` command at a node that does not lead: names the
/// leader and, when known, where its clients connect (the CLI follows it).
pub fn not_leader_at(leader: Option<NodeId>, members: &MemberTable) -> String {
    match leader.and_then(|leader| members.client_address(leader).map(|address| (leader, address))) {
        Some((leader, address)) => {
            format!("NOTLEADER this node does not lead; node {leader} does at {address}: send it there")
        }
        None => not_leader(leader),
    }
}

/// A started membership change: where the caller's wait begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChangeAccepted {
    /// Where the change sits in the log.
    pub index: LogIndex,
    /// The leader's term: the change is committed at `index` only in it.
    pub term: Term,
}

/// The end of a membership change that did not commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeFailure {
    /// The node refused it.
    Refused(ChangeError),
    /// The node is stopping.
    ShuttingDown,
    /// The node stopped leading before the change committed.
    LeaderChanged {
        /// Where the change was.
        index: LogIndex,
    },
    /// Not committed within the wait.
    TimedOut {
        /// Where the change is.
        index: LogIndex,
        /// How long it waited.
        waited_ms: u64,
    },
}

impl ChangeFailure {
    /// The RESP error for it; a redirect names the leader's client address
    /// from `members`.
    pub fn describe(&self, members: &MemberTable) -> String {
        match self {
            ChangeFailure::Refused(ChangeError::NotLeader { leader }) => not_leader_at(*leader, members),
            ChangeFailure::Refused(ChangeError::NotYetServing { .. }) => {
                "TRYAGAIN the leader has not committed an entry of its own term yet; retry shortly".to_string()
            }
            ChangeFailure::Refused(error) => format!("ERR membership change refused: {error}"),
            ChangeFailure::ShuttingDown => "TRYAGAIN server is shutting down".to_string(),
            ChangeFailure::LeaderChanged { index } => format!(
                "TRYAGAIN leadership changed before the change at index {index} committed: check ADMIN MEMBERS, then retry"
            ),
            ChangeFailure::TimedOut { index, waited_ms } => format!(
                "TRYAGAIN the change at index {index} did not commit within {waited_ms} ms: check ADMIN MEMBERS"
            ),
        }
    }
}

/// Asks the driver to make `change` and waits, at most `wait`, until it
/// committed at this node, still leading the term that proposed it.
pub async fn change_membership(
    admin: &mpsc::Sender<AdminRequest>,
    mut status: watch::Receiver<NodeStatus>,
    change: MembershipChange,
    wait: Duration,
) -> Result<ChangeAccepted, ChangeFailure> {
    let (reply, answer) = oneshot::channel();
    admin.send(AdminRequest::Change { change, reply }).await.map_err(|_| ChangeFailure::ShuttingDown)?;
    let accepted = answer.await.map_err(|_| ChangeFailure::ShuttingDown)?.map_err(ChangeFailure::Refused)?;
    let waited = tokio::time::timeout(wait, async {
        loop {
            {
                let status = status.borrow_and_update();
                if status.term != accepted.term || status.role != conclave_core::Role::Leader {
                    return Err(ChangeFailure::LeaderChanged { index: accepted.index });
                }
                if status.commit_index >= accepted.index {
                    return Ok(accepted);
                }
            }
            if status.changed().await.is_err() {
                return Err(ChangeFailure::ShuttingDown);
            }
        }
    })
    .await;
    waited.unwrap_or(Err(ChangeFailure::TimedOut { index: accepted.index, waited_ms: wait.as_millis() as u64 }))
}

/// A started transfer: where the caller's wait begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferAccepted {
    /// The member that is to lead.
    pub target: NodeId,
    /// The handing-over leader's term: the new leader's is above it.
    pub term: Term,
    /// Its committed leader term, in modes with leader terms: the new
    /// leader's is above it.
    pub leader_term: Option<u64>,
}

/// A request for the driver to start, with where its answer goes.
pub enum AdminRequest {
    /// A leader transfer.
    Transfer {
        /// The member that is to lead; `None` for the most up-to-date one.
        target: Option<NodeId>,
        /// The answer: the transfer started, or why not.
        reply: oneshot::Sender<Result<TransferAccepted, TransferError>>,
    },
    /// A membership change.
    Change {
        /// The change.
        change: MembershipChange,
        /// The answer: proposed at an index, or why not.
        reply: oneshot::Sender<Result<ChangeAccepted, ChangeError>>,
    },
}

/// The end of a hand-over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandOverError {
    /// The node refused to start it.
    Refused(TransferError),
    /// The node is stopping.
    ShuttingDown,
    /// No new leader within the wait; `status` says where things stand.
    TimedOut {
        /// The target.
        target: NodeId,
        /// How long it waited.
        waited_ms: u64,
        /// The leader this node knows now, if any.
        leader: Option<NodeId>,
    },
}

/// The refusal of an `ADMIN` command at a node that does not lead, naming the
/// leader if it knows one.
pub fn not_leader(leader: Option<NodeId>) -> String {
    HandOverError::Refused(TransferError::NotLeader { leader }).to_string()
}

impl std::fmt::Display for HandOverError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandOverError::Refused(TransferError::NotLeader { leader: Some(leader) }) => {
                write!(formatter, "NOTLEADER this node does not lead; node {leader} does: send it there")
            }
            HandOverError::Refused(TransferError::NotLeader { leader: None }) => {
                write!(formatter, "NOTLEADER this node does not lead and knows no leader now; retry shortly")
            }
            HandOverError::Refused(error) => write!(formatter, "ERR leader transfer refused: {error}"),
            HandOverError::ShuttingDown => write!(formatter, "TRYAGAIN server is shutting down"),
            HandOverError::TimedOut { target, waited_ms, leader } => write!(
                formatter,
                "TRYAGAIN no new leader within {waited_ms} ms of the hand-over to node {target} (leader now: {})",
                leader.map_or("none known".to_string(), |leader| format!("node {leader}"))
            ),
        }
    }
}

/// Where a finished hand-over left the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandedOver {
    /// The new leader.
    pub leader: NodeId,
    /// Its term.
    pub term: Term,
    /// Its committed leader term, in modes with leader terms.
    pub leader_term: Option<u64>,
}

/// Asks the driver to hand over to `target` and waits, at most `wait`, until
/// this node knows another leader of a later term (in modes with leader terms,
/// one whose `BecomeLeader` committed: it serves).
pub async fn hand_over(
    admin: &mpsc::Sender<AdminRequest>,
    mut status: watch::Receiver<NodeStatus>,
    target: Option<NodeId>,
    wait: Duration,
) -> Result<HandedOver, HandOverError> {
    let (reply, answer) = oneshot::channel();
    let request = AdminRequest::Transfer { target, reply };
    admin.send(request).await.map_err(|_| HandOverError::ShuttingDown)?;
    let accepted = answer.await.map_err(|_| HandOverError::ShuttingDown)?.map_err(HandOverError::Refused)?;
    let done = |status: &NodeStatus| {
        let new_leader = status.leader.filter(|leader| *leader != status.node_id)?;
        let established = status.term > accepted.term && status.leader_term >= accepted.leader_term.map(|t| t + 1);
        established.then_some(HandedOver { leader: new_leader, term: status.term, leader_term: status.leader_term })
    };
    let waited = tokio::time::timeout(wait, async {
        loop {
            if let Some(done) = done(&status.borrow_and_update()) {
                return Ok(done);
            }
            if status.changed().await.is_err() {
                return Err(HandOverError::ShuttingDown);
            }
        }
    })
    .await;
    match waited {
        Ok(outcome) => outcome,
        Err(_) => Err(HandOverError::TimedOut {
            target: accepted.target,
            waited_ms: wait.as_millis() as u64,
            leader: status.borrow().leader,
        }),
    }
}

//! What the driver publishes about its node after every input, for `INFO`,
//! the HTTP status endpoint and tests.

use std::collections::BTreeMap;

use conclave_core::{ClusterId, ElectionMode, FollowerStatus, LogIndex, NodeId, Role, Term};
use serde::{Deserialize, Serialize};

/// A snapshot of one node as its driver last saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    /// This node.
    pub node_id: NodeId,
    /// Its cluster.
    pub cluster_id: ClusterId,
    /// The election mode it runs.
    pub election_mode: ElectionMode,
    /// Its role.
    pub role: Role,
    /// Its term (ballot).
    pub term: Term,
    /// The leader it knows, if any.
    pub leader: Option<NodeId>,
    /// Commit index.
    pub commit_index: LogIndex,
    /// Index of the last entry applied to the KV store.
    pub applied_index: LogIndex,
    /// Index of the last log entry.
    pub last_index: LogIndex,
    /// Keys in the KV store.
    pub keys: usize,
    /// Client requests in flight at this node.
    pub pending_requests: usize,
    /// Peer frames dropped from full queues.
    pub dropped_peer_frames: u64,
    /// WAL syncs so far (each covers every output gathered meanwhile: group commit).
    pub wal_syncs: u64,
    /// Leads and takes proposals (a leader-elect does not yet, docs/design/leader-terms.md).
    pub serving: bool,
    /// Where the membership this node acts on sits in its log (0: the
    /// config file's bootstrap membership; docs/design/membership.md).
    pub membership_index: u64,
    /// Whether this node votes in that membership (false for a learner, a
    /// node waiting to join, a removed node).
    pub voter: bool,
    /// The newest committed gapless leader term, if the mode has them.
    pub leader_term: Option<u64>,
    /// The leader term of the newest `BecomeLeader` in the log, committed or not.
    pub leader_term_in_log: Option<u64>,
    /// Term (ballot) of the last log entry: with `last_index`, the node's data version.
    pub last_term: Term,
    /// When leading: each follower's match and next index.
    pub followers: BTreeMap<NodeId, FollowerStatus>,
    /// Peer messages the core dropped, by reason (`DropReason::name`).
    pub dropped: BTreeMap<&'static str, u64>,
    /// The vote exchange this node is in, if any (from its own events; the votes
    /// it received are not exposed by the core).
    pub election: Option<ElectionRound>,
    /// Last index of the newest snapshot saved in the data dir (0 without one).
    pub snapshot_index: LogIndex,
    /// Snapshots of its own KV store this node saved since it started.
    pub snapshots_taken: u64,
    /// Snapshots this node installed from its leader since it started.
    pub snapshots_installed: u64,
    /// Snapshots from the leader refused because their data did not decode.
    pub snapshots_rejected: u64,
    /// The last applied index that is durable in the state machine's store:
    /// the WAL is never compacted beyond it.
    pub durable_applied_index: LogIndex,
    /// How late the driver loop's timers fired at worst since the start, in
    /// milliseconds (a stall of the task that sends heartbeats shows here).
    pub driver_lateness_ms_max: u64,
    /// The state machine's store: `fjall`, `redb` or `memory`.
    pub state_machine_engine: &'static str,
    /// The memory the store may use for its data (the engine's cache), in
    /// bytes; 0 for the in-memory store, which holds all of it.
    pub state_machine_cache_bytes: u64,
}

/// This node's part in an election round, as its events tell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionRound {
    /// The ballot (term) of the round.
    pub ballot: Term,
    /// The candidate this node backs.
    pub candidate: NodeId,
    /// Whether its vote is final and binding.
    pub finalized: bool,
}

impl NodeStatus {
    /// The role as `INFO` prints it (`leader`, `follower`, `precandidate`, …).
    /// Derived from the name so that roles the core adds need no change here.
    pub fn role_name(&self) -> String {
        format!("{:?}", self.role).to_ascii_lowercase()
    }
}

#[cfg(test)]
impl NodeStatus {
    /// A follower of a three-node cluster, for tests.
    pub(crate) fn example() -> NodeStatus {
        NodeStatus {
            node_id: 2,
            cluster_id: 7,
            election_mode: ElectionMode::default(),
            role: Role::Follower,
            term: 3,
            leader: Some(1),
            commit_index: 10,
            applied_index: 10,
            last_index: 11,
            keys: 4,
            pending_requests: 0,
            dropped_peer_frames: 0,
            wal_syncs: 0,
            serving: false,
            membership_index: 0,
            voter: true,
            leader_term: Some(2),
            leader_term_in_log: Some(2),
            last_term: 3,
            followers: BTreeMap::new(),
            dropped: BTreeMap::new(),
            election: None,
            snapshot_index: 8,
            snapshots_taken: 1,
            snapshots_installed: 0,
            snapshots_rejected: 0,
            durable_applied_index: 8,
            driver_lateness_ms_max: 3,
            state_machine_engine: "redb",
            state_machine_cache_bytes: 1 << 28,
        }
    }
}

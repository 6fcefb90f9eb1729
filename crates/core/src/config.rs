//! Node configuration and its validation.

use thiserror::Error;

use crate::election::ElectionMode;
use crate::types::{ClusterId, NodeId};

/// Everything a node needs to know before it starts. Timings are in
/// milliseconds of the driver's clock (virtual in the simulator).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node's id; must be one of `voters` unless `voters` is empty.
    pub id: NodeId,
    /// The cluster this node belongs to; messages from any other are dropped.
    pub cluster_id: ClusterId,
    /// The voters of a brand-new cluster, this node included: its membership
    /// until the log names one (docs/design/membership.md). Empty for a node
    /// that joins an existing cluster: it waits, never campaigning, until a
    /// leader adds it.
    pub voters: Vec<NodeId>,
    /// What a brand-new cluster's membership says of each of `voters` beyond
    /// its id (addresses, priority); a voter missing here has the defaults.
    pub bootstrap_members: std::collections::BTreeMap<NodeId, crate::membership::Member>,
    /// A learner is promoted only when its match index is at most this many
    /// entries behind the leader's last index.
    pub max_promotion_lag: u64,
    /// Which election protocol runs (docs/design/elections.md).
    pub election_mode: ElectionMode,
    /// A leader sends a heartbeat at least this often.
    pub heartbeat_interval_ms: u64,
    /// A follower counts one miss per heartbeat timeout without hearing from its
    /// leader; at least `heartbeat_interval_ms`.
    pub heartbeat_timeout_ms: u64,
    /// Misses after which the leader is down for this node (docs/design/detection.md). The
    /// election timeout is `miss_limit × heartbeat_timeout_ms`; the `raft` mode
    /// draws each timeout from `[T, 2T)` around it.
    pub miss_limit: u32,
    /// `fast` mode: quiet window after a quorum agrees before a vote is final
    /// (docs/design/vote-exchange.md).
    pub finalize_wait_ms: u64,
    /// `fast` mode: the node that leads the first term of a brand-new cluster
    /// without an election (docs/design/cold-start.md). Ignored by a node with durable state.
    pub initial_leader: Option<NodeId>,
    /// With `initial_leader`: for this long after a brand-new member starts, it
    /// waits for the initial leader's cold start instead of campaigning, and
    /// the initial leader keeps gathering every member's confirmation
    /// (docs/design/cold-start.md). Covers members started some time apart;
    /// past it, or once a member reports data, the first term is elected.
    pub cold_start_wait_ms: u64,
    /// `gapless`/`conclave` modes: after granting a vote, no other vote for this
    /// long, whatever the ballot (docs/design/leader-terms.md). Must be below the election
    /// timeout, so that a node can campaign itself once it expired.
    pub vote_lease_ms: u64,
    /// Run a pre-vote round before campaigning (thesis §9.6).
    pub pre_vote: bool,
    /// A leader that hears from no majority for an election timeout steps down,
    /// and a node that heard from a leader within an election timeout ignores
    /// vote requests (thesis §9.6).
    pub check_quorum: bool,
    /// Act on the driver's evidence that the leader's process is gone
    /// ([`crate::Node::peer_process_gone`]) at once, as if the miss counter had
    /// reached `miss_limit`. Off, the evidence is ignored and counted misses are
    /// the only detector.
    pub fast_detection: bool,
    /// At most this many entries go in one `AppendEntries`.
    pub max_entries_per_message: usize,
    /// At most this many payload bytes go in one `AppendEntries` (but always
    /// one entry): a catch-up of large values is cut into messages a follower
    /// takes in one step, not one frame of `max_entries_per_message` of them.
    pub max_bytes_per_message: usize,
    /// Largest command `propose` accepts.
    pub max_command_bytes: usize,
    /// Snapshot data goes to a lagging follower in chunks of at most this many
    /// bytes, one `InstallSnapshot` per chunk (Raft §7).
    pub snapshot_chunk_bytes: usize,
    /// The leader writes its log in parallel with replicating it (Raft thesis
    /// §10.2.1): its `AppendEntries` go in [`crate::Output::early_messages`],
    /// which may leave before the batch is durable, and it counts itself toward
    /// a commit only up to what the driver reported durable with
    /// [`crate::Node::persisted`]. A driver that turns this on must report
    /// every persist; off (the library default), every message waits for its
    /// batch's persist and the leader counts its whole log
    /// (docs/decisions/0068-parallel-leader-persist.md).
    pub parallel_persist: bool,
    /// A follower hands the bytes of a leader's snapshot to its driver chunk
    /// by chunk, as they arrive ([`crate::Output::snapshot_chunks`]), instead
    /// of holding them until the last one: the installed snapshot then comes
    /// without bytes, and the driver installs the ones it staged. For a driver
    /// whose state machine may be larger than memory; off (the library
    /// default), the core holds them (docs/decisions/0090).
    pub stage_snapshot_chunks: bool,
    /// Test-only: remove one safety rule so tests can prove the checkers fire.
    #[cfg(feature = "bug-injection")]
    pub injected_bug: Option<InjectedBug>,
}

/// A safety rule a test can remove (feature `bug-injection` only).
#[cfg(feature = "bug-injection")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectedBug {
    /// Count replicas of entries from earlier terms when advancing the commit
    /// index (breaks Raft §5.4.2).
    CommitPreviousTermEntries,
    /// Grant votes without the "candidate's log is at least as up-to-date" check
    /// (breaks Raft §5.4.1).
    SkipUpToDateCheck,
    /// Grant a vote even after voting for another candidate in the same term
    /// (breaks Raft §5.2, one vote per term).
    VoteMoreThanOncePerTerm,
    /// Release linearizable reads without a quorum confirming the leadership
    /// (breaks Raft thesis §6.4: a deposed leader answers stale reads).
    ReadWithoutLeadershipCheck,
    /// With `parallel_persist`, count the leader's own entries toward a commit
    /// before the driver reported them durable (breaks thesis §10.2.1: a crash
    /// loses an entry that was counted as stored).
    CountUnpersistedOwnEntries,
    /// Count learners toward a commit as if they voted (breaks
    /// docs/design/membership.md: a commit needs a majority of the voters).
    CountLearnersInQuorum,
}

impl Config {
    /// A configuration with the shipped defaults (docs/operations.md) for `id` in a
    /// cluster of `voters`.
    pub fn new(id: NodeId, cluster_id: ClusterId, voters: Vec<NodeId>) -> Config {
        Config {
            id,
            cluster_id,
            voters,
            bootstrap_members: Default::default(),
            max_promotion_lag: 1_000,
            election_mode: ElectionMode::default(),
            heartbeat_interval_ms: 50,
            heartbeat_timeout_ms: 50,
            miss_limit: 5,
            finalize_wait_ms: 100,
            initial_leader: None,
            cold_start_wait_ms: 5_000,
            // 0.8 × the default election timeout of 250 ms (docs/operations.md).
            vote_lease_ms: 200,
            pre_vote: true,
            check_quorum: true,
            fast_detection: true,
            max_entries_per_message: 64,
            max_bytes_per_message: 1 << 20,
            max_command_bytes: 1 << 20,
            snapshot_chunk_bytes: 64 << 10,
            parallel_persist: false,
            stage_snapshot_chunks: false,
            #[cfg(feature = "bug-injection")]
            injected_bug: None,
        }
    }

    /// Checks every field; the error names the field and says what is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == 0 {
            return Err(ConfigError::Invalid { key: "id", reason: "0 is reserved for \"nobody\"".into() });
        }
        let mut sorted = self.voters.clone();
        sorted.sort_unstable();
        if let Some(pair) = sorted.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(ConfigError::Invalid { key: "voters", reason: format!("node {} is listed twice", pair[0]) });
        }
        if sorted.contains(&0) {
            return Err(ConfigError::Invalid { key: "voters", reason: "0 is reserved for \"nobody\"".into() });
        }
        if !self.voters.is_empty() && !self.voters.contains(&self.id) {
            return Err(ConfigError::Invalid {
                key: "id",
                reason: format!("node {} is not among the voters {:?}", self.id, self.voters),
            });
        }
        if self.heartbeat_interval_ms == 0 {
            return Err(ConfigError::Invalid { key: "heartbeat_interval_ms", reason: "must be greater than 0".into() });
        }
        if self.heartbeat_timeout_ms < self.heartbeat_interval_ms {
            return Err(ConfigError::Invalid {
                key: "heartbeat_timeout_ms",
                reason: format!(
                    "{} ms is below heartbeat_interval_ms ({} ms): followers would count misses between heartbeats",
                    self.heartbeat_timeout_ms, self.heartbeat_interval_ms
                ),
            });
        }
        if self.miss_limit < 2 {
            return Err(ConfigError::Invalid {
                key: "miss_limit",
                reason: format!("{} is too small: at least 2 missed heartbeats make a leader down", self.miss_limit),
            });
        }
        if self.finalize_wait_ms == 0 {
            return Err(ConfigError::Invalid { key: "finalize_wait_ms", reason: "must be greater than 0".into() });
        }
        if self.election_mode.has_leader_terms() {
            if self.vote_lease_ms == 0 {
                return Err(ConfigError::Invalid { key: "vote_lease_ms", reason: "must be greater than 0".into() });
            }
            if self.vote_lease_ms >= self.election_timeout_ms() {
                return Err(ConfigError::Invalid {
                    key: "vote_lease_ms",
                    reason: format!(
                        "{} ms is not below the election timeout ({} ms = miss_limit × heartbeat_timeout_ms): a \
                         node could not vote for itself when its own election timer fires",
                        self.vote_lease_ms,
                        self.election_timeout_ms()
                    ),
                });
            }
        }
        if let Some(initial_leader) = self.initial_leader {
            if !self.voters.contains(&initial_leader) {
                return Err(ConfigError::Invalid {
                    key: "initial_leader",
                    reason: format!("node {initial_leader} is not among the voters {:?}", self.voters),
                });
            }
        }
        if self.max_entries_per_message == 0 {
            return Err(ConfigError::Invalid {
                key: "max_entries_per_message",
                reason: "must be greater than 0".into(),
            });
        }
        if self.max_bytes_per_message == 0 {
            return Err(ConfigError::Invalid { key: "max_bytes_per_message", reason: "must be greater than 0".into() });
        }
        if self.max_command_bytes == 0 {
            return Err(ConfigError::Invalid { key: "max_command_bytes", reason: "must be greater than 0".into() });
        }
        if self.snapshot_chunk_bytes == 0 {
            return Err(ConfigError::Invalid {
                key: "snapshot_chunk_bytes",
                reason: "must be greater than 0: a snapshot could never be sent".into(),
            });
        }
        Ok(())
    }

    /// The election timeout: `miss_limit` heartbeat timeouts (docs/design/detection.md, docs/operations.md).
    pub fn election_timeout_ms(&self) -> u64 {
        self.heartbeat_timeout_ms * u64::from(self.miss_limit)
    }

    /// Whether the node joins an existing cluster rather than bootstrapping
    /// one (`voters` is empty).
    pub fn joins(&self) -> bool {
        self.voters.is_empty()
    }
}

/// A configuration that cannot run.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// `key` holds a value that cannot work.
    #[error("invalid config `{key}`: {reason}")]
    Invalid {
        /// The offending key.
        key: &'static str,
        /// Why it is refused.
        reason: String,
    },
}

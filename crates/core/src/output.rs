//! What one input produces: the batch a driver must act on.

use serde::{Deserialize, Serialize};

use crate::entry::Entry;
use crate::message::Message;
use crate::snapshot::{Snapshot, SnapshotChunk};
use crate::status::Role;
use crate::types::{LogIndex, NodeId, Term};

/// The state Raft requires on stable storage before a node answers anyone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HardState {
    /// Latest term the node has seen.
    pub term: Term,
    /// Candidate voted for in `term`, if any.
    pub voted_for: Option<NodeId>,
    /// Highest index known committed, capped at the entries persisted by earlier
    /// batches (never the entries of this batch's own `log_write`, which a crash
    /// may lose while keeping this record). Raft does not need it persisted; it
    /// lets a restarted node re-apply its committed prefix at once. With
    /// `Config::parallel_persist` a commit advance alone is not handed out:
    /// it rides along with the next term, vote or log change.
    pub commit: LogIndex,
}

/// A rewrite of the persisted log's tail.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LogWrite {
    /// Remove every persisted entry at this index or above, then append `entries`.
    /// Usually `first_index` is the old last index + 1 (a plain append); a lower
    /// value is a conflict truncation (Raft §5.3) and must be durable too.
    pub first_index: LogIndex,
    /// Entries from `first_index` on, contiguous. Empty for a pure truncation.
    pub entries: Vec<Entry>,
}

/// What a batch made durable, as the core names it: the last entry of the log
/// once the batch (and every earlier one) is on disk (its snapshot's, for a
/// snapshot), in the log as it stood between two rewrites, and the term of
/// the hard state written so far. Opaque to the driver, which only hands it
/// back to `Node::persisted`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DurableMark {
    /// Index of the last entry written.
    pub index: LogIndex,
    /// Its term.
    pub term: Term,
    /// How many times the log had been rewritten below its end (conflict
    /// truncations, installed snapshots) when the batch was made: a report
    /// from before a later rewrite says nothing about the rewritten log.
    pub rewrites: u64,
    /// The term of the newest hard state handed out with or before this batch:
    /// durable once the batch is.
    pub hard_state_term: Term,
}

/// A linearizable read the leader confirmed (ReadIndex, Raft thesis §6.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReadState {
    /// The context given to `Node::read_index`.
    pub context: u64,
    /// Serve the read from the state machine once it has applied this index.
    pub index: LogIndex,
}

/// Something observable that happened while handling the input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// The node's role changed.
    RoleChanged {
        /// The role it left.
        from: Role,
        /// The role it took.
        to: Role,
        /// Its term after the change.
        term: Term,
    },
    /// The node learned who leads `term`, or that nobody it knows does (`None`).
    LeaderChanged {
        /// The leader, if known.
        leader: Option<NodeId>,
        /// The term this applies to.
        term: Term,
    },
    /// The node started a (pre-)election round.
    ElectionStarted {
        /// The term campaigned for.
        term: Term,
        /// True for a pre-vote round, which changes no term.
        pre_vote: bool,
    },
    /// A leader stepped down because no majority answered for an election timeout.
    QuorumLost {
        /// The term it led.
        term: Term,
    },
    /// This node concluded that its `leader` is gone, and `detector` says how:
    /// counted missed heartbeats, or its transport's evidence that the leader's
    /// process is gone. In `fast`/`conclave` the `SubjectivelyDown` follows; in
    /// `raft`/`gapless` a campaign (pre-vote first) follows.
    FailureDetected {
        /// The leader concerned.
        leader: NodeId,
        /// Its term.
        term: Term,
        /// Which detector fired.
        detector: Detector,
    },
    /// `fast` mode: this node lost its link to `leader` (docs/design/detection.md).
    SubjectivelyDown {
        /// The leader concerned.
        leader: Option<NodeId>,
        /// Its term.
        term: Term,
    },
    /// `fast` mode: a majority holds `leader` down; the election starts.
    ObjectivelyDown {
        /// The leader concerned.
        leader: Option<NodeId>,
        /// Its term.
        term: Term,
    },
    /// `fast` mode: this node's vote in the round for `ballot` changed.
    VoteChanged {
        /// The round.
        ballot: Term,
        /// The candidate now backed.
        candidate: NodeId,
    },
    /// `fast` mode: this node's vote became final and binding (persisted in this batch).
    VoteFinalized {
        /// The term it binds.
        ballot: Term,
        /// The candidate voted for.
        candidate: NodeId,
    },
    /// `fast` mode: a node that started from an empty data dir learned the cluster
    /// is at `term`; it abstains from voting in that term (docs/design/cold-start.md).
    AbstainedAfterDataLoss {
        /// The term it joined.
        term: Term,
    },
    /// `fast` mode: this node left its round and follows `leader` of `term`
    /// again, since a quorum hears that leader before any vote bound
    /// (docs/decisions/0080-a-round-yields-to-a-leader-a-majority-hears-again.md).
    RoundAbandoned {
        /// The leader it follows again.
        leader: NodeId,
        /// That leader's term (its ballot), unchanged.
        term: Term,
    },
    /// `gapless`/`conclave`: this node won `ballot` and appended its
    /// `BecomeLeader` for `leader_term`; it serves once that entry commits.
    LeaderElect {
        /// The ballot won.
        ballot: Term,
        /// The leader term it claims.
        leader_term: u64,
    },
    /// `gapless`/`conclave`: a leader-elect's `BecomeLeader` did not commit within
    /// an election timeout; it stepped down.
    LeaderElectGaveUp {
        /// The ballot it had won.
        ballot: Term,
        /// The leader term it had claimed.
        leader_term: u64,
    },
    /// `gapless`/`conclave`: a `BecomeLeader` entry committed: `leader` leads
    /// `leader_term` (elected at `ballot`). Its leader starts serving.
    LeaderTermCommitted {
        /// The gapless leader term.
        leader_term: u64,
        /// Its leader.
        leader: NodeId,
        /// The ballot of the entry.
        ballot: Term,
    },
    /// `fast` mode: enough corrections named `leader` of `term`; this node follows it.
    Corrected {
        /// The leader it now follows.
        leader: NodeId,
        /// Its term.
        term: Term,
    },
    /// The leader of `term` began handing its leadership to `target`
    /// (`Node::transfer_leadership`); it refuses proposals meanwhile.
    TransferStarted {
        /// The voter that is to lead.
        target: NodeId,
        /// The leader's term.
        term: Term,
    },
    /// The target holds the leader's log: the leader sent it `TimeoutNow`.
    TransferHandedOver {
        /// The voter that is to lead.
        target: NodeId,
        /// The leader's term.
        term: Term,
    },
    /// A transfer at this leader ended: it saw a newer term (`new_leader`, if
    /// known), or it gave up after an election timeout (`None`, and it takes
    /// proposals again).
    TransferEnded {
        /// The voter that was to lead.
        target: NodeId,
        /// This node's term now.
        term: Term,
        /// The leader of that term, if known.
        new_leader: Option<NodeId>,
    },
    /// The membership this node acts on changed (docs/design/membership.md):
    /// an entry appended or received, a truncation, or a snapshot.
    MembershipChanged {
        /// Where the membership sits in the log (0: the bootstrap membership).
        index: LogIndex,
        /// The voters now.
        voters: Vec<NodeId>,
        /// The learners now.
        learners: Vec<NodeId>,
    },
}

/// Which failure detector made a node give up on its leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// `miss_limit` heartbeat timeouts passed without a heartbeat
    /// (docs/design/detection.md; in `raft` mode the randomized election timeout).
    Misses,
    /// The driver's transport found the leader's process gone: its host
    /// refused a connection to the leader's peer port ([`crate::Node::peer_process_gone`]).
    ProcessGone,
}

impl Detector {
    /// Every detector, in report order.
    pub const ALL: [Detector; 2] = [Detector::Misses, Detector::ProcessGone];

    /// The name used in logs, metrics and reports.
    pub fn name(self) -> &'static str {
        match self {
            Detector::Misses => "misses",
            Detector::ProcessGone => "process_gone",
        }
    }
}

/// One batch of work for the driver, produced by every input.
///
/// # Contract: persist before send
/// The driver handles the fields **in this order**:
/// 0. `snapshot_chunks` (only with `Config::stage_snapshot_chunks`) are staged
///    at once; the snapshot they make up is installed into the state machine,
///    durably, before `snapshot` is persisted.
/// 1. `snapshot` (if any) is made durable first, then `hard_state` and
///    `log_write` (one write and one sync may cover several batches: group
///    commit). A crash before that sync must lose the whole batch, including its
///    messages. The snapshot goes first because this batch's hard state already
///    counts its last index as committed.
/// 2. Only then are `messages` sent. A vote or an acknowledgement sent before its
///    state is durable could be forgotten by a crash, letting a node vote twice
///    or a leader count an entry that is gone.
///
///    The exception is `early_messages` (only with `Config::parallel_persist`):
///    a leader's `AppendEntries`, heartbeats and snapshot chunks, sent at once,
///    before this batch's persist and any earlier one still in flight
///    (Raft thesis §10.2.1). They are safe to send early because the leader's
///    term is already durable (the core puts a message there only once an entry
///    of the current term was reported durable) and the leader counts its own
///    entries toward a commit only once the driver reports them durable: after
///    persisting a batch (and every earlier one) whose `durable_mark` is set,
///    the driver calls `Node::persisted` with it. A follower's answer to a
///    heartbeat goes there too, once its current term was reported durable: it
///    claims only entries already reported durable (the full answer, if it
///    claims more, follows in `messages`), so a slow sync or a snapshot being
///    installed does not silence the follower to its leader
///    (docs/decisions/0092).
/// 3. Only then is the state machine replaced by `snapshot.data` (if any), and
///    then `committed_entries` applied to it, in order. They are always a prefix
///    of the persisted log, following the snapshot.
/// 4. Then `read_states` may be served: each once the state machine has
///    applied its `index` (at once if it already has), and `failed_reads`
///    answered with a retryable error (the node stopped leading; the reads
///    may go to the new leader). Neither depends on this batch's persist.
/// 5. `events` are informational (logs, metrics, the simulator's checks).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use = "an output batch must be persisted, sent and applied"]
pub struct Output {
    /// New hard state to persist, if it changed since the previous batch.
    pub hard_state: Option<HardState>,
    /// Log tail to persist, if the log changed since the previous batch.
    pub log_write: Option<LogWrite>,
    /// Messages to send once the above is durable. Delivery may be lossy,
    /// duplicated and reordered: the protocol tolerates all three.
    pub messages: Vec<Message>,
    /// Set when the batch writes log entries or a snapshot (with
    /// `Config::parallel_persist`, also when it writes only a hard state):
    /// once the batch is durable, hand it to `Node::persisted` (required with
    /// `Config::parallel_persist`, harmless without).
    pub durable_mark: Option<DurableMark>,
    /// Messages that need not wait for any persist: send them at once (see the
    /// contract above). Always empty without `Config::parallel_persist`.
    pub early_messages: Vec<Message>,
    /// Newly committed entries to apply, in index order, after persisting.
    pub committed_entries: Vec<Entry>,
    /// A snapshot this node installed from its leader (Raft §7): persist it
    /// before anything else in the batch (the storage keeps the log entries
    /// after its last index only if it holds that entry with its term, exactly
    /// as the core did), and, once the batch is durable, replace the state
    /// machine with its data before applying `committed_entries`.
    pub snapshot: Option<Snapshot>,
    /// With `Config::stage_snapshot_chunks`: chunks of a leader's snapshot,
    /// to stage at once, in order, before anything else of the batch (they
    /// need no persist: a crash loses the transfer, and the follower answers
    /// the leader from 0). When `snapshot` then comes, its data is empty: the
    /// state to install is what the chunks of its transfer staged, and the
    /// driver must install it durably before it persists `snapshot` (the log's
    /// new base), or a crash in between would leave a base the state machine
    /// does not reach.
    pub snapshot_chunks: Vec<SnapshotChunk>,
    /// The leader must send a follower entries its log compacted without
    /// snapshot bytes (`Node::compact_log`) and holds no snapshot that
    /// reaches its log's base: make one of the state machine at its applied
    /// index, off the task that drives the node, and hand it to
    /// `Node::offer_snapshot`. Asked again while the need lasts; one snapshot
    /// in the making answers every ask.
    pub snapshot_wanted: bool,
    /// Linearizable reads confirmed by a quorum (see `Node::read_index`).
    pub read_states: Vec<ReadState>,
    /// Contexts of reads this node held when it stopped leading: they will not
    /// be confirmed here.
    pub failed_reads: Vec<u64>,
    /// What happened, for observers.
    pub events: Vec<Event>,
}

impl Output {
    /// True if the driver has nothing to do.
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && self.log_write.is_none()
            && self.snapshot.is_none()
            && self.snapshot_chunks.is_empty()
            && !self.snapshot_wanted
            && self.messages.is_empty()
            && self.early_messages.is_empty()
            && self.committed_entries.is_empty()
            && self.read_states.is_empty()
            && self.failed_reads.is_empty()
            && self.events.is_empty()
    }

    /// True if something must be made durable before the messages go out.
    pub fn needs_persist(&self) -> bool {
        self.hard_state.is_some() || self.log_write.is_some() || self.snapshot.is_some()
    }
}

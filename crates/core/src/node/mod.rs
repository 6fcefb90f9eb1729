//! The node: one member's protocol state machine.
//!
//! Inputs are [`Node::tick`], [`Node::step`] and [`Node::propose`]; each returns
//! one [`Output`] batch. The node reads no clock (time arrives as `now_ms`),
//! does no I/O and draws randomness only from the RNG it was given.
//!
//! Submodules split the work by job: `inbound` screens every message and applies
//! the shared term rules, `replication` is log replication and commit, `roles`
//! holds the role transitions, and `crate::election` decides when and how to
//! campaign.

mod fingerprint;
mod inbound;
mod membership;
mod read_index;
mod replication;
mod roles;
mod snapshot;
mod transfer;
mod validate;

pub use membership::ChangeError;
pub use read_index::ReadIndexError;
pub use transfer::{TransferError, TransferStarted};

use std::collections::BTreeMap;

use rand_chacha::ChaCha8Rng;
use thiserror::Error;

use crate::config::{Config, ConfigError};
use crate::entry::{Entry, Payload};
use crate::log::RaftLog;
use crate::message::{Body, Message};
use crate::output::{DurableMark, Event, HardState, Output};
use crate::progress::{Progress, ProgressState};
use crate::quorum::VoteTally;
use crate::snapshot::{Snapshot, SnapshotMeta};
use crate::status::{DropCounters, FollowerStatus, Role, Status};
use crate::types::{LogIndex, NodeId, Term};

/// What a node finds in durable storage when it starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoredState {
    /// The last persisted hard state (all zero for a new node). A `commit` past
    /// the end of `entries` is lowered to it (see `Node::new`).
    pub hard_state: HardState,
    /// The persisted log, contiguous from index 1, or from the snapshot's last
    /// index + 1 if there is a snapshot.
    pub entries: Vec<Entry>,
    /// The latest persisted snapshot, if the log was compacted (Raft §7). The
    /// driver restores its state machine from `data` itself; the core keeps the
    /// bytes only to send them to followers that need them.
    pub snapshot: Option<Snapshot>,
}

/// Why a node cannot start.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The restored state is inconsistent; starting would risk safety.
    #[error("restored state is inconsistent: {0}")]
    Restore(String),
}

/// Why [`Node::compact`] refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CompactError {
    /// The state machine cannot have been snapshotted beyond what it was given.
    #[error("cannot compact up to index {upto_index}: only entries up to {applied} were handed out to be applied")]
    BeyondApplied {
        /// The index asked for.
        upto_index: LogIndex,
        /// The highest index handed out in `committed_entries`.
        applied: LogIndex,
    },
    /// The log is already compacted that far: the snapshot would be older.
    #[error("cannot compact up to index {upto_index}: the log is already compacted up to {snapshot_index}")]
    NotNewer {
        /// The index asked for.
        upto_index: LogIndex,
        /// The current snapshot's last index.
        snapshot_index: LogIndex,
    },
}

/// Why a proposal was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProposeError {
    /// Only the leader appends; `leader` is the one this node knows, if any.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// Where to send the proposal instead.
        leader: Option<NodeId>,
    },
    /// This node won its ballot but its `BecomeLeader` entry has not committed
    /// yet (`gapless`, `conclave`): retry shortly, or elsewhere if it gives up.
    #[error("leader-elect of ballot {ballot}: it serves once its BecomeLeader entry commits")]
    NotYetServing {
        /// The ballot it won.
        ballot: Term,
    },
    /// The leader is handing over to `target` (`Node::transfer_leadership`):
    /// retry shortly, at the new leader.
    #[error("handing leadership over to node {target}")]
    Transferring {
        /// The voter that is to lead.
        target: NodeId,
    },
    /// The command exceeds `max_command_bytes`.
    #[error("command of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size of the refused command.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
}

/// An accepted proposal: where it sits in the log, and the batch it produced.
#[derive(Debug)]
pub struct Proposal {
    /// Index of the new entry.
    pub index: LogIndex,
    /// Term of the new entry; the entry is committed at `index` only with this term.
    pub term: Term,
    /// The batch to persist and send.
    pub output: Output,
}

/// What [`Node::propose_batch`] did with each command, and the one batch it
/// produced for all of them.
#[derive(Debug)]
pub struct BatchProposal {
    /// Term of the new entries.
    pub term: Term,
    /// Per command, in order: the index of its entry, or why it was refused.
    pub results: Vec<Result<LogIndex, ProposeError>>,
    /// The batch to persist and send.
    pub output: Output,
}

/// One member of a cluster.
///
/// `Clone` forks the state machine (a model checker explores both copies); a
/// driver must run only one copy of a member, or it votes twice.
#[derive(Clone, Debug)]
pub struct Node {
    pub(crate) config: Config,
    pub(crate) rng: ChaCha8Rng,
    /// Latest time given by the driver; never moves back.
    pub(crate) now_ms: u64,
    // Persistent state (Raft Figure 2).
    pub(crate) term: Term,
    pub(crate) voted_for: Option<NodeId>,
    pub(crate) log: RaftLog,
    // Volatile state.
    pub(crate) role: Role,
    pub(crate) leader: Option<NodeId>,
    pub(crate) election_deadline_ms: u64,
    /// When the known leader was last heard from (for the CheckQuorum lease).
    pub(crate) last_leader_contact_ms: Option<u64>,
    /// Votes in the current (pre-)election round.
    pub(crate) votes: VoteTally,
    // Leader state; empty unless leading.
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    pub(crate) heartbeat_deadline_ms: u64,
    pub(crate) quorum_check_deadline_ms: u64,
    pub(crate) dropped: DropCounters,
    /// The batch being built by the current input.
    pub(crate) out: Output,
    /// The hard state last handed out for persisting.
    pub(crate) persisted_hard_state: HardState,
    /// The last index of the log as handed out for persisting so far (equal to
    /// the log's last index between inputs).
    pub(crate) persisted_last_index: LogIndex,
    /// The longest prefix of the log the driver reported durable
    /// ([`Node::persisted`]); what a leader counts for itself toward a commit
    /// with `parallel_persist`. Lowered when the log is rewritten below it.
    pub(crate) durable_index: LogIndex,
    /// The newest term the driver reported durable (with a [`DurableMark`]):
    /// a follower whose current term is durable answers heartbeats at once.
    pub(crate) durable_term: Term,
    /// Rewrites of the log below its end so far (see [`DurableMark`]).
    pub(crate) log_rewrites: u64,
    /// State of the `fast` election mode (idle in other modes).
    pub(crate) fast: crate::election::fast::FastState,
    /// A leader that may take proposals: at once in `raft` and `fast`; in modes
    /// with leader terms only once its `BecomeLeader` committed (docs/design/leader-terms.md).
    /// False whenever the node does not lead.
    pub(crate) serving: bool,
    /// State of the gapless leader-term rules (idle in modes without them).
    pub(crate) terms: crate::election::leader_terms::LeaderTermsState,
    /// The latest snapshot with its data, to send to followers that need it.
    pub(crate) snapshot: Option<Snapshot>,
    /// Leader: the snapshot each follower in a transfer is being sent.
    pub(crate) outgoing_snapshots: BTreeMap<NodeId, Snapshot>,
    /// A snapshot being received from the leader, chunk by chunk. Volatile: a
    /// restart loses it and the leader starts again from byte 0.
    pub(crate) incoming_snapshot: Option<snapshot::IncomingSnapshot>,
    /// Leader: linearizable reads waiting for confirmation (`read_index`).
    pub(crate) reads: read_index::ReadIndexState,
    /// Leader: a hand-over in progress (`transfer`).
    pub(crate) transfer: Option<transfer::Transfer>,
    /// The membership of a brand-new cluster, from the configuration: what
    /// the node acts on until its log names one.
    pub(crate) bootstrap: crate::membership::Membership,
    /// The latest membership in the log (or `bootstrap`): the one acted on.
    pub(crate) membership: crate::membership::Membership,
    /// Where `membership` comes from: (index, term) of its entry, the
    /// snapshot's last entry, or (0, 0) for the bootstrap.
    pub(crate) membership_at: (LogIndex, Term),
    /// `membership`'s voters, ascending: every quorum counts these.
    pub(crate) voters: Vec<NodeId>,
    /// A leader of priority 0 tries no hand-over before this time.
    pub(crate) priority_handover_after_ms: u64,
}

impl Node {
    /// Starts a node from `restored` (empty for a brand-new node) at time `now_ms`.
    pub fn new(config: Config, restored: RestoredState, rng: ChaCha8Rng, now_ms: u64) -> Result<Node, StartError> {
        config.validate()?;
        let restored_empty = restored == RestoredState::default();
        let RestoredState { hard_state, entries, snapshot } = restored;
        if let Some(snapshot) = &snapshot {
            snapshot::check_restored(&config, &hard_state, snapshot, &entries).map_err(StartError::Restore)?;
        }
        // A snapshot without bytes records only where the log begins
        // (`Node::compact_log`): there is nothing of it to send.
        let sendable = snapshot.clone().filter(|snapshot| !snapshot.data.is_empty());
        // The commit index is advisory: a crash between a batch's hard-state write
        // and its log write can leave it past the log's end. Lower it; the leader
        // tells the node again. A snapshot only covers committed entries, so the
        // commit index is at least its last index.
        let base = snapshot.as_ref().map_or(0, |snapshot| snapshot.meta.last_included_index);
        let commit = hard_state.commit.min(base + entries.len() as LogIndex);
        let log = match &snapshot {
            Some(snapshot) => RaftLog::restore_with_snapshot(snapshot.meta.clone(), entries, commit),
            None => RaftLog::restore(entries, commit, 0),
        };
        log.validate_entries().map_err(StartError::Restore)?;
        if log.last_term() > hard_state.term {
            return Err(StartError::Restore(format!(
                "last entry has term {} beyond the persisted term {}",
                log.last_term(),
                hard_state.term
            )));
        }
        let bootstrap = crate::membership::Membership::bootstrap(&config.voters, &config.bootstrap_members);
        if let Some((index, membership)) = log.latest_membership() {
            membership
                .check()
                .map_err(|problem| StartError::Restore(format!("membership at index {index}: {problem}")))?;
        }
        let log_last_index = log.last_index();
        let mut node = Node {
            config,
            rng,
            now_ms,
            term: hard_state.term,
            voted_for: hard_state.voted_for,
            log,
            role: Role::Follower,
            leader: None,
            election_deadline_ms: now_ms,
            last_leader_contact_ms: None,
            votes: VoteTally::default(),
            progress: BTreeMap::new(),
            heartbeat_deadline_ms: now_ms,
            quorum_check_deadline_ms: now_ms,
            dropped: DropCounters::default(),
            out: Output::default(),
            persisted_hard_state: hard_state,
            persisted_last_index: log_last_index,
            durable_index: log_last_index,
            durable_term: hard_state.term,
            log_rewrites: 0,
            fast: Default::default(),
            serving: false,
            terms: crate::election::leader_terms::LeaderTermsState { restored_commit: commit, ..Default::default() },
            snapshot: sendable,
            outgoing_snapshots: BTreeMap::new(),
            incoming_snapshot: None,
            reads: Default::default(),
            transfer: None,
            membership: bootstrap.clone(),
            voters: bootstrap.voters(),
            bootstrap,
            membership_at: (0, 0),
            priority_handover_after_ms: 0,
        };
        node.refresh_membership();
        // Not a change: what the node starts with.
        node.out.events.clear();
        node.reset_election_timer();
        node.on_start(restored_empty);
        node.assert_valid();
        Ok(node)
    }

    /// Advances the node's clock to `now_ms` and fires whatever timer is due.
    pub fn tick(&mut self, now_ms: u64) -> Output {
        debug_assert!(now_ms >= self.now_ms, "time went back from {} to {now_ms}", self.now_ms);
        self.now_ms = self.now_ms.max(now_ms);
        if self.role == Role::Leader {
            self.leader_elect_timer();
        }
        if self.role == Role::Leader {
            self.check_transfer_deadline();
            if self.now_ms >= self.quorum_check_deadline_ms {
                self.check_quorum();
            }
            if self.role == Role::Leader {
                self.check_quorum_contact();
            }
            if self.role == Role::Leader && self.now_ms >= self.heartbeat_deadline_ms {
                self.broadcast_heartbeat();
                self.leave_priority_zero();
            }
        } else if self.now_ms >= self.election_deadline_ms() {
            self.on_election_timer();
        }
        self.finish()
    }

    /// Handles one message from a peer.
    pub fn step(&mut self, message: Message) -> Output {
        self.handle_message(message);
        self.finish()
    }

    /// Evidence from the driver's transport that `peer`'s *process* is gone: a
    /// connection to its peer port was reset and a redial was refused (its host
    /// answers, nothing listens). If `peer` is this node's leader (and
    /// `fast_detection` is on), the leader is down for this node at once,
    /// exactly as if `miss_limit` heartbeats had been missed: in `fast` and
    /// `conclave` it sends its SDOWN report (objective down still needs a
    /// majority of reports); in `raft` and `gapless` it campaigns within a
    /// heartbeat timeout (pre-vote first). Hearing the leader again retracts it,
    /// as after misses. About any other node, or when off, it changes nothing.
    ///
    /// Timeouts, unreachable hosts and resets whose redial succeeds are no such
    /// evidence: the driver must not call this for them (docs/decisions/0050).
    pub fn peer_process_gone(&mut self, peer: NodeId) -> Output {
        if self.config.fast_detection && peer != self.config.id {
            self.on_peer_process_gone(peer);
        }
        self.finish()
    }

    /// The driver made the batch that carried `mark` durable, after every
    /// earlier batch ([`Output::durable_mark`]). With `parallel_persist`, a
    /// leader counts itself toward a commit only up to what was reported here.
    /// A mark from before a later rewrite of the log changes nothing: the
    /// batch of the rewrite brings its own. Without `parallel_persist` it is
    /// optional.
    pub fn persisted(&mut self, mark: DurableMark) -> Output {
        debug_assert!(mark.hard_state_term <= self.term, "a reported term was handed out");
        self.durable_term = self.durable_term.max(mark.hard_state_term);
        if mark.rewrites == self.log_rewrites && mark.index > self.durable_index && mark.index <= self.log.last_index()
        {
            debug_assert!(self.log.term_at(mark.index).is_none_or(|term| term == mark.term));
            self.durable_index = mark.index;
            if self.role == Role::Leader {
                self.maybe_commit();
            }
        }
        self.finish()
    }

    /// Appends `command` to the log if this node leads.
    pub fn propose(&mut self, command: impl Into<bytes::Bytes>) -> Result<Proposal, ProposeError> {
        let command: bytes::Bytes = command.into();
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { leader: self.leader });
        }
        if !self.serving {
            return Err(ProposeError::NotYetServing { ballot: self.term });
        }
        if let Some(transfer) = &self.transfer {
            return Err(ProposeError::Transferring { target: transfer.target });
        }
        if command.len() > self.config.max_command_bytes {
            return Err(ProposeError::TooLarge { size: command.len(), limit: self.config.max_command_bytes });
        }
        let index = self.append_as_leader(Payload::Command(command));
        Ok(Proposal { index, term: self.term, output: self.finish() })
    }

    /// Proposes `commands` as consecutive entries, as [`Node::propose`] does
    /// each, but with one output for all: each follower gets the new entries
    /// in as few `AppendEntries` as the limits allow, not one message per
    /// command (a pipelined client's burst is one batch). A command that is
    /// too large is refused alone; when this node cannot take proposals,
    /// every command is refused and nothing changes.
    pub fn propose_batch(&mut self, commands: impl IntoIterator<Item = bytes::Bytes>) -> BatchProposal {
        let refusal = if self.role != Role::Leader {
            Some(ProposeError::NotLeader { leader: self.leader })
        } else if !self.serving {
            Some(ProposeError::NotYetServing { ballot: self.term })
        } else {
            self.transfer.as_ref().map(|transfer| ProposeError::Transferring { target: transfer.target })
        };
        let mut results = Vec::new();
        let mut appended = false;
        for command in commands {
            if let Some(refusal) = &refusal {
                results.push(Err(refusal.clone()));
                continue;
            }
            if command.len() > self.config.max_command_bytes {
                results.push(Err(ProposeError::TooLarge { size: command.len(), limit: self.config.max_command_bytes }));
                continue;
            }
            results.push(Ok(self.append_entry_as_leader(Payload::Command(command))));
            appended = true;
        }
        if appended {
            self.replicate_new_entries();
        }
        BatchProposal { term: self.term, results, output: self.finish() }
    }

    /// The driver saved the snapshot up to `index` and hands its bytes back
    /// from where they now live (the mapped file): the same bytes, held once
    /// instead of in memory too. False, and nothing changes, if the core's
    /// snapshot is another one by now. The core never reads the bytes, so
    /// only their length is checked.
    pub fn replace_snapshot_data(&mut self, index: LogIndex, data: bytes::Bytes) -> bool {
        let Some(snapshot) = self.snapshot.as_mut().filter(|held| held.meta.last_included_index == index) else {
            return false;
        };
        assert_eq!(snapshot.data.len(), data.len(), "the bytes of the same snapshot");
        snapshot.data = data.clone();
        for outgoing in self.outgoing_snapshots.values_mut() {
            if outgoing.meta.last_included_index == index && outgoing.data.len() == data.len() {
                outgoing.data = data.clone();
            }
        }
        true
    }

    /// Compaction (Raft §7): the driver snapshotted its state machine after
    /// applying every entry up to `upto_index`, into `data`. The core drops those
    /// entries from memory and keeps the snapshot to send to followers that need
    /// them. Returns the snapshot, which the driver must persist (its storage's
    /// snapshot) before reclaiming the entries' space. Nothing in the log's
    /// persisted state changes, so there is no output batch.
    ///
    /// `upto_index` must have been handed out in `committed_entries` (and
    /// applied by the driver), and be above the current snapshot's last index.
    pub fn compact(&mut self, upto_index: LogIndex, data: impl Into<bytes::Bytes>) -> Result<Snapshot, CompactError> {
        // Empty bytes compact as `Node::compact_log` does.
        self.compact_with(upto_index, data.into()).map(|(snapshot, _)| snapshot)
    }

    /// Compaction without snapshot bytes, for a driver whose state machine is
    /// durable on its own (an embedded engine that records its applied index
    /// with the data): the entries up to `upto_index`, which the state machine
    /// holds durably, leave the log and nothing is encoded. Returns the
    /// snapshot to persist, whose `data` is empty: it records only the log's
    /// new base. A follower that later needs those entries gets a snapshot the
    /// driver makes on demand (`Output::snapshot_wanted`,
    /// [`Node::offer_snapshot`]), so compacting costs nothing that grows with
    /// the data. Same preconditions as [`Node::compact`].
    pub fn compact_log(&mut self, upto_index: LogIndex) -> Result<Snapshot, CompactError> {
        self.compact_log_releasing(upto_index).map(|(snapshot, _)| snapshot)
    }

    /// [`Node::compact_log`], also returning the entries that left the log,
    /// so that a driver frees them off the task that drives the node.
    pub fn compact_log_releasing(&mut self, upto_index: LogIndex) -> Result<(Snapshot, Vec<Entry>), CompactError> {
        self.compact_with(upto_index, bytes::Bytes::new())
    }

    fn compact_with(
        &mut self,
        upto_index: LogIndex,
        data: bytes::Bytes,
    ) -> Result<(Snapshot, Vec<Entry>), CompactError> {
        if upto_index > self.log.applied() {
            return Err(CompactError::BeyondApplied { upto_index, applied: self.log.applied() });
        }
        if upto_index <= self.log.snapshot_index() {
            return Err(CompactError::NotNewer { upto_index, snapshot_index: self.log.snapshot_index() });
        }
        let (meta, released) = self.log.compact(upto_index, &self.bootstrap);
        let snapshot = Snapshot { meta, data };
        // The bytes kept to send are these, or, without bytes, a snapshot
        // offered earlier that still reaches the new base.
        if !snapshot.data.is_empty() {
            self.snapshot = Some(snapshot.clone());
        } else if self.snapshot.as_ref().is_some_and(|kept| kept.meta.last_included_index < upto_index) {
            self.snapshot = None;
        }
        self.assert_valid();
        Ok((snapshot, released))
    }

    /// The driver made the snapshot `Output::snapshot_wanted` asked for: `data`
    /// holds the state machine's state at `index`, an applied index at or
    /// above the log's base. The core keeps it to send to followers whose
    /// entries were compacted away, and starts those transfers now: the output
    /// sends their first chunks. `None`, and nothing changes, if it can no
    /// longer serve (the log was compacted beyond `index` meanwhile, or
    /// `index` is not an applied index of this log), has no bytes, or a
    /// snapshot as new is already held; the driver makes another when asked
    /// again.
    pub fn offer_snapshot(&mut self, index: LogIndex, data: impl Into<bytes::Bytes>) -> Option<Output> {
        let data = data.into();
        if data.is_empty()
            || index < self.log.snapshot_index()
            || self.snapshot.as_ref().is_some_and(|kept| kept.meta.last_included_index >= index)
        {
            return None;
        }
        let meta = self.log.meta_at(index, &self.bootstrap)?;
        self.snapshot = Some(Snapshot { meta, data });
        if self.role == Role::Leader {
            let first_index = self.log.first_index();
            let waiting: Vec<NodeId> = self
                .progress
                .iter()
                .filter(|(_, progress)| {
                    progress.recent_active
                        && !matches!(progress.state, ProgressState::Snapshot { .. })
                        && progress.next_index < first_index
                })
                .map(|(peer, _)| *peer)
                .collect();
            for peer in waiting {
                let started = self.start_snapshot_transfer(peer);
                debug_assert!(started, "the snapshot just offered reaches the base");
            }
        }
        Some(self.finish())
    }

    /// On a leader, the last index up to which compacting costs no follower
    /// a snapshot: the lowest match index among followers it has heard
    /// from, lately or not, or the index of the snapshot being sent to one (which continues
    /// from the log after it once installed); followers that need compacted
    /// entries already do not count. `None` elsewhere, or if no follower
    /// needs anything. A driver that compacts no further than this (up to a
    /// bound of its own) sends no snapshot to a follower that was down for a
    /// moment (a restart, a rolling upgrade) and none twice to one catching
    /// up because the first took longer to install than the log was kept
    /// (docs/decisions/0090, 0097).
    pub fn compaction_floor(&self) -> Option<LogIndex> {
        if self.role != Role::Leader {
            return None;
        }
        self.progress
            .iter()
            .filter(|(id, _)| **id != self.id())
            .filter_map(|(_, progress)| match progress.state {
                ProgressState::Snapshot { last_included_index, .. } => Some(last_included_index),
                // 0 for a follower this leader has not heard from: what it
                // holds is unknown, and it holds nothing back.
                _ if progress.match_index == 0 => None,
                _ => Some(progress.match_index),
            })
            // One that needs compacted entries gets a snapshot whatever happens.
            .filter(|index| *index >= self.log.snapshot_index())
            .min()
    }

    /// The latest snapshot (made by [`Node::compact`], installed from a leader,
    /// or restored), if any.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    /// What the latest snapshot covers, if any.
    pub fn snapshot_meta(&self) -> Option<&SnapshotMeta> {
        self.log.snapshot()
    }

    /// The earliest time at which `tick` has something to do.
    pub fn next_deadline_ms(&self) -> u64 {
        match self.role {
            Role::Leader => self
                .heartbeat_deadline_ms
                .min(self.quorum_check_deadline_ms)
                .min(self.terms.leader_elect_deadline_ms.unwrap_or(u64::MAX))
                .min(self.quorum_contact_deadline_ms().unwrap_or(u64::MAX))
                .min(self.transfer_deadline_ms().unwrap_or(u64::MAX)),
            _ => self.election_deadline_ms(),
        }
    }

    /// The longest prefix of the log the driver reported durable
    /// ([`Node::persisted`]); with `parallel_persist`, what a leader counts
    /// for itself toward a commit.
    pub fn durable_index(&self) -> LogIndex {
        self.durable_index
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// Current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The leader this node knows for its term.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// Whether this node leads and may take proposals (a leader-elect does not).
    pub fn is_serving(&self) -> bool {
        self.serving
    }

    /// The newest committed `BecomeLeader`: the leader term this node knows to be
    /// established (`gapless`, `conclave`; `None` in other modes or before any).
    pub fn committed_leader_term(&self) -> Option<crate::entry::LeaderTermRecord> {
        self.log.committed_leader_term_record()
    }

    /// The log, as the node sees it.
    pub fn log(&self) -> &RaftLog {
        &self.log
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A snapshot for observers.
    pub fn status(&self) -> Status {
        Status {
            id: self.config.id,
            role: self.role,
            term: self.term,
            voted_for: self.voted_for,
            leader: self.leader,
            commit: self.log.committed(),
            applied: self.log.applied(),
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
            snapshot_index: self.log.snapshot_index(),
            serving: self.serving,
            membership_index: self.membership_at.0,
            voter: self.is_voter(),
            leader_term: self.log.committed_leader_term_record().map(|record| record.leader_term),
            leader_term_in_log: self.log.last_leader_term_record().map(|record| record.leader_term),
            followers: self
                .progress
                .iter()
                .map(|(id, progress)| {
                    let heard_ms_ago = self.now_ms.saturating_sub(progress.heard_at_ms);
                    let (match_index, next_index) = (progress.match_index, progress.next_index);
                    (*id, FollowerStatus { match_index, next_index, heard_ms_ago })
                })
                .collect(),
            dropped: self.dropped.clone(),
        }
    }

    pub(crate) fn hard_state(&self) -> HardState {
        HardState { term: self.term, voted_for: self.voted_for, commit: self.log.committed() }
    }

    /// Queues a message to `to` at the current term.
    pub(crate) fn send(&mut self, to: NodeId, body: Body) {
        self.send_with_term(to, self.term, body);
    }

    pub(crate) fn send_with_term(&mut self, to: NodeId, term: Term, body: Body) {
        debug_assert_ne!(to, self.config.id, "a node never messages itself");
        let early = self.may_send_before_persist(&body);
        let message = Message { cluster_id: self.config.cluster_id, from: self.config.id, to, term, body };
        if early {
            self.out.early_messages.push(message);
        } else {
            self.out.messages.push(message);
        }
    }

    /// Queues a message that needs no persist (`Output::early_messages`): the
    /// caller has checked why it may leave at once.
    pub(crate) fn send_early(&mut self, to: NodeId, body: Body) {
        debug_assert_ne!(to, self.config.id, "a node never messages itself");
        debug_assert!(self.config.parallel_persist, "early messages exist only with parallel persist");
        let message = Message { cluster_id: self.config.cluster_id, from: self.config.id, to, term: self.term, body };
        self.out.early_messages.push(message);
    }

    /// Whether `body` may leave before the persists in flight complete
    /// (docs/decisions/0068-parallel-leader-persist.md): a leader's replication
    /// traffic, once an entry of its own term is durable. That entry was
    /// written with or after the hard state holding the term and the leader's
    /// vote for itself, so a crash cannot make this node forget the term its
    /// messages carry; the entries they carry count for it only once durable.
    fn may_send_before_persist(&self, body: &Body) -> bool {
        self.config.parallel_persist
            && self.role == Role::Leader
            && matches!(body, Body::AppendEntries { .. } | Body::InstallSnapshot { .. })
            && self.log.term_at(self.durable_index) == Some(self.term)
    }

    /// The highest index this node counts as stored on its own disk toward a
    /// commit: everything handed out, unless the leader persists in parallel,
    /// then only what the driver reported durable.
    pub(crate) fn own_match_index(&self) -> LogIndex {
        if !self.config.parallel_persist || self.counts_unpersisted_own_entries() {
            return self.log.last_index();
        }
        self.durable_index.min(self.log.last_index())
    }

    #[cfg(feature = "bug-injection")]
    fn counts_unpersisted_own_entries(&self) -> bool {
        self.config.injected_bug == Some(crate::config::InjectedBug::CountUnpersistedOwnEntries)
    }

    #[cfg(not(feature = "bug-injection"))]
    fn counts_unpersisted_own_entries(&self) -> bool {
        false
    }

    pub(crate) fn emit(&mut self, event: Event) {
        self.out.events.push(event);
    }

    /// Every voter but this node: whom elections talk to.
    pub(crate) fn peers(&self) -> Vec<NodeId> {
        self.voters.iter().copied().filter(|id| *id != self.config.id).collect()
    }

    /// Every member but this node, learners included: whom a leader
    /// replicates to.
    pub(crate) fn replication_peers(&self) -> Vec<NodeId> {
        self.membership.members.keys().copied().filter(|id| *id != self.config.id).collect()
    }

    /// Number of votes (or acknowledgements) that make a majority of the
    /// current voters.
    pub(crate) fn quorum(&self) -> usize {
        crate::quorum::majority(self.voters.len())
    }

    /// Whether this node votes in its current membership.
    pub(crate) fn is_voter(&self) -> bool {
        self.membership.is_voter(self.config.id)
    }

    /// Closes the current input: collects what must be persisted and applied.
    fn finish(&mut self) -> Output {
        let mut out = std::mem::take(&mut self.out);
        let log_write = self.log.take_unpersisted();
        let mut hard_state = self.hard_state();
        // The commit index a batch persists never covers entries the batch's own
        // log write *replaces*: a crash can keep a batch's hard-state record
        // without its log record (the WAL writes them in that order), and the log
        // on disk would then hold the replaced entries at those indexes. Found by
        // the simulator (seed 5000036 of the 5-node gapless sweep: a torn conflict
        // truncation). A pure append needs no cap: a restored commit past the
        // log's end is lowered to it, and the entries below are unchanged. The
        // follower does not commit a replaced suffix in the same input either
        // (`on_append_entries`), so this cap never makes a restart forget a
        // commit it had announced.
        if let Some((first_index, _)) = &log_write {
            if *first_index <= self.persisted_last_index {
                debug_assert!(hard_state.commit < *first_index, "a replaced suffix is committed in its own batch");
                hard_state.commit = hard_state.commit.min(first_index - 1);
            }
        }
        let rewrites_log = log_write.as_ref().is_some_and(|(first_index, _)| *first_index <= self.persisted_last_index);
        if rewrites_log || out.snapshot.is_some() {
            // What was reported durable from the rewrite point on is replaced,
            // and reports of batches made before now say nothing about it.
            self.log_rewrites += 1;
            if let Some((first_index, _)) = &log_write {
                self.durable_index = self.durable_index.min(first_index - 1);
            }
        }
        self.durable_index = self.durable_index.min(self.log.last_index());
        let written = log_write.as_ref().and_then(|(_, entries)| entries.last()).map(|entry| (entry.index, entry.term));
        let snapshot_end =
            out.snapshot.as_ref().map(|snapshot| (snapshot.meta.last_included_index, snapshot.meta.last_included_term));
        self.persisted_last_index = self.log.last_index();
        // With `parallel_persist`, a commit advance alone costs no write: the
        // next term, vote or log change carries it (the commit index is
        // advisory), so applying a commit never waits for an fsync.
        let commit_only = hard_state.term == self.persisted_hard_state.term
            && hard_state.voted_for == self.persisted_hard_state.voted_for;
        let carried = log_write.is_some() || out.snapshot.is_some();
        // Except a commit of a `BecomeLeader`: the committed leader term a node
        // knows never falls, restarts included (docs/design/invariants.md), at
        // the price of one write per leader term.
        let committed = self.log.take_committed_unapplied();
        let commits_leader_term = committed.iter().any(|entry| entry.leader_term_record().is_some());
        let write_it = !self.config.parallel_persist || !commit_only || carried || commits_leader_term;
        if hard_state != self.persisted_hard_state && write_it {
            assert!(hard_state.term >= self.persisted_hard_state.term, "the persisted term never decreases");
            out.hard_state = Some(hard_state);
            self.persisted_hard_state = hard_state;
        }
        // With `parallel_persist` a batch that writes only a hard state is
        // marked too, at the log's end (every entry before it was handed out
        // earlier): its report tells the node its term is durable
        // (`durable_term`), which lets a follower answer heartbeats at once.
        let log_end = (self.log.last_index(), self.log.last_term());
        let hard_state_only = out.hard_state.is_some() && self.config.parallel_persist;
        let marked = written.or(snapshot_end).or(hard_state_only.then_some(log_end));
        out.durable_mark = marked.map(|(index, term)| DurableMark {
            index,
            term,
            rewrites: self.log_rewrites,
            hard_state_term: self.persisted_hard_state.term,
        });
        if let Some((first_index, entries)) = log_write {
            out.log_write = Some(crate::output::LogWrite { first_index, entries });
        }
        if self.role != Role::Leader && out.needs_persist() && !out.early_messages.is_empty() {
            // A follower's early answers (docs/decisions/0092) never ride with a
            // write: a batch that writes (say, the commit of a `BecomeLeader`)
            // is acted on only once durable, and its answers wait with it.
            let early = std::mem::take(&mut out.early_messages);
            out.messages.splice(0..0, early);
        }
        out.committed_entries = committed;
        if self.config.election_mode.has_leader_terms() {
            self.on_entries_committed(&out.committed_entries);
            out.events.append(&mut self.out.events);
            out.failed_reads.append(&mut self.out.failed_reads);
        }
        // After the commit handling above: a leader-elect serves from the batch
        // in which its `BecomeLeader` committed.
        self.release_reads(&mut out.read_states);
        self.assert_valid();
        out
    }

    fn assert_valid(&self) {
        if cfg!(debug_assertions) {
            if let Err(problem) = self.validate() {
                panic!("node {} violates an invariant: {problem}", self.config.id);
            }
        }
    }
}

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

mod inbound;
mod replication;
mod roles;
mod validate;

use std::collections::BTreeMap;

use rand_chacha::ChaCha8Rng;
use thiserror::Error;

use crate::config::{Config, ConfigError};
use crate::entry::{Entry, Payload};
use crate::log::RaftLog;
use crate::message::{Body, Message};
use crate::output::{Event, HardState, Output};
use crate::progress::Progress;
use crate::quorum::VoteTally;
use crate::status::{DropCounters, FollowerStatus, Role, Status};
use crate::types::{LogIndex, NodeId, Term};

/// What a node finds in durable storage when it starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoredState {
    /// The last persisted hard state (all zero for a new node). A `commit` past
    /// the end of `entries` is lowered to it (see `Node::new`).
    pub hard_state: HardState,
    /// The persisted log, contiguous from index 1.
    pub entries: Vec<Entry>,
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

/// One member of a cluster.
#[derive(Debug)]
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
    /// State of the `fast` election mode (idle in other modes).
    pub(crate) fast: crate::election::fast::FastState,
    /// A leader that may take proposals: at once in `raft` and `fast`; in modes
    /// with leader terms only once its `BecomeLeader` committed (DESIGN.md §3.4).
    /// False whenever the node does not lead.
    pub(crate) serving: bool,
    /// State of the gapless leader-term rules (idle in modes without them).
    pub(crate) terms: crate::election::leader_terms::LeaderTermsState,
}

impl Node {
    /// Starts a node from `restored` (empty for a brand-new node) at time `now_ms`.
    pub fn new(config: Config, restored: RestoredState, rng: ChaCha8Rng, now_ms: u64) -> Result<Node, StartError> {
        config.validate()?;
        let restored_empty = restored == RestoredState::default();
        let RestoredState { hard_state, entries } = restored;
        // The commit index is advisory: a crash between a batch's hard-state write
        // and its log write can leave it past the log's end. Lower it; the leader
        // tells the node again.
        let commit = hard_state.commit.min(entries.len() as LogIndex);
        let log = RaftLog::restore(entries, commit, 0);
        log.validate_entries().map_err(StartError::Restore)?;
        if log.last_term() > hard_state.term {
            return Err(StartError::Restore(format!(
                "last entry has term {} beyond the persisted term {}",
                log.last_term(),
                hard_state.term
            )));
        }
        if let Some(voted_for) = hard_state.voted_for {
            if !config.voters.contains(&voted_for) {
                return Err(StartError::Restore(format!("voted for {voted_for}, who is not a member")));
            }
        }
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
            fast: Default::default(),
            serving: false,
            terms: crate::election::leader_terms::LeaderTermsState { restored_commit: commit, ..Default::default() },
        };
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
            if self.now_ms >= self.quorum_check_deadline_ms {
                self.check_quorum();
            }
            if self.role == Role::Leader && self.now_ms >= self.heartbeat_deadline_ms {
                self.broadcast_heartbeat();
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

    /// Appends `command` to the log if this node leads.
    pub fn propose(&mut self, command: Vec<u8>) -> Result<Proposal, ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { leader: self.leader });
        }
        if !self.serving {
            return Err(ProposeError::NotYetServing { ballot: self.term });
        }
        if command.len() > self.config.max_command_bytes {
            return Err(ProposeError::TooLarge { size: command.len(), limit: self.config.max_command_bytes });
        }
        let index = self.append_as_leader(Payload::Command(command));
        Ok(Proposal { index, term: self.term, output: self.finish() })
    }

    /// The earliest time at which `tick` has something to do.
    pub fn next_deadline_ms(&self) -> u64 {
        match self.role {
            Role::Leader => self
                .heartbeat_deadline_ms
                .min(self.quorum_check_deadline_ms)
                .min(self.terms.leader_elect_deadline_ms.unwrap_or(u64::MAX)),
            _ => self.election_deadline_ms(),
        }
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
            serving: self.serving,
            leader_term: self.log.committed_leader_term_record().map(|record| record.leader_term),
            leader_term_in_log: self.log.last_leader_term_record().map(|record| record.leader_term),
            followers: self
                .progress
                .iter()
                .map(|(id, progress)| {
                    (*id, FollowerStatus { match_index: progress.match_index, next_index: progress.next_index })
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
        self.out.messages.push(Message { cluster_id: self.config.cluster_id, from: self.config.id, to, term, body });
    }

    pub(crate) fn emit(&mut self, event: Event) {
        self.out.events.push(event);
    }

    /// Every voter but this node.
    pub(crate) fn peers(&self) -> Vec<NodeId> {
        self.config.voters.iter().copied().filter(|id| *id != self.config.id).collect()
    }

    /// Closes the current input: collects what must be persisted and applied.
    fn finish(&mut self) -> Output {
        let mut out = std::mem::take(&mut self.out);
        let log_write = self.log.take_unpersisted();
        let mut hard_state = self.hard_state();
        // The commit index a batch persists never covers the batch's own log write:
        // a crash can keep a batch's hard-state record without its log record (the
        // WAL writes them in that order), and the log on disk would then hold the
        // entries this write replaces at those indexes. Found by the simulator
        // (seed 5000036 of the 5-node gapless sweep: a torn conflict truncation).
        let durable_prefix = log_write.as_ref().map_or(self.log.last_index(), |(first_index, _)| first_index - 1);
        hard_state.commit = hard_state.commit.min(durable_prefix);
        if hard_state != self.persisted_hard_state {
            assert!(hard_state.term >= self.persisted_hard_state.term, "the persisted term never decreases");
            out.hard_state = Some(hard_state);
            self.persisted_hard_state = hard_state;
        }
        if let Some((first_index, entries)) = log_write {
            out.log_write = Some(crate::output::LogWrite { first_index, entries });
        }
        out.committed_entries = self.log.take_committed_unapplied();
        if self.config.election_mode.has_leader_terms() {
            self.on_entries_committed(&out.committed_entries);
            out.events.append(&mut self.out.events);
        }
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

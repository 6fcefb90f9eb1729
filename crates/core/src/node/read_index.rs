//! Linearizable reads without the log: ReadIndex (Raft thesis §6.4).
//!
//! A leader takes a read, notes its commit index as the read's index, and
//! releases it once a majority has confirmed, *after* the read arrived, that it
//! still leads its term. The driver then serves the read from its state machine
//! once it has applied up to that index. No entry is appended.
//!
//! Confirmation reuses replication: every `AppendEntries` carries the leader's
//! latest *read round* and every `AppendResponse` echoes the round of the
//! message it answers. A round starts when reads wait and no round is in
//! flight: the round counter moves up and an empty `AppendEntries` goes to every
//! follower. An answer from a quorum (the leader included) with a round at
//! least `r` confirms every read of round `r` or earlier. Reads that arrive
//! while a round is in flight join the next one, so one round per round trip
//! confirms any number of reads.
//!
//! Why an answer proves leadership: a follower answers at the leader's term only
//! while it has not moved to a higher one. A newer leader needs the votes of a
//! majority, which shares a member with the confirming majority, and that member
//! voted after it answered — so after the read arrived. Any write acknowledged
//! before the read arrived was committed by this leader or an earlier one, and so
//! sits at or below this leader's commit index once it has committed an entry of
//! its own term (leader completeness): until then, a read waits. In `gapless`
//! and `conclave` that first entry is the `BecomeLeader`, so a leader-elect
//! (`serving == false`) releases no read; in `raft` and `fast` it is the no-op a
//! new leader appends.
//!
//! A leader that stops leading fails every read it holds (`Output::failed_reads`);
//! a node that does not lead refuses reads (the driver forwards them to the
//! leader).
//!
//! Two more guarantees let a driver run a client connection's commands in the
//! order sent (a pipelined read sees the writes before it and none after it):
//! * a read's index is never above the leader's last index when the read
//!   arrived, so an entry proposed after the read is never required by it;
//! * a read is released no later than the commit of any entry proposed after
//!   it: proposing an entry starts a new round for the reads still without one,
//!   and the `AppendEntries` carrying the entry carries that round, so the very
//!   answers that commit the entry confirm the read. A driver that serves a
//!   read as soon as it has applied up to the read's index, *between* the
//!   entries of a batch, therefore serves it before any later entry.

use std::collections::{BTreeMap, VecDeque};

use super::Node;
use crate::output::{Output, ReadState};
use crate::progress::ProgressState;
use crate::quorum;
use crate::status::Role;
use crate::types::{LogIndex, NodeId};

/// Why [`Node::read_index`] refused a read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadIndexError {
    /// Only the leader serves linearizable reads; `leader` is the one this node
    /// knows, if any, where the read may be sent instead.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// Where to send the read instead.
        leader: Option<NodeId>,
    },
}

/// A read the leader holds until it may be served.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PendingRead {
    /// The driver's context, echoed in the output.
    pub(crate) context: u64,
    /// The round that confirms it; `None` until a round starts for it.
    pub(crate) round: Option<u64>,
    /// The commit index when it arrived, if the leader had then committed an
    /// entry of its own term; otherwise taken when it is released.
    pub(crate) index: Option<LogIndex>,
    /// The leader's last index when it arrived: the read never requires an
    /// entry proposed after it.
    pub(crate) ceiling: LogIndex,
}

/// The leader's ReadIndex bookkeeping.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReadIndexState {
    /// The latest round started; never decreases over the node's life, so an
    /// echo can be told from one of an earlier round.
    pub(crate) round: u64,
    /// The highest round a quorum confirmed in the current leadership. A round
    /// is in flight while `confirmed < round`.
    pub(crate) confirmed: u64,
    /// The highest round each follower echoed in the current leadership (only
    /// rounds above 0 are recorded).
    pub(crate) acks: BTreeMap<NodeId, u64>,
    /// Reads waiting, in arrival order; their rounds never decrease, and the
    /// reads without a round come last.
    pub(crate) pending: VecDeque<PendingRead>,
}

impl Node {
    /// Takes a linearizable read identified by `context` (any value the driver
    /// chooses; it comes back verbatim). On a leader the read waits for a
    /// quorum's confirmation and for a commit of the leader's own term, then
    /// appears in this or a later batch's `Output::read_states` (this one only
    /// when the leader is its own quorum) with the index the
    /// driver must have applied before serving it — or in `Output::failed_reads`
    /// if the node stops leading first. The returned batch holds the messages
    /// that start the confirmation (nothing to persist).
    pub fn read_index(&mut self, context: u64) -> Result<Output, ReadIndexError> {
        if self.role != Role::Leader {
            return Err(ReadIndexError::NotLeader { leader: self.leader });
        }
        let index = self.has_committed_own_term().then(|| self.log.committed());
        let ceiling = self.log.last_index();
        self.reads.pending.push_back(PendingRead { context, round: None, index, ceiling });
        self.start_read_round_if_idle();
        Ok(self.finish())
    }

    /// Reads held and not yet released or failed (for drivers' status pages).
    pub fn pending_reads(&self) -> usize {
        self.reads.pending.len()
    }

    /// True once the leader's commit index covers an entry of its own term:
    /// from then on it is at least every index any earlier leader committed.
    fn has_committed_own_term(&self) -> bool {
        self.serving && self.log.term_at(self.log.committed()) == Some(self.term)
    }

    /// Starts a round for the reads that have none, unless one is in flight.
    fn start_read_round_if_idle(&mut self) {
        if self.reads.confirmed < self.reads.round || !self.assign_round_to_waiting_reads() {
            return;
        }
        if self.reads.confirmed == self.reads.round {
            return; // Confirmed at once: this leader is its own quorum.
        }
        for peer in self.peers() {
            self.send_read_probe(peer);
        }
    }

    /// The leader is about to send a new entry: reads still without a round
    /// join a new one, which the entry's `AppendEntries` carries, so they are
    /// confirmed no later than the entry commits (see the module docs).
    pub(crate) fn piggyback_waiting_reads(&mut self) {
        self.assign_round_to_waiting_reads();
    }

    /// Gives the reads without a round a new one; false if there were none.
    fn assign_round_to_waiting_reads(&mut self) -> bool {
        let waiting = self.reads.pending.back().is_some_and(|read| read.round.is_none());
        if !waiting {
            return false;
        }
        self.reads.round += 1;
        let round = self.reads.round;
        for read in self.reads.pending.iter_mut().rev() {
            if read.round.is_some() {
                break;
            }
            read.round = Some(round);
        }
        if self.quorum() == 1 || self.skips_read_confirmation() {
            self.reads.confirmed = round;
        }
        true
    }

    /// An empty `AppendEntries` at the follower's match index, which it holds
    /// (so it answers without changing its log), carrying the current round. A
    /// follower being sent a snapshot, or whose match index is compacted here,
    /// gets none: its next heartbeat carries the round instead.
    fn send_read_probe(&mut self, to: NodeId) {
        let progress = &self.progress[&to];
        if matches!(progress.state, ProgressState::Snapshot { .. }) {
            return;
        }
        let prev_log_index = progress.match_index;
        let Some(prev_log_term) = self.log.term_at(prev_log_index) else { return };
        self.send_empty_append(to, prev_log_index, prev_log_term, false);
    }

    /// A follower echoed `read_round` (at most the latest round: the caller
    /// drops impossible echoes) in an answer of this leader's term.
    pub(crate) fn on_read_round_echo(&mut self, from: NodeId, read_round: u64) {
        debug_assert!(read_round <= self.reads.round, "impossible echoes are dropped before");
        if read_round <= self.reads.acks.get(&from).copied().unwrap_or(0) {
            return;
        }
        self.reads.acks.insert(from, read_round);
        let mut rounds: Vec<u64> =
            self.voters
                .iter()
                .map(|id| {
                    if *id == self.config.id {
                        self.reads.round
                    } else {
                        self.reads.acks.get(id).copied().unwrap_or(0)
                    }
                })
                .collect();
        let confirmed = quorum::committed_index(&mut rounds);
        if confirmed > self.reads.confirmed {
            self.reads.confirmed = confirmed;
            self.start_read_round_if_idle();
        }
    }

    #[cfg(feature = "bug-injection")]
    fn skips_read_confirmation(&self) -> bool {
        self.config.injected_bug == Some(crate::config::InjectedBug::ReadWithoutLeadershipCheck)
    }

    #[cfg(not(feature = "bug-injection"))]
    fn skips_read_confirmation(&self) -> bool {
        false
    }

    /// Moves the confirmed reads to `ready`, once the leader may serve reads.
    pub(crate) fn release_reads(&mut self, ready: &mut Vec<ReadState>) {
        if self.role != Role::Leader || !self.has_committed_own_term() {
            return;
        }
        while let Some(read) = self.reads.pending.front() {
            match read.round {
                Some(round) if round <= self.reads.confirmed => {}
                _ => break,
            }
            let read = self.reads.pending.pop_front().expect("front exists");
            // A read that arrived before this leader committed in its term takes
            // the commit index now, but never an entry proposed after it: both
            // are at least every index an earlier leader committed.
            let index = read.index.unwrap_or_else(|| self.log.committed().min(read.ceiling));
            ready.push(ReadState { context: read.context, index });
        }
    }

    /// The node stops leading: every read it holds fails, and the next
    /// leadership starts with no round in flight.
    pub(crate) fn fail_pending_reads(&mut self) {
        let failed = self.reads.pending.drain(..).map(|read| read.context);
        self.out.failed_reads.extend(failed);
        self.reads.acks.clear();
        self.reads.confirmed = self.reads.round;
    }

    /// Checks the read bookkeeping (part of `Node::validate`).
    pub(crate) fn validate_reads(&self) -> Result<(), String> {
        let reads = &self.reads;
        if reads.confirmed > reads.round {
            return Err(format!("read round {} confirmed beyond the latest {}", reads.confirmed, reads.round));
        }
        if self.role != Role::Leader && !reads.pending.is_empty() {
            return Err(format!("a {:?} holds {} reads", self.role, reads.pending.len()));
        }
        let mut previous = Some(0);
        for read in &reads.pending {
            let ordered = match (previous, read.round) {
                (Some(before), Some(round)) => before <= round && round <= reads.round,
                (_, None) => true,
                (None, Some(_)) => false,
            };
            if !ordered {
                return Err(format!("pending reads out of round order: {:?}", reads.pending));
            }
            if read.index.is_some_and(|index| index > self.log.committed()) {
                return Err(format!("read {} has index {:?} beyond the commit index", read.context, read.index));
            }
            if read.index.is_some_and(|index| index > read.ceiling) || read.ceiling > self.log.last_index() {
                return Err(format!(
                    "read {} has index {:?} above its ceiling {}",
                    read.context, read.index, read.ceiling
                ));
            }
            previous = read.round;
        }
        Ok(())
    }
}

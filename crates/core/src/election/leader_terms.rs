//! Gapless leader terms (docs/design/leader-terms.md, seed 003, the repaired rules), shared
//! by the `gapless` and `conclave` modes.
//!
//! - The **ballot** is Raft's term: it orders votes and entries, and every Raft
//!   rule (one vote per ballot, the up-to-date check, "commit only your own
//!   ballot's entries") compares ballots. Nothing here changes those rules.
//! - The **leader term** is data in the log: a winner appends
//!   `BecomeLeader{leader_term = (leader term of the last BecomeLeader in its own
//!   log, committed or not) + 1}` as its first entry. It is not checked when
//!   voting — every voter-side leader-term rule deadlocks (docs/design/leader-terms.md). Both
//!   seed theorems then follow from Raft's leader completeness: a committed
//!   `BecomeLeader(t)` is in every later leader's log, so nobody picks `t` again,
//!   and `BecomeLeader(t)` directly follows `BecomeLeader(t - 1)` in every log.
//! - A **leader-elect** (role `Leader`, not yet serving) replicates like a leader
//!   but accepts no proposals until its `BecomeLeader` commits; it gives up after
//!   an election timeout without that commit, so no voter waits on it forever.
//! - The **vote lease**: after granting a vote to another node, a node grants no
//!   other vote, whatever the ballot, until `vote_lease_ms` have passed. It only
//!   withholds votes, so safety does not depend on it (the model checker lets it
//!   expire at any moment); it keeps a fresh winner from being deposed by the next
//!   campaign before its `BecomeLeader` can commit.

use crate::entry::{Entry, LeaderTermRecord, Payload};
use crate::node::Node;
use crate::output::Event;
use crate::status::Role;
use crate::types::{LogIndex, NodeId};

/// State of the gapless leader-term rules; idle in modes without them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LeaderTermsState {
    /// The vote lease in force: the candidate voted for and when the lease ends.
    /// Volatile on purpose: a restart forgets it, which is one of the ways a lease
    /// "expires early" that safety must (and does) survive.
    pub vote_lease: Option<(NodeId, u64)>,
    /// A leader-elect gives up at this time if its `BecomeLeader` has not
    /// committed and its followers made no progress since it was set.
    pub leader_elect_deadline_ms: Option<u64>,
    /// The followers' progress when the deadline was set
    /// ([`Node::replication_progress`]).
    pub leader_elect_progress: u64,
    /// The commit index restored at start: entries up to it committed before the
    /// restart, so re-applying them announces nothing new.
    pub restored_commit: LogIndex,
}

impl Node {
    /// Starts the vote lease after granting a binding vote to `candidate`.
    pub(crate) fn start_vote_lease(&mut self, candidate: NodeId) {
        if self.config.election_mode.has_leader_terms() && candidate != self.config.id {
            self.terms.vote_lease = Some((candidate, self.now_ms + self.config.vote_lease_ms));
        }
    }

    /// Whether a vote lease is in force now.
    pub(crate) fn vote_lease_active(&self) -> bool {
        self.terms.vote_lease.is_some_and(|(_, until_ms)| self.now_ms < until_ms)
    }

    /// Whether the vote lease forbids a vote for `candidate` now.
    pub(crate) fn vote_lease_refuses(&self, candidate: NodeId) -> bool {
        match self.terms.vote_lease {
            Some((holder, until_ms)) => holder != candidate && self.now_ms < until_ms,
            None => false,
        }
    }

    /// The entry a new leader appends first: `BecomeLeader` one leader term above
    /// the last one in its log in modes with leader terms, else a `Noop`. Sets
    /// whether the leader serves at once.
    pub(crate) fn first_leader_payload(&mut self) -> Payload {
        if !self.config.election_mode.has_leader_terms() {
            self.serving = true;
            return Payload::Noop;
        }
        let leader_term = self.log.last_leader_term_record().map_or(1, |last| last.leader_term + 1);
        self.serving = false;
        self.terms.leader_elect_deadline_ms = Some(self.now_ms + self.config.election_timeout_ms());
        self.terms.leader_elect_progress = self.replication_progress();
        self.emit(Event::LeaderElect { ballot: self.term, leader_term });
        Payload::BecomeLeader { leader_term, leader: self.config.id }
    }

    /// How far the followers got: their match indexes and the snapshot bytes
    /// they acknowledged, summed. It grows while a leader-elect's followers
    /// catch up.
    pub(crate) fn replication_progress(&self) -> u64 {
        self.progress
            .values()
            .map(|progress| {
                let snapshot_bytes = match progress.state {
                    crate::progress::ProgressState::Snapshot { offset, .. } => offset,
                    _ => 0,
                };
                progress.match_index.saturating_add(snapshot_bytes)
            })
            .fold(0u64, u64::saturating_add)
    }

    /// A leader-elect's timer: without its `BecomeLeader` committed in time it
    /// steps down, so that its voters are free again once their leases end.
    /// While its followers make progress (entries or snapshot bytes
    /// acknowledged since the deadline was set), the deadline moves one
    /// election timeout on instead: followers catching up through a snapshot
    /// that takes longer than an election timeout would otherwise make every
    /// leader-elect give up and start the transfer over, forever (simulator
    /// seed 500064 of `--faults isolate`). Progress is bounded, so it cannot
    /// extend forever, and CheckQuorum still steps down a leader that no
    /// majority answers.
    pub(crate) fn leader_elect_timer(&mut self) {
        let Some(deadline_ms) = self.terms.leader_elect_deadline_ms else { return };
        if self.role == Role::Leader && !self.serving && self.now_ms >= deadline_ms {
            let progress = self.replication_progress();
            if progress > self.terms.leader_elect_progress {
                self.terms.leader_elect_progress = progress;
                self.terms.leader_elect_deadline_ms = Some(self.now_ms + self.config.election_timeout_ms());
                return;
            }
            let leader_term = self.log.last_leader_term_record().map_or(0, |record| record.leader_term);
            self.emit(Event::LeaderElectGaveUp { ballot: self.term, leader_term });
            self.terms.leader_elect_deadline_ms = None;
            self.become_follower(self.term, None);
        }
    }

    /// Entries just committed: every `BecomeLeader` among them is announced (not
    /// those re-applied after a restart), and a leader-elect whose own entry is
    /// one of them starts serving.
    pub(crate) fn on_entries_committed(&mut self, entries: &[Entry]) {
        let restored_commit = self.terms.restored_commit;
        let fresh = entries.iter().filter(|entry| entry.index > restored_commit);
        for record in fresh.filter_map(Entry::leader_term_record) {
            let LeaderTermRecord { leader_term, leader, ballot, .. } = record;
            self.emit(Event::LeaderTermCommitted { leader_term, leader, ballot });
            if self.terms.vote_lease.is_some_and(|(holder, _)| holder == leader) && ballot == self.term {
                // The leader-elect the lease protected serves: its job is done.
                // Kept, it would hold back the next election for nothing (a
                // hand-over right after this one, say). Safety never rests on
                // the lease (docs/design/leader-terms.md).
                self.terms.vote_lease = None;
            }
            if self.role == Role::Leader && leader == self.config.id && ballot == self.term && !self.serving {
                self.serving = true;
                self.terms.leader_elect_deadline_ms = None;
            }
        }
    }
}

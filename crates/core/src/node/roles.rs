//! Role transitions and the timers that go with them.

use super::Node;
use crate::output::Event;
use crate::progress::Progress;
use crate::quorum::VoteTally;
use crate::status::Role;
use crate::types::{NodeId, Term};

impl Node {
    /// Raft §5.1: a node that sees a higher term adopts it and follows; `leader`
    /// is the sender when it is known to lead that term.
    pub(crate) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        assert!(term >= self.term, "terms never go back ({} -> {term})", self.term);
        if term > self.term {
            self.term = term;
            self.voted_for = None;
        }
        if let Some(transfer) = self.transfer.take() {
            self.emit(Event::TransferEnded { target: transfer.target, term, new_leader: leader });
        }
        self.progress.clear();
        self.outgoing_snapshots.clear();
        self.votes = VoteTally::default();
        self.serving = false;
        self.terms.leader_elect_deadline_ms = None;
        self.set_role(Role::Follower);
        self.set_leader(leader);
        self.reset_election_timer();
        self.on_follow();
    }

    /// Raft §5.2: a candidate that wins a majority leads; it appends a no-op so
    /// that entries of earlier terms can commit (Raft §5.4.2, §8) — in modes with
    /// leader terms a `BecomeLeader` instead, and it serves once that commits
    /// (docs/design/leader-terms.md).
    pub(crate) fn become_leader(&mut self) {
        assert_eq!(self.role, Role::Candidate, "only a candidate becomes leader");
        if !self.is_voter() {
            // Voters of a newer membership elected a node whose own log does
            // not make it a voter yet: it cannot count a quorum. It follows
            // and learns the membership from whoever leads next.
            self.become_follower(self.term, None);
            return;
        }
        assert_eq!(self.voted_for, Some(self.config.id), "a candidate votes for itself");
        let (last_index, now_ms) = (self.log.last_index(), self.now_ms);
        self.progress =
            self.replication_peers().into_iter().map(|peer| (peer, Progress::new(last_index, now_ms))).collect();
        // Whom the election heard from: the first liveness view (docs/design/vote-exchange.md).
        let answered: Vec<NodeId> = self.votes.answered().filter(|voter| *voter != self.config.id).collect();
        self.votes = VoteTally::default();
        self.transfer = None;
        self.fast.round = None;
        self.fast.candidate_deadline_ms = None;
        self.fast.grant_resend_at_ms = None;
        self.set_role(Role::Leader);
        self.set_leader(Some(self.config.id));
        self.heartbeat_deadline_ms = self.now_ms + self.config.heartbeat_interval_ms;
        self.quorum_check_deadline_ms = self.now_ms + self.config.election_timeout_ms();
        let payload = self.first_leader_payload();
        self.append_as_leader(payload);
        if self.config.election_mode.exchanges_votes() && self.role == Role::Leader {
            // Followers learn at once whom the election heard from, so a leader
            // lost right after winning leaves a usable view (docs/design/vote-exchange.md).
            crate::election::fast::broadcast_liveness(self, answered);
        }
    }

    /// CheckQuorum (thesis §6.2, §9.6): a leader that has not heard from a
    /// majority during the last election timeout steps down, so that a leader cut
    /// off in a minority stops acting as one.
    pub(crate) fn check_quorum(&mut self) {
        assert_eq!(self.role, Role::Leader);
        self.quorum_check_deadline_ms = self.now_ms + self.config.election_timeout_ms();
        if !self.config.check_quorum {
            return;
        }
        let active = 1 + self
            .progress
            .iter()
            .filter(|(id, progress)| progress.recent_active && self.membership.is_voter(**id))
            .count();
        if self.config.election_mode.exchanges_votes() {
            let heard: Vec<NodeId> = self
                .progress
                .iter()
                .filter(|(id, progress)| progress.recent_active && self.membership.is_voter(**id))
                .map(|(id, _)| *id)
                .collect();
            crate::election::fast::broadcast_liveness(self, heard);
        }
        for progress in self.progress.values_mut() {
            progress.recent_active = false;
        }
        if active < self.quorum() {
            self.emit(Event::QuorumLost { term: self.term });
            self.become_follower(self.term, None);
        }
    }

    /// The vote exchange's CheckQuorum: when this leader will have heard fewer
    /// than a majority (itself included) within the last election timeout, the
    /// moment its followers' counted misses declare it down (one election
    /// timeout after its last heartbeat reached them). Raft's CheckQuorum looks
    /// once per election timeout, so an isolated leader lingers up to twice
    /// that; the vote exchange elects within about one, and a leader still
    /// serving when a cut heals would be deposed beside a working majority
    /// (docs/decisions/0087). `None` in `raft`/`gapless`, without CheckQuorum,
    /// or when not leading.
    pub(crate) fn quorum_contact_deadline_ms(&self) -> Option<u64> {
        if self.role != Role::Leader || !self.config.check_quorum || !self.config.election_mode.exchanges_votes() {
            return None;
        }
        let needed = self.quorum() - 1;
        if needed == 0 {
            return None; // A single voter is its own majority.
        }
        let mut heard: Vec<u64> = self
            .progress
            .iter()
            .filter(|(id, _)| self.membership.is_voter(**id))
            .map(|(_, progress)| progress.heard_at_ms)
            .collect();
        heard.sort_unstable_by(|a, b| b.cmp(a));
        Some(heard[needed - 1] + self.config.election_timeout_ms())
    }

    /// Steps down if a majority has not been heard within an election timeout
    /// (`quorum_contact_deadline_ms`).
    pub(crate) fn check_quorum_contact(&mut self) {
        if self.quorum_contact_deadline_ms().is_some_and(|deadline| self.now_ms >= deadline) {
            self.emit(Event::QuorumLost { term: self.term });
            self.become_follower(self.term, None);
        }
    }

    pub(crate) fn set_role(&mut self, role: Role) {
        if role != self.role {
            let from = self.role;
            if from == Role::Leader {
                self.fail_pending_reads();
            }
            self.role = role;
            self.emit(Event::RoleChanged { from, to: role, term: self.term });
        }
    }

    pub(crate) fn set_leader(&mut self, leader: Option<NodeId>) {
        if leader != self.leader {
            self.leader = leader;
            self.emit(Event::LeaderChanged { leader, term: self.term });
        }
        if leader.is_some() && leader != Some(self.config.id) {
            self.last_leader_contact_ms = Some(self.now_ms);
        }
    }

    /// Re-arms the election timer with a fresh randomized timeout.
    pub(crate) fn reset_election_timer(&mut self) {
        let timeout_ms = self.draw_election_timeout_ms();
        self.election_deadline_ms = self.now_ms + timeout_ms;
    }

    /// Whether a leader is known to be alive, in which case vote requests are
    /// ignored so that a partitioned node rejoining cannot depose it (thesis §9.6).
    pub(crate) fn in_leader_lease(&self) -> bool {
        if !self.config.check_quorum {
            return false;
        }
        match self.role {
            Role::Leader => true,
            _ => match (self.leader, self.last_leader_contact_ms) {
                (Some(_), Some(contact_ms)) => self.now_ms < contact_ms + self.config.election_timeout_ms(),
                _ => false,
            },
        }
    }
}

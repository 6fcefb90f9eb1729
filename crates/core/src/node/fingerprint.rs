//! A canonical hash of a node's protocol state, for the model checker
//! (`conclave_sim::model_check`), which must tell apart states that can behave
//! differently and merge states that cannot.
//!
//! Absolute clock values are left out: every stored time is hashed relative to
//! the node's clock, clamped to ± [`horizon_ms`] (and a time only compared as
//! `now < at + window` to no earlier than `now - window`). The protocol only
//! compares stored times with `now_ms` or adds fixed intervals to them, so two
//! nodes that differ by a shift of every time behave identically. Only the
//! running mode's state is hashed. The RNG, the drop counters and the
//! configuration (fixed per node) are left out too.
//!
//! Every field that a later input can read must be hashed here: a new field of
//! `Node` (or of a mode's state) that is left out makes the checker merge states
//! that differ, and so miss behaviours.

use std::hash::{Hash, Hasher};

use super::Node;
use crate::election::fast::{FailReport, FastState, Round};
use crate::election::ElectionMode;
use crate::progress::ProgressState;
use crate::status::Role;

impl Node {
    /// Hashes the node's protocol state without absolute times (see the module
    /// docs). For model checkers only; not a stable format.
    #[doc(hidden)]
    pub fn model_fingerprint<H: Hasher>(&self, hasher: &mut H) {
        let clock = RelativeClock { now_ms: self.now_ms, horizon_ms: horizon_ms(self) };
        self.term.hash(hasher);
        self.voted_for.hash(hasher);
        self.log.snapshot_index().hash(hasher);
        self.log.all().hash(hasher);
        self.snapshot.as_ref().map(|snapshot| snapshot.meta.last_included_index).hash(hasher);
        for (peer, snapshot) in &self.outgoing_snapshots {
            (peer, snapshot.meta.last_included_index).hash(hasher);
        }
        self.incoming_snapshot.as_ref().map(|incoming| incoming.fingerprint_key()).hash(hasher);
        self.log.committed().hash(hasher);
        self.log.applied().hash(hasher);
        self.role.hash(hasher);
        self.leader.hash(hasher);
        self.persisted_hard_state.hash(hasher);
        if self.config.parallel_persist {
            (self.durable_index, self.durable_term, self.log_rewrites).hash(hasher);
        }
        self.votes.hash(hasher);
        // Only read as `now < contact + election timeout` (the CheckQuorum lease).
        let lease_ms = self.config.election_timeout_ms();
        clock.optional(self.last_leader_contact_ms.map(|at_ms| clock.not_before(at_ms, lease_ms)), hasher);
        if self.role == Role::Leader {
            clock.time(self.heartbeat_deadline_ms, hasher);
            clock.time(self.quorum_check_deadline_ms, hasher);
            for (id, progress) in &self.progress {
                id.hash(hasher);
                progress.match_index.hash(hasher);
                progress.next_index.hash(hasher);
                match progress.state {
                    ProgressState::Probe { in_flight } => (0u8, in_flight).hash(hasher),
                    ProgressState::Replicate => 1u8.hash(hasher),
                    ProgressState::Snapshot { last_included_index, offset, in_flight, offset_at_heartbeat } => {
                        (2u8, last_included_index, offset, in_flight, offset_at_heartbeat).hash(hasher)
                    }
                }
                progress.recent_active.hash(hasher);
                if self.config.election_mode.exchanges_votes() {
                    // Only read as `now >= heard + election timeout`.
                    clock.time(clock.not_before(progress.heard_at_ms, lease_ms), hasher);
                }
                progress.match_at_last_heartbeat.hash(hasher);
            }
            if let Some(transfer) = &self.transfer {
                (transfer.target, transfer.needed, transfer.marker, transfer.handed_over).hash(hasher);
                clock.time(transfer.deadline_ms, hasher);
            }
        }
        // Each mode's own state only: another mode's fields sit idle with stale
        // times that would tell apart states that behave alike.
        match self.config.election_mode {
            ElectionMode::Raft | ElectionMode::Gapless => {
                // A leader's election timer is re-armed before it is read again.
                if self.role != Role::Leader {
                    clock.time(self.election_deadline_ms, hasher);
                }
            }
            ElectionMode::Fast | ElectionMode::Conclave => hash_fast_state(&self.fast, &clock, lease_ms, hasher),
        }
        self.serving.hash(hasher);
        // ReadIndex: the round is stamped on every append and the pending reads
        // decide later outputs, so all of it is hashed. (Reads are driver-facing,
        // but two states that would release different reads do behave
        // differently.) A checker that issues no reads keeps all of it at zero
        // and empty, so it adds no states.
        self.reads.round.hash(hasher);
        self.reads.confirmed.hash(hasher);
        self.reads.acks.hash(hasher);
        self.reads.pending.hash(hasher);
        if self.config.election_mode.has_leader_terms() {
            // The vote lease is only read as `now < until`; the leader-elect
            // deadline only while leading. `restored_commit` only filters events.
            let lease = self.terms.vote_lease.map(|(holder, until_ms)| (holder, clock.offset_not_after(until_ms)));
            lease.hash(hasher);
            if self.role == Role::Leader {
                clock.optional(self.terms.leader_elect_deadline_ms, hasher);
                self.terms.leader_elect_progress.hash(hasher);
            }
        }
    }
}

/// How far from `now_ms` a stored time still matters: the longest interval the
/// protocol adds to a stored time is two election timeouts (a fast round's
/// give-up); beyond four, every comparison comes out the same.
fn horizon_ms(node: &Node) -> u64 {
    4 * node.config.election_timeout_ms() + node.config.finalize_wait_ms + node.config.heartbeat_interval_ms
}

struct RelativeClock {
    now_ms: u64,
    horizon_ms: u64,
}

impl RelativeClock {
    fn time<H: Hasher>(&self, at_ms: u64, hasher: &mut H) {
        let offset = i128::from(at_ms) - i128::from(self.now_ms);
        let horizon = i128::from(self.horizon_ms);
        offset.clamp(-horizon, horizon).hash(hasher);
    }

    /// `at_ms`, or `now - window_ms` if older: a time only compared as
    /// `now < at + window` is the same for every value at or before that.
    fn not_before(&self, at_ms: u64, window_ms: u64) -> u64 {
        at_ms.max(self.now_ms.saturating_sub(window_ms))
    }

    /// A time only compared as `now < at`: every past value behaves alike.
    fn offset_not_after(&self, at_ms: u64) -> u64 {
        at_ms.max(self.now_ms) - self.now_ms
    }

    fn optional<H: Hasher>(&self, at_ms: Option<u64>, hasher: &mut H) {
        match at_ms {
            None => 0u8.hash(hasher),
            Some(at_ms) => {
                1u8.hash(hasher);
                self.time(at_ms, hasher);
            }
        }
    }
}

fn hash_fast_state<H: Hasher>(fast: &FastState, clock: &RelativeClock, expiry_ms: u64, hasher: &mut H) {
    fast.misses.hash(hasher);
    clock.time(fast.miss_deadline_ms, hasher);
    fast.subjectively_down.hash(hasher);
    // Read only while subjectively down.
    if fast.subjectively_down {
        clock.time(fast.report_at_ms, hasher);
    }
    for (id, FailReport { leader, leader_term, reported_at_ms, version }) in &fast.fail_table {
        (id, leader, leader_term, version).hash(hasher);
        // Reports expire at `reported + election timeout`.
        clock.time(clock.not_before(*reported_at_ms, expiry_ms), hasher);
    }
    for (id, (version, at_ms)) in &fast.heard_alive {
        (id, version).hash(hasher);
        clock.time(clock.not_before(*at_ms, expiry_ms), hasher);
    }
    match &fast.round {
        None => 0u8.hash(hasher),
        Some(round) => {
            1u8.hash(hasher);
            hash_round(round, clock, hasher);
        }
    }
    fast.final_vote.hash(hasher);
    clock.optional(fast.candidate_deadline_ms, hasher);
    fast.cold_start_candidate.hash(hasher);
    // Only compared as `now < until`; all past values, and `None`, behave alike.
    fast.cold_start_wait_until_ms.map_or(0, |until_ms| clock.offset_not_after(until_ms)).hash(hasher);
    clock.optional(fast.grant_resend_at_ms, hasher);
    fast.established.hash(hasher);
    fast.corrections.hash(hasher);
    fast.started_empty.hash(hasher);
    fast.leader_view.hash(hasher);
    fast.resumed_after_silence.hash(hasher);
    // Only compared as `now < until`.
    fast.handed_over_until_ms.map_or(0, |until_ms| clock.offset_not_after(until_ms)).hash(hasher);
    match fast.returned_to {
        None => 0u8.hash(hasher),
        Some((leader, term, until_ms)) => {
            1u8.hash(hasher);
            (leader, term).hash(hasher);
            clock.time(until_ms, hasher);
        }
    }
}

fn hash_round<H: Hasher>(round: &Round, clock: &RelativeClock, hasher: &mut H) {
    round.ballot.hash(hasher);
    round.vote.hash(hasher);
    round.received.hash(hasher);
    clock.optional(round.finalize_at_ms, hasher);
    clock.time(round.resend_at_ms, hasher);
    clock.time(round.give_up_at_ms, hasher);
    round.lost_leader.hash(hasher);
    round.early_grants.hash(hasher);
    round.shunned.hash(hasher);
    round.withdrawn.hash(hasher);
    // Only compared as `now < until`: every past value behaves alike.
    round.awaiting_leader_until_ms.map(|until_ms| clock.offset_not_after(until_ms)).hash(hasher);
}

#[cfg(test)]
mod tests {
    use std::collections::hash_map::DefaultHasher;

    use rand::SeedableRng;

    use super::*;
    use crate::config::Config;
    use crate::node::RestoredState;

    fn fingerprint(node: &Node) -> u64 {
        let mut hasher = DefaultHasher::new();
        node.model_fingerprint(&mut hasher);
        hasher.finish()
    }

    fn started_at(now_ms: u64) -> Node {
        let mut config = Config::new(1, 7, vec![1, 2, 3]);
        config.election_mode = ElectionMode::Raft;
        let rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        Node::new(config, RestoredState::default(), rng, now_ms).expect("valid")
    }

    #[test]
    fn shifting_every_time_leaves_the_fingerprint_unchanged() {
        let (mut early, mut late) = (started_at(0), started_at(1_000_000));
        assert_eq!(fingerprint(&early), fingerprint(&late));
        // The same timer fires in both: still the same relative state.
        let _ = early.tick(early.next_deadline_ms());
        let _ = late.tick(late.next_deadline_ms());
        assert_eq!(early.role(), Role::PreCandidate);
        assert_eq!(fingerprint(&early), fingerprint(&late));
    }

    #[test]
    fn time_passing_changes_the_fingerprint() {
        let mut node = started_at(0);
        let before = fingerprint(&node);
        let _ = node.tick(1);
        assert_ne!(before, fingerprint(&node), "the election deadline came 1 ms closer");
    }
}

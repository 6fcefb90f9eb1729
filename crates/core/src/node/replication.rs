//! Log replication and the commit rule (Raft §5.3, §5.4.2).

use super::Node;
use crate::entry::{Entry, Payload};
use crate::message::{AppendOutcome, Body};
use crate::progress::ProgressState;
use crate::quorum;
use crate::status::{DropReason, Role};
use crate::types::{LogIndex, NodeId, Term};

/// A streaming leader has at most this many full messages of entries beyond a
/// follower's match index in flight before it waits for acknowledgements
/// (etcd/raft's inflight window).
const MAX_INFLIGHT_MESSAGES: LogIndex = 32;

impl Node {
    /// Appends a new entry of the current term to the leader's own log and
    /// starts replicating it. Returns its index.
    pub(crate) fn append_as_leader(&mut self, payload: Payload) -> LogIndex {
        let index = self.append_entry_as_leader(payload);
        self.replicate_new_entries();
        index
    }

    /// Appends one entry of this leader's term; nothing is sent yet.
    pub(crate) fn append_entry_as_leader(&mut self, payload: Payload) -> LogIndex {
        assert_eq!(self.role, Role::Leader, "only a leader appends new entries");
        let index = self.log.last_index() + 1;
        let changes_membership = matches!(payload, Payload::Membership(_));
        self.log.append(Entry { term: self.term, index, payload });
        if changes_membership {
            self.refresh_membership();
        }
        // Reads that arrived before this entry are confirmed by the answers
        // that commit it (read_index.rs).
        self.piggyback_waiting_reads();
        index
    }

    /// Commits what a single-node cluster can, and sends each follower the
    /// entries it lacks.
    pub(crate) fn replicate_new_entries(&mut self) {
        // A single-node cluster commits on its own; others wait for acknowledgements.
        self.maybe_commit();
        for peer in self.replication_peers() {
            self.send_append(peer);
        }
    }

    /// Sends `to` the entries from its next index, if its progress allows. A
    /// probing follower gets one message; a streaming follower gets every entry it
    /// lacks, in as many messages as needed, up to `MAX_INFLIGHT_MESSAGES` full
    /// messages beyond its match index, so catch-up is not limited to one message
    /// per round trip.
    pub(crate) fn send_append(&mut self, to: NodeId) {
        self.send_append_limited(to, self.config.max_entries_per_message);
    }

    /// `send_append` with at most `max_entries` per message; 0 sends a probe
    /// without entries (a heartbeat).
    fn send_append_limited(&mut self, to: NodeId, max_entries: usize) {
        loop {
            let Some(progress) = self.progress.get(&to) else { return };
            if !progress.can_send() {
                return;
            }
            if matches!(progress.state, ProgressState::Snapshot { .. }) {
                self.send_snapshot_chunk(to);
                return;
            }
            // A transfer that ended (the follower caught up) frees its snapshot.
            self.outgoing_snapshots.remove(&to);
            let Some(progress) = self.progress.get(&to) else { return };
            if progress.next_index < self.log.first_index() {
                // The entries it needs were compacted: send the snapshot (Raft §7).
                if !self.start_snapshot_transfer(to) && max_entries == 0 {
                    // None at hand yet (it is being made): the heartbeat still
                    // goes, at the log's base, to keep the follower's timers
                    // quiet; its rejection shows the follower answers.
                    let base = self.log.snapshot_index();
                    let base_term = self.log.term_at(base).expect("the base has its term");
                    self.send_empty_append(to, base, base_term, true);
                }
                return;
            }
            let streaming = progress.state == ProgressState::Replicate;
            let window = MAX_INFLIGHT_MESSAGES * self.config.max_entries_per_message.max(1) as LogIndex;
            if streaming && progress.next_index - progress.match_index > window {
                return; // Wait for acknowledgements before sending more.
            }
            let prev_log_index = progress.next_index - 1;
            let mut entries = self.log.entries_from(progress.next_index, max_entries);
            if let Some(limit) = self.transfer_send_limit(to) {
                // A hand-over's marker goes to its target alone (transfer.rs).
                let allowed = limit.saturating_sub(prev_log_index) as usize;
                entries = &entries[..entries.len().min(allowed)];
            }
            let entries = entries[..within_bytes(entries, self.config.max_bytes_per_message)].to_vec();
            if entries.is_empty() && streaming {
                return; // Nothing new; heartbeats keep the follower informed.
            }
            let prev_log_term = self.log.term_at(prev_log_index).expect("next index is at most last index + 1");
            let last_sent = prev_log_index + entries.len() as LogIndex;
            let leader_commit = self.log.committed().min(last_sent);
            let read_round = self.reads.round;
            // Only the heartbeat timer sends without entries here (`max_entries` 0).
            let heartbeat = max_entries == 0;
            debug_assert!(!heartbeat || entries.is_empty());
            self.send(
                to,
                Body::AppendEntries { prev_log_index, prev_log_term, entries, leader_commit, read_round, heartbeat },
            );
            self.progress.get_mut(&to).expect("checked above").on_sent(last_sent);
            if !streaming || last_sent >= self.transfer_send_limit(to).unwrap_or(self.log.last_index()) {
                return;
            }
        }
    }

    /// Raft §5.2: the leader's periodic heartbeat, which also probes followers
    /// that are probing or whose acknowledgements stalled. A heartbeat never
    /// carries entries: followers count missed heartbeats (docs/design/detection.md), so
    /// each follower gets one empty `AppendEntries` per interval whatever its
    /// progress, and a heartbeat is never stuck behind a large message. A probe
    /// that matches is answered and the entries follow (one round trip more than
    /// probing with entries, paid only after a loss).
    pub(crate) fn broadcast_heartbeat(&mut self) {
        self.heartbeat_deadline_ms = self.now_ms + self.config.heartbeat_interval_ms;
        let last_index = self.log.last_index();
        for peer in self.replication_peers() {
            let progress = self.progress.get_mut(&peer).expect("a leader tracks every peer");
            let stalled = progress.match_index < last_index && progress.match_index == progress.match_at_last_heartbeat;
            progress.match_at_last_heartbeat = progress.match_index;
            match progress.state {
                ProgressState::Probe { .. } => {
                    progress.state = ProgressState::Probe { in_flight: false };
                    self.send_append_limited(peer, 0);
                }
                ProgressState::Snapshot { .. } => self.snapshot_heartbeat(peer),
                ProgressState::Replicate if stalled || self.log.is_compacted(progress.match_index) => {
                    // Something sent was lost: resend from the last known match.
                    progress.next_index = progress.match_index + 1;
                    progress.state = ProgressState::Probe { in_flight: false };
                    self.send_append_limited(peer, 0);
                }
                ProgressState::Replicate => {
                    let match_index = progress.match_index;
                    let match_term = self.log.term_at(match_index).expect("match index is in the log");
                    self.send_empty_append(peer, match_index, match_term, true);
                }
            }
        }
    }

    /// An `AppendEntries` without entries at `prev_log_index` (of term
    /// `prev_log_term`): the heartbeat (`heartbeat`), or a read probe. It commits
    /// at most what it proves shared and carries the current read round.
    pub(crate) fn send_empty_append(
        &mut self,
        to: NodeId,
        prev_log_index: LogIndex,
        prev_log_term: Term,
        heartbeat: bool,
    ) {
        let leader_commit = self.log.committed().min(prev_log_index);
        let read_round = self.reads.round;
        let body = Body::AppendEntries {
            prev_log_index,
            prev_log_term,
            entries: Vec::new(),
            leader_commit,
            read_round,
            heartbeat,
        };
        self.send(to, body);
    }

    /// Raft §5.3 at the follower: the consistency check, conflict truncation,
    /// and commit up to what the leader proved shared.
    // The fields of one `AppendEntries`, destructured once in `inbound`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_append_entries(
        &mut self,
        from: NodeId,
        prev_log_index: LogIndex,
        prev_log_term: Term,
        entries: Vec<Entry>,
        leader_commit: LogIndex,
        read_round: u64,
        heartbeat: bool,
    ) {
        if self.role == Role::Leader {
            // Two leaders in one term cannot happen under Raft's voting rules.
            self.dropped.record(DropReason::ImpossibleFields);
            return;
        }
        debug_assert!(!heartbeat || entries.is_empty(), "screened in `inbound`");
        let (mut prev_log_index, mut prev_log_term, mut entries) = (prev_log_index, prev_log_term, entries);
        let base = self.log.snapshot_index();
        if prev_log_index < base {
            // This node's snapshot replaced the entries up to `base`; they are
            // committed, so the leader holds the same ones (leader completeness):
            // check and store only what follows them.
            entries.retain(|entry| entry.index > base);
            prev_log_index = base;
            prev_log_term = self.log.term_at(base).expect("the snapshot's last term is known");
            if entries.first().is_some_and(|entry| entry.term < prev_log_term) {
                // An entry after the snapshot with a lower term than its last one
                // cannot be in the log of a leader that holds the snapshot.
                self.dropped.record(DropReason::ConflictsWithCommitted);
                return;
            }
        }
        // Screen for a contradiction of the committed prefix before anything else:
        // such a message comes from a broken leader and must be dropped without
        // effect, so it may not reset the election timer, renew the leader lease,
        // or make a candidate follow its sender.
        let committed = self.log.committed();
        let prev_matches = match self.log.term_at(prev_log_index) {
            Some(term) if term == prev_log_term => true,
            Some(_) if prev_log_index <= committed => {
                self.dropped.record(DropReason::ConflictsWithCommitted);
                return;
            }
            _ => false,
        };
        let contradicts_commit = prev_matches
            && entries
                .iter()
                .any(|entry| entry.index <= committed && self.log.term_at(entry.index) != Some(entry.term));
        if contradicts_commit {
            self.dropped.record(DropReason::ConflictsWithCommitted);
            return;
        }

        let previous_contact_ms = self.last_leader_contact_ms.filter(|_| self.leader == Some(from));
        if self.role != Role::Follower || self.leader != Some(from) {
            self.become_follower(self.term, Some(from));
        }
        self.last_leader_contact_ms = Some(self.now_ms);
        self.reset_election_timer();
        self.on_heard_from_leader(heartbeat, previous_contact_ms);

        if !prev_matches {
            let hint_index = self.rejection_hint(prev_log_index, prev_log_term);
            let outcome = AppendOutcome::Rejected { prev_log_index, hint_index };
            self.answer_append(from, outcome, read_round, heartbeat);
            return;
        }
        let last_new_index = prev_log_index + entries.len() as LogIndex;
        let truncated_at = self.log.merge(&entries);
        self.refresh_membership();
        // Entries that replace a suffix are not committed in the same batch: its
        // hard state could outlive its log write in a crash (see `Node::finish`).
        // The leader's next heartbeat carries the commit again.
        let replaced_below = truncated_at.map_or(LogIndex::MAX, |index| index - 1);
        let commit_to = leader_commit.min(last_new_index).min(replaced_below);
        if commit_to > committed {
            self.log.commit_to(commit_to);
        }
        let outcome = AppendOutcome::Accepted { match_index: last_new_index };
        self.answer_append(from, outcome, read_round, heartbeat);
    }

    /// Sends the answer to an append. A heartbeat's is answered at once when
    /// it may be (`answers_heartbeats_early`), claiming only what is already on
    /// disk (a rejection claims nothing stored), so that a slow sync or a
    /// snapshot being installed does not silence this follower to its
    /// leader's CheckQuorum and read rounds; the full answer follows the
    /// persist if it claims more.
    fn answer_append(&mut self, to: NodeId, outcome: AppendOutcome, read_round: u64, heartbeat: bool) {
        if heartbeat && self.answers_heartbeats_early() {
            let durable = match outcome {
                AppendOutcome::Accepted { match_index } => {
                    AppendOutcome::Accepted { match_index: match_index.min(self.durable_index) }
                }
                rejected @ AppendOutcome::Rejected { .. } => rejected,
            };
            self.send_early(to, Body::AppendResponse { outcome: durable, read_round });
            if durable == outcome {
                return;
            }
        }
        self.send(to, Body::AppendResponse { outcome, read_round });
    }

    /// Whether a follower answers heartbeats before its persists in flight
    /// complete (docs/decisions/0092): with `parallel_persist`, once its
    /// current term is durable, so that no crash can make it forget the term
    /// of its answer. Its durable prefix is known from the same reports.
    fn answers_heartbeats_early(&self) -> bool {
        self.config.parallel_persist && self.durable_term == self.term
    }

    /// Where the leader should probe next after a failed consistency check:
    /// entries whose term exceeds `prev_log_term` cannot be in the leader's log at
    /// those positions (terms never decrease along a log), so they are skipped;
    /// and when this node holds another entry at `prev_log_index`, the whole run
    /// of that entry's term before it is skipped too (Raft §5.3's optimization).
    /// That run may partly match the leader's log: the leader then sends a few
    /// entries the follower already has, instead of probing its way back one
    /// round trip per entry — which, with a divergent suffix of tens of entries,
    /// outlasted a leader-elect's deadline every time (a 2-voter cluster after
    /// a removal, in the simulator).
    fn rejection_hint(&self, prev_log_index: LogIndex, prev_log_term: Term) -> LogIndex {
        let mut hint_index = prev_log_index.saturating_sub(1).min(self.log.last_index());
        while hint_index > self.log.committed() && self.log.term_at(hint_index).is_some_and(|term| term > prev_log_term)
        {
            hint_index -= 1;
        }
        if let Some(conflict_term) = self.log.term_at(prev_log_index).filter(|term| *term != prev_log_term) {
            while hint_index > self.log.committed() && self.log.term_at(hint_index) == Some(conflict_term) {
                hint_index -= 1;
            }
        }
        hint_index
    }

    /// The leader's side: record the outcome and keep the follower fed.
    pub(crate) fn on_append_response(&mut self, from: NodeId, outcome: AppendOutcome, read_round: u64) {
        if self.role != Role::Leader {
            return; // An answer to a term this node no longer leads.
        }
        let last_index = self.log.last_index();
        // A leader never truncates its own log within its term, so every
        // index it sent, and so every index a follower can accept or reject
        // as `prev_log_index`, is at most its last index.
        let impossible_index = match outcome {
            AppendOutcome::Accepted { match_index } => match_index > last_index,
            AppendOutcome::Rejected { prev_log_index, .. } => prev_log_index > last_index,
        };
        if impossible_index || read_round > self.reads.round {
            // No correct follower acknowledges or rejects entries, or echoes a
            // read round, that this leader never sent: drop the whole message,
            // without effect (a forged rejection far ahead once moved the
            // follower's next index past the log, and the next append panicked).
            self.dropped.record(DropReason::ImpossibleFields);
            return;
        }
        // Any answer of this term, accepted or not, confirms the leadership.
        self.on_read_round_echo(from, read_round);
        let now_ms = self.now_ms;
        let progress = self.progress.get_mut(&from).expect("members are screened");
        progress.heard_at_ms = now_ms;
        match outcome {
            AppendOutcome::Accepted { match_index } => {
                if progress.on_accepted(match_index) {
                    self.maybe_commit();
                }
            }
            AppendOutcome::Rejected { prev_log_index, hint_index } => {
                if !progress.on_rejected(prev_log_index, hint_index) {
                    return;
                }
            }
        }
        self.send_append(from);
        self.maybe_hand_over();
    }

    /// Raft §5.3/§5.4.2: commit the highest index stored on a majority, but only
    /// by counting replicas of an entry of the leader's own term.
    pub(crate) fn maybe_commit(&mut self) {
        let counted = if self.counts_learners() {
            self.membership.members.keys().copied().collect()
        } else {
            self.voters.clone()
        };
        let mut match_indexes: Vec<LogIndex> = counted
            .iter()
            .map(|id| if *id == self.config.id { self.own_match_index() } else { self.progress[id].match_index })
            .collect();
        let candidate = quorum::committed_index(&mut match_indexes);
        if candidate <= self.log.committed() {
            return;
        }
        let own_term = self.log.term_at(candidate) == Some(self.term);
        if own_term || self.commits_previous_terms() {
            self.log.commit_to(candidate);
        }
    }

    #[cfg(feature = "bug-injection")]
    fn counts_learners(&self) -> bool {
        self.config.injected_bug == Some(crate::config::InjectedBug::CountLearnersInQuorum)
    }

    #[cfg(not(feature = "bug-injection"))]
    fn counts_learners(&self) -> bool {
        false
    }

    #[cfg(feature = "bug-injection")]
    fn commits_previous_terms(&self) -> bool {
        self.config.injected_bug == Some(crate::config::InjectedBug::CommitPreviousTermEntries)
    }

    #[cfg(not(feature = "bug-injection"))]
    fn commits_previous_terms(&self) -> bool {
        false
    }
}

/// How many of `entries`, from the first, fit in `max_bytes` of payload: at
/// least one, so that an entry larger than the bound still goes out alone.
fn within_bytes(entries: &[crate::entry::Entry], max_bytes: usize) -> usize {
    let mut total = 0usize;
    let fitting = entries
        .iter()
        .take_while(|entry| {
            total = total.saturating_add(entry.payload_len());
            total <= max_bytes
        })
        .count();
    fitting.max(1).min(entries.len())
}

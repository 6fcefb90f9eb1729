//! A leader's replication state for one follower (after etcd/raft's tracker).

use crate::types::LogIndex;

/// A leader has at most this many snapshot chunks in flight to one follower: a
/// transfer moves this many chunks per round trip, not one, so a follower
/// catches up even on a slow link while the leader keeps compacting (simulator
/// seed 271).
pub const MAX_INFLIGHT_CHUNKS: u64 = 8;

/// How the leader currently sends to a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// The leader does not know where the follower's log matches: it sends one
    /// `AppendEntries` and waits for the answer (or the next heartbeat).
    Probe {
        /// A probe is in flight; wait before sending another.
        in_flight: bool,
    },
    /// The follower matches: the leader streams entries and advances
    /// `next_index` optimistically.
    Replicate,
    /// The entries the follower needs were compacted: the leader sends its
    /// snapshot in chunks, a bounded window of them in flight (Raft §7).
    Snapshot {
        /// Last index of the snapshot being sent.
        last_included_index: LogIndex,
        /// Bytes the follower acknowledged holding: the window starts here.
        offset: u64,
        /// Chunks sent from `offset` on and not yet answered; at most
        /// `MAX_INFLIGHT_CHUNKS`.
        in_flight: u64,
        /// `offset` at the previous heartbeat: unchanged means the window was
        /// lost and is sent again.
        offset_at_heartbeat: u64,
    },
}

/// Replication state of one follower.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Highest index known to match. Invariant: `match_index < next_index`.
    pub match_index: LogIndex,
    /// Next index to send.
    pub next_index: LogIndex,
    /// Probe or stream.
    pub state: ProgressState,
    /// Heard from since the last CheckQuorum round.
    pub recent_active: bool,
    /// When the leader last heard this follower answer (an append or snapshot
    /// response of its term); a new leader counts every follower heard at its
    /// election. The vote exchange's leader steps down the moment fewer than a
    /// majority were heard within an election timeout (`Node::quorum_contact_lost`).
    pub heard_at_ms: u64,
    /// `match_index` at the previous heartbeat: unchanged while entries are
    /// outstanding means something was lost and must be sent again.
    pub match_at_last_heartbeat: LogIndex,
}

impl Progress {
    /// A fresh follower as seen by a new leader whose last index is `last_index`,
    /// at `now_ms`.
    pub fn new(last_index: LogIndex, now_ms: u64) -> Progress {
        Progress {
            match_index: 0,
            next_index: last_index + 1,
            state: ProgressState::Probe { in_flight: false },
            recent_active: false,
            heard_at_ms: now_ms,
            match_at_last_heartbeat: 0,
        }
    }

    /// Records an acknowledgement up to `match_index`; returns true if it was news.
    pub fn on_accepted(&mut self, match_index: LogIndex) -> bool {
        self.recent_active = true;
        if match_index <= self.match_index {
            if let ProgressState::Probe { in_flight } = &mut self.state {
                *in_flight = false;
            }
            return false;
        }
        self.match_index = match_index;
        self.next_index = self.next_index.max(match_index + 1);
        // Ends a snapshot transfer only at or beyond its last index: then the
        // follower has it (or got there some other way). A smaller claim (a
        // heartbeat answered from the durable prefix while the snapshot is
        // being installed) leaves the transfer running.
        let transfer_ends = match self.state {
            ProgressState::Snapshot { last_included_index, .. } => match_index >= last_included_index,
            _ => true,
        };
        if transfer_ends {
            self.state = ProgressState::Replicate;
        }
        true
    }

    /// Records a rejection of the request whose previous index was
    /// `prev_log_index`; returns true if the leader should send again.
    pub fn on_rejected(&mut self, prev_log_index: LogIndex, hint_index: LogIndex) -> bool {
        self.recent_active = true;
        // A follower that rejects the very index it acknowledged has lost its
        // log (a replaced disk, restarted empty): what it acknowledged proves
        // nothing any more, so it is probed again from its hint. Otherwise
        // its rejections at or below the old match index look stale and it
        // never catches up (docs/design/cold-start.md; a restarted node that
        // heard of the leader from others never sends it a correction).
        if self.state == ProgressState::Replicate
            && prev_log_index > 0
            && prev_log_index == self.match_index
            && hint_index < prev_log_index
        {
            self.match_index = 0;
            self.next_index = hint_index + 1;
            self.state = ProgressState::Probe { in_flight: false };
            return true;
        }
        let stale = match self.state {
            ProgressState::Replicate => prev_log_index <= self.match_index,
            ProgressState::Probe { .. } => prev_log_index + 1 != self.next_index,
            // Heartbeats during a transfer are rejected by design: the follower
            // lacks the snapshot's last entry until it installs the snapshot.
            ProgressState::Snapshot { .. } => true,
        };
        if stale {
            return false;
        }
        self.next_index = prev_log_index.min(hint_index + 1).max(self.match_index + 1);
        self.state = ProgressState::Probe { in_flight: false };
        true
    }

    /// Whether the leader may send an append now.
    pub fn can_send(&self) -> bool {
        match self.state {
            ProgressState::Probe { in_flight } => !in_flight,
            ProgressState::Replicate => true,
            ProgressState::Snapshot { in_flight, .. } => in_flight < MAX_INFLIGHT_CHUNKS,
        }
    }

    /// Records that entries up to `last_sent` went out.
    pub fn on_sent(&mut self, last_sent: LogIndex) {
        match &mut self.state {
            ProgressState::Replicate => self.next_index = self.next_index.max(last_sent + 1),
            ProgressState::Probe { in_flight } => *in_flight = true,
            ProgressState::Snapshot { .. } => unreachable!("a snapshot transfer sends chunks, not entries"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_waits_for_its_answer_then_streams() {
        let mut progress = Progress::new(10, 0);
        assert!(progress.can_send());
        progress.on_sent(10);
        assert!(!progress.can_send(), "one probe at a time");
        assert!(progress.on_accepted(10));
        assert_eq!(progress.state, ProgressState::Replicate);
        assert_eq!(progress.next_index, 11);
        progress.on_sent(14);
        assert_eq!(progress.next_index, 15, "streaming advances optimistically");
    }

    #[test]
    fn a_rejection_moves_next_back_but_never_below_match() {
        let mut progress = Progress::new(10, 0);
        assert!(progress.on_accepted(4));
        progress.on_sent(10);
        assert!(progress.on_rejected(10, 2));
        assert_eq!(progress.next_index, 5, "never below match + 1");
        assert!(!progress.on_rejected(3, 0), "a rejection below the match is stale");
    }

    #[test]
    fn a_claim_below_the_snapshot_being_sent_keeps_the_transfer() {
        let mut progress = Progress::new(100, 0);
        let sending =
            ProgressState::Snapshot { last_included_index: 90, offset: 0, in_flight: 1, offset_at_heartbeat: 0 };
        progress.state = sending;
        // A heartbeat answered from the follower's durable prefix while it
        // installs the snapshot: it moves the match, not the state.
        assert!(progress.on_accepted(40));
        assert_eq!((progress.match_index, progress.state), (40, sending));
        assert!(progress.on_accepted(90), "the snapshot installed");
        assert_eq!(progress.state, ProgressState::Replicate);
    }
}

//! Snapshot transfer (Raft §7): a leader whose log no longer holds the entries
//! a follower needs sends its snapshot instead, in chunks; the follower installs
//! it and hands it to its driver.
//!
//! The leader keeps a window of up to `MAX_INFLIGHT_CHUNKS` chunks in flight per
//! follower, from the bytes the follower acknowledged; the follower takes only
//! the chunk that continues what it holds. It answers every chunk with the bytes
//! it holds, so the leader always continues from what is really there: after a
//! lost chunk (the window is resent at the next heartbeat that finds no
//! progress, with no timer per message), a duplicate, or a follower restart
//! (which loses the partial snapshot: the answer says 0 and the leader starts
//! over).

use super::Node;
use crate::config::Config;
use crate::entry::Entry;
use crate::message::Body;
use crate::output::HardState;
use crate::progress::{ProgressState, MAX_INFLIGHT_CHUNKS};
use crate::snapshot::{Snapshot, SnapshotChunk, SnapshotMeta};
use crate::status::{DropReason, Role};
use crate::types::{LogIndex, NodeId};

/// A snapshot being received: the bytes so far, contiguous from 0, from one
/// leader of one term (two leaders' snapshots of one index hold the same state
/// but need not be the same bytes, so their chunks never mix).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IncomingSnapshot {
    from: NodeId,
    term: crate::types::Term,
    meta: SnapshotMeta,
    total_bytes: u64,
    /// Bytes received so far, contiguous from 0.
    received: u64,
    /// Those bytes, unless the driver stages them (`Config::stage_snapshot_chunks`).
    data: Vec<u8>,
}

impl IncomingSnapshot {
    /// What the model checker must tell apart: sender, term, snapshot and progress.
    pub(super) fn fingerprint_key(&self) -> (NodeId, crate::types::Term, crate::types::LogIndex, u64, u64) {
        (self.from, self.term, self.meta.last_included_index, self.total_bytes, self.received)
    }
}

/// One `InstallSnapshot` chunk, as received.
pub(crate) struct Chunk {
    pub meta: SnapshotMeta,
    pub total_bytes: u64,
    pub offset: u64,
    pub data: bytes::Bytes,
    pub done: bool,
}

/// Checks a restored snapshot against the configuration, the hard state and the
/// entries that follow it.
pub(super) fn check_restored(
    config: &Config,
    hard_state: &HardState,
    snapshot: &Snapshot,
    entries: &[Entry],
) -> Result<(), String> {
    let meta = &snapshot.meta;
    let _ = config;
    meta.check()?;
    if meta.last_included_term > hard_state.term {
        return Err(format!(
            "snapshot up to index {} has term {} beyond the persisted term {}",
            meta.last_included_index, meta.last_included_term, hard_state.term
        ));
    }
    if let Some(first) = entries.first() {
        if first.index != meta.last_included_index + 1 {
            return Err(format!(
                "the log after a snapshot up to index {} starts at index {} (it must start at {})",
                meta.last_included_index,
                first.index,
                meta.last_included_index + 1
            ));
        }
    }
    Ok(())
}

impl Node {
    /// The leader's side: `to` needs entries this log compacted; start sending
    /// the snapshot from byte 0. The transfer keeps that snapshot (its bytes are
    /// shared) even if the leader compacts again meanwhile: starting over with
    /// every newer snapshot could keep a slow follower from ever finishing.
    ///
    /// Without a snapshot whose bytes reach the log's base (the log was
    /// compacted without bytes, `Node::compact_log`), the driver is asked for
    /// one (`Output::snapshot_wanted`) if `to` answered recently, and `to`
    /// stays in probe: the transfer starts when the snapshot is offered, or
    /// at a later heartbeat.
    ///
    /// Returns whether the transfer started.
    pub(crate) fn start_snapshot_transfer(&mut self, to: NodeId) -> bool {
        let usable = self.snapshot.as_ref().filter(|kept| kept.meta.last_included_index >= self.log.snapshot_index());
        let Some(snapshot) = usable.cloned() else {
            // Only for a follower that answers: a snapshot as large as the
            // data is not made for one that is down (it asks again once it
            // answers a probe).
            if self.progress.get(&to).is_some_and(|progress| progress.recent_active) {
                self.out.snapshot_wanted = true;
            }
            return false;
        };
        let last_included_index = snapshot.meta.last_included_index;
        let progress = self.progress.get_mut(&to).expect("a leader tracks every peer");
        progress.state =
            ProgressState::Snapshot { last_included_index, offset: 0, in_flight: 0, offset_at_heartbeat: 0 };
        progress.next_index = last_included_index + 1;
        self.outgoing_snapshots.insert(to, snapshot);
        self.send_snapshot_chunk(to);
        true
    }

    /// Sends `to` the chunks after those in flight, from the offset it
    /// acknowledged, until the window is full or the last chunk is out.
    pub(crate) fn send_snapshot_chunk(&mut self, to: NodeId) {
        let chunk_bytes = self.config.snapshot_chunk_bytes as u64;
        loop {
            let snapshot = self.outgoing_snapshots.get(&to).expect("a transfer keeps its snapshot");
            let progress = self.progress.get_mut(&to).expect("a leader tracks every peer");
            let ProgressState::Snapshot { last_included_index, offset, in_flight, offset_at_heartbeat } =
                progress.state
            else {
                unreachable!("chunks go only to followers in a snapshot transfer")
            };
            assert_eq!(last_included_index, snapshot.meta.last_included_index, "the transfer's own snapshot");
            let total_bytes = snapshot.data.len() as u64;
            let start = offset.saturating_add(in_flight.saturating_mul(chunk_bytes)).min(total_bytes);
            if in_flight >= MAX_INFLIGHT_CHUNKS || (in_flight > 0 && start == total_bytes) {
                return; // The window is full, or the last chunk is out.
            }
            let end = (start + chunk_bytes).min(total_bytes);
            let body = Body::InstallSnapshot {
                meta: snapshot.meta.clone(),
                total_bytes,
                offset: start,
                data: snapshot.data.slice(start as usize..end as usize),
                done: end == total_bytes,
            };
            let in_flight = in_flight + 1;
            progress.state = ProgressState::Snapshot { last_included_index, offset, in_flight, offset_at_heartbeat };
            self.send(to, body);
        }
    }

    /// The heartbeat of a follower in a snapshot transfer: the window again if
    /// no chunk landed since the previous heartbeat (it may be lost), and an
    /// empty append at the snapshot's last entry, which keeps the follower's
    /// timers quiet like any heartbeat (it is rejected until the snapshot is
    /// installed, and the leader ignores that rejection).
    pub(crate) fn snapshot_heartbeat(&mut self, to: NodeId) {
        let progress = self.progress.get_mut(&to).expect("a leader tracks every peer");
        if let ProgressState::Snapshot { offset, in_flight, offset_at_heartbeat, .. } = &mut progress.state {
            if *offset == *offset_at_heartbeat {
                *in_flight = 0;
            }
            *offset_at_heartbeat = *offset;
        }
        self.send_snapshot_chunk(to);
        // At the snapshot being sent, if the log still knows its term; else at
        // the log's own base.
        let sending = self.outgoing_snapshots[&to].meta.last_included_index;
        let prev_log_index = if self.log.is_compacted(sending) { self.log.snapshot_index() } else { sending };
        let prev_log_term = self.log.term_at(prev_log_index).expect("not compacted");
        self.send_empty_append(to, prev_log_index, prev_log_term, true);
    }

    /// The leader's side: a follower's answer to a chunk.
    pub(crate) fn on_snapshot_response(
        &mut self,
        from: NodeId,
        last_included_index: LogIndex,
        received_bytes: u64,
        installed: bool,
    ) {
        if self.role != Role::Leader {
            return; // An answer to a term this node no longer leads.
        }
        let total_bytes = self.outgoing_snapshots.get(&from).map(|snapshot| snapshot.data.len() as u64);
        let now_ms = self.now_ms;
        let progress = self.progress.get_mut(&from).expect("members are screened");
        if installed {
            if last_included_index > self.log.last_index() {
                self.dropped.record(DropReason::ImpossibleFields);
                return;
            }
            progress.heard_at_ms = now_ms;
            // The follower holds the snapshot: its log matches up to its last index.
            if progress.on_accepted(last_included_index) {
                self.maybe_commit();
            }
            self.send_append(from);
            return;
        }
        let ProgressState::Snapshot { last_included_index: sending, offset, in_flight, offset_at_heartbeat } =
            progress.state
        else {
            progress.recent_active = true;
            progress.heard_at_ms = now_ms;
            return; // A late answer about a transfer that is over.
        };
        if sending != last_included_index {
            progress.recent_active = true;
            progress.heard_at_ms = now_ms;
            return; // About another snapshot than the one being sent.
        }
        if total_bytes.is_none_or(|total| received_bytes > total) {
            self.dropped.record(DropReason::ImpossibleFields);
            return;
        }
        progress.recent_active = true;
        progress.heard_at_ms = now_ms;
        if received_bytes == offset {
            // No news (a duplicate, or the answer to a chunk after a lost one):
            // sending on it would let duplicates multiply the chunks in flight.
            // The heartbeat resends.
            return;
        }
        let in_flight = if received_bytes > offset {
            // Forward: the chunks up to `received_bytes` landed.
            let chunk_bytes = self.config.snapshot_chunk_bytes as u64;
            in_flight.saturating_sub((received_bytes - offset).div_ceil(chunk_bytes))
        } else {
            // Back: the follower lost its partial snapshot by restarting, and
            // drops the chunks in flight after it.
            0
        };
        // Continue from what it holds.
        let offset = received_bytes;
        progress.state = ProgressState::Snapshot { last_included_index, offset, in_flight, offset_at_heartbeat };
        self.send_snapshot_chunk(from);
    }

    /// The follower's side: one chunk of the leader's snapshot (Raft §7).
    pub(crate) fn on_install_snapshot(&mut self, from: NodeId, chunk: Chunk) {
        if self.role == Role::Leader {
            // Two leaders in one term cannot happen under Raft's voting rules.
            self.dropped.record(DropReason::ImpossibleFields);
            return;
        }
        // A snapshot has bytes: one without them records a log's base only
        // (`Node::compact_log`) and is never sent.
        if chunk.meta.check().is_err() || chunk.total_bytes == 0 {
            self.dropped.record(DropReason::ImpossibleFields);
            return;
        }
        // This node already holds everything such a snapshot covers (a late
        // duplicate, or a leader that missed the answer to its last chunk):
        // counted and changing nothing here, but answered "installed" — true,
        // as its committed prefix matches the leader's — or a leader that lost
        // that answer would send this snapshot forever (simulator seed 22).
        if chunk.meta.last_included_index <= self.log.committed() {
            self.dropped.record(DropReason::StaleSnapshot);
            let last_included_index = chunk.meta.last_included_index;
            let received_bytes = chunk.total_bytes;
            self.send(from, Body::SnapshotResponse { last_included_index, received_bytes, installed: true });
            return;
        }
        let previous_contact_ms = self.last_leader_contact_ms.filter(|_| self.leader == Some(from));
        if self.role != Role::Follower || self.leader != Some(from) {
            self.become_follower(self.term, Some(from));
        }
        self.last_leader_contact_ms = Some(self.now_ms);
        self.reset_election_timer();
        self.on_heard_from_leader(false, previous_contact_ms);

        let last_included_index = chunk.meta.last_included_index;
        let term = self.term;
        let same_transfer = |incoming: &IncomingSnapshot| {
            (incoming.from, incoming.term) == (from, term)
                && incoming.meta == chunk.meta
                && incoming.total_bytes == chunk.total_bytes
        };
        if chunk.offset == 0 && !self.incoming_snapshot.as_ref().is_some_and(same_transfer) {
            // A new transfer supersedes any partial one.
            let (meta, total_bytes) = (chunk.meta.clone(), chunk.total_bytes);
            // Room for the whole snapshot at once, if the size is plausible:
            // growing by doubling would copy it over and over, on the task
            // that drives the node (pages are only touched as chunks land).
            // Staged chunks are the driver's to keep.
            let mut data = Vec::new();
            if !self.config.stage_snapshot_chunks {
                let _ = data.try_reserve_exact(usize::try_from(total_bytes).unwrap_or(usize::MAX));
            }
            self.incoming_snapshot = Some(IncomingSnapshot { from, term, meta, total_bytes, received: 0, data });
        }
        let held = match &self.incoming_snapshot {
            Some(incoming) if same_transfer(incoming) => incoming.received,
            _ => 0,
        };
        if chunk.offset != held {
            // A duplicate, a chunk after a lost one, or a transfer this node lost
            // by restarting: tell the leader where to continue.
            self.send(from, Body::SnapshotResponse { last_included_index, received_bytes: held, installed: false });
            return;
        }
        let incoming = self.incoming_snapshot.as_mut().expect("held bytes imply a transfer");
        incoming.received += chunk.data.len() as u64;
        let received_bytes = incoming.received;
        if self.config.stage_snapshot_chunks {
            self.out.snapshot_chunks.push(SnapshotChunk {
                last_included_index,
                offset: chunk.offset,
                data: chunk.data,
            });
        } else {
            incoming.data.extend_from_slice(&chunk.data);
            debug_assert_eq!(incoming.data.len() as u64, incoming.received);
        }
        if !chunk.done {
            self.send(from, Body::SnapshotResponse { last_included_index, received_bytes, installed: false });
            return;
        }
        let incoming = self.incoming_snapshot.take().expect("checked above");
        assert_eq!(received_bytes, incoming.total_bytes, "the last chunk ends the data");
        debug_assert!(self.config.stage_snapshot_chunks == incoming.data.is_empty());
        self.install_snapshot(Snapshot { meta: incoming.meta, data: incoming.data.into() });
        self.send(from, Body::SnapshotResponse { last_included_index, received_bytes, installed: true });
    }

    /// Replaces the log's prefix (or all of it) with `snapshot` and hands it to
    /// the driver, which persists it before this batch's hard state.
    fn install_snapshot(&mut self, snapshot: Snapshot) {
        assert!(snapshot.meta.last_included_index > self.log.committed(), "only newer snapshots are installed");
        assert!(snapshot.meta.last_included_term <= self.term, "a snapshot's term is at most the leader's");
        // Of the durable prefix, only the committed part is surely the leader's
        // (an uncommitted durable suffix may be replaced by the snapshot): it
        // is all this node may still claim until the snapshot is durable.
        self.durable_index = self.durable_index.min(self.log.committed());
        self.log.install(snapshot.meta.clone());
        self.refresh_membership();
        // Staged bytes are the driver's: this node keeps none to send, and a
        // follower that later needs them from it gets a snapshot made on
        // demand (`Output::snapshot_wanted`), as after `Node::compact_log`.
        self.snapshot = (!snapshot.data.is_empty()).then(|| snapshot.clone());
        self.out.snapshot = Some(snapshot);
    }
}

//! Linearizable reads by ReadIndex (Raft thesis §6.4), at the driver.
//!
//! A read never enters the log. The leader's core confirms it
//! ([`conclave_core::Node::read_index`]); the driver serves it from the store
//! once it has applied up to the read's index. A follower forwards the read to
//! the leader ([`PeerFrame::ForwardRead`]), exactly as it forwards writes, and
//! the leader answers with the value ([`PeerFrame::ForwardResult`]). A
//! confirmed read is placed in the apply stream right after the entries up to
//! its index ([`super::apply`]), and served there by the apply thread. A read the
//! core fails (its node stopped leading) goes back to wait for the next leader:
//! reads change nothing, so retrying one is always safe. Connections in
//! `READONLY` mode skip all of this and read the local store.

use std::collections::{BTreeMap, HashMap};

use conclave_core::{LogIndex, NodeId, ReadIndexError, ReadState};

use super::apply::{ApplyItem, ReadTarget};
use super::Driver;
use crate::kv::{KvCommand, KvReply};
use crate::peer::frame::{ForwardOutcome, ForwardResult, PeerFrame};

/// Who asked for a read the core holds.
#[derive(Debug)]
enum Asker {
    /// A client of this node: the request of that id.
    Local,
    /// A follower's forward.
    Peer {
        /// The follower.
        from: NodeId,
        /// Its incarnation and request id, echoed in the answer.
        incarnation: u64,
        request_id: u64,
    },
}

#[derive(Debug)]
struct HeldRead {
    asker: Asker,
    command: KvCommand,
    /// The index of the asking connection's latest earlier write (0: none):
    /// the read is served at a state that includes it.
    min_index: LogIndex,
}

/// Reads this node's core holds or confirmed, by context. A local read's
/// context is its request id; a forwarded read takes a fresh id from the same
/// counter, so contexts never collide.
#[derive(Debug, Default)]
pub(crate) struct Reads {
    held: HashMap<u64, HeldRead>,
    /// Confirmed reads waiting for the entries up to their index to be sent to
    /// the apply thread.
    awaiting_apply: BTreeMap<LogIndex, Vec<u64>>,
}

impl Driver {
    /// Sends the waiting read `id` to the leader, or hands it to this node's
    /// core if it leads; it must see the state at `min_index` (its connection's
    /// latest earlier write) or later. Returns false if the core refused it (the
    /// read stays queued until the next leader is known).
    pub(super) fn dispatch_read(&mut self, id: u64, command: KvCommand, leader: NodeId, min_index: LogIndex) -> bool {
        if leader != self.node.id() {
            let frame = PeerFrame::ForwardRead { incarnation: self.incarnation, request_id: id, command, min_index };
            self.transport.send(leader, &frame);
            self.requests.mark_forwarded(id, leader);
            return true;
        }
        match self.node.read_index(id) {
            Ok(output) => {
                self.reads.held.insert(id, HeldRead { asker: Asker::Local, command, min_index });
                self.requests.mark_reading(id);
                self.enqueue(output);
                true
            }
            Err(ReadIndexError::NotLeader { .. }) => false,
        }
    }

    /// A follower's client read: take it if this node leads, else say who does.
    pub(super) fn on_forward_read(
        &mut self,
        from: NodeId,
        incarnation: u64,
        request_id: u64,
        command: KvCommand,
        min_index: LogIndex,
    ) {
        if !command.is_read() {
            let outcome = ForwardOutcome::Refused("a forwarded read must be a read command".into());
            return self.transport.send(from, &PeerFrame::ForwardReply { incarnation, request_id, outcome });
        }
        // The index a follower names is one its leader gave the connection's
        // write. Above this log's end it is not an entry of this leader's log
        // (that write will never commit here), so it asks for nothing more.
        let min_index = min_index.min(self.node.log().last_index());
        let context = self.requests.next_id();
        match self.node.read_index(context) {
            Ok(output) => {
                let asker = Asker::Peer { from, incarnation, request_id };
                self.reads.held.insert(context, HeldRead { asker, command, min_index });
                self.enqueue(output);
            }
            Err(ReadIndexError::NotLeader { leader }) => {
                let outcome = ForwardOutcome::NotLeader { leader };
                self.transport.send(from, &PeerFrame::ForwardReply { incarnation, request_id, outcome });
            }
        }
    }

    /// Confirmed reads: serve those the store has reached, keep the rest until
    /// it reaches their index (the confirmed one, or the asking connection's
    /// latest write if that is later).
    pub(super) fn on_read_states(&mut self, ready: Vec<ReadState>) {
        for read in ready {
            let min_index = self.reads.held.get(&read.context).map_or(0, |held| held.min_index);
            self.reads.awaiting_apply.entry(read.index.max(min_index)).or_default().push(read.context);
        }
        self.serve_applied_reads();
    }

    /// Reads the core failed (it stopped leading): local ones wait for the next
    /// leader, forwarded ones are sent back to their follower to retry.
    pub(super) fn on_failed_reads(&mut self, failed: Vec<u64>) {
        for context in failed {
            let Some(held) = self.reads.held.remove(&context) else { continue };
            match held.asker {
                Asker::Local => self.requests.retry(context),
                Asker::Peer { from, incarnation, request_id } => {
                    let outcome = ForwardOutcome::NotLeader { leader: self.node.leader() };
                    self.transport.send(from, &PeerFrame::ForwardReply { incarnation, request_id, outcome });
                }
            }
        }
    }

    /// Places every confirmed read whose index was sent to the apply thread
    /// in the apply stream, where it is served after exactly those entries.
    pub(super) fn serve_applied_reads(&mut self) {
        while let Some(entry) = self.reads.awaiting_apply.first_entry() {
            if *entry.key() > self.submitted_index {
                break;
            }
            for context in entry.remove() {
                let Some(held) = self.reads.held.get(&context) else { continue };
                let command = held.command.clone();
                self.applier.send(ApplyItem::ServeRead { target: ReadTarget::Driver(context), command });
            }
        }
    }

    /// True if a confirmed read waits for an index already sent to be applied.
    pub(super) fn reads_due(&self) -> bool {
        self.reads.awaiting_apply.first_key_value().is_some_and(|(index, _)| *index <= self.submitted_index)
    }

    /// The apply thread's answer to the read placed under `context`.
    pub(super) fn answer_read(&mut self, context: u64, reply: KvReply) {
        // Not held: a `READONLY` read, under its request id.
        let Some(held) = self.reads.held.remove(&context) else { return self.requests.answer(context, reply) };
        match held.asker {
            Asker::Local => self.requests.answer(context, reply),
            Asker::Peer { from, incarnation, request_id } => {
                let result = ForwardResult { incarnation, request_id, reply };
                self.transport.send(from, &PeerFrame::ForwardResult(result));
            }
        }
    }
}

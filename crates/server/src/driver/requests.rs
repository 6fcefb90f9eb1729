//! Client requests in flight at the driver, and how each can end.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use conclave_core::{LogIndex, NodeId, Term};
use thiserror::Error;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::kv::{KvCommand, KvReply};

/// Why a request got no answer from the state machine. Every variant says
/// whether the command may have taken effect, so a client knows if a retry is safe.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RequestError {
    /// No leader was known for the whole leader wait; the command was never proposed.
    #[error("TRYAGAIN no leader elected within {waited_ms} ms; the command did not take effect, retry")]
    NoLeader {
        /// How long it waited.
        waited_ms: u64,
    },
    /// Proposed (or forwarded) but not answered in time.
    #[error("TRYAGAIN request timed out after {waited_ms} ms; it may or may not have taken effect")]
    Timeout {
        /// How long it waited.
        waited_ms: u64,
    },
    /// A new leader replaced the log entry this request was appended as.
    #[error("TRYAGAIN request lost: a new leader replaced log entry {index}; it did not take effect, retry")]
    Overwritten {
        /// The index the request had been given.
        index: LogIndex,
    },
    /// Refused for good.
    #[error("ERR {0}")]
    Refused(String),
    /// The node is stopping.
    #[error("TRYAGAIN server is shutting down; the request may or may not have taken effect")]
    ShuttingDown,
    /// The leader changed while this request was on its way, and a later
    /// command of the same connection was already sent on: running this one now
    /// would run it after that one.
    #[error("TRYAGAIN leader changed while the request was in flight; it did not take effect, retry")]
    Reordered,
}

/// Where the driver sends a request's outcome.
pub type ReplySender = oneshot::Sender<Result<KvReply, RequestError>>;

/// Where a request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Waiting for a leader to be known; not proposed anywhere yet.
    NeedsLeader,
    /// Sent to that leader; no answer yet.
    Forwarded,
    /// Appended at (index, term): answered when that index is applied.
    Placed,
    /// A linearizable read this node's core holds (it leads): answered once the
    /// core confirms it and the store has applied up to its read index.
    Reading,
}

pub(crate) struct Waiter {
    pub(crate) reply: ReplySender,
    /// The client connection it came on: its commands run in the order sent.
    pub(crate) connection: u64,
    /// The encoded envelope of a write (empty for a read), kept until it is
    /// settled: it is sent again, under the same request id, if its leader is
    /// lost (the state machine applies an id once).
    pub(crate) command: Vec<u8>,
    /// The node it was last sent to (forwarded, or proposed here).
    pub(crate) sent_to: Option<NodeId>,
    /// Sent again after a leader change: an earlier copy may be in some log.
    pub(crate) resent: bool,
    /// A linearizable read: it goes through ReadIndex, never the log.
    pub(crate) read: Option<KvCommand>,
    /// A read's view of its connection's latest earlier write.
    pub(crate) after: ReadAfter,
    pub(crate) stage: Stage,
    pub(crate) started: Instant,
}

/// A connection's latest write, which its later reads must see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LastWrite {
    /// Its request id.
    pub(crate) id: u64,
    /// Its log index, once placed.
    pub(crate) index: Option<LogIndex>,
    /// Answered or failed.
    pub(crate) done: bool,
}

/// What a read must see of its connection's latest earlier write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadAfter {
    /// Nothing: no earlier write of the connection can have taken effect.
    Nothing,
    /// That write (of this request id) has no log index yet: the read waits.
    Unplaced(u64),
    /// The read must see the state at this index or later.
    Index(LogIndex),
}

/// Every request the driver is responsible for.
pub(crate) struct Requests {
    waiters: HashMap<u64, Waiter>,
    /// Each connection's latest write, while a later read may need it.
    last_writes: HashMap<u64, LastWrite>,
    /// Reads waiting to learn the log index of a write, by the write's id.
    dependents: HashMap<u64, Vec<u64>>,
    /// `READONLY` reads waiting for their connection's earlier write to be
    /// applied here, with that write's index once known.
    pub(crate) stale_reads: Vec<u64>,
    /// Ids waiting for a leader, oldest first.
    pub(crate) needs_leader: VecDeque<u64>,
    /// Ids to retry after a "not the leader" answer, at the next sweep.
    retry_later: Vec<u64>,
    /// Ids by the log index they were placed at.
    placed: BTreeMap<LogIndex, Vec<(u64, Term)>>,
    /// Ids of the writes not yet settled (answered or failed): they may still
    /// be sent (again) to a leader.
    open_writes: BTreeSet<u64>,
    /// Each connection's latest request id answered or failed: an earlier
    /// write still open is never sent again (it would run after it).
    last_settled: HashMap<u64, u64>,
    next_id: u64,
    leader_wait: Duration,
    timeout: Duration,
}

impl Requests {
    pub(crate) fn new(leader_wait: Duration, timeout: Duration) -> Requests {
        Requests {
            waiters: HashMap::new(),
            last_writes: HashMap::new(),
            dependents: HashMap::new(),
            stale_reads: Vec::new(),
            needs_leader: VecDeque::new(),
            retry_later: Vec::new(),
            placed: BTreeMap::new(),
            open_writes: BTreeSet::new(),
            last_settled: HashMap::new(),
            next_id: 1,
            leader_wait,
            timeout,
        }
    }

    /// A fresh request id.
    pub(crate) fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// What a new write `id` tells the state machine: every write below this
    /// id is settled here and never sent again (so its saved result may go).
    pub(crate) fn settled_below(&self, id: u64) -> u64 {
        self.open_writes.first().map_or(id, |&open| open.min(id))
    }

    pub(crate) fn len(&self) -> usize {
        self.waiters.len()
    }

    /// Takes charge of a new write of `connection` that waits for a leader.
    pub(crate) fn add(&mut self, id: u64, connection: u64, command: Vec<u8>, reply: ReplySender, now: Instant) {
        let after = ReadAfter::Nothing;
        let stage = Stage::NeedsLeader;
        let waiter =
            Waiter { reply, connection, command, sent_to: None, resent: false, read: None, after, stage, started: now };
        self.waiters.insert(id, waiter);
        self.open_writes.insert(id);
        self.last_writes.insert(connection, LastWrite { id, index: None, done: false });
        self.needs_leader.push_back(id);
    }

    /// Takes charge of a new linearizable read of `connection` that waits for a leader.
    pub(crate) fn add_read(&mut self, id: u64, connection: u64, read: KvCommand, reply: ReplySender, now: Instant) {
        debug_assert!(read.is_read());
        self.insert_read(id, connection, read, reply, Stage::NeedsLeader, now);
        self.needs_leader.push_back(id);
    }

    fn insert_read(
        &mut self,
        id: u64,
        connection: u64,
        read: KvCommand,
        reply: ReplySender,
        stage: Stage,
        now: Instant,
    ) {
        let after = match self.last_writes.get(&connection) {
            None | Some(LastWrite { index: None, done: true, .. }) => ReadAfter::Nothing,
            Some(LastWrite { index: Some(index), .. }) => ReadAfter::Index(*index),
            Some(LastWrite { id: write, index: None, done: false }) => {
                self.dependents.entry(*write).or_default().push(id);
                ReadAfter::Unplaced(*write)
            }
        };
        let command = Vec::new();
        let (sent_to, resent) = (None, false);
        let waiter =
            Waiter { reply, connection, command, sent_to, resent, read: Some(read), after, stage, started: now };
        self.waiters.insert(id, waiter);
    }

    /// Takes charge of a `READONLY` read that must wait until its connection's
    /// earlier write is applied here.
    pub(crate) fn add_stale_read(
        &mut self,
        id: u64,
        connection: u64,
        read: KvCommand,
        reply: ReplySender,
        now: Instant,
    ) {
        self.insert_read(id, connection, read, reply, Stage::Reading, now);
        self.stale_reads.push(id);
    }

    /// The connection a request came on.
    pub(crate) fn connection(&self, id: u64) -> Option<u64> {
        self.waiters.get(&id).map(|waiter| waiter.connection)
    }

    /// What the read `id` must see of its connection's earlier writes.
    pub(crate) fn read_after(&self, id: u64) -> ReadAfter {
        self.waiters.get(&id).map_or(ReadAfter::Nothing, |waiter| waiter.after)
    }

    /// The write `write` now has a log index (`Some`), or surely took no
    /// effect (`None`): the reads waiting on it learn what to see.
    fn resolve_dependents(&mut self, write: u64, index: Option<LogIndex>) {
        for read in self.dependents.remove(&write).unwrap_or_default() {
            if let Some(waiter) = self.waiters.get_mut(&read) {
                waiter.after = index.map_or(ReadAfter::Nothing, ReadAfter::Index);
            }
        }
    }

    /// The read of a waiting stale read (`READONLY`).
    pub(crate) fn stale_read(&self, id: u64) -> Option<&KvCommand> {
        self.waiters.get(&id)?.read.as_ref()
    }

    /// Forgets the connections' writes that no later read can need any more:
    /// done, and applied here (or never placed).
    pub(crate) fn forget_settled_writes(&mut self, applied: LogIndex) {
        self.last_writes.retain(|_, write| !(write.done && write.index.is_none_or(|index| index <= applied)));
        let open: std::collections::HashSet<u64> = self.waiters.values().map(|waiter| waiter.connection).collect();
        self.last_settled.retain(|connection, _| open.contains(connection));
    }

    /// True if `id`'s connection has a later request out at a leader (forwarded,
    /// placed or being read): re-running `id` now would reorder the two.
    fn overtaken(&self, id: u64) -> bool {
        let Some(connection) = self.connection(id) else { return false };
        self.waiters
            .iter()
            .any(|(other, waiter)| *other > id && waiter.connection == connection && waiter.stage != Stage::NeedsLeader)
    }

    /// The read of a request still waiting for a leader, if it is a read.
    pub(crate) fn read(&self, id: u64) -> Option<&KvCommand> {
        self.waiters.get(&id).filter(|waiter| waiter.stage == Stage::NeedsLeader)?.read.as_ref()
    }

    /// This node's core holds the read.
    pub(crate) fn mark_reading(&mut self, id: u64) {
        if let Some(waiter) = self.waiters.get_mut(&id) {
            waiter.stage = Stage::Reading;
        }
    }

    /// The command bytes of a request still waiting for a leader.
    pub(crate) fn command(&self, id: u64) -> Option<&[u8]> {
        self.waiters
            .get(&id)
            .filter(|waiter| waiter.stage == Stage::NeedsLeader && waiter.read.is_none())
            .map(|waiter| &waiter.command[..])
    }

    /// Sent to `leader` (forwarded; for a write, or proposed there if it is this node).
    pub(crate) fn mark_forwarded(&mut self, id: u64, leader: NodeId) {
        if let Some(waiter) = self.waiters.get_mut(&id) {
            waiter.stage = Stage::Forwarded;
            waiter.sent_to = Some(leader);
        }
    }

    /// Proposed by this node, `me`, as leader (placed next, by [`Requests::mark_placed`]).
    pub(crate) fn mark_proposed(&mut self, id: u64, me: NodeId) {
        if let Some(waiter) = self.waiters.get_mut(&id) {
            waiter.sent_to = Some(me);
        }
    }

    /// True if `id` still has a log placement whose outcome is unknown.
    fn has_placement(&self, id: u64) -> bool {
        self.placed.values().any(|ids| ids.iter().any(|&(placed, _)| placed == id))
    }

    /// The leader is now `leader`: the writes sent to another node (forwarded
    /// to the lost leader, or proposed here while this node led) are sent to
    /// it again under the same request id, and so are the forwarded reads, in
    /// id order. The state machine applies an id once, so a write whose first
    /// copy also commits is answered with its one result. A write is not sent
    /// again if a later request of its connection was answered already, or is
    /// out at a leader (it would run after it): it keeps waiting for its first
    /// copy's outcome. Returns how many were sent again.
    pub(crate) fn resend_after_leader_change(&mut self, leader: NodeId) -> usize {
        let mut chosen: Vec<(u64, Stage)> = self
            .waiters
            .iter()
            .filter(|(id, waiter)| match &waiter.read {
                Some(_) => waiter.stage == Stage::Forwarded,
                None => {
                    matches!(waiter.stage, Stage::Forwarded | Stage::Placed)
                        && waiter.sent_to != Some(leader)
                        && self.last_settled.get(&waiter.connection).is_none_or(|&settled| settled < **id)
                }
            })
            .map(|(id, waiter)| (*id, waiter.stage))
            .collect();
        chosen.sort_unstable_by_key(|(id, _)| *id);
        for (id, _) in &chosen {
            self.waiters.get_mut(id).expect("chosen from the waiters").stage = Stage::NeedsLeader;
        }
        let mut resent = Vec::new();
        for (id, stage) in chosen {
            let is_read = self.waiters[&id].read.is_some();
            if !self.overtaken(id) {
                self.waiters.get_mut(&id).expect("chosen from the waiters").resent = true;
                resent.push(id);
            } else if is_read {
                self.fail(id, RequestError::Reordered);
            } else {
                // Its first copy decides: it may have taken effect.
                self.waiters.get_mut(&id).expect("chosen from the waiters").stage = stage;
            }
        }
        // A later read of a connection whose write goes again must see the new copy.
        let mut latest_write: HashMap<u64, u64> = HashMap::new();
        for &id in &resent {
            let waiter = &self.waiters[&id];
            if waiter.read.is_some() {
                if let Some(&write) = latest_write.get(&waiter.connection) {
                    self.waiters.get_mut(&id).expect("resent").after = ReadAfter::Unplaced(write);
                    self.dependents.entry(write).or_default().push(id);
                }
            } else {
                latest_write.insert(waiter.connection, id);
                if let Some(last) = self.last_writes.get_mut(&waiter.connection).filter(|last| last.id == id) {
                    last.index = None;
                }
            }
        }
        let count = resent.len();
        self.needs_leader.extend(resent);
        self.needs_leader.make_contiguous().sort_unstable();
        count
    }

    /// The request is in the log at (index, term); `applied` is the applied index.
    pub(crate) fn mark_placed(&mut self, id: u64, index: LogIndex, term: Term, applied: LogIndex) {
        let Some(waiter) = self.waiters.get_mut(&id) else { return };
        waiter.stage = Stage::Placed;
        if let Some(write) = self.last_writes.get_mut(&waiter.connection).filter(|write| write.id == id) {
            write.index = Some(index);
        }
        self.resolve_dependents(id, Some(index));
        if index <= applied {
            // Its index was applied before we learned it, and not as this
            // request: it did not take effect there (nor anywhere, unless an
            // earlier copy is still placed).
            if !self.has_placement(id) {
                self.fail(id, RequestError::Overwritten { index });
            }
        } else {
            self.placed.entry(index).or_default().push((id, term));
        }
    }

    /// The leader said it is not the leader: try again at the next sweep —
    /// unless a later command of the same connection is already out at a
    /// leader, which this one must not follow (it fails, not applied).
    pub(crate) fn retry(&mut self, id: u64) {
        if !self.waiters.contains_key(&id) {
            return;
        }
        self.waiters.get_mut(&id).expect("checked").stage = Stage::NeedsLeader;
        if self.overtaken(id) {
            let waiter = &self.waiters[&id];
            if waiter.read.is_none() && (waiter.resent || self.has_placement(id)) {
                // An earlier copy may still commit: it cannot be called not
                // applied. It waits for that copy's answer, or its timeout.
                self.waiters.get_mut(&id).expect("checked").stage = Stage::Forwarded;
                return;
            }
            return self.fail(id, RequestError::Reordered);
        }
        self.retry_later.push(id);
    }

    /// Sends several requests back to wait for a leader at once (forwards that
    /// were never sent): none of them counts as having overtaken another.
    pub(crate) fn retry_all(&mut self, ids: Vec<u64>) {
        for id in &ids {
            if let Some(waiter) = self.waiters.get_mut(id) {
                waiter.stage = Stage::NeedsLeader;
            }
        }
        for id in ids {
            self.retry(id);
        }
    }

    /// The leader changed: reads forwarded to the old one go to the new one
    /// (a read changes nothing, so sending it again is always safe), instead
    /// of waiting out their timeout when the old leader is gone.
    pub(crate) fn retry_forwarded_reads(&mut self) {
        let mut ids: Vec<u64> = self
            .waiters
            .iter()
            .filter(|(_, waiter)| waiter.stage == Stage::Forwarded && waiter.read.is_some())
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        self.retry_all(ids);
    }

    /// The request's command was applied with this answer.
    pub(crate) fn answer(&mut self, id: u64, reply: KvReply) {
        if let Some(waiter) = self.waiters.remove(&id) {
            self.note_settled(waiter.connection, id);
            self.settle_write(waiter.connection, id, true);
            let _ = waiter.reply.send(Ok(reply)); // The client may have gone.
        }
    }

    pub(crate) fn fail(&mut self, id: u64, error: RequestError) {
        if let Some(waiter) = self.waiters.remove(&id) {
            self.note_settled(waiter.connection, id);
            // A write that surely did not take effect need not be waited for.
            let took_effect = !matches!(
                error,
                RequestError::NoLeader { .. } | RequestError::Overwritten { .. } | RequestError::Reordered
            );
            self.settle_write(waiter.connection, id, took_effect);
            let _ = waiter.reply.send(Err(error));
        }
    }

    fn note_settled(&mut self, connection: u64, id: u64) {
        let latest = self.last_settled.entry(connection).or_insert(id);
        *latest = (*latest).max(id);
    }

    fn settle_write(&mut self, connection: u64, id: u64, may_have_taken_effect: bool) {
        self.open_writes.remove(&id);
        let mut index = None;
        if let Some(write) = self.last_writes.get_mut(&connection).filter(|write| write.id == id) {
            write.done = true;
            if !may_have_taken_effect {
                write.index = None;
            }
            index = write.index;
        }
        // A write answered without a known index was answered by its leader
        // (which applied it): the leader's reads see it already.
        self.resolve_dependents(id, index);
    }

    /// Index `index` was applied: every request placed there (or below) that was
    /// not answered by it lost its slot to another leader's entry.
    pub(crate) fn applied(&mut self, index: LogIndex) {
        while let Some(entry) = self.placed.first_entry() {
            if *entry.key() > index {
                break;
            }
            let (slot, ids) = entry.remove_entry();
            for (id, _term) in ids {
                // Lost its slot; it did not take effect unless another copy
                // (sent to a later leader) is placed or on its way.
                let waiting_on_copy =
                    self.has_placement(id) || self.waiters.get(&id).is_some_and(|waiter| waiter.stage != Stage::Placed);
                if !waiting_on_copy {
                    self.fail(id, RequestError::Overwritten { index: slot });
                }
            }
        }
    }

    /// The node jumped to a snapshot up to `index`: requests placed there or below
    /// can no longer be matched to an applied entry. They stay waiting for the
    /// leader's answer (forwarded ones) or their timeout, which says the outcome
    /// is unknown.
    pub(crate) fn unplace_upto(&mut self, index: LogIndex) {
        while let Some(entry) = self.placed.first_entry() {
            if *entry.key() > index {
                break;
            }
            entry.remove();
        }
    }

    /// Moves retries back to the leader queue and fails what waited too long.
    pub(crate) fn sweep(&mut self, now: Instant) {
        // Retries go first, oldest first, so a connection's commands keep their order.
        let mut retries: Vec<u64> = self.retry_later.drain(..).collect();
        retries.sort_unstable();
        for id in retries.into_iter().rev() {
            self.needs_leader.push_front(id);
        }
        let leader_wait = self.leader_wait;
        let timeout = self.timeout;
        let expired: Vec<(u64, RequestError)> = self
            .waiters
            .iter()
            .filter_map(|(id, waiter)| {
                let waited = now.saturating_duration_since(waiter.started);
                let waited_ms = waited.as_millis() as u64;
                if waiter.stage == Stage::NeedsLeader && waited >= leader_wait {
                    Some((*id, RequestError::NoLeader { waited_ms }))
                } else if waited >= timeout {
                    Some((*id, RequestError::Timeout { waited_ms }))
                } else {
                    None
                }
            })
            .collect();
        for (id, error) in expired {
            self.fail(id, error);
        }
    }

    /// Fails everything (shutdown).
    pub(crate) fn fail_all(&mut self, error: RequestError) {
        let ids: Vec<u64> = self.waiters.keys().copied().collect();
        for id in ids {
            self.fail(id, error.clone());
        }
    }

    /// Where a request stands (tests).
    #[cfg(test)]
    pub(crate) fn stage(&self, id: u64) -> Option<Stage> {
        self.waiters.get(&id).map(|waiter| waiter.stage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_whose_slot_is_taken_fails_instead_of_hanging() {
        let now = Instant::now();
        let mut requests = Requests::new(Duration::from_secs(1), Duration::from_secs(5));
        let (reply, mut answer) = oneshot::channel();
        let id = requests.next_id();
        requests.add(id, 1, vec![1], reply, now);
        requests.mark_placed(id, 5, 2, 3);
        assert_eq!(requests.stage(id), Some(Stage::Placed));
        requests.applied(5); // Index 5 applied as someone else's entry.
        assert_eq!(answer.try_recv().unwrap(), Err(RequestError::Overwritten { index: 5 }));
    }

    #[test]
    fn a_read_waits_for_a_leader_and_goes_back_to_waiting_when_its_leader_fails_it() {
        let now = Instant::now();
        let mut requests = Requests::new(Duration::from_secs(1), Duration::from_secs(5));
        let (reply, mut answer) = oneshot::channel();
        let id = requests.next_id();
        let get = KvCommand::Get(b"k".to_vec());
        requests.add_read(id, 1, get.clone(), reply, now);
        assert_eq!(requests.read(id), Some(&get));
        assert_eq!(requests.command(id), None, "a read has no log envelope");
        assert_eq!(requests.needs_leader.pop_front(), Some(id), "dispatched");
        requests.mark_reading(id);
        assert_eq!(requests.stage(id), Some(Stage::Reading));
        assert_eq!(requests.read(id), None, "held by the core, not waiting");
        // The core failed it (its node stopped leading): it waits again.
        requests.retry(id);
        requests.sweep(now);
        assert_eq!(requests.needs_leader, [id]);
        assert_eq!(requests.read(id), Some(&get));
        requests.answer(id, KvReply::Nil);
        assert_eq!(answer.try_recv().unwrap(), Ok(KvReply::Nil));
    }

    #[test]
    fn a_request_without_a_leader_fails_after_the_leader_wait() {
        let now = Instant::now();
        let mut requests = Requests::new(Duration::from_millis(100), Duration::from_secs(5));
        let (reply, mut answer) = oneshot::channel();
        let id = requests.next_id();
        requests.add(id, 1, vec![1], reply, now);
        requests.sweep(now + Duration::from_millis(50));
        assert!(answer.try_recv().is_err(), "still waiting");
        requests.sweep(now + Duration::from_millis(100));
        assert_eq!(answer.try_recv().unwrap(), Err(RequestError::NoLeader { waited_ms: 100 }));
        assert_eq!(requests.len(), 0);
    }

    #[test]
    fn a_write_sent_to_a_lost_leader_goes_to_the_new_one_and_waits_for_its_copy() {
        let now = Instant::now();
        let mut requests = Requests::new(Duration::from_secs(1), Duration::from_secs(5));
        let (reply, mut answer) = oneshot::channel();
        let id = requests.next_id();
        requests.add(id, 1, b"envelope".to_vec(), reply, now);
        assert_eq!(requests.needs_leader.pop_front(), Some(id));
        requests.mark_forwarded(id, 2);
        requests.mark_placed(id, 7, 3, 5);
        assert_eq!(requests.resend_after_leader_change(2), 0, "its leader still leads");
        assert_eq!(requests.resend_after_leader_change(3), 1);
        assert_eq!(requests.needs_leader, [id]);
        assert_eq!(requests.command(id), Some(&b"envelope"[..]), "the same envelope, the same request id");
        // The old slot goes to another entry: the copy decides, not that slot.
        requests.applied(7);
        assert!(answer.try_recv().is_err(), "not failed: the copy is on its way");
        requests.needs_leader.clear();
        requests.mark_forwarded(id, 3);
        requests.mark_placed(id, 9, 4, 7);
        requests.answer(id, KvReply::Integer(1));
        assert_eq!(answer.try_recv().unwrap(), Ok(KvReply::Integer(1)));
    }

    #[test]
    fn a_write_passed_by_a_later_answer_of_its_connection_is_not_sent_again() {
        let now = Instant::now();
        let mut requests = Requests::new(Duration::from_secs(1), Duration::from_secs(5));
        let (first_reply, mut first) = oneshot::channel();
        let (second_reply, _second) = oneshot::channel();
        let (other_reply, _other) = oneshot::channel();
        let (w1, w2, w3) = (requests.next_id(), requests.next_id(), requests.next_id());
        requests.add(w1, 1, vec![1], first_reply, now);
        requests.add(w2, 1, vec![2], second_reply, now);
        requests.add(w3, 2, vec![3], other_reply, now);
        requests.needs_leader.clear();
        for (id, index) in [(w1, 4), (w2, 5), (w3, 6)] {
            requests.mark_forwarded(id, 2);
            requests.mark_placed(id, index, 3, 3);
        }
        requests.answer(w2, KvReply::Ok);
        assert_eq!(requests.resend_after_leader_change(3), 1, "only the other connection's write");
        assert_eq!(requests.needs_leader, [w3]);
        // Its first copy decides: it lost its slot, so it did not take effect.
        requests.applied(4);
        assert_eq!(first.try_recv().unwrap(), Err(RequestError::Overwritten { index: 4 }));
    }

    #[test]
    fn settled_below_names_the_oldest_open_write() {
        let now = Instant::now();
        let mut requests = Requests::new(Duration::from_secs(1), Duration::from_secs(5));
        let ids: Vec<u64> = (0..3).map(|_| requests.next_id()).collect();
        assert_eq!(requests.settled_below(ids[0]), ids[0]);
        let mut answers = Vec::new();
        for &id in &ids {
            let (reply, answer) = oneshot::channel();
            requests.add(id, 1, vec![1], reply, now);
            answers.push(answer);
        }
        assert_eq!(requests.settled_below(9), ids[0]);
        requests.answer(ids[0], KvReply::Ok);
        requests.fail(ids[1], RequestError::Timeout { waited_ms: 1 });
        assert_eq!(requests.settled_below(9), ids[2]);
        requests.answer(ids[2], KvReply::Ok);
        assert_eq!(requests.settled_below(9), 9);
    }

    #[test]
    fn a_write_sent_again_is_never_called_not_applied_when_its_new_leader_turns_it_away() {
        let now = Instant::now();
        let mut requests = Requests::new(Duration::from_secs(1), Duration::from_secs(5));
        let (first_reply, mut first) = oneshot::channel();
        let (second_reply, _second) = oneshot::channel();
        let (w1, w2) = (requests.next_id(), requests.next_id());
        requests.add(w1, 1, vec![1], first_reply, now);
        requests.add(w2, 1, vec![2], second_reply, now);
        requests.needs_leader.clear();
        requests.mark_forwarded(w1, 2); // No answer: node 2 may have appended it.
        assert_eq!(requests.resend_after_leader_change(3), 1);
        requests.needs_leader.clear();
        requests.mark_forwarded(w1, 3);
        requests.mark_forwarded(w2, 3);
        // Node 3 turns w1 away while w2 is out: w1 cannot run after w2, but
        // its first copy may commit, so it is not failed as not applied.
        requests.retry(w1);
        assert!(first.try_recv().is_err(), "w1 waits for its first copy or its timeout");
        requests.sweep(now + Duration::from_secs(5));
        assert!(matches!(first.try_recv().unwrap(), Err(RequestError::Timeout { .. })));
    }
}

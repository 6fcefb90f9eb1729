//! Exactly-once writes (Raft thesis §6.3, client sessions): every write in the
//! log carries a request id `(origin, incarnation, request_id)`
//! ([`Envelope`]); the state machine keeps, per origin node, the results of
//! the ids of its latest incarnation it applied, and answers an id applied
//! before with the saved result instead of applying it again. So a node may
//! send a write again (to a new leader, after its leader was lost) without
//! the risk of applying it twice.
//!
//! The table is bounded and expires only by what the log entries say, never
//! by a clock or local state, so every replica holds the same table:
//! - an entry's `settled_below` says which ids of its origin are settled
//!   (never sent again): their results are dropped;
//! - an origin keeps at most [`MAX_RESULTS_PER_ORIGIN`] results: beyond
//!   that the smallest ids are dropped;
//! - a newer incarnation of a node drops the older one's results, and the
//!   older incarnation's entries are refused from then on (its process is
//!   gone; its entries still in flight must not apply after the restart).
//!
//! An id below its origin's floor (settled or dropped) is refused with
//! [`EXPIRED`], and an entry of an older incarnation with
//! [`STALE_INCARNATION`]: neither changes the data.

use conclave_core::NodeId;
use serde::{Deserialize, Serialize};

use super::command::{Envelope, KvReply};
use super::machine::{self, KvTable, MachineError};

/// Results an origin keeps at most: more than a node has writes in flight.
pub const MAX_RESULTS_PER_ORIGIN: u64 = 4096;

/// The answer to an id below its origin's floor: it was settled at its origin
/// or its result was dropped. It is not applied now; it may have been before.
pub const EXPIRED: &str =
    "request id expired from the deduplication table; not applied now, it may have taken effect before";

/// The answer to an entry of an incarnation older than the latest one seen of
/// its node: that process is gone; the entry is not applied.
pub const STALE_INCARNATION: &str = "request of an earlier run of its node; it did not take effect";

/// What the table keeps of one origin node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The latest incarnation seen of the node: entries of older ones are refused.
    pub incarnation: u64,
    /// Ids below it are settled or dropped: refused with [`EXPIRED`].
    pub floor: u64,
    /// Results saved for this incarnation.
    pub results: u64,
}

/// The deduplication table's storage: sessions by node, and results by
/// `(node, incarnation, request_id)`.
pub(crate) trait DedupTable {
    /// The session of `node`.
    fn session(&self, node: NodeId) -> Result<Option<Session>, MachineError>;
    /// Sets the session of `node`.
    fn set_session(&mut self, node: NodeId, session: Session) -> Result<(), MachineError>;
    /// The saved result of an id.
    fn result(&self, node: NodeId, incarnation: u64, request_id: u64) -> Result<Option<KvReply>, MachineError>;
    /// Saves the result of an id.
    fn put_result(
        &mut self,
        node: NodeId,
        incarnation: u64,
        request_id: u64,
        reply: &KvReply,
    ) -> Result<(), MachineError>;
    /// Removes the results of `(node, incarnation)` with ids below `below`;
    /// returns how many there were.
    fn remove_results_below(&mut self, node: NodeId, incarnation: u64, below: u64) -> Result<u64, MachineError>;
    /// The smallest id with a saved result of `(node, incarnation)`.
    fn lowest_result(&self, node: NodeId, incarnation: u64) -> Result<Option<u64>, MachineError>;
}

/// Applies `envelope`'s command to `data` once: an id applied before answers
/// its saved result, and the table is updated in the same change as the data.
pub(crate) fn apply_once(
    data: &mut impl KvTable,
    table: &mut impl DedupTable,
    envelope: &Envelope,
) -> Result<KvReply, MachineError> {
    let Envelope { origin, incarnation, request_id, ref command, settled_below } = *envelope;
    let mut session = match table.session(origin)? {
        Some(session) if incarnation < session.incarnation => {
            return Ok(KvReply::Error(STALE_INCARNATION.into()));
        }
        Some(session) if incarnation == session.incarnation => session,
        Some(older) => {
            table.remove_results_below(origin, older.incarnation, u64::MAX)?;
            Session { incarnation, floor: 0, results: 0 }
        }
        None => Session { incarnation, floor: 0, results: 0 },
    };
    if settled_below > session.floor {
        session.results -= table.remove_results_below(origin, incarnation, settled_below)?;
        session.floor = settled_below;
    }
    let reply = if request_id < session.floor {
        KvReply::Error(EXPIRED.into())
    } else if let Some(saved) = table.result(origin, incarnation, request_id)? {
        saved
    } else {
        let reply = machine::execute(data, command)?;
        table.put_result(origin, incarnation, request_id, &reply)?;
        session.results += 1;
        while session.results > MAX_RESULTS_PER_ORIGIN {
            let lowest = table.lowest_result(origin, incarnation)?.expect("a session's results are counted");
            session.results -= table.remove_results_below(origin, incarnation, lowest + 1)?;
            session.floor = lowest + 1;
        }
        reply
    };
    table.set_session(origin, session)?;
    Ok(reply)
}

/// One origin's part of the table, as a snapshot holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OriginRecord {
    /// The node.
    pub(crate) node: NodeId,
    /// Its session.
    pub(crate) session: Session,
    /// Its saved results, ascending by request id (`session.results` of them).
    pub(crate) results: Vec<(u64, KvReply)>,
}

/// A saved result's bytes (in the engine's table and in snapshots).
pub(crate) fn encode_reply(reply: &KvReply) -> Vec<u8> {
    use bincode::Options;
    bincode::DefaultOptions::new().serialize(reply).expect("a reply always encodes")
}

/// A saved result from its bytes.
pub(crate) fn decode_reply(bytes: &[u8]) -> Option<KvReply> {
    use bincode::Options;
    bincode::DefaultOptions::new().with_limit(bytes.len() as u64 + 64).deserialize(bytes).ok()
}

/// The table in memory (the [`super::KvStore`]'s).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct DedupMap {
    pub(crate) sessions: std::collections::BTreeMap<NodeId, Session>,
    pub(crate) results: std::collections::BTreeMap<(NodeId, u64, u64), KvReply>,
}

impl DedupMap {
    /// The table as a snapshot holds it, ascending by node.
    pub(crate) fn records(&self) -> Vec<OriginRecord> {
        self.sessions
            .iter()
            .map(|(&node, &session)| OriginRecord {
                node,
                session,
                results: self
                    .results
                    .range((node, session.incarnation, 0)..=(node, session.incarnation, u64::MAX))
                    .map(|(&(_, _, id), reply)| (id, reply.clone()))
                    .collect(),
            })
            .collect()
    }

    /// Adds one origin's record (from a snapshot).
    pub(crate) fn insert(&mut self, record: OriginRecord) {
        let OriginRecord { node, session, results } = record;
        for (id, reply) in results {
            self.results.insert((node, session.incarnation, id), reply);
        }
        self.sessions.insert(node, session);
    }
}

impl DedupTable for DedupMap {
    fn session(&self, node: NodeId) -> Result<Option<Session>, MachineError> {
        Ok(self.sessions.get(&node).copied())
    }

    fn set_session(&mut self, node: NodeId, session: Session) -> Result<(), MachineError> {
        self.sessions.insert(node, session);
        Ok(())
    }

    fn result(&self, node: NodeId, incarnation: u64, request_id: u64) -> Result<Option<KvReply>, MachineError> {
        Ok(self.results.get(&(node, incarnation, request_id)).cloned())
    }

    fn put_result(
        &mut self,
        node: NodeId,
        incarnation: u64,
        request_id: u64,
        reply: &KvReply,
    ) -> Result<(), MachineError> {
        self.results.insert((node, incarnation, request_id), reply.clone());
        Ok(())
    }

    fn remove_results_below(&mut self, node: NodeId, incarnation: u64, below: u64) -> Result<u64, MachineError> {
        let ids: Vec<_> =
            self.results.range((node, incarnation, 0)..(node, incarnation, below)).map(|(&key, _)| key).collect();
        for key in &ids {
            self.results.remove(key);
        }
        Ok(ids.len() as u64)
    }

    fn lowest_result(&self, node: NodeId, incarnation: u64) -> Result<Option<u64>, MachineError> {
        Ok(self.results.range((node, incarnation, 0)..=(node, incarnation, u64::MAX)).next().map(|(&(_, _, id), _)| id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::engine::ENGINE_FILE;
    use crate::kv::lsm::LSM_DIR;
    use crate::kv::machine::run_to_vec;
    use crate::kv::{EngineIdentity, EngineStore, KvCommand, KvStore, LsmStore, StateMachine};

    const ME: EngineIdentity = EngineIdentity { cluster_id: 3, node_id: 1 };

    fn incr(origin: NodeId, incarnation: u64, request_id: u64, settled_below: u64) -> Envelope {
        let command = KvCommand::IncrBy { key: b"n".to_vec(), delta: 1 };
        Envelope { origin, incarnation, request_id, command, settled_below }
    }

    fn apply(machine: &mut dyn StateMachine, envelope: &Envelope) -> KvReply {
        let index = machine.applied_index() + 1;
        machine.apply_batch(&[(index, Some(envelope))]).unwrap().remove(0)
    }

    fn counter(machine: &dyn StateMachine) -> KvReply {
        machine.read(&KvCommand::Get(b"n".to_vec())).unwrap()
    }

    fn engine(dir: &tempfile::TempDir) -> EngineStore {
        EngineStore::open(&dir.path().join(ENGINE_FILE), ME, 1 << 20).unwrap()
    }

    fn lsm(dir: &tempfile::TempDir) -> Box<dyn StateMachine> {
        Box::new(LsmStore::open(&dir.path().join(LSM_DIR), ME, 1 << 20).unwrap())
    }

    fn redb(dir: &tempfile::TempDir) -> Box<dyn StateMachine> {
        Box::new(engine(dir))
    }

    /// Opens a store in a directory.
    type Opener = fn(&tempfile::TempDir) -> Box<dyn StateMachine>;

    /// The stores that keep their data on disk.
    const ON_DISK: [Opener; 2] = [redb, lsm];

    fn expired() -> KvReply {
        KvReply::Error(EXPIRED.into())
    }

    /// The rules of [`apply_once`], on any store.
    fn applies_each_id_once(machine: &mut dyn StateMachine) {
        assert_eq!(apply(machine, &incr(2, 7, 1, 1)), KvReply::Integer(1));
        assert_eq!(apply(machine, &incr(2, 7, 2, 1)), KvReply::Integer(2));
        assert_eq!(apply(machine, &incr(2, 7, 1, 1)), KvReply::Integer(1), "a retry gets its own saved result");
        // The same number from another origin, or another incarnation, is another request.
        assert_eq!(apply(machine, &incr(3, 7, 1, 1)), KvReply::Integer(3));
        assert_eq!(counter(machine), KvReply::Bulk(b"3".to_vec()));
        // Twice in one batch: applied once, both answered alike.
        let twice = incr(2, 7, 3, 1);
        let index = machine.applied_index();
        let replies = machine.apply_batch(&[(index + 1, Some(&twice)), (index + 2, None), (index + 3, Some(&twice))]);
        assert_eq!(replies.unwrap(), vec![KvReply::Integer(4), KvReply::Integer(4)]);
        // Settled ids are forgotten, and refused if they come again (not applied).
        assert_eq!(apply(machine, &incr(2, 7, 5, 3)), KvReply::Integer(5));
        assert_eq!(apply(machine, &incr(2, 7, 2, 3)), expired());
        assert_eq!(apply(machine, &incr(2, 7, 3, 3)), KvReply::Integer(4), "not settled yet");
        assert_eq!(counter(machine), KvReply::Bulk(b"5".to_vec()));
        // A new incarnation: the old one's entries are refused from then on.
        assert_eq!(apply(machine, &incr(2, 8, 1, 1)), KvReply::Integer(6));
        assert_eq!(apply(machine, &incr(2, 7, 6, 3)), KvReply::Error(STALE_INCARNATION.into()));
        assert_eq!(apply(machine, &incr(2, 7, 5, 3)), KvReply::Error(STALE_INCARNATION.into()));
        assert_eq!(counter(machine), KvReply::Bulk(b"6".to_vec()));
        // Bounded: beyond the limit the oldest results go, and their ids are refused.
        let many: Vec<Envelope> = (1..=MAX_RESULTS_PER_ORIGIN + 10).map(|id| incr(4, 1, id, 1)).collect();
        let first = machine.applied_index() + 1;
        let batch: Vec<_> = many.iter().enumerate().map(|(at, e)| (first + at as u64, Some(e))).collect();
        machine.apply_batch(&batch).unwrap();
        assert_eq!(apply(machine, &incr(4, 1, 10, 1)), expired());
        let last = MAX_RESULTS_PER_ORIGIN + 10;
        assert_eq!(apply(machine, &incr(4, 1, last, 1)), KvReply::Integer(6 + last as i64));
        assert_eq!(counter(machine), KvReply::Bulk((6 + last).to_string().into_bytes()));
    }

    #[test]
    fn the_map_applies_each_request_id_once() {
        let mut store = KvStore::default();
        applies_each_id_once(&mut store);
        // Origin 2's new incarnation keeps one, origin 3 one, origin 4 the limit.
        assert_eq!(store.saved_results(), 1 + 1 + MAX_RESULTS_PER_ORIGIN as usize);
    }

    #[test]
    fn the_engines_apply_each_request_id_once() {
        for open in ON_DISK {
            let dir = tempfile::tempdir().unwrap();
            applies_each_id_once(&mut *open(&dir));
        }
    }

    #[test]
    fn every_store_keeps_the_same_table_and_encodes_the_same_snapshot() {
        let mut map = KvStore::default();
        applies_each_id_once(&mut map);
        let expected = run_to_vec(map.snapshot_job().unwrap()).unwrap();
        for open in ON_DISK {
            let dir = tempfile::tempdir().unwrap();
            let mut engine = open(&dir);
            applies_each_id_once(&mut *engine);
            assert_eq!(run_to_vec(engine.snapshot_job().unwrap()).unwrap(), expected);
        }
    }

    /// Three writes applied on `from`, then the state moved to `to` by a
    /// snapshot: a retried id there answers its saved result, applied once.
    fn survives_a_snapshot(from: &mut dyn StateMachine, to: &mut dyn StateMachine) {
        for id in 1..=3 {
            apply(from, &incr(2, 7, id, 1));
        }
        let bytes = run_to_vec(from.snapshot_job().unwrap()).unwrap();
        assert_eq!(to.install_snapshot(&bytes).unwrap(), 3);
        assert_eq!(apply(to, &incr(2, 7, 2, 1)), KvReply::Integer(2), "the saved result, not 4");
        assert_eq!(apply(to, &incr(2, 7, 4, 1)), KvReply::Integer(4));
        assert_eq!(counter(to), KvReply::Bulk(b"4".to_vec()));
    }

    #[test]
    fn the_table_survives_a_snapshot_between_any_two_stores() {
        let memory = || -> Box<dyn StateMachine> { Box::new(KvStore::default()) };
        survives_a_snapshot(&mut *memory(), &mut *memory());
        for open in ON_DISK {
            let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
            survives_a_snapshot(&mut *memory(), &mut *open(&dirs[0]));
            survives_a_snapshot(&mut *open(&dirs[1]), &mut *memory());
            for other in ON_DISK {
                let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
                survives_a_snapshot(&mut *open(&dirs[0]), &mut *other(&dirs[1]));
            }
        }
    }

    #[test]
    fn the_engines_keep_the_table_across_a_restart() {
        for open in ON_DISK {
            let dir = tempfile::tempdir().unwrap();
            let mut store = open(&dir);
            for id in 1..=3 {
                apply(&mut *store, &incr(2, 7, id, 1));
            }
            store.flush().unwrap();
            drop(store);
            let mut store = open(&dir);
            assert_eq!(apply(&mut *store, &incr(2, 7, 3, 1)), KvReply::Integer(3), "the saved result after a restart");
            assert_eq!(counter(&*store), KvReply::Bulk(b"3".to_vec()));
            // And after installing a snapshot, then a restart.
            let bytes = run_to_vec(store.snapshot_job().unwrap()).unwrap();
            let other = tempfile::tempdir().unwrap();
            let mut installed = open(&other);
            installed.install_snapshot(&bytes).unwrap();
            drop(installed);
            let mut installed = open(&other);
            assert_eq!(apply(&mut *installed, &incr(2, 7, 1, 1)), KvReply::Integer(1));
            assert_eq!(counter(&*installed), KvReply::Bulk(b"3".to_vec()));
        }
    }

    #[test]
    fn saved_results_of_every_kind_round_trip() {
        for reply in [
            KvReply::Ok,
            KvReply::Nil,
            KvReply::Integer(-3),
            KvReply::Bulk(b"\0bytes".to_vec()),
            KvReply::Array(vec![None, Some(b"x".to_vec())]),
            KvReply::Error("no".into()),
            KvReply::Multi(vec![KvReply::Ok, KvReply::Integer(1)]),
        ] {
            assert_eq!(decode_reply(&encode_reply(&reply)), Some(reply));
        }
        assert_eq!(decode_reply(&[0xff, 0xff]), None);
    }
}

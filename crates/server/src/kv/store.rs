//! The in-memory key-value state machine: deterministic, so every node that
//! applies the same committed log holds the same data and computes the same
//! answers. Served nodes keep their data in [`super::EngineStore`]; this one
//! serves tests and the simulator, behind the same [`StateMachine`] trait.

use std::borrow::Cow;
use std::collections::HashMap;

use conclave_core::LogIndex;

use super::command::{Envelope, KvCommand, KvReply};
use super::dedup::{self, DedupMap};
use super::machine::{self, BatchEntry, KvTable, MachineError, SnapshotJob, StateMachine};

/// The replicated store, in memory.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct KvStore {
    pub(super) data: HashMap<Vec<u8>, Vec<u8>>,
    pub(super) applied_index: LogIndex,
    /// The request ids applied, with their results.
    pub(super) dedup: DedupMap,
}

impl KvTable for HashMap<Vec<u8>, Vec<u8>> {
    fn get(&self, key: &[u8]) -> Result<Option<Cow<'_, [u8]>>, MachineError> {
        Ok(HashMap::get(self, key).map(|value| Cow::Borrowed(&value[..])))
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), MachineError> {
        self.insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn remove(&mut self, key: &[u8]) -> Result<bool, MachineError> {
        Ok(HashMap::remove(self, key).is_some())
    }

    fn count(&self) -> Result<u64, MachineError> {
        Ok(self.len() as u64)
    }
}

impl KvStore {
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True if there are no keys.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Applies (or, for reads, evaluates) `command` and returns its answer.
    pub fn apply(&mut self, command: &KvCommand) -> KvReply {
        machine::execute(&mut self.data, command).expect("a map in memory does not fail")
    }

    /// Applies `envelope`'s command unless its request id was applied before,
    /// and returns its answer (the saved one for an id applied before).
    pub fn apply_envelope(&mut self, envelope: &Envelope) -> KvReply {
        dedup::apply_once(&mut self.data, &mut self.dedup, envelope).expect("a map in memory does not fail")
    }

    /// Saved results of request ids (all origins).
    pub fn saved_results(&self) -> usize {
        self.dedup.results.len()
    }

    /// Evaluates a read command without changing anything.
    pub fn read(&self, command: &KvCommand) -> KvReply {
        machine::evaluate(&self.data, command).expect("a map in memory does not fail")
    }
}

impl StateMachine for KvStore {
    fn applied_index(&self) -> LogIndex {
        self.applied_index
    }

    /// Never durable: a node on this store restarts from its snapshot file.
    fn durable_index(&self) -> LogIndex {
        self.applied_index
    }

    fn apply_batch(&mut self, batch: &[BatchEntry<'_>]) -> Result<Vec<KvReply>, MachineError> {
        let mut replies = Vec::new();
        for (index, command) in batch {
            debug_assert!(*index > self.applied_index, "entries are applied once, in order");
            if let Some(envelope) = command {
                replies.push(self.apply_envelope(envelope));
            }
            self.applied_index = *index;
        }
        Ok(replies)
    }

    fn read(&self, command: &KvCommand) -> Result<KvReply, MachineError> {
        Ok(KvStore::read(self, command))
    }

    fn key_count(&self) -> Result<u64, MachineError> {
        Ok(self.data.len() as u64)
    }

    fn flush(&mut self) -> Result<(), MachineError> {
        Ok(())
    }

    /// Encoded at once (a copy of the map would cost as much).
    fn snapshot_job(&mut self) -> Result<SnapshotJob, MachineError> {
        let bytes = self.encode_snapshot(self.applied_index);
        Ok(Box::new(move |out: &mut dyn std::io::Write| out.write_all(&bytes).map_err(MachineError::SnapshotOutput)))
    }

    fn install_snapshot(&mut self, bytes: &[u8]) -> Result<LogIndex, MachineError> {
        let (store, index) = KvStore::decode_snapshot(bytes)?;
        *self = store;
        Ok(index)
    }

    fn cache_bytes(&self) -> Option<u64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::SetCondition;

    fn set(key: &str, value: &str, condition: SetCondition) -> KvCommand {
        KvCommand::Set { key: key.into(), value: value.into(), condition }
    }

    #[test]
    fn set_honours_nx_and_xx() {
        let mut store = KvStore::default();
        assert_eq!(store.apply(&set("k", "1", SetCondition::IfPresent)), KvReply::Nil);
        assert_eq!(store.apply(&set("k", "1", SetCondition::IfAbsent)), KvReply::Ok);
        assert_eq!(store.apply(&set("k", "2", SetCondition::IfAbsent)), KvReply::Nil);
        assert_eq!(store.apply(&set("k", "3", SetCondition::IfPresent)), KvReply::Ok);
        assert_eq!(store.apply(&KvCommand::Get("k".into())), KvReply::Bulk("3".into()));
    }

    #[test]
    fn increments_refuse_non_integers_and_overflow() {
        let mut store = KvStore::default();
        assert_eq!(store.apply(&KvCommand::IncrBy { key: "n".into(), delta: 5 }), KvReply::Integer(5));
        assert_eq!(store.apply(&KvCommand::IncrBy { key: "n".into(), delta: -7 }), KvReply::Integer(-2));
        store.apply(&set("s", "abc", SetCondition::Always));
        assert!(matches!(store.apply(&KvCommand::IncrBy { key: "s".into(), delta: 1 }), KvReply::Error(_)));
        store.apply(&set("m", &i64::MAX.to_string(), SetCondition::Always));
        assert!(matches!(store.apply(&KvCommand::IncrBy { key: "m".into(), delta: 1 }), KvReply::Error(_)));
    }

    #[test]
    fn a_transaction_runs_its_commands_in_order_and_answers_each() {
        let mut store = KvStore::default();
        let transaction = KvCommand::Transaction(vec![
            set("k", "1", SetCondition::Always),
            KvCommand::IncrBy { key: "k".into(), delta: 2 },
            KvCommand::Get("k".into()),
            set("s", "text", SetCondition::Always),
            KvCommand::IncrBy { key: "s".into(), delta: 1 },
            KvCommand::Del(vec!["s".into()]),
        ]);
        assert!(!transaction.is_read(), "a transaction goes through the log");
        let KvReply::Multi(replies) = store.apply(&transaction) else { panic!("EXEC answers one reply per command") };
        assert_eq!(replies[..4], [KvReply::Ok, KvReply::Integer(3), KvReply::Bulk("3".into()), KvReply::Ok]);
        assert!(matches!(replies[4], KvReply::Error(_)), "a runtime error fails only its command");
        assert_eq!(replies[5], KvReply::Integer(1));
    }

    #[test]
    fn cas_swaps_only_on_a_match() {
        let mut store = KvStore::default();
        store.apply(&set("k", "a", SetCondition::Always));
        let cas =
            |expected: &str, new: &str| KvCommand::Cas { key: "k".into(), expected: expected.into(), new: new.into() };
        assert_eq!(store.apply(&cas("b", "c")), KvReply::Integer(0));
        assert_eq!(store.apply(&cas("a", "c")), KvReply::Integer(1));
        assert_eq!(store.apply(&KvCommand::Get("k".into())), KvReply::Bulk("c".into()));
        assert_eq!(store.apply(&KvCommand::Del(vec!["k".into(), "x".into()])), KvReply::Integer(1));
        assert_eq!(store.apply(&KvCommand::DbSize), KvReply::Integer(0));
    }
}

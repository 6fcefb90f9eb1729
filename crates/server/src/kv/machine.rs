//! The state machine behind one trait, whatever holds its data: the in-memory
//! [`KvStore`](super::KvStore) (tests, the simulator) or the embedded engine
//! [`EngineStore`](super::EngineStore) (a served node's default).
//!
//! The command semantics are written once, over `KvTable`: both stores give
//! the same answers to the same commands, and every node that applies the same
//! committed log holds the same data.

use std::borrow::Cow;

use conclave_core::LogIndex;
use thiserror::Error;

use super::command::{Envelope, KvCommand, KvReply, SetCondition};

const NOT_AN_INTEGER: &str = "value is not an integer or out of range";

/// Why the state machine cannot go on: the node must stop (its state on disk
/// is not what the log says), never answer from a state it cannot trust.
#[derive(Debug, Error)]
pub enum MachineError {
    /// The engine file could not be opened, read or written.
    #[error("state machine file {path}: {message}")]
    Engine {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong, from the engine or the OS.
        message: String,
    },
    /// Snapshot bytes that are not a KV state (checked before anything changed).
    #[error("snapshot: {0}")]
    Snapshot(#[from] super::SnapshotDecodeError),
    /// Writing a snapshot's bytes out failed.
    #[error("writing a snapshot: {0}")]
    SnapshotOutput(std::io::Error),
    /// The scratch file of a snapshot made to send failed.
    #[error("the snapshot to send: {0}")]
    Outgoing(#[from] conclave_storage::StorageError),
}

/// One entry for [`StateMachine::apply_batch`]: its index and, for commands,
/// the envelope (other payloads only take up their index).
pub type BatchEntry<'a> = (LogIndex, Option<&'a Envelope>);

/// Writes snapshot bytes to its argument; see [`StateMachine::snapshot_job`].
pub type SnapshotJob = Box<dyn FnOnce(&mut dyn std::io::Write) -> Result<(), MachineError> + Send>;

/// Runs `job` into memory.
pub fn run_to_vec(job: SnapshotJob) -> Result<Vec<u8>, MachineError> {
    let mut bytes = Vec::new();
    job(&mut bytes)?;
    Ok(bytes)
}

/// What a node's apply loop drives. Every method that changes the data also
/// records the applied index, atomically with it.
pub trait StateMachine: Send {
    /// The last index applied (0: none).
    fn applied_index(&self) -> LogIndex;
    /// The last applied index that survives a crash of the process or the
    /// machine. The WAL must not be compacted beyond it.
    fn durable_index(&self) -> LogIndex;
    /// Applies `batch` (indexes ascending, each above the applied index) as one
    /// atomic change and returns the answer of each command, in order. Each
    /// request id is applied at most once ([`super::dedup`]): an id applied
    /// before answers its saved result, and the deduplication table changes in
    /// the same atomic change as the data.
    fn apply_batch(&mut self, batch: &[BatchEntry<'_>]) -> Result<Vec<KvReply>, MachineError>;
    /// Evaluates a read command against the state applied so far.
    fn read(&self, command: &KvCommand) -> Result<KvReply, MachineError>;
    /// Number of keys.
    fn key_count(&self) -> Result<u64, MachineError>;
    /// Makes everything applied durable (a no-op for a store that never is).
    fn flush(&mut self) -> Result<(), MachineError>;
    /// A job that makes the snapshot bytes ([`super::snapshot`]) of the state
    /// at the applied index, from a consistent view taken now. The job may run
    /// on another thread while batches keep being applied.
    fn snapshot_job(&mut self) -> Result<SnapshotJob, MachineError>;
    /// Replaces the whole state with snapshot bytes (checked first: bytes that
    /// do not decode change nothing). Returns the index they hold.
    fn install_snapshot(&mut self, bytes: &[u8]) -> Result<LogIndex, MachineError>;
    /// Bytes of memory the store may use for its data (its cache), if bounded.
    fn cache_bytes(&self) -> Option<u64>;
}

/// The key-value operations the command semantics need.
pub(crate) trait KvTable {
    /// The value of `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Cow<'_, [u8]>>, MachineError>;
    /// Whether `key` exists (an engine may answer without copying the value).
    fn contains(&self, key: &[u8]) -> Result<bool, MachineError> {
        Ok(self.get(key)?.is_some())
    }
    /// Sets `key` to `value`.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), MachineError>;
    /// Removes `key`; true if it was there.
    fn remove(&mut self, key: &[u8]) -> Result<bool, MachineError>;
    /// Number of keys.
    fn count(&self) -> Result<u64, MachineError>;
}

/// Applies (or, for reads, evaluates) `command` on `table`.
pub(crate) fn execute(table: &mut impl KvTable, command: &KvCommand) -> Result<KvReply, MachineError> {
    match command {
        KvCommand::Set { key, value, condition } => {
            // An unconditional SET reads nothing: in an LSM engine a read
            // costs more than the write.
            let allowed = match condition {
                SetCondition::Always => true,
                SetCondition::IfAbsent => !table.contains(key)?,
                SetCondition::IfPresent => table.contains(key)?,
            };
            if !allowed {
                return Ok(KvReply::Nil);
            }
            table.put(key, value)?;
            Ok(KvReply::Ok)
        }
        KvCommand::MSet(pairs) => {
            for (key, value) in pairs {
                table.put(key, value)?;
            }
            Ok(KvReply::Ok)
        }
        KvCommand::Del(keys) => {
            let mut removed = 0;
            for key in keys {
                removed += i64::from(table.remove(key)?);
            }
            Ok(KvReply::Integer(removed))
        }
        KvCommand::IncrBy { key, delta } => increment(table, key, *delta),
        KvCommand::Transaction(commands) => {
            let mut replies = Vec::with_capacity(commands.len());
            for command in commands {
                replies.push(execute(table, command)?);
            }
            Ok(KvReply::Multi(replies))
        }
        KvCommand::Cas { key, expected, new } => {
            if table.get(key)?.as_deref() == Some(&expected[..]) {
                table.put(key, new)?;
                Ok(KvReply::Integer(1))
            } else {
                Ok(KvReply::Integer(0))
            }
        }
        read => evaluate(table, read),
    }
}

/// Evaluates a read command on `table` without changing anything.
pub(crate) fn evaluate(table: &(impl KvTable + ?Sized), command: &KvCommand) -> Result<KvReply, MachineError> {
    Ok(match command {
        KvCommand::Get(key) => table.get(key)?.map_or(KvReply::Nil, |value| KvReply::Bulk(value.into_owned())),
        KvCommand::MGet(keys) => {
            let mut values = Vec::with_capacity(keys.len());
            for key in keys {
                values.push(table.get(key)?.map(Cow::into_owned));
            }
            KvReply::Array(values)
        }
        KvCommand::Exists(keys) => {
            let mut found = 0;
            for key in keys {
                found += i64::from(table.contains(key)?);
            }
            KvReply::Integer(found)
        }
        KvCommand::DbSize => KvReply::Integer(table.count()? as i64),
        _ => KvReply::Error("internal: a write command reached the read path".into()),
    })
}

fn increment(table: &mut impl KvTable, key: &[u8], delta: i64) -> Result<KvReply, MachineError> {
    let current = match table.get(key)? {
        None => 0,
        Some(bytes) => match std::str::from_utf8(&bytes).ok().and_then(|text| text.parse::<i64>().ok()) {
            Some(number) => number,
            None => return Ok(KvReply::Error(NOT_AN_INTEGER.into())),
        },
    };
    match current.checked_add(delta) {
        Some(next) => {
            table.put(key, next.to_string().as_bytes())?;
            Ok(KvReply::Integer(next))
        }
        None => Ok(KvReply::Error("increment or decrement would overflow".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table that counts its reads and keeps one key.
    #[derive(Default)]
    struct Counted {
        value: Option<Vec<u8>>,
        reads: std::cell::Cell<u32>,
    }

    impl KvTable for Counted {
        fn get(&self, _key: &[u8]) -> Result<Option<Cow<'_, [u8]>>, MachineError> {
            self.reads.set(self.reads.get() + 1);
            Ok(self.value.as_deref().map(Cow::Borrowed))
        }

        fn put(&mut self, _key: &[u8], value: &[u8]) -> Result<(), MachineError> {
            self.value = Some(value.to_vec());
            Ok(())
        }

        fn remove(&mut self, _key: &[u8]) -> Result<bool, MachineError> {
            Ok(self.value.take().is_some())
        }

        fn count(&self) -> Result<u64, MachineError> {
            Ok(u64::from(self.value.is_some()))
        }
    }

    fn set(value: &str, condition: SetCondition) -> KvCommand {
        KvCommand::Set { key: b"k".to_vec(), value: value.into(), condition }
    }

    // An unconditional SET is a blind write (in an LSM engine a read costs
    // more than the write); NX and XX read once.
    #[test]
    fn an_unconditional_set_reads_nothing_and_a_conditional_one_reads_once() {
        let mut table = Counted::default();
        assert_eq!(execute(&mut table, &set("a", SetCondition::Always)).unwrap(), KvReply::Ok);
        assert_eq!(table.reads.get(), 0);
        assert_eq!(execute(&mut table, &set("b", SetCondition::IfAbsent)).unwrap(), KvReply::Nil);
        assert_eq!(execute(&mut table, &set("c", SetCondition::IfPresent)).unwrap(), KvReply::Ok);
        assert_eq!((table.reads.get(), table.value.as_deref()), (2, Some(&b"c"[..])));
    }
}

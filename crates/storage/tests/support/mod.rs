//! Helpers shared by the WAL tests: building logs and reading segments back.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use conclave_core::{Entry, HardState, LogWrite};
use conclave_storage::codec::{self, Record};
use conclave_storage::conformance::write;
use conclave_storage::{LogStore, MemoryStore, PersistRequest, StorageError, Wal, WalOptions};

/// The identity every test WAL uses.
pub fn options() -> WalOptions {
    WalOptions::new(7, 1)
}

/// One synced batch: a hard state and a log write, as one core `Output` has.
pub struct Batch {
    pub hard_state: HardState,
    pub log_write: LogWrite,
}

/// `count` batches: terms rising, one to three entries each, and every fourth
/// batch rewriting the previous batch's last entry (a conflict truncation).
pub fn batches(count: u64) -> Vec<Batch> {
    let mut result = Vec::new();
    let mut next_index = 1;
    for number in 0..count {
        let term = 1 + number / 2;
        let first_index = if number % 4 == 3 { next_index - 1 } else { next_index };
        let entries = 1 + number % 3;
        let log_write = write(first_index, entries, term);
        next_index = first_index + entries;
        result.push(Batch {
            hard_state: HardState { term, voted_for: Some(1 + number % 3), commit: first_index - 1 },
            log_write,
        });
    }
    result
}

/// Persists each batch with its own sync.
pub fn persist_each(wal: &mut Wal, batches: &[Batch]) {
    for batch in batches {
        let request = PersistRequest { hard_state: Some(batch.hard_state), log_write: Some(&batch.log_write) };
        wal.persist(&[request]).expect("persist");
    }
}

/// Hard state and entries: what recovery is compared on.
pub type State = (HardState, Vec<Entry>);

/// The state of any store.
pub fn state_of(store: &impl LogStore) -> State {
    let restored = store.restored_state().expect("restored state");
    (restored.hard_state, restored.entries)
}

/// Where a segment's records end: the zeros after them, if any, are space
/// written ahead.
pub fn records_end(bytes: &[u8]) -> usize {
    records_of(bytes).last().map_or(0, |(offset, _)| codec::decode_frame(bytes, *offset).expect("intact").1)
}

/// A segment's records with their start offsets (the zeros written ahead of
/// them, if any, skipped).
pub fn records_of(bytes: &[u8]) -> Vec<(usize, Record)> {
    let mut records = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() && bytes[offset..].iter().any(|&byte| byte != 0) {
        let (record, next) = codec::decode_frame(bytes, offset).expect("an intact segment");
        records.push((offset, record));
        offset = next;
    }
    records
}

/// Replays `records` one at a time on a memory store: `result[k]` is the state
/// after the first `k` records.
pub fn states_after_each_record(records: &[Record]) -> Vec<State> {
    let mut store = MemoryStore::new();
    let mut states = vec![state_of(&store)];
    for record in records {
        let request = match record {
            Record::HardState(hard_state) => PersistRequest { hard_state: Some(*hard_state), log_write: None },
            Record::LogWrite(log_write) => PersistRequest { hard_state: None, log_write: Some(log_write) },
            Record::SnapshotMarker { .. } => panic!("no snapshots in these tests"),
        };
        store.persist(&[request]).expect("replay");
        states.push(state_of(&store));
    }
    states
}

/// All records of all segments of `dir`, in order.
pub fn all_records(segments: &[PathBuf]) -> Vec<Record> {
    segments.iter().flat_map(|path| records_of(&fs::read(path).expect("read segment"))).map(|(_, r)| r).collect()
}

/// Asserts `result` is `Corrupt` naming `file` and `offset`, and that its
/// message says both.
pub fn assert_corrupt_at<T: std::fmt::Debug>(result: Result<T, StorageError>, file: &Path, offset: u64) {
    match result {
        Err(error @ StorageError::Corrupt { .. }) => {
            let StorageError::Corrupt { file: found_file, offset: found_offset, .. } = &error else { unreachable!() };
            assert_eq!((found_file.as_path(), *found_offset), (file, offset), "{error}");
            let message = error.to_string();
            assert!(message.contains(&file.display().to_string()), "{message}");
            assert!(message.contains(&format!("offset {offset}")), "{message}");
        }
        other => panic!("expected corruption in {} at offset {offset}, got {other:?}", file.display()),
    }
}

//! Crash consistency: whatever a crash (or a damaged byte) leaves in the tail
//! of the last segment, recovery yields exactly the state after a prefix of the
//! synced records, or refuses naming the file and offset. Never a panic, never
//! a wrong entry.
//!
//! Each batch is two records, its hard state then its log write, so a crash
//! inside a batch may keep that batch's term and vote without its entries
//! (never the reverse); the states compared against are the states after each
//! record.

mod support;

use std::fs;
use std::path::Path;

use conclave_storage::{LogStore, StorageError, Wal};
use support::{
    assert_corrupt_at, batches, options, persist_each, records_of, state_of, states_after_each_record, State,
};

/// Records of the last segment's tail that every offset of is damaged.
const TAIL_RECORDS: usize = 6;

struct Fixture {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    last_segment: std::path::PathBuf,
    original: Vec<u8>,
    /// Offsets where each record of the last segment starts.
    record_starts: Vec<usize>,
    /// `states[k]`: the state after the first `k` records of the last segment
    /// (all earlier segments included).
    states: Vec<State>,
}

fn fixture(segment_bytes: u64, batch_count: u64) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().to_path_buf();
    let mut wal = Wal::open(&root, options().with_segment_bytes(segment_bytes)).expect("open");
    persist_each(&mut wal, &batches(batch_count));
    let segments = wal.segment_paths();
    drop(wal);
    let last_segment = segments.last().expect("a segment").clone();
    let original = fs::read(&last_segment).expect("read");
    let earlier = support::all_records(&segments[..segments.len() - 1]);
    let last = records_of(&original);
    assert!(last.len() >= TAIL_RECORDS, "the last segment holds {} records", last.len());
    let all: Vec<_> = earlier.iter().cloned().chain(last.iter().map(|(_, record)| record.clone())).collect();
    let states = states_after_each_record(&all)[earlier.len()..].to_vec();
    let record_starts = last.iter().map(|(offset, _)| *offset).collect();
    Fixture { _dir: dir, root, last_segment, original, record_starts, states }
}

impl Fixture {
    fn tail_start(&self) -> usize {
        self.record_starts[self.record_starts.len() - TAIL_RECORDS]
    }

    /// Records wholly inside the first `len` bytes.
    fn records_within(&self, len: usize) -> usize {
        let ends = self.record_starts.iter().skip(1).copied().chain([self.original.len()]);
        ends.take_while(|&end| end <= len).count()
    }

    fn open(&self) -> Result<Wal, StorageError> {
        Wal::open(&self.root, options().with_segment_bytes(u64::MAX))
    }

    fn check_truncation_at(&self, len: usize) {
        fs::write(&self.last_segment, &self.original[..len]).expect("write");
        let kept = self.records_within(len);
        let mut wal = self.open().unwrap_or_else(|error| panic!("truncated to {len}: {error}"));
        assert_eq!(state_of(&wal), self.states[kept], "truncated to {len}");
        let cut = wal.recovery_report().truncated_tail.is_some();
        let boundary = self.record_starts.get(kept).copied().unwrap_or(self.original.len());
        assert_eq!(cut, len != boundary, "truncated to {len}: tail cut off iff it ends inside a record");
        assert_eq!(file_len(&self.last_segment), boundary as u64, "the torn tail is gone from the file");
        // Writing after recovery continues the log and survives a restart.
        let (hard_state, entries) = &self.states[kept];
        let next = conclave_storage::conformance::write(entries.len() as u64 + 1, 1, hard_state.term);
        let request = conclave_storage::PersistRequest { hard_state: None, log_write: Some(&next) };
        wal.persist(&[request]).expect("persist after recovery");
        drop(wal);
        let wal = self.open().expect("reopen after recovery");
        let mut expected = entries.clone();
        expected.extend(next.entries);
        assert_eq!(state_of(&wal), (*hard_state, expected), "truncated to {len}, then appended");
    }

    fn check_flip_at(&self, offset: usize) {
        let mut damaged = self.original.clone();
        damaged[offset] ^= 0x5a;
        fs::write(&self.last_segment, &damaged).expect("write");
        let record = self.records_within(offset + 1).min(self.record_starts.len() - 1);
        let record = if self.record_starts[record] > offset { record - 1 } else { record };
        let is_last_record = record + 1 == self.record_starts.len();
        let result = self.open();
        if is_last_record {
            let wal = result.unwrap_or_else(|error| panic!("flip at {offset} in the last record: {error}"));
            assert_eq!(state_of(&wal), self.states[record], "flip at {offset}");
            assert!(wal.recovery_report().truncated_tail.is_some(), "flip at {offset}");
        } else {
            assert_corrupt_at(result.map(|wal| state_of(&wal)), &self.last_segment, self.record_starts[record] as u64);
        }
    }
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).expect("metadata").len()
}

fn every_truncation_of_the_tail(fixture: &Fixture) {
    for len in fixture.tail_start()..=fixture.original.len() {
        fixture.check_truncation_at(len);
    }
}

fn every_flip_in_the_tail(fixture: &Fixture) {
    for offset in fixture.tail_start()..fixture.original.len() {
        fixture.check_flip_at(offset);
    }
}

#[test]
fn every_truncation_of_the_tail_recovers_a_prefix_of_the_synced_records() {
    every_truncation_of_the_tail(&fixture(u64::MAX, 12));
}

#[test]
fn every_byte_flip_in_the_tail_recovers_a_prefix_or_is_refused_at_its_record() {
    every_flip_in_the_tail(&fixture(u64::MAX, 12));
}

#[test]
fn every_truncation_of_the_last_of_several_segments_recovers_a_prefix() {
    let fixture = fixture(400, 40);
    assert!(fixture.states[0].1.len() > 1, "earlier segments hold entries");
    every_truncation_of_the_tail(&fixture);
}

#[test]
fn every_byte_flip_in_the_last_of_several_segments_is_handled() {
    every_flip_in_the_tail(&fixture(400, 40));
}

#[test]
fn a_zero_filled_tail_is_a_torn_write() {
    // Some file systems extend a file before its data lands: a crash then leaves zeros.
    let fixture = fixture(u64::MAX, 6);
    let mut bytes = fixture.original.clone();
    bytes.extend_from_slice(&[0; 100]);
    fs::write(&fixture.last_segment, &bytes).expect("write");
    let wal = fixture.open().expect("open");
    assert_eq!(state_of(&wal), *fixture.states.last().expect("states"));
    let tail = wal.recovery_report().truncated_tail.clone().expect("a cut tail");
    assert_eq!((tail.offset, tail.bytes_dropped), (fixture.original.len() as u64, 100));
}

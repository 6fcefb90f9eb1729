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

use conclave_storage::codec::Record;
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
    // The records only: the zeros written ahead of them are dropped, so that a
    // truncation is what a crash of a growing file leaves.
    let mut original = fs::read(&last_segment).expect("read");
    original.truncate(support::records_end(&original));
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

    /// A crash that tore the write at `len` bytes, in a file that then holds
    /// `zeros` zero bytes more: none for a file that grew with its writes, the
    /// space written ahead for one that is written over zeros.
    fn check_truncation_at(&self, len: usize, zeros: usize) {
        let mut bytes = self.original[..len].to_vec();
        bytes.resize(len + zeros, 0);
        fs::write(&self.last_segment, &bytes).expect("write");
        // Whole records, and also one whose missing bytes are zeros that the
        // zeros after the cut supply: its bytes are all there.
        let ends = self.record_starts.iter().skip(1).copied().chain([self.original.len()]);
        let kept = ends
            .take_while(|&end| end <= len || (end <= len + zeros && self.original[len..end].iter().all(|&b| b == 0)))
            .count();
        let context = format!("truncated to {len}, then {zeros} zeros");
        let mut wal = self.open().unwrap_or_else(|error| panic!("{context}: {error}"));
        assert_eq!(state_of(&wal), self.states[kept], "{context}");
        let report = wal.recovery_report().clone();
        let boundary = self.record_starts.get(kept).copied().unwrap_or(self.original.len());
        // Bytes of a torn record that happen to be zeros are no record at all.
        let torn = bytes[boundary..len.max(boundary)].iter().any(|&byte| byte != 0);
        assert_eq!(report.truncated_tail.is_some(), torn, "{context}: tail cut off iff it ends inside a record");
        if torn {
            assert_eq!(file_len(&self.last_segment), boundary as u64, "{context}: the torn tail is gone from the file");
            assert_eq!(report.zero_tail, 0, "{context}");
        } else {
            assert_eq!(file_len(&self.last_segment), (len + zeros) as u64, "{context}: the zeros are kept");
            assert_eq!(report.zero_tail, (len + zeros).saturating_sub(boundary) as u64, "{context}");
        }
        // Writing after recovery continues the log and survives a restart.
        let (hard_state, entries) = &self.states[kept];
        let next = conclave_storage::conformance::write(entries.len() as u64 + 1, 1, hard_state.term);
        let request = conclave_storage::PersistRequest { hard_state: None, log_write: Some(&next) };
        wal.persist(&[request]).expect("persist after recovery");
        drop(wal);
        let wal = self.open().expect("reopen after recovery");
        let mut expected = entries.clone();
        expected.extend(next.entries);
        assert_eq!(state_of(&wal), (*hard_state, expected), "{context}, then appended");
    }

    /// A byte of the tail flipped, in a file followed by `zeros` zero bytes.
    fn check_flip_at(&self, offset: usize, zeros: usize) {
        let mut damaged = self.original.clone();
        damaged[offset] ^= 0x5a;
        damaged.resize(damaged.len() + zeros, 0);
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
        fixture.check_truncation_at(len, 0);
    }
}

/// Zeros up to a little past where the untorn records would have ended: what
/// a crash in the middle of a write over zeros written ahead leaves.
fn every_truncation_of_the_tail_in_front_of_zeros(fixture: &Fixture) {
    for len in fixture.tail_start()..=fixture.original.len() {
        fixture.check_truncation_at(len, fixture.original.len() - len + 4096);
    }
}

fn every_flip_in_the_tail(fixture: &Fixture, zeros: usize) {
    for offset in fixture.tail_start()..fixture.original.len() {
        fixture.check_flip_at(offset, zeros);
    }
}

#[test]
fn every_truncation_of_the_tail_recovers_a_prefix_of_the_synced_records() {
    every_truncation_of_the_tail(&fixture(u64::MAX, 12));
}

#[test]
fn every_byte_flip_in_the_tail_recovers_a_prefix_or_is_refused_at_its_record() {
    every_flip_in_the_tail(&fixture(u64::MAX, 12), 0);
}

#[test]
fn every_torn_record_in_front_of_zeros_written_ahead_is_cut_off() {
    every_truncation_of_the_tail_in_front_of_zeros(&fixture(u64::MAX, 12));
}

#[test]
fn every_byte_flip_in_front_of_zeros_written_ahead_recovers_a_prefix_or_is_refused() {
    every_flip_in_the_tail(&fixture(u64::MAX, 12), 4096);
}

#[test]
fn every_truncation_of_the_last_of_several_segments_recovers_a_prefix() {
    let fixture = fixture(400, 40);
    assert!(fixture.states[0].1.len() > 1, "earlier segments hold entries");
    every_truncation_of_the_tail(&fixture);
}

#[test]
fn every_byte_flip_in_the_last_of_several_segments_is_handled() {
    every_flip_in_the_tail(&fixture(400, 40), 0);
}

#[test]
fn every_torn_record_in_front_of_zeros_in_the_last_of_several_segments_is_cut_off() {
    every_truncation_of_the_tail_in_front_of_zeros(&fixture(400, 40));
}

#[test]
fn zeros_after_the_last_record_are_space_written_ahead_and_kept() {
    // The zeros a WAL writes ahead of its records, or those a crash leaves
    // where a file system extended a file before its data landed: no record
    // is in them, so nothing is cut off and nothing is reported as torn.
    let fixture = fixture(u64::MAX, 6);
    for zeros in [1, 7, 8, 100, 4096, 1 << 20] {
        let mut bytes = fixture.original.clone();
        bytes.resize(bytes.len() + zeros, 0);
        fs::write(&fixture.last_segment, &bytes).expect("write");
        let wal = fixture.open().expect("open");
        assert_eq!(state_of(&wal), *fixture.states.last().expect("states"), "{zeros} zeros");
        assert_eq!(wal.recovery_report().truncated_tail, None, "{zeros} zeros");
        assert_eq!(wal.recovery_report().zero_tail, zeros as u64);
        assert_eq!(file_len(&fixture.last_segment), bytes.len() as u64, "the zeros are kept");
    }
}

#[test]
fn a_zeroed_record_between_intact_records_is_refused_even_with_zeros_ahead() {
    // A record zeroed out (a lost or zeroed block) in front of intact records
    // is not a torn tail, whatever zeros follow: refused at its offset.
    let fixture = fixture(u64::MAX, 12);
    let starts = &fixture.record_starts;
    let victim = starts.len() - 3;
    for zeros in [0, 4096] {
        let mut bytes = fixture.original.clone();
        bytes[starts[victim]..starts[victim + 1]].fill(0);
        bytes.resize(bytes.len() + zeros, 0);
        fs::write(&fixture.last_segment, &bytes).expect("write");
        assert_corrupt_at(fixture.open().map(|wal| state_of(&wal)), &fixture.last_segment, starts[victim] as u64);
    }
}

#[test]
fn zeros_after_the_records_of_an_earlier_segment_are_refused() {
    // Closed segments are cut to their last record: zeros after them are not
    // space written ahead.
    let fixture = fixture(400, 40);
    let first = fixture.root.join("wal-00000000000000000001.log");
    let mut bytes = fs::read(&first).expect("read");
    let end = bytes.len();
    assert_eq!(support::records_end(&bytes), end, "a closed segment ends at its last record");
    bytes.resize(end + 4096, 0);
    fs::write(&first, &bytes).expect("write");
    assert_corrupt_at(fixture.open().map(|wal| state_of(&wal)), &first, end as u64);
}

#[test]
fn a_last_segment_of_only_zeros_is_a_new_empty_segment() {
    // A crash right after a spare was renamed to be the next segment, before
    // its first record: the segment holds zeros only (and the one before it
    // was cut to its last record).
    let fixture = fixture(400, 40);
    fs::write(&fixture.last_segment, &fixture.original).expect("write");
    let name = fixture.last_segment.file_name().expect("name").to_string_lossy().into_owned();
    let first_seq = conclave_storage::segment::parse_segment_name(&name).expect("a segment name");
    let next =
        fixture.root.join(conclave_storage::segment::segment_name(first_seq + fixture.record_starts.len() as u64));
    fs::write(&next, vec![0; 4096]).expect("write");
    let mut wal = fixture.open().expect("open");
    let (hard_state, entries) = fixture.states.last().expect("states").clone();
    assert_eq!(state_of(&wal), (hard_state, entries.clone()));
    assert_eq!((wal.recovery_report().truncated_tail.clone(), wal.recovery_report().zero_tail), (None, 4096));
    // Opening wrote the copy of the hard state the roll did not get to, so
    // that compacting the older segments cannot lose it.
    let records = support::records_of(&fs::read(&next).expect("read"));
    assert_eq!(records.iter().map(|(_, record)| record).collect::<Vec<_>>(), [&Record::HardState(hard_state)]);
    let more = conclave_storage::conformance::write(entries.len() as u64 + 1, 2, hard_state.term);
    wal.persist(&[conclave_storage::PersistRequest { hard_state: None, log_write: Some(&more) }]).expect("persist");
    drop(wal);
    let wal = fixture.open().expect("reopen");
    assert_eq!(wal.last_index(), entries.len() as u64 + 2);
    assert_eq!(fs::metadata(&next).expect("metadata").len(), 4096, "written over its zeros");
}

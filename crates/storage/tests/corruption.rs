//! Damage a crash cannot explain is refused with the file and byte offset,
//! never skipped: in the middle of the last segment, anywhere in an earlier
//! segment, a missing segment, a valid checksum over an invalid body, and
//! damaged or missing snapshot files.

mod support;

use std::fs;

use conclave_core::HardState;
use conclave_storage::conformance::write;
use conclave_storage::{LogStore, PersistRequest, Snapshot, StorageError, Wal};
use support::{assert_corrupt_at, batches, options, persist_each, records_end, records_of};

fn open(root: &std::path::Path, segment_bytes: u64) -> Result<Wal, StorageError> {
    Wal::open(root, options().with_segment_bytes(segment_bytes))
}

#[test]
fn a_damaged_record_in_the_middle_of_the_log_is_refused_with_file_and_offset() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut wal = open(dir.path(), u64::MAX).expect("open");
    persist_each(&mut wal, &batches(10));
    let segment = wal.segment_paths()[0].clone();
    drop(wal);
    let mut bytes = fs::read(&segment).expect("read");
    let (offset, _) = records_of(&bytes)[7];
    bytes[offset + 12] ^= 1;
    fs::write(&segment, &bytes).expect("write");
    assert_corrupt_at(open(dir.path(), u64::MAX), &segment, offset as u64);
    // Refusing changed nothing: the file is as it was.
    assert_eq!(fs::read(&segment).expect("read"), bytes);
}

#[test]
fn a_length_field_pointing_past_the_end_of_the_file_is_refused_when_records_follow() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut wal = open(dir.path(), u64::MAX).expect("open");
    persist_each(&mut wal, &batches(10));
    let segment = wal.segment_paths()[0].clone();
    drop(wal);
    let mut bytes = fs::read(&segment).expect("read");
    let (offset, _) = records_of(&bytes)[3];
    bytes[offset + 3] = 0x7f; // the length's high byte: the record now "runs past the end"
    fs::write(&segment, &bytes).expect("write");
    assert_corrupt_at(open(dir.path(), u64::MAX), &segment, offset as u64);
}

#[test]
fn damage_at_the_tail_of_an_earlier_segment_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut wal = open(dir.path(), 300).expect("open");
    persist_each(&mut wal, &batches(30));
    let segments = wal.segment_paths();
    assert!(segments.len() >= 3, "{segments:?}");
    drop(wal);
    let first = &segments[0];
    let mut bytes = fs::read(first).expect("read");
    let (offset, _) = *records_of(&bytes).last().expect("records");
    let last_byte = bytes.len() - 1;
    bytes[last_byte] ^= 0xff;
    fs::write(first, &bytes).expect("write");
    assert_corrupt_at(open(dir.path(), 300), first, offset as u64);
    // A short earlier segment is refused too.
    bytes.truncate(last_byte);
    fs::write(first, &bytes).expect("write");
    assert_corrupt_at(open(dir.path(), 300), first, offset as u64);
}

#[test]
fn a_missing_middle_segment_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut wal = open(dir.path(), 300).expect("open");
    persist_each(&mut wal, &batches(30));
    let segments = wal.segment_paths();
    drop(wal);
    fs::remove_file(&segments[1]).expect("remove");
    assert_corrupt_at(open(dir.path(), 300), &segments[2], 0);
}

#[test]
fn a_valid_checksum_over_an_invalid_body_is_refused_even_at_the_tail() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut wal = open(dir.path(), u64::MAX).expect("open");
    persist_each(&mut wal, &batches(3));
    let segment = wal.segment_paths()[0].clone();
    drop(wal);
    let mut bytes = fs::read(&segment).expect("read");
    let offset = records_end(&bytes);
    let zeros_ahead = bytes.len() - offset;
    bytes.truncate(offset);
    let body = [9u8, 1, 2, 3]; // record kind 9 does not exist
    bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    bytes.extend_from_slice(&body);
    // Written over the zeros ahead, as an append would.
    bytes.resize(bytes.len().max(offset + zeros_ahead), 0);
    fs::write(&segment, &bytes).expect("write");
    assert_corrupt_at(open(dir.path(), u64::MAX), &segment, offset as u64);
}

#[test]
fn segments_removed_without_a_snapshot_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut wal = open(dir.path(), 300).expect("open");
    persist_each(&mut wal, &batches(30));
    let segments = wal.segment_paths();
    drop(wal);
    fs::remove_file(&segments[0]).expect("remove");
    assert_corrupt_at(open(dir.path(), 300), &segments[1], 0);
}

fn wal_with_snapshot(root: &std::path::Path) -> Wal {
    let mut wal = open(root, u64::MAX).expect("open");
    let log = write(1, 6, 1);
    let hard_state = HardState { term: 1, voted_for: None, commit: 6 };
    wal.persist(&[PersistRequest { hard_state: Some(hard_state), log_write: Some(&log) }]).expect("persist");
    let snapshot = Snapshot {
        last_included_index: 4,
        last_included_term: 1,
        membership: conclave_core::Membership::bootstrap(&[1, 2, 3], &Default::default()),
        last_leader_term: None,
        data: vec![7; 100].into(),
    };
    wal.save_snapshot(snapshot).expect("snapshot");
    wal
}

#[test]
fn every_truncation_of_the_snapshot_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    drop(wal_with_snapshot(dir.path()));
    let path = dir.path().join("snapshot");
    let original = fs::read(&path).expect("read");
    for len in 0..original.len() {
        fs::write(&path, &original[..len]).expect("write");
        match open(dir.path(), u64::MAX) {
            Err(StorageError::Corrupt { file, .. }) => assert_eq!(file, path, "truncated to {len}"),
            other => panic!("snapshot truncated to {len}: {other:?}"),
        }
    }
    fs::write(&path, &original).expect("write");
    let wal = open(dir.path(), u64::MAX).expect("the intact snapshot opens");
    assert_eq!(wal.first_index(), 5);
}

#[test]
fn a_garbage_or_flipped_snapshot_file_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    drop(wal_with_snapshot(dir.path()));
    let path = dir.path().join("snapshot");
    let original = fs::read(&path).expect("read");
    fs::write(&path, b"this is not a snapshot at all, just some text").expect("write");
    let error = open(dir.path(), u64::MAX).expect_err("garbage");
    assert!(error.to_string().contains("bad magic"), "{error}");
    for offset in 0..original.len() {
        let mut damaged = original.clone();
        damaged[offset] ^= 0x10;
        fs::write(&path, &damaged).expect("write");
        assert!(matches!(open(dir.path(), u64::MAX), Err(StorageError::Corrupt { .. })), "flip at {offset}");
    }
}

#[test]
fn a_missing_snapshot_file_that_the_wal_records_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let wal = wal_with_snapshot(dir.path());
    let segment = wal.segment_paths()[0].clone();
    drop(wal);
    fs::remove_file(dir.path().join("snapshot")).expect("remove");
    let marker_offset = records_of(&fs::read(&segment).expect("read")).last().expect("marker").0;
    assert_corrupt_at(open(dir.path(), u64::MAX), &segment, marker_offset as u64);
}

//! WAL-specific behaviour: one sync per group commit, counters, segment rolls
//! and names, compaction removing whole segments.

mod support;

use conclave_core::HardState;
use conclave_storage::conformance::write;
use conclave_storage::{LogStore, PersistRequest, Snapshot, Wal};
use support::{batches, options, persist_each, state_of};

#[test]
fn a_group_commit_of_64_batches_is_one_sync() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut wal = Wal::open(dir.path(), options()).expect("open");
    let writes: Vec<_> = (1..=64).map(|index| write(index, 1, 1)).collect();
    let hard_state = HardState { term: 1, voted_for: Some(1), commit: 0 };
    let requests: Vec<_> = writes
        .iter()
        .map(|log_write| PersistRequest { hard_state: Some(hard_state), log_write: Some(log_write) })
        .collect();
    wal.persist(&requests).expect("persist");
    let stats = wal.stats();
    assert_eq!((stats.syncs, stats.records_written, stats.batches_persisted), (1, 128, 64));
    let segment = std::fs::read(&wal.segment_paths()[0]).expect("read");
    assert_eq!(stats.bytes_written, support::records_end(&segment) as u64);
    assert_eq!(stats.bytes_written + stats.zeros_written, segment.len() as u64);
    assert_eq!(wal.last_index(), 64);
}

#[test]
fn empty_persists_neither_write_nor_sync() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut wal = Wal::open(dir.path(), options()).expect("open");
    wal.persist(&[]).expect("nothing");
    wal.persist(&[PersistRequest::default(); 4]).expect("empty batches");
    assert_eq!((wal.stats().syncs, wal.stats().bytes_written), (0, 0));
}

#[test]
fn segments_roll_at_the_configured_size_and_are_named_by_their_first_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut wal = Wal::open(dir.path(), options().with_segment_bytes(300)).expect("open");
    persist_each(&mut wal, &batches(20));
    let names: Vec<String> =
        wal.segment_paths().iter().map(|path| path.file_name().expect("name").to_string_lossy().into_owned()).collect();
    assert!(names.len() > 2, "{names:?}");
    assert_eq!(names[0], "wal-00000000000000000001.log");
    for name in &names {
        assert!(name.starts_with("wal-") && name.ends_with(".log") && name.len() == 28, "{name}");
    }
    let state = state_of(&wal);
    drop(wal);
    let wal = Wal::open(dir.path(), options().with_segment_bytes(300)).expect("reopen");
    assert_eq!(state_of(&wal), state);
}

#[test]
fn compaction_removes_only_whole_segments_the_snapshot_covers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut wal = Wal::open(dir.path(), options().with_segment_bytes(300)).expect("open");
    let batches = batches(40);
    persist_each(&mut wal, &batches);
    let before = wal.segment_paths();
    let last_index = wal.last_index();
    let snapshot_index = last_index - 3;
    let term = wal.entries(snapshot_index..snapshot_index + 1).expect("entry")[0].term;
    let expected_tail = wal.entries(snapshot_index + 1..last_index + 1).expect("tail");
    let hard_state = wal.hard_state();
    wal.save_snapshot(Snapshot {
        last_included_index: snapshot_index,
        last_included_term: term,
        membership: conclave_core::Membership::bootstrap(&[1], &Default::default()),
        last_leader_term: None,
        data: Vec::new().into(),
    })
    .expect("snapshot");
    wal.compact(snapshot_index).expect("compact");
    let after = wal.segment_paths();
    assert!(after.len() < before.len(), "{} segments before, {} after", before.len(), after.len());
    assert_eq!(after.last(), before.last(), "the active segment stays");
    for removed in &before[..before.len() - after.len()] {
        assert!(!removed.exists(), "{} should be gone", removed.display());
    }
    drop(wal);
    let wal = Wal::open(dir.path(), options().with_segment_bytes(300)).expect("reopen");
    assert_eq!(wal.hard_state(), hard_state, "the hard state survives the removal of its segment");
    assert_eq!(wal.first_index(), snapshot_index + 1);
    assert_eq!(wal.entries(snapshot_index + 1..last_index + 1).expect("tail"), expected_tail);
}

// A crash between the snapshot file's rename and its WAL marker: the snapshot
// (installed from a leader) does not match the log at its last index, so the
// entries after that index must not survive as if they followed it.
#[test]
fn a_snapshot_file_without_its_marker_still_discards_a_divergent_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut wal = Wal::open(dir.path(), options()).expect("open");
    let hard_state = HardState { term: 3, voted_for: None, commit: 0 };
    let log = write(1, 6, 1);
    wal.persist(&[PersistRequest { hard_state: Some(hard_state), log_write: Some(&log) }]).expect("persist");
    drop(wal);
    let installed = Snapshot {
        last_included_index: 4,
        last_included_term: 2,
        membership: conclave_core::Membership::bootstrap(&[1], &Default::default()),
        last_leader_term: None,
        data: Vec::new().into(),
    };
    conclave_storage::snapshot::save(dir.path(), &installed).expect("the file alone");
    let wal = Wal::open(dir.path(), options()).expect("reopen");
    assert_eq!((wal.first_index(), wal.last_index()), (5, 4), "the divergent entries 5 and 6 are gone");
    let restored = wal.restored_state().expect("restored");
    assert!(restored.entries.is_empty());
    drop(wal);

    // The same crash with a snapshot of the log's own prefix keeps the suffix.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut wal = Wal::open(dir.path(), options()).expect("open");
    wal.persist(&[PersistRequest { hard_state: Some(hard_state), log_write: Some(&log) }]).expect("persist");
    drop(wal);
    let own = Snapshot { last_included_term: 1, ..installed };
    conclave_storage::snapshot::save(dir.path(), &own).expect("the file alone");
    let wal = Wal::open(dir.path(), options()).expect("reopen");
    assert_eq!((wal.first_index(), wal.last_index()), (5, 6));
}

#[test]
fn appends_write_over_zeros_ahead_so_the_file_grows_once_per_megabyte() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut wal = Wal::open(dir.path(), options()).expect("open");
    let segment = wal.segment_paths()[0].clone();
    let file_len = || std::fs::metadata(&segment).expect("metadata").len();
    persist_each(&mut wal, &batches(1));
    let after_first = file_len();
    assert_eq!(after_first, wal.stats().bytes_written + (1 << 20), "one megabyte of zeros after the first records");
    persist_each(&mut wal, &batches(60)[1..]);
    let stats = wal.stats();
    assert_eq!(file_len(), after_first, "the later appends wrote over the zeros");
    assert_eq!(stats.zeros_written, 1 << 20, "zeros were written once");
    let bytes = std::fs::read(&segment).expect("read");
    assert_eq!(support::records_end(&bytes) as u64, stats.bytes_written);
    assert!(bytes[stats.bytes_written as usize..].iter().all(|&byte| byte == 0));
    let state = state_of(&wal);
    drop(wal);
    // A restart keeps the zeros (no torn tail) and appends over them.
    let mut wal = Wal::open(dir.path(), options()).expect("reopen");
    assert_eq!(state_of(&wal), state);
    let report = wal.recovery_report();
    assert_eq!((report.truncated_tail.clone(), report.zero_tail), (None, after_first - stats.bytes_written));
    let next = write(state.1.len() as u64 + 1, 3, state.0.term);
    wal.persist(&[PersistRequest { hard_state: None, log_write: Some(&next) }]).expect("persist");
    assert_eq!((file_len(), wal.stats().zeros_written), (after_first, 0));
    drop(wal);
    let wal = Wal::open(dir.path(), options()).expect("reopen");
    assert_eq!(wal.last_index(), state.1.len() as u64 + 3);
}

#[test]
fn closed_segments_end_at_their_last_record_and_only_the_active_one_has_zeros() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut wal = Wal::open(dir.path(), options().with_segment_bytes(1000)).expect("open");
    persist_each(&mut wal, &batches(60));
    let segments = wal.segment_paths();
    assert!(segments.len() > 3, "{segments:?}");
    for (position, path) in segments.iter().enumerate() {
        let bytes = std::fs::read(path).expect("read");
        let end = support::records_end(&bytes);
        if position + 1 < segments.len() {
            assert_eq!(end, bytes.len(), "{} is cut to its last record", path.display());
        } else {
            assert!(
                end < bytes.len() && bytes.len() <= 1000,
                "zeros ahead up to the segment size: {end} of {}",
                bytes.len()
            );
        }
    }
}

#[test]
fn rolls_take_the_next_segment_prepared_with_zeros_off_the_write_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let segment_bytes = 16 << 10;
    let mut wal = Wal::open(dir.path(), options().with_segment_bytes(segment_bytes)).expect("open");
    let spare = dir.path().join("wal-spare.tmp");
    let hard_state = HardState { term: 1, voted_for: Some(1), commit: 0 };
    for index in 1..=200 {
        let log_write = write(index, 1, 1);
        let log_write = conclave_core::LogWrite {
            first_index: index,
            entries: vec![conclave_core::Entry {
                payload: conclave_core::Payload::Command(vec![7; 400].into()),
                ..log_write.entries[0].clone()
            }],
        };
        wal.persist(&[PersistRequest { hard_state: Some(hard_state), log_write: Some(&log_write) }]).expect("persist");
        if spare.exists() {
            // The thread filling it finishes before the roll needs it.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while !wal.spare_ready() {
                assert!(std::time::Instant::now() < deadline, "the spare was not ready within 30 s");
                std::thread::yield_now();
            }
        }
    }
    let stats = wal.stats();
    let segments = wal.segment_paths();
    assert!(segments.len() >= 4, "{segments:?}");
    assert!(stats.spares_used >= 1, "{stats:?}");
    for path in &segments[..segments.len() - 1] {
        let bytes = std::fs::read(path).expect("read");
        assert_eq!(support::records_end(&bytes), bytes.len(), "{} is cut to its last record", path.display());
    }
    let state = state_of(&wal);
    drop(wal);
    let wal = Wal::open(dir.path(), options().with_segment_bytes(segment_bytes)).expect("reopen");
    assert_eq!(state_of(&wal), state);
    assert!(!spare.exists(), "a spare left behind is removed on open");
}

#[test]
fn a_spare_left_by_a_crash_is_removed_on_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut wal = Wal::open(dir.path(), options()).expect("open");
    persist_each(&mut wal, &batches(5));
    let state = state_of(&wal);
    drop(wal);
    let spare = dir.path().join("wal-spare.tmp");
    std::fs::write(&spare, [0, 0, 7, 7]).expect("a half-filled spare");
    let wal = Wal::open(dir.path(), options()).expect("reopen");
    assert_eq!(state_of(&wal), state);
    assert!(!spare.exists());
}

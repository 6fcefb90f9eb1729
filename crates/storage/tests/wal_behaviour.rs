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
    let segment_len = std::fs::metadata(&wal.segment_paths()[0]).expect("metadata").len();
    assert_eq!(stats.bytes_written, segment_len);
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
        voters: vec![1],
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
        voters: vec![1],
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

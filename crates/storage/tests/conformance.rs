//! The storage conformance suite (`conclave_storage::conformance`) against both
//! stores: every case for each, plus `run_all` once for each.

use std::cell::RefCell;

use conclave_storage::{conformance, MemoryStore, Wal, WalOptions};
use tempfile::TempDir;

/// Makes WALs in fresh temporary directories, removed when the test ends.
/// Small segments, so the suite also crosses segment rolls and compactions.
struct WalFactory {
    dirs: RefCell<Vec<TempDir>>,
}

impl WalFactory {
    fn new() -> WalFactory {
        WalFactory { dirs: RefCell::new(Vec::new()) }
    }

    fn make(&self) -> Wal {
        let dir = tempfile::tempdir().expect("temp dir");
        let wal = Wal::open(dir.path(), options()).expect("open a new WAL");
        self.dirs.borrow_mut().push(dir);
        wal
    }
}

fn options() -> WalOptions {
    WalOptions::new(7, 1).with_segment_bytes(512)
}

fn reopen_wal(wal: Wal) -> Wal {
    let dir = wal.dir().to_path_buf();
    drop(wal);
    Wal::open(dir, options()).expect("reopen the WAL")
}

fn reopen_memory(store: MemoryStore) -> MemoryStore {
    store
}

macro_rules! conformance_case {
    ($case:ident) => {
        mod $case {
            use super::*;

            #[test]
            fn wal() {
                let factory = WalFactory::new();
                conformance::$case(|| factory.make(), reopen_wal);
            }

            #[test]
            fn memory() {
                conformance::$case(MemoryStore::new, reopen_memory);
            }
        }
    };
}

conformance_case!(append);
conformance_case!(truncate_suffix);
conformance_case!(compact_prefix);
conformance_case!(snapshot_replaces_a_divergent_log);
conformance_case!(stale_snapshot_is_refused);
conformance_case!(restore_snapshot_and_suffix);
conformance_case!(hard_state_round_trip);
conformance_case!(reopen_after_drop);
conformance_case!(group_commit_of_many_batches);
conformance_case!(empty_batches);
conformance_case!(invalid_batches_are_refused_whole);
conformance_case!(out_of_range_reads);

#[test]
fn run_all_wal() {
    let factory = WalFactory::new();
    conformance::run_all(|| factory.make(), reopen_wal);
}

#[test]
fn run_all_wal_with_default_segments() {
    let dirs = RefCell::new(Vec::new());
    let make = || {
        let dir = tempfile::tempdir().expect("temp dir");
        let wal = Wal::open(dir.path(), WalOptions::new(7, 1)).expect("open");
        dirs.borrow_mut().push(dir);
        wal
    };
    let reopen = |wal: Wal| {
        let dir = wal.dir().to_path_buf();
        drop(wal);
        Wal::open(dir, WalOptions::new(7, 1)).expect("reopen")
    };
    conformance::run_all(make, reopen);
}

#[test]
fn run_all_memory() {
    conformance::run_all(MemoryStore::new, reopen_memory);
}

//! Data-directory safety: one store per directory (across processes too), and
//! a directory only ever serves the cluster and node it was created for.

use std::fs;
use std::process::{Command, Stdio};

use conclave_storage::{LogStore, StorageError, Wal, WalOptions};

const PROBE_DIR: &str = "CONCLAVE_STORAGE_LOCK_PROBE_DIR";

/// The tests of this file run one at a time. One of them starts a child process,
/// and between its fork and its exec the child shares every open file of this
/// process — a WAL's `LOCK` too, so a test that drops a WAL and reopens it at
/// once could find the directory still locked (seen once in CI).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn a_second_open_in_the_same_process_is_locked_out_until_the_first_is_dropped() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("temp dir");
    let first = Wal::open(dir.path(), WalOptions::new(7, 1)).expect("open");
    match Wal::open(dir.path(), WalOptions::new(7, 1)) {
        Err(error @ StorageError::Locked { .. }) => {
            assert!(error.to_string().contains(&dir.path().join("LOCK").display().to_string()), "{error}")
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(first);
    Wal::open(dir.path(), WalOptions::new(7, 1)).expect("open after the first is dropped");
}

#[test]
fn another_process_is_locked_out() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("temp dir");
    let _held = Wal::open(dir.path(), WalOptions::new(7, 1)).expect("open");
    let status = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "lock_probe_in_a_child_process", "--nocapture", "--test-threads=1"])
        .env(PROBE_DIR, dir.path())
        .stdout(Stdio::null())
        .status()
        .expect("run the child");
    assert!(status.success(), "the child process must have been refused with Locked");
}

/// Runs only as the child of `another_process_is_locked_out`.
#[test]
fn lock_probe_in_a_child_process() {
    let _serial = serial();
    let Some(dir) = std::env::var_os(PROBE_DIR) else { return };
    assert!(matches!(Wal::open(dir, WalOptions::new(7, 1)), Err(StorageError::Locked { .. })));
}

#[test]
fn another_cluster_id_is_refused_naming_both() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("temp dir");
    drop(Wal::open(dir.path(), WalOptions::new(7, 1)).expect("create"));
    let error = Wal::open(dir.path(), WalOptions::new(8, 1)).expect_err("wrong cluster");
    assert!(matches!(error, StorageError::WrongCluster { expected: 8, found: 7, .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("cluster 7") && message.contains("cluster 8"), "{message}");
}

#[test]
fn another_node_id_is_refused_naming_both() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("temp dir");
    drop(Wal::open(dir.path(), WalOptions::new(7, 1)).expect("create"));
    let error = Wal::open(dir.path(), WalOptions::new(7, 2)).expect_err("wrong node");
    assert!(matches!(error, StorageError::WrongNode { expected: 2, found: 1, .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("node 1") && message.contains("node 2"), "{message}");
    // The refusal changed nothing: the right identity still opens.
    Wal::open(dir.path(), WalOptions::new(7, 1)).expect("reopen");
}

#[test]
fn a_damaged_meta_file_is_refused() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("temp dir");
    drop(Wal::open(dir.path(), WalOptions::new(7, 1)).expect("create"));
    let path = dir.path().join("meta");
    let mut bytes = fs::read(&path).expect("read");
    bytes[20] ^= 1;
    fs::write(&path, &bytes).expect("write");
    match Wal::open(dir.path(), WalOptions::new(7, 1)) {
        Err(StorageError::Corrupt { file, .. }) => assert_eq!(file, path),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn a_missing_meta_file_beside_wal_data_is_refused() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut wal = Wal::open(dir.path(), WalOptions::new(7, 1)).expect("create");
    let hard_state = conclave_core::HardState { term: 1, voted_for: None, commit: 0 };
    wal.persist(&[conclave_storage::PersistRequest { hard_state: Some(hard_state), log_write: None }])
        .expect("persist");
    drop(wal);
    fs::remove_file(dir.path().join("meta")).expect("remove");
    assert!(matches!(Wal::open(dir.path(), WalOptions::new(7, 1)), Err(StorageError::Corrupt { .. })));
}

//! The WAL under injected disk faults (feature `disk-faults`, test builds
//! only; docs/decisions/0069-disk-faults-stop-the-node.md): a failed write or
//! fsync is an error naming the operation and the segment, poisons the WAL
//! (nothing is retried), and a reopen after the fault recovers everything
//! persisted before it.
//!
//! One test in this binary: the arming file is named by an environment
//! variable that the process reads once.

use conclave_core::{Entry, HardState, LogWrite, Payload};
use conclave_storage::fault::{self, Point};
use conclave_storage::{LogStore, PersistRequest, StorageError, Wal, WalOptions};

fn write(index: u64) -> LogWrite {
    LogWrite {
        first_index: index,
        entries: vec![Entry { term: 1, index, payload: Payload::Command(vec![7; 64].into()) }],
    }
}

fn persist(wal: &mut Wal, index: u64) -> Result<(), StorageError> {
    let hard_state = HardState { term: 1, voted_for: Some(1), commit: index - 1 };
    wal.persist(&[PersistRequest { hard_state: Some(hard_state), log_write: Some(&write(index)) }])
}

#[test]
fn a_failed_write_or_fsync_names_the_operation_poisons_the_wal_and_loses_nothing_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let arming = dir.path().join("arming");
    std::env::set_var(fault::ENV, &arming);
    let data = dir.path().join("data");
    for (armed, operation, code) in [("wal-fsync:eio", "fsync", 5), ("wal-write:enospc", "write", 28)] {
        let mut wal = Wal::open(&data, WalOptions::new(7, 1)).unwrap();
        let first = wal.last_index() + 1;
        for index in first..first + 10 {
            persist(&mut wal, index).unwrap();
        }
        std::fs::write(&arming, armed).unwrap();
        assert_eq!(fault::check(Point::StateApply).ok(), Some(()), "only the listed point fails");
        let error = persist(&mut wal, first + 10).unwrap_err();
        let text = error.to_string();
        assert!(
            matches!(&error, StorageError::Failed { operation: op, source, .. } if *op == operation && source.raw_os_error() == Some(code)),
            "{text}"
        );
        assert!(text.starts_with(&format!("{operation} of ")) && text.contains("wal-"), "{text}");
        // Disarmed, the WAL still refuses: a failed sync is never retried.
        std::fs::remove_file(&arming).unwrap();
        assert!(matches!(persist(&mut wal, first + 10), Err(StorageError::Poisoned { .. })));
        drop(wal);
        // Reopened, it holds everything persisted before the fault.
        let wal = Wal::open(&data, WalOptions::new(7, 1)).unwrap();
        assert!(wal.last_index() >= first + 9, "{armed}: the log ends at {}", wal.last_index());
        let restored = wal.restored_state().unwrap();
        assert!(restored.entries.iter().any(|entry| entry.index == first + 9));
    }
}

//! # conclave-storage
//!
//! Durable storage for a Conclave node, behind the core's persist-before-send
//! contract ([`conclave_core::Output`]): a driver hands the `hard_state` and
//! `log_write` of one or more outputs to [`LogStore::persist`], which returns
//! only once all of them are durable (one write, one sync: group commit), and
//! only then sends the outputs' messages.
//!
//! Two stores implement [`LogStore`] and pass the same [`conformance`] suite:
//! * [`Wal`], a segmented write-ahead log with snapshots in a data directory
//!   (layout in [`wal`], record format in [`codec`], recovery rules in
//!   [`recovery`], snapshot file in [`snapshot`], identity in [`meta`]);
//! * [`MemoryStore`], the same rules in memory, for the simulator.
//!
//! ```
//! use conclave_core::{Entry, HardState, LogWrite, Payload};
//! use conclave_storage::{LogStore, PersistRequest, Wal, WalOptions};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let mut wal = Wal::open(dir.path(), WalOptions::new(7, 1)).unwrap();
//! let write = LogWrite { first_index: 1, entries: vec![Entry { term: 1, index: 1, payload: Payload::Noop }] };
//! let hard_state = HardState { term: 1, voted_for: Some(1), commit: 0 };
//! wal.persist(&[PersistRequest { hard_state: Some(hard_state), log_write: Some(&write) }]).unwrap();
//! drop(wal);
//!
//! let wal = Wal::open(dir.path(), WalOptions::new(7, 1)).unwrap();
//! let restored = wal.restored_state().unwrap();
//! assert_eq!(restored.hard_state, hard_state);
//! assert_eq!(restored.entries, write.entries);
//! ```
#![deny(missing_docs)]

pub mod codec;
pub mod conformance;
pub mod dir_lock;
pub mod error;
pub mod fault;
mod fs_util;
pub mod incoming;
pub mod log_state;
pub mod membership_codec;
pub mod memory;
pub mod meta;
pub mod recovery;
pub mod segment;
pub mod snapshot;
pub mod store;
mod unlinked_map;
pub mod wal;

pub use error::StorageError;
pub use memory::MemoryStore;
pub use recovery::{RecoveryReport, TruncatedTail};
pub use snapshot::Snapshot;
pub use store::{LogStore, PersistRequest};
pub use wal::{Wal, WalOptions, WalStats, DEFAULT_SEGMENT_BYTES};

//! The state machine on an embedded engine (redb, a copy-on-write B+tree in
//! one file, as etcd's bbolt): the data and the applied index change together
//! in one write transaction per applied batch, so the file always holds the
//! state at the index it records.
//!
//! Applied batches go into one write transaction held open across batches
//! (as etcd's backend batches its bbolt transactions): a commit costs about
//! as much as the writes it carries, so committing every batch of a few dozen
//! entries doubled the cost of each one. The transaction commits without an
//! fsync ([`redb::Durability::None`]) once it holds
//! [`OPEN_TRANSACTION_ENTRIES`] entries, which bounds the dirty pages it keeps
//! in memory, and durably at [`StateMachine::flush`]; reads and the key count
//! go through it, so they see every applied batch. The WAL holds every applied
//! entry already, so a crash only loses applies that are replayed from it: the
//! file always holds the state at the index it records, committed or not. The
//! apply loop flushes by time and by bytes, and the WAL is compacted only up
//! to [`StateMachine::durable_index`].
//!
//! The deduplication table ([`super::dedup`]) lives in two more tables of
//! the same file, changed in the same write transaction as the data it
//! belongs to.
//!
//! The file is `state.redb` in the data dir. A snapshot from the leader is
//! built beside it, in `state.redb.installing`, and renamed over it once
//! complete and durable (then the directory is synced): a crash mid-install
//! leaves the old file whole, and the leftover is deleted at the next install.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use conclave_core::{ClusterId, LogIndex, NodeId};
use conclave_storage::fault::{self, Point};
use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::command::{KvCommand, KvReply};
use super::dedup::{self, decode_reply, encode_reply, DedupTable, OriginRecord, Session};
use super::machine::{self, BatchEntry, KvTable, MachineError, SnapshotJob, StateMachine};
use super::snapshot::{visit_snapshot, SnapshotWriter};

/// Entries the open write transaction takes before it commits (without an
/// fsync). Past about a thousand the cost per entry stops falling; the bound
/// keeps the transaction's dirty pages (a page or two per key written) to
/// tens of MiB.
pub const OPEN_TRANSACTION_ENTRIES: u64 = 1024;

/// The engine file's name in the data dir.
pub const ENGINE_FILE: &str = "state.redb";
/// Where a snapshot being installed is built, beside [`ENGINE_FILE`].
pub const INSTALLING_FILE: &str = "state.redb.installing";
/// Bytes of pairs per durable commit while a snapshot is installed.
const INSTALL_STEP_BYTES: usize = 64 << 20;
/// The layout of the tables below; a file of another layout is refused, but
/// for format 1 (no deduplication tables), upgraded in place when opened.
const FORMAT_VERSION: u64 = 2;

const DATA: TableDefinition<&[u8], &[u8]> = TableDefinition::new("data");
/// Sessions of the deduplication table by node: incarnation, floor, result
/// count (u64 little-endian each).
const SESSIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("dedup_sessions");
/// Saved results by (node, incarnation, request id), u64 big-endian each so
/// that keys sort as the tuples do.
const RESULTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("dedup_results");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const APPLIED_INDEX: &str = "applied_index";
const CLUSTER_ID: &str = "cluster_id";
const NODE_ID: &str = "node_id";
const FORMAT: &str = "format_version";

/// Whose state a file holds: a file of another cluster or node is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineIdentity {
    /// The cluster.
    pub cluster_id: ClusterId,
    /// The node.
    pub node_id: NodeId,
}

impl EngineIdentity {
    /// Whether a store that records `found` is this one's.
    pub(super) fn check(self, found: EngineIdentity) -> Result<(), String> {
        if found == self {
            return Ok(());
        }
        Err(format!(
            "it holds the state of node {} of cluster {}, not of node {} of cluster {}",
            found.node_id, found.cluster_id, self.node_id, self.cluster_id
        ))
    }
}

/// What an engine's assertion said, from the panic it raised.
pub(super) fn panic_reason(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| text.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// The KV state machine in an engine file.
pub struct EngineStore {
    db: Database,
    path: PathBuf,
    identity: EngineIdentity,
    cache_bytes: u64,
    applied_index: LogIndex,
    durable_index: LogIndex,
    /// The write transaction applied batches go into, not yet committed.
    open: Option<redb::WriteTransaction>,
    /// Entries applied in `open`.
    open_entries: u64,
    /// Syncs the pages of commits without an fsync in the background, so
    /// that the durable commit does not wait for them all at once.
    writeback: Option<super::writeback::Writeback>,
}

impl std::fmt::Debug for EngineStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("EngineStore")
            .field("path", &self.path)
            .field("applied_index", &self.applied_index)
            .field("durable_index", &self.durable_index)
            .field("open_entries", &self.open_entries)
            .finish()
    }
}

pub(super) fn engine_error(path: &Path, error: impl std::fmt::Display) -> MachineError {
    MachineError::Engine { path: path.to_path_buf(), message: error.to_string() }
}

struct WriteTable<'a, 'txn> {
    table: &'a mut redb::Table<'txn, &'static [u8], &'static [u8]>,
    path: &'a Path,
}

impl KvTable for WriteTable<'_, '_> {
    fn get(&self, key: &[u8]) -> Result<Option<Cow<'_, [u8]>>, MachineError> {
        let value = self.table.get(key).map_err(|error| engine_error(self.path, error))?;
        Ok(value.map(|guard| Cow::Owned(guard.value().to_vec())))
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), MachineError> {
        self.table.insert(key, value).map_err(|error| engine_error(self.path, error))?;
        Ok(())
    }

    fn remove(&mut self, key: &[u8]) -> Result<bool, MachineError> {
        let removed = self.table.remove(key).map_err(|error| engine_error(self.path, error))?;
        Ok(removed.is_some())
    }

    fn count(&self) -> Result<u64, MachineError> {
        self.table.len().map_err(|error| engine_error(self.path, error))
    }
}

struct ReadTable<'a> {
    table: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
    path: &'a Path,
}

impl KvTable for ReadTable<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Cow<'_, [u8]>>, MachineError> {
        let value = self.table.get(key).map_err(|error| engine_error(self.path, error))?;
        Ok(value.map(|guard| Cow::Owned(guard.value().to_vec())))
    }

    fn put(&mut self, _key: &[u8], _value: &[u8]) -> Result<(), MachineError> {
        Err(engine_error(self.path, "internal: a write on a read view"))
    }

    fn remove(&mut self, _key: &[u8]) -> Result<bool, MachineError> {
        Err(engine_error(self.path, "internal: a write on a read view"))
    }

    fn count(&self) -> Result<u64, MachineError> {
        self.table.len().map_err(|error| engine_error(self.path, error))
    }
}

/// A saved result's key: big-endian, so that keys sort as the tuples do.
pub(super) fn result_key(node: NodeId, incarnation: u64, request_id: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&node.to_be_bytes());
    key[8..16].copy_from_slice(&incarnation.to_be_bytes());
    key[16..].copy_from_slice(&request_id.to_be_bytes());
    key
}

pub(super) fn encode_session(session: Session) -> [u8; 24] {
    let mut bytes = [0u8; 24];
    bytes[..8].copy_from_slice(&session.incarnation.to_le_bytes());
    bytes[8..16].copy_from_slice(&session.floor.to_le_bytes());
    bytes[16..].copy_from_slice(&session.results.to_le_bytes());
    bytes
}

pub(super) fn decode_session(path: &Path, bytes: &[u8]) -> Result<Session, MachineError> {
    let word = |at: usize| bytes.get(at..at + 8).map(|word| u64::from_le_bytes(word.try_into().expect("8 bytes")));
    match (bytes.len(), word(0), word(8), word(16)) {
        (24, Some(incarnation), Some(floor), Some(results)) => Ok(Session { incarnation, floor, results }),
        _ => Err(engine_error(path, format!("a deduplication session of {} bytes, not 24", bytes.len()))),
    }
}

pub(super) fn decode_saved(path: &Path, bytes: &[u8]) -> Result<KvReply, MachineError> {
    decode_reply(bytes).ok_or_else(|| engine_error(path, "a saved result in the deduplication table does not decode"))
}

struct WriteDedup<'a, 'txn> {
    sessions: &'a mut redb::Table<'txn, u64, &'static [u8]>,
    results: &'a mut redb::Table<'txn, &'static [u8], &'static [u8]>,
    path: &'a Path,
}

impl WriteDedup<'_, '_> {
    fn ids_below(&self, node: NodeId, incarnation: u64, below: u64) -> Result<Vec<[u8; 24]>, MachineError> {
        let error = |error: redb::StorageError| engine_error(self.path, error);
        let (start, end) = (result_key(node, incarnation, 0), result_key(node, incarnation, below));
        let mut keys = Vec::new();
        for pair in self.results.range(&start[..]..&end[..]).map_err(error)? {
            let (key, _) = pair.map_err(error)?;
            keys.push(key.value().try_into().map_err(|_| engine_error(self.path, "a result key is not 24 bytes"))?);
        }
        Ok(keys)
    }
}

impl DedupTable for WriteDedup<'_, '_> {
    fn session(&self, node: NodeId) -> Result<Option<Session>, MachineError> {
        let value = self.sessions.get(node).map_err(|error| engine_error(self.path, error))?;
        value.map(|guard| decode_session(self.path, guard.value())).transpose()
    }

    fn set_session(&mut self, node: NodeId, session: Session) -> Result<(), MachineError> {
        self.sessions.insert(node, &encode_session(session)[..]).map_err(|error| engine_error(self.path, error))?;
        Ok(())
    }

    fn result(&self, node: NodeId, incarnation: u64, request_id: u64) -> Result<Option<KvReply>, MachineError> {
        let key = result_key(node, incarnation, request_id);
        let value = self.results.get(&key[..]).map_err(|error| engine_error(self.path, error))?;
        value.map(|guard| decode_saved(self.path, guard.value())).transpose()
    }

    fn put_result(
        &mut self,
        node: NodeId,
        incarnation: u64,
        request_id: u64,
        reply: &KvReply,
    ) -> Result<(), MachineError> {
        let key = result_key(node, incarnation, request_id);
        self.results.insert(&key[..], &encode_reply(reply)[..]).map_err(|error| engine_error(self.path, error))?;
        Ok(())
    }

    fn remove_results_below(&mut self, node: NodeId, incarnation: u64, below: u64) -> Result<u64, MachineError> {
        let keys = self.ids_below(node, incarnation, below)?;
        for key in &keys {
            self.results.remove(&key[..]).map_err(|error| engine_error(self.path, error))?;
        }
        Ok(keys.len() as u64)
    }

    fn lowest_result(&self, node: NodeId, incarnation: u64) -> Result<Option<u64>, MachineError> {
        let error = |error: redb::StorageError| engine_error(self.path, error);
        let (start, end) = (result_key(node, incarnation, 0), result_key(node, incarnation, u64::MAX));
        let mut range = self.results.range(&start[..]..=&end[..]).map_err(error)?;
        match range.next() {
            Some(pair) => {
                let (key, _) = pair.map_err(error)?;
                let key = key.value();
                Ok(Some(u64::from_be_bytes(key[16..24].try_into().expect("a 24-byte key"))))
            }
            None => Ok(None),
        }
    }
}

/// The deduplication table of a read transaction, as a snapshot holds it.
fn read_origins(txn: &redb::ReadTransaction, path: &Path) -> Result<Vec<OriginRecord>, MachineError> {
    let error = |error: redb::Error| engine_error(path, error);
    let sessions = txn.open_table(SESSIONS).map_err(|e| error(e.into()))?;
    let results = txn.open_table(RESULTS).map_err(|e| error(e.into()))?;
    let mut origins = Vec::new();
    for pair in sessions.iter().map_err(|e| error(e.into()))? {
        let (node, session) = pair.map_err(|e| error(e.into()))?;
        let (node, session) = (node.value(), decode_session(path, session.value())?);
        let (start, end) = (result_key(node, session.incarnation, 0), result_key(node, session.incarnation, u64::MAX));
        let mut saved = Vec::with_capacity(session.results as usize);
        for pair in results.range(&start[..]..=&end[..]).map_err(|e| error(e.into()))? {
            let (key, value) = pair.map_err(|e| error(e.into()))?;
            let id = u64::from_be_bytes(key.value()[16..24].try_into().expect("a 24-byte key"));
            saved.push((id, decode_saved(path, value.value())?));
        }
        origins.push(OriginRecord { node, session, results: saved });
    }
    Ok(origins)
}

impl EngineStore {
    /// Opens the engine file at `path`, or creates it if there is none. A file
    /// that is damaged, truncated, not an engine file, or another node's, is
    /// an error naming it: it is never silently replaced by an empty state.
    pub fn open(path: &Path, identity: EngineIdentity, cache_bytes: u64) -> Result<EngineStore, MachineError> {
        let exists = path.try_exists().map_err(|error| engine_error(path, error))?;
        let mut builder = redb::Builder::new();
        builder.set_cache_size(cache_bytes as usize);
        // The engine asserts some of its file's invariants rather than return
        // an error (a truncated file, say): that is a damaged file too.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if exists {
                builder.open(path)
            } else {
                builder.create(path)
            }
        }));
        let db = match opened {
            Ok(result) => result
                .map_err(|error| engine_error(path, format!("cannot open it as a state machine file: {error}")))?,
            Err(panic) => {
                return Err(engine_error(
                    path,
                    format!("the file is damaged or truncated ({})", panic_reason(&*panic)),
                ));
            }
        };
        let mut store = EngineStore {
            db,
            path: path.to_path_buf(),
            identity,
            cache_bytes,
            applied_index: 0,
            durable_index: 0,
            open: None,
            open_entries: 0,
            writeback: None,
        };
        if exists {
            store.check_meta()?;
        } else {
            store.write_meta(0)?;
            sync_parent(path)?;
        }
        store.writeback = Some(super::writeback::Writeback::start(path).map_err(|error| store.error(error))?);
        Ok(store)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, error: impl std::fmt::Display) -> MachineError {
        engine_error(&self.path, error)
    }

    /// A fresh file: the identity, the format and applied index 0, durable.
    fn write_meta(&mut self, applied_index: LogIndex) -> Result<(), MachineError> {
        let mut txn = self.db.begin_write().map_err(|error| self.error(error))?;
        txn.set_quick_repair(true);
        {
            let mut meta = txn.open_table(META).map_err(|error| self.error(error))?;
            for (key, value) in [
                (FORMAT, FORMAT_VERSION),
                (CLUSTER_ID, self.identity.cluster_id),
                (NODE_ID, self.identity.node_id),
                (APPLIED_INDEX, applied_index),
            ] {
                meta.insert(key, value).map_err(|error| self.error(error))?;
            }
            txn.open_table(DATA).map_err(|error| self.error(error))?;
            txn.open_table(SESSIONS).map_err(|error| self.error(error))?;
            txn.open_table(RESULTS).map_err(|error| self.error(error))?;
        }
        txn.commit().map_err(|error| self.error(error))?;
        self.applied_index = applied_index;
        self.durable_index = applied_index;
        Ok(())
    }

    /// An existing file: its format and identity must be this node's.
    fn check_meta(&mut self) -> Result<(), MachineError> {
        let txn = self.db.begin_read().map_err(|error| self.error(error))?;
        let meta = txn
            .open_table(META)
            .map_err(|error| self.error(format!("not a state machine file (no metadata table: {error})")))?;
        let read = |key: &str| -> Result<u64, MachineError> {
            match meta.get(key).map_err(|error| self.error(error))? {
                Some(value) => Ok(value.value()),
                None => Err(self.error(format!("not a state machine file (no {key} in its metadata)"))),
            }
        };
        let format = read(FORMAT)?;
        if format != FORMAT_VERSION && format != 1 {
            return Err(self.error(format!("format {format} is not the 1 or {FORMAT_VERSION} this build reads")));
        }
        let found = EngineIdentity { cluster_id: read(CLUSTER_ID)?, node_id: read(NODE_ID)? };
        self.identity.check(found).map_err(|problem| self.error(problem))?;
        txn.open_table(DATA).map_err(|error| self.error(format!("no data table: {error}")))?;
        self.applied_index = read(APPLIED_INDEX)?;
        self.durable_index = self.applied_index;
        drop(meta);
        drop(txn);
        if format == 1 {
            self.upgrade_from_format_1()?;
        }
        Ok(())
    }

    /// A file of format 1 gets the (empty) deduplication tables, durably.
    fn upgrade_from_format_1(&mut self) -> Result<(), MachineError> {
        let mut txn = self.db.begin_write().map_err(|error| self.error(error))?;
        txn.set_quick_repair(true);
        {
            txn.open_table(SESSIONS).map_err(|error| self.error(error))?;
            txn.open_table(RESULTS).map_err(|error| self.error(error))?;
            let mut meta = txn.open_table(META).map_err(|error| self.error(error))?;
            meta.insert(FORMAT, FORMAT_VERSION).map_err(|error| self.error(error))?;
        }
        txn.commit().map_err(|error| self.error(error))
    }

    /// The write transaction applied batches go into, begun if none is open.
    fn open_transaction(&mut self) -> Result<&mut redb::WriteTransaction, MachineError> {
        if self.open.is_none() {
            let mut txn = self.db.begin_write().map_err(|error| self.error(error))?;
            txn.set_durability(Durability::None);
            self.open = Some(txn);
            self.open_entries = 0;
        }
        Ok(self.open.as_mut().expect("opened above"))
    }

    /// Commits the open write transaction, durably or not; a no-op if none is open.
    ///
    /// A failed commit is fatal for the node, and leaves the durable index
    /// (hence the WAL's compaction point) where it was: a restart replays
    /// what the file lacks. The error names the commit and the index.
    fn commit_open(&mut self, durability: Durability) -> Result<bool, MachineError> {
        let Some(mut txn) = self.open.take() else { return Ok(false) };
        self.open_entries = 0;
        txn.set_durability(durability);
        let durable = !matches!(durability, Durability::None);
        if durable {
            // The allocator state goes with a durable commit: reopening after
            // a crash then needs no walk of the whole file (restart time does
            // not grow with the data).
            txn.set_quick_repair(true);
        }
        let (point, what) = match durable {
            true => (Point::StateFlush, "durable flush (fsync)"),
            false => (Point::StateApply, "commit of applied entries"),
        };
        let failed = |error: &dyn std::fmt::Display| {
            self.error(format!("{what} up to index {} failed: {error}", self.applied_index))
        };
        fault::check(point).map_err(|error| failed(&error))?;
        txn.commit().map_err(|error| failed(&error))?;
        if !durable {
            if let Some(writeback) = &self.writeback {
                writeback.nudge();
            }
        }
        Ok(true)
    }

    /// Runs `read` on the data table as applied so far: through the open
    /// write transaction if there is one, else a read transaction.
    fn with_data<T>(&self, read: impl FnOnce(&dyn KvTable) -> Result<T, MachineError>) -> Result<T, MachineError> {
        match &self.open {
            Some(txn) => {
                let mut table = txn.open_table(DATA).map_err(|error| self.error(error))?;
                read(&WriteTable { table: &mut table, path: &self.path })
            }
            None => {
                let txn = self.db.begin_read().map_err(|error| self.error(error))?;
                let table = txn.open_table(DATA).map_err(|error| self.error(error))?;
                read(&ReadTable { table, path: &self.path })
            }
        }
    }

    /// A consistent view at the applied index, to encode on another thread
    /// while writes go on (the engine keeps the pages the view sees). A read
    /// transaction sees only committed batches: the open one commits first.
    pub fn snapshot_view(&mut self) -> Result<SnapshotView, MachineError> {
        self.commit_open(Durability::None)?;
        let txn = self.db.begin_read().map_err(|error| self.error(error))?;
        Ok(SnapshotView { txn, path: self.path.clone(), applied_index: self.applied_index })
    }
}

/// A read transaction of an [`EngineStore`], at one applied index.
pub struct SnapshotView {
    txn: redb::ReadTransaction,
    path: PathBuf,
    applied_index: LogIndex,
}

impl SnapshotView {
    /// The index the view is at.
    pub fn applied_index(&self) -> LogIndex {
        self.applied_index
    }

    /// The snapshot bytes of the view, in memory.
    pub fn encode(&self) -> Result<Vec<u8>, MachineError> {
        let mut bytes = Vec::new();
        self.encode_into(&mut bytes)?;
        Ok(bytes)
    }

    /// Writes the snapshot bytes of the view to `out` as the table is read:
    /// memory does not grow with the data (docs/decisions/0086).
    pub fn encode_into(&self, out: &mut dyn std::io::Write) -> Result<(), MachineError> {
        let error = |error: redb::Error| engine_error(&self.path, error);
        let table = self.txn.open_table(DATA).map_err(|e| error(e.into()))?;
        let count = table.len().map_err(|e| error(e.into()))?;
        let mut writer = SnapshotWriter::new(out, self.applied_index, count).map_err(MachineError::SnapshotOutput)?;
        for pair in table.iter().map_err(|e| error(e.into()))? {
            let (key, value) = pair.map_err(|e| error(e.into()))?;
            writer.pair(key.value(), value.value()).map_err(MachineError::SnapshotOutput)?;
        }
        writer.finish(&read_origins(&self.txn, &self.path)?).map_err(MachineError::SnapshotOutput)?;
        Ok(())
    }
}

impl StateMachine for EngineStore {
    fn applied_index(&self) -> LogIndex {
        self.applied_index
    }

    fn durable_index(&self) -> LogIndex {
        self.durable_index
    }

    fn apply_batch(&mut self, batch: &[BatchEntry<'_>]) -> Result<Vec<KvReply>, MachineError> {
        let Some(&(last, _)) = batch.last() else { return Ok(Vec::new()) };
        // Writes into the open transaction meet a full or failing disk only
        // when they commit, or when the engine spills pages; the test hook
        // (docs/decisions/0069) fails them here as well, so that an armed
        // fault is met at once rather than thousands of entries later.
        fault::check(Point::StateApply)
            .map_err(|error| self.error(format!("write of applied entries up to index {last} failed: {error}")))?;
        let mut previous = self.applied_index;
        let path = self.path.clone();
        let txn = self.open_transaction()?;
        let mut replies = Vec::new();
        {
            let mut table = txn.open_table(DATA).map_err(|error| engine_error(&path, error))?;
            let mut table = WriteTable { table: &mut table, path: &path };
            let mut sessions = txn.open_table(SESSIONS).map_err(|error| engine_error(&path, error))?;
            let mut results = txn.open_table(RESULTS).map_err(|error| engine_error(&path, error))?;
            let mut dedup = WriteDedup { sessions: &mut sessions, results: &mut results, path: &path };
            for &(index, envelope) in batch {
                assert!(index > previous, "entries are applied once, in order: {index} after {previous}");
                previous = index;
                if let Some(envelope) = envelope {
                    replies.push(dedup::apply_once(&mut table, &mut dedup, envelope)?);
                }
            }
            // The index goes in the same transaction as the data it covers:
            // whatever commit makes the data durable records it too.
            let mut meta = txn.open_table(META).map_err(|error| engine_error(&path, error))?;
            meta.insert(APPLIED_INDEX, last).map_err(|error| engine_error(&path, error))?;
        }
        self.applied_index = last;
        self.open_entries += batch.len() as u64;
        if self.open_entries >= OPEN_TRANSACTION_ENTRIES {
            self.commit_open(Durability::None)?;
        }
        Ok(replies)
    }

    fn read(&self, command: &KvCommand) -> Result<KvReply, MachineError> {
        self.with_data(|table| machine::evaluate(table, command))
    }

    fn key_count(&self) -> Result<u64, MachineError> {
        self.with_data(|table| table.count())
    }

    fn flush(&mut self) -> Result<(), MachineError> {
        if self.durable_index == self.applied_index {
            debug_assert!(self.open.is_none(), "an open transaction holds applied batches");
            return Ok(());
        }
        if !self.commit_open(Durability::Immediate)? {
            // Everything applied is committed already, without an fsync: an
            // empty durable commit syncs it.
            self.open_transaction()?;
            self.commit_open(Durability::Immediate)?;
        }
        self.durable_index = self.applied_index;
        Ok(())
    }

    fn snapshot_job(&mut self) -> Result<SnapshotJob, MachineError> {
        let view = self.snapshot_view()?;
        Ok(Box::new(move |out: &mut dyn std::io::Write| view.encode_into(out)))
    }

    fn install_snapshot(&mut self, bytes: &[u8]) -> Result<LogIndex, MachineError> {
        // The old state stays usable if building the new one fails: what was
        // applied to it is committed first.
        self.commit_open(Durability::None)?;
        let building = self.path.with_file_name(INSTALLING_FILE);
        let index = match self.build_beside(&building, bytes) {
            Ok(index) => index,
            Err(error) => {
                let _ = std::fs::remove_file(&building);
                return Err(error);
            }
        };
        // Durable and closed: the switch is one rename, then the directory sync.
        std::fs::rename(&building, &self.path)
            .map_err(|error| self.error(format!("cannot switch to {}: {error}", building.display())))?;
        sync_parent(&self.path)?;
        let mut builder = redb::Builder::new();
        builder.set_cache_size(self.cache_bytes as usize);
        self.db = builder.open(&self.path).map_err(|error| self.error(error))?;
        // The old descriptor syncs the replaced file: one of the new one.
        self.writeback = Some(super::writeback::Writeback::start(&self.path).map_err(|error| self.error(error))?);
        self.applied_index = index;
        self.durable_index = index;
        Ok(index)
    }

    fn cache_bytes(&self) -> Option<u64> {
        Some(self.cache_bytes)
    }
}

impl EngineStore {
    /// Builds a new engine file at `building` from snapshot bytes, durable.
    ///
    /// The pairs go in by steps of [`INSTALL_STEP_BYTES`], each a durable
    /// commit: the file's dirty pages are flushed a step at a time, so no
    /// single sync of the whole state stalls the disk (and the WAL syncs of
    /// whatever shares it), and the write cache stays bounded. The applied
    /// index goes in the last step only: the file is whole only then, and a
    /// crash before leaves a partial file the next install removes.
    fn build_beside(&self, building: &Path, bytes: &[u8]) -> Result<LogIndex, MachineError> {
        match std::fs::remove_file(building) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(engine_error(building, format!("cannot remove a leftover: {error}"))),
        }
        let mut builder = redb::Builder::new();
        builder.set_cache_size(self.cache_bytes as usize);
        let db = builder.create(building).map_err(|error| engine_error(building, error))?;
        let mut fresh = EngineStore {
            db,
            path: building.to_path_buf(),
            identity: self.identity,
            cache_bytes: self.cache_bytes,
            applied_index: 0,
            durable_index: 0,
            open: None,
            open_entries: 0,
            writeback: None,
        };
        fresh.write_meta(0)?;
        let mut step: Vec<(&[u8], &[u8])> = Vec::new();
        let mut step_bytes = 0;
        let mut origins = Vec::new();
        let (index, _) = visit_snapshot(
            bytes,
            |key, value| {
                step.push((key, value));
                step_bytes += key.len() + value.len();
                if step_bytes >= INSTALL_STEP_BYTES {
                    fresh.install_step(&std::mem::take(&mut step), &[], None)?;
                    step_bytes = 0;
                }
                Ok::<_, MachineError>(())
            },
            |record| {
                origins.push(record);
                Ok(())
            },
        )?;
        fresh.install_step(&step, &origins, Some(index))?;
        Ok(index)
    }

    /// One durable commit of an install: `pairs` into the data table, and,
    /// in the last step, the sessions and results and the applied `index`.
    fn install_step(
        &mut self,
        pairs: &[(&[u8], &[u8])],
        origins: &[OriginRecord],
        index: Option<LogIndex>,
    ) -> Result<(), MachineError> {
        let path = self.path.clone();
        let failed = |error: &dyn std::fmt::Display| engine_error(&path, error);
        let mut txn = self.db.begin_write().map_err(|error| failed(&error))?;
        txn.set_quick_repair(true);
        {
            let mut table = txn.open_table(DATA).map_err(|error| failed(&error))?;
            for (key, value) in pairs {
                table.insert(*key, *value).map_err(|error| failed(&error))?;
            }
            let mut sessions = txn.open_table(SESSIONS).map_err(|error| failed(&error))?;
            let mut results = txn.open_table(RESULTS).map_err(|error| failed(&error))?;
            let mut dedup = WriteDedup { sessions: &mut sessions, results: &mut results, path: &path };
            for record in origins {
                for (id, reply) in &record.results {
                    dedup.put_result(record.node, record.session.incarnation, *id, reply)?;
                }
                dedup.set_session(record.node, record.session)?;
            }
            if let Some(index) = index {
                let mut meta = txn.open_table(META).map_err(|error| failed(&error))?;
                meta.insert(APPLIED_INDEX, index).map_err(|error| failed(&error))?;
            }
        }
        fault::check(Point::StateFlush).map_err(|error| failed(&error))?;
        txn.commit().map_err(|error| failed(&error))
    }
}

impl Drop for EngineStore {
    /// Commits (without an fsync) what the open transaction holds, as a
    /// commit per batch would have: a store closed without a flush keeps what
    /// it applied for as long as the machine stays up.
    fn drop(&mut self) {
        if let Err(error) = self.commit_open(Durability::None) {
            tracing::warn!(%error, "the state machine's last applied batches were not committed; the WAL replays them");
        }
    }
}

/// Syncs the directory holding `path`, so a create or rename in it survives a crash.
fn sync_parent(path: &Path) -> Result<(), MachineError> {
    let parent = path.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(parent).and_then(|dir| dir.sync_all()).map_err(|error| engine_error(parent, error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::machine::run_to_vec;
    use crate::kv::SetCondition;

    const ME: EngineIdentity = EngineIdentity { cluster_id: 7, node_id: 1 };

    fn set(key: &str, value: &str) -> KvCommand {
        KvCommand::Set { key: key.into(), value: value.into(), condition: SetCondition::Always }
    }

    fn envelope(i: u64) -> crate::kv::Envelope {
        let command = set(&format!("key-{i}"), &format!("value-{i}"));
        crate::kv::Envelope { origin: 1 + i % 2, incarnation: 5, request_id: i + 1, command, settled_below: i / 2 }
    }

    fn filled(path: &Path, count: u64) -> EngineStore {
        let mut store = EngineStore::open(path, ME, 1 << 20).unwrap();
        let envelopes: Vec<_> = (0..count).map(envelope).collect();
        let batch: Vec<BatchEntry<'_>> = envelopes.iter().enumerate().map(|(i, e)| (i as u64 + 1, Some(e))).collect();
        assert_eq!(store.apply_batch(&batch).unwrap().len(), count as usize);
        store
    }

    #[test]
    fn the_applied_index_survives_a_reopen_once_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ENGINE_FILE);
        let mut store = filled(&path, 50);
        assert_eq!((store.applied_index(), store.durable_index()), (50, 0), "batches commit without an fsync");
        store.flush().unwrap();
        assert_eq!(store.durable_index(), 50);
        drop(store);
        let store = EngineStore::open(&path, ME, 1 << 20).unwrap();
        assert_eq!(store.applied_index(), 50);
        assert_eq!(store.read(&KvCommand::Get("key-7".into())).unwrap(), KvReply::Bulk("value-7".into()));
        assert_eq!(store.key_count().unwrap(), 50);
    }

    #[test]
    fn batches_share_one_transaction_that_reads_see_and_that_commits_at_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ENGINE_FILE);
        let mut store = filled(&path, 10);
        assert_eq!(store.open_entries, 10, "the batch stays in the open transaction");
        assert_eq!(store.read(&KvCommand::Get("key-3".into())).unwrap(), KvReply::Bulk("value-3".into()));
        assert_eq!(store.key_count().unwrap(), 10);
        // A full transaction commits (without an fsync) and the next one begins.
        let envelopes: Vec<_> = (10..10 + OPEN_TRANSACTION_ENTRIES).map(envelope).collect();
        let batch: Vec<BatchEntry<'_>> = envelopes.iter().map(|e| (e.request_id, Some(e))).collect();
        store.apply_batch(&batch).unwrap();
        assert!(store.open.is_none(), "{store:?}");
        assert_eq!((store.applied_index(), store.durable_index()), (10 + OPEN_TRANSACTION_ENTRIES, 0));
        assert_eq!(store.key_count().unwrap(), 10 + OPEN_TRANSACTION_ENTRIES);
        // A flush with nothing open still makes the committed batches durable.
        store.flush().unwrap();
        assert_eq!(store.durable_index(), 10 + OPEN_TRANSACTION_ENTRIES);
        drop(store);
        let store = EngineStore::open(&path, ME, 1 << 20).unwrap();
        assert_eq!(store.applied_index(), 10 + OPEN_TRANSACTION_ENTRIES);
        assert_eq!(store.key_count().unwrap(), 10 + OPEN_TRANSACTION_ENTRIES);
    }

    #[test]
    fn the_engine_and_the_map_encode_the_same_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = filled(&dir.path().join(ENGINE_FILE), 40);
        let mut map = crate::kv::KvStore::default();
        for i in 0..40 {
            map.apply_envelope(&envelope(i));
        }
        assert!(map.saved_results() > 0, "the snapshots hold a deduplication table");
        let job = store.snapshot_job().unwrap();
        assert_eq!(run_to_vec(job).unwrap(), map.encode_snapshot(40));
    }

    // A crash mid-install leaves the old file whole; bad bytes change nothing.
    #[test]
    fn a_snapshot_is_built_beside_the_old_state_and_bad_bytes_keep_the_old_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = filled(&dir.path().join(ENGINE_FILE), 10);
        let mut other = crate::kv::KvStore::default();
        other.apply(&set("only", "this"));
        let bytes = other.encode_snapshot(99);
        let mut damaged = bytes.clone();
        damaged[30] ^= 1;
        assert!(matches!(store.install_snapshot(&damaged), Err(MachineError::Snapshot(_))));
        assert_eq!((store.applied_index(), store.key_count().unwrap()), (10, 10), "the old state is kept");
        assert!(!dir.path().join(INSTALLING_FILE).exists(), "the partial file is removed");
        // A leftover of a crash mid-install is replaced by the next install.
        std::fs::write(dir.path().join(INSTALLING_FILE), b"half a file").unwrap();
        assert_eq!(store.install_snapshot(&bytes).unwrap(), 99);
        assert_eq!(store.read(&KvCommand::Get("only".into())).unwrap(), KvReply::Bulk("this".into()));
        assert_eq!(store.key_count().unwrap(), 1);
        drop(store);
        let store = EngineStore::open(&dir.path().join(ENGINE_FILE), ME, 1 << 20).unwrap();
        assert_eq!((store.applied_index(), store.durable_index()), (99, 99));
    }

    // A file of format 1 (before the deduplication tables) is upgraded when opened.
    #[test]
    fn a_format_1_file_is_upgraded_in_place_and_keeps_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ENGINE_FILE);
        let mut store = filled(&path, 10);
        store.flush().unwrap();
        drop(store);
        {
            let db = Database::open(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.delete_table(SESSIONS).unwrap();
            txn.delete_table(RESULTS).unwrap();
            txn.open_table(META).unwrap().insert(FORMAT, 1).unwrap();
            txn.commit().unwrap();
        }
        let mut store = EngineStore::open(&path, ME, 1 << 20).unwrap();
        assert_eq!((store.applied_index(), store.key_count().unwrap()), (10, 10));
        let retried = envelope(9);
        assert_eq!(store.apply_batch(&[(11, Some(&retried))]).unwrap(), vec![KvReply::Ok]);
        drop(store);
        let txn = Database::open(&path).unwrap().begin_read().unwrap();
        assert_eq!(txn.open_table(META).unwrap().get(FORMAT).unwrap().unwrap().value(), FORMAT_VERSION);
    }

    // Bad input: a damaged, truncated or foreign file is refused, named, and left as it was.
    #[test]
    fn a_corrupt_truncated_or_foreign_engine_file_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ENGINE_FILE);
        let mut store = filled(&path, 200);
        store.flush().unwrap();
        drop(store);
        let good = std::fs::read(&path).unwrap();
        let refuse = |bytes: &[u8], identity: EngineIdentity, what: &str| {
            std::fs::write(&path, bytes).unwrap();
            let error = EngineStore::open(&path, identity, 1 << 20).expect_err(what).to_string();
            assert!(error.contains(&path.display().to_string()), "{what}: {error}");
            assert_eq!(std::fs::read(&path).unwrap(), bytes, "{what}: the file is left as it was");
        };
        refuse(&good[..good.len() / 3], ME, "truncated to a third");
        refuse(&[], ME, "truncated to nothing");
        refuse(&vec![0x5a; good.len()], ME, "overwritten");
        let mut header = good.clone();
        for byte in &mut header[..64] {
            *byte ^= 0xff;
        }
        refuse(&header, ME, "a damaged header");
        refuse(&good, EngineIdentity { cluster_id: 7, node_id: 2 }, "another node's");
        std::fs::write(&path, &good).unwrap();
        assert_eq!(EngineStore::open(&path, ME, 1 << 20).unwrap().applied_index(), 200);
    }
}

//! The state machine on a log-structured engine (fjall, an LSM tree): a write
//! goes to a journal and a sorted in-memory table, which is flushed to sorted
//! files and merged in the background. Unlike a B-tree, whose random inserts
//! each rewrite a page (and more of them as the data outgrows the cache), the
//! cost of a write here barely grows with the data: 4–8 µs of CPU per insert
//! from empty to 1.2 GB, against 16–32 µs for redb on the same machine
//! (docs/decisions/0093).
//!
//! Each applied batch is one atomic engine batch across the tables (data,
//! the deduplication table, and the metadata: applied index and key count),
//! written to the engine's journal without an fsync; [`StateMachine::flush`]
//! syncs the journal. The tables share one partition, their keys prefixed by
//! a byte per table (format 2), so the journals are released as the
//! partition's memtables are flushed and a restart replays little. A crash
//! loses at most a suffix of whole batches, and the metadata always matches
//! the data: the WAL replays what is missing.
//!
//! The engine does not say whether an insert replaced a key: the key count is
//! kept by looking the key up first (a lookup is a filter probe for a new
//! key). The deduplication table is small and bounded: it is mirrored in
//! memory (`DedupMap`) and every change goes to the engine in the same
//! batch as the data; its saved results sit in slots overwritten in place,
//! so the writes leave no tombstones for the open to walk (`results`).
//!
//! On disk: the directory `state.fjall` in the data dir holds the file
//! `current`, which names the generation directory the engine lives in. A
//! snapshot from the leader is built in a new generation beside the old one,
//! synced and closed; `current` is then replaced (write, sync, rename, sync
//! the directory), so a crash mid-install leaves the old generation in use,
//! and leftovers are removed at the next open.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use conclave_core::{LogIndex, NodeId};
use conclave_storage::fault::{self, Point};
use fjall::{Batch, CompressionType, Config, Keyspace, PartitionCreateOptions, PartitionHandle, PersistMode};

use super::command::{KvCommand, KvReply};
use super::dedup::{self, encode_reply, DedupMap, DedupTable, Session};
use super::engine::{decode_session, encode_session, engine_error, panic_reason, EngineIdentity};
use super::machine::{self, BatchEntry, KvTable, MachineError, SnapshotJob, StateMachine};
use super::snapshot::{visit_snapshot, SnapshotWriter};

mod results;
use results::ResultSlots;

/// The engine's directory in the data dir.
pub const LSM_DIR: &str = "state.fjall";
/// The file in [`LSM_DIR`] naming the generation in use.
const CURRENT: &str = "current";
/// The layout of the tables: every table in one partition, each key
/// prefixed by its table's byte ([`Tables`]). New stores are made in it.
const FORMAT_VERSION: u64 = 2;
/// The first layout: a partition per table, keys unprefixed. Still read and
/// written; a snapshot installed from a leader rebuilds it in format 2.
const FORMAT_SEPARATE_PARTITIONS: u64 = 1;
/// The partition of format 2.
const STATE_PARTITION: &str = "state";
/// Pairs per engine batch while a snapshot is installed.
const INSTALL_STEP_PAIRS: usize = 4096;
/// The size at which a memtable is sealed and flushed to a table (tests use
/// smaller ones). Larger than the engine's 16 MiB: fewer, larger tables
/// reach level 0, and each merge into level 1 moves more new data per byte
/// it rewrites, which halved the merge thread's CPU once the tree had three
/// levels (docs/decisions/0094). It is memory on top of the cache: the
/// active memtable and those sealed and not yet flushed, at most
/// three of them.
pub const MEMTABLE_BYTES: u32 = 64 << 20;
/// The memtables' bound on memory (the engine's write buffer), in memtables:
/// one filling, one flushing, one sealed behind it. Past it the engine halts
/// writers until a flush ends (its default, 64 MiB, would halt them at every
/// switch of a 64 MiB memtable).
const WRITE_BUFFER_MEMTABLES: u64 = 3;
/// The most journal the engine keeps, in memtables: a bound on what a
/// restart after a crash replays at any data size (the engine's default is
/// 512 MiB). With the tables in one partition the journals are released as
/// its memtables are flushed, so they stay near one or two memtables unless
/// the flushes fall behind; past 90% of it the engine stalls each memtable
/// switch for half a second, its brake on writers that outrun its flushes.
const JOURNAL_MEMTABLES: u64 = 4;

/// How an [`LsmStore`] is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LsmOptions {
    /// The engine's block cache: the memory its data may take.
    pub cache_bytes: u64,
    /// LZ4 for the tables of a new store (`state_machine.compression`); a
    /// store keeps what it was created with.
    pub compress: bool,
    /// The memtable size ([`MEMTABLE_BYTES`]); the journals and the write
    /// buffer are bounded in memtables.
    pub memtable_bytes: u32,
}

impl LsmOptions {
    /// `cache_bytes` of cache, LZ4 tables.
    pub fn new(cache_bytes: u64) -> LsmOptions {
        LsmOptions { cache_bytes, compress: true, memtable_bytes: MEMTABLE_BYTES }
    }
}

const APPLIED_INDEX: &str = "applied_index";
const KEY_COUNT: &str = "key_count";
const CLUSTER_ID: &str = "cluster_id";
const NODE_ID: &str = "node_id";
const FORMAT: &str = "format_version";

/// One table of the store: the partition it lives in and the prefix its
/// keys carry there (none in format 1).
#[derive(Clone)]
struct Table {
    partition: PartitionHandle,
    prefix: &'static [u8],
}

/// `key` as stored in a partition whose table prefixes its keys with `prefix`.
fn prefixed<'k>(prefix: &[u8], key: &'k [u8]) -> Cow<'k, [u8]> {
    if prefix.is_empty() {
        return Cow::Borrowed(key);
    }
    let mut full = Vec::with_capacity(prefix.len() + key.len());
    full.extend_from_slice(prefix);
    full.extend_from_slice(key);
    Cow::Owned(full)
}

impl Table {
    fn key<'k>(&self, key: &'k [u8]) -> Cow<'k, [u8]> {
        prefixed(self.prefix, key)
    }

    /// `full` without the table's prefix.
    fn unprefixed<'k>(&self, full: &'k [u8]) -> &'k [u8] {
        debug_assert!(full.starts_with(self.prefix), "a key of the table carries its prefix");
        &full[self.prefix.len()..]
    }

    fn get(&self, key: &[u8]) -> fjall::Result<Option<fjall::Slice>> {
        self.partition.get(self.key(key))
    }

    fn contains_key(&self, key: &[u8]) -> fjall::Result<bool> {
        self.partition.contains_key(self.key(key))
    }

    fn insert(&self, batch: &mut Batch, key: &[u8], value: &[u8]) {
        batch.insert(&self.partition, &*self.key(key), value);
    }

    fn remove(&self, batch: &mut Batch, key: &[u8]) {
        batch.remove(&self.partition, &*self.key(key));
    }

    /// The table's pairs in key order, keys with their prefix.
    fn iter(&self) -> impl Iterator<Item = fjall::Result<fjall::KvPair>> + 'static {
        self.partition.prefix(self.prefix)
    }

    /// The table as it was at `instant`.
    fn at(&self, instant: fjall::Instant) -> TableAt {
        TableAt { snapshot: self.partition.snapshot_at(instant), prefix: self.prefix }
    }
}

/// A [`Table`] at one instant.
struct TableAt {
    snapshot: fjall::Snapshot,
    prefix: &'static [u8],
}

impl TableAt {
    fn get(&self, key: &[u8]) -> fjall::Result<Option<fjall::Slice>> {
        Ok(self.snapshot.get(prefixed(self.prefix, key))?)
    }
}

/// The engine's tables. In format 2 all four share one partition, so the
/// engine's journals are released as soon as that partition's memtable is
/// flushed: with a partition each, the small tables' memtables (which never
/// fill) kept the journals since their last flush alive, and a restart
/// replayed them all (docs/decisions/0094).
#[derive(Clone)]
struct Tables {
    keyspace: Keyspace,
    format: u64,
    data: Table,
    sessions: Table,
    results: Table,
    meta: Table,
}

impl Tables {
    fn open(dir: &Path, options: LsmOptions) -> Result<Tables, fjall::Error> {
        // Batches reach the OS as they commit; durability is the flush's
        // sync. One flush and one compaction thread: the apply thread is the
        // writer, and the node shares its cores with its driver.
        let keyspace = Config::new(dir)
            .cache_size(options.cache_bytes)
            .max_journaling_size((JOURNAL_MEMTABLES * u64::from(options.memtable_bytes)).max(24 << 20))
            .max_write_buffer_size(WRITE_BUFFER_MEMTABLES * u64::from(options.memtable_bytes))
            .manual_journal_persist(true)
            .flush_workers(1)
            .compaction_workers(1)
            .open()?;
        let compression = if options.compress { CompressionType::Lz4 } else { CompressionType::None };
        let open = |name: &str| {
            let options =
                PartitionCreateOptions::default().compression(compression).max_memtable_size(options.memtable_bytes);
            keyspace.open_partition(name, options)
        };
        if keyspace.partition_exists("meta") {
            let table = |name: &str| Ok::<_, fjall::Error>(Table { partition: open(name)?, prefix: b"" });
            return Ok(Tables {
                format: FORMAT_SEPARATE_PARTITIONS,
                data: table("data")?,
                sessions: table("dedup_sessions")?,
                results: table("dedup_results")?,
                meta: table("meta")?,
                keyspace,
            });
        }
        let state = open(STATE_PARTITION)?;
        let table = |prefix: &'static [u8]| Table { partition: state.clone(), prefix };
        Ok(Tables {
            format: FORMAT_VERSION,
            data: table(b"d"),
            sessions: table(b"s"),
            results: table(b"r"),
            meta: table(b"m"),
            keyspace,
        })
    }
}

fn be_u64(path: &Path, bytes: &[u8], what: &str) -> Result<u64, MachineError> {
    let bytes: [u8; 8] = bytes.try_into().map_err(|_| engine_error(path, format!("{what} is not 8 bytes")))?;
    Ok(u64::from_be_bytes(bytes))
}

/// The KV state machine in an LSM engine.
pub struct LsmStore {
    tables: Tables,
    /// The generation directory the engine lives in.
    path: PathBuf,
    /// [`LSM_DIR`].
    root: PathBuf,
    identity: EngineIdentity,
    options: LsmOptions,
    applied_index: LogIndex,
    durable_index: LogIndex,
    keys: u64,
    dedup: DedupMap,
    /// Where `dedup`'s results are in the engine.
    slots: ResultSlots,
}

impl std::fmt::Debug for LsmStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("LsmStore")
            .field("path", &self.path)
            .field("applied_index", &self.applied_index)
            .field("durable_index", &self.durable_index)
            .field("keys", &self.keys)
            .finish()
    }
}

/// The data table as a batch changes it: reads see the batch's own writes.
struct BatchData<'a> {
    data: &'a Table,
    batch: &'a mut Batch,
    pending: &'a mut HashMap<Vec<u8>, Option<Vec<u8>>>,
    keys: &'a mut u64,
    path: &'a Path,
}

impl BatchData<'_> {
    fn exists(&self, key: &[u8]) -> Result<bool, MachineError> {
        match self.pending.get(key) {
            Some(value) => Ok(value.is_some()),
            None => self.data.contains_key(key).map_err(|error| engine_error(self.path, error)),
        }
    }
}

impl KvTable for BatchData<'_> {
    fn contains(&self, key: &[u8]) -> Result<bool, MachineError> {
        self.exists(key)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Cow<'_, [u8]>>, MachineError> {
        match self.pending.get(key) {
            Some(value) => Ok(value.as_deref().map(Cow::Borrowed)),
            None => {
                let value = self.data.get(key).map_err(|error| engine_error(self.path, error))?;
                Ok(value.map(|value| Cow::Owned(value.to_vec())))
            }
        }
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), MachineError> {
        if !self.exists(key)? {
            *self.keys += 1;
        }
        self.data.insert(self.batch, key, value);
        self.pending.insert(key.to_vec(), Some(value.to_vec()));
        Ok(())
    }

    fn remove(&mut self, key: &[u8]) -> Result<bool, MachineError> {
        if !self.exists(key)? {
            return Ok(false);
        }
        *self.keys -= 1;
        self.data.remove(self.batch, key);
        self.pending.insert(key.to_vec(), None);
        Ok(true)
    }

    fn count(&self) -> Result<u64, MachineError> {
        Ok(*self.keys)
    }
}

/// The committed data table, for reads.
struct ReadData<'a> {
    data: &'a Table,
    keys: u64,
    path: &'a Path,
}

impl KvTable for ReadData<'_> {
    fn contains(&self, key: &[u8]) -> Result<bool, MachineError> {
        self.data.contains_key(key).map_err(|error| engine_error(self.path, error))
    }

    fn get(&self, key: &[u8]) -> Result<Option<Cow<'_, [u8]>>, MachineError> {
        let value = self.data.get(key).map_err(|error| engine_error(self.path, error))?;
        Ok(value.map(|value| Cow::Owned(value.to_vec())))
    }

    fn put(&mut self, _key: &[u8], _value: &[u8]) -> Result<(), MachineError> {
        Err(engine_error(self.path, "internal: a write on a read view"))
    }

    fn remove(&mut self, _key: &[u8]) -> Result<bool, MachineError> {
        Err(engine_error(self.path, "internal: a write on a read view"))
    }

    fn count(&self) -> Result<u64, MachineError> {
        Ok(self.keys)
    }
}

/// Loads the deduplication table of `tables` into memory, and where its
/// results are.
fn load_dedup(tables: &Tables, path: &Path) -> Result<(DedupMap, ResultSlots), MachineError> {
    let error = |error: fjall::Error| engine_error(path, error);
    let mut map = DedupMap::default();
    for pair in tables.sessions.iter() {
        let (node, session) = pair.map_err(error)?;
        let node = be_u64(path, tables.sessions.unprefixed(&node), "a session's node")?;
        map.sessions.insert(node, decode_session(path, &session)?);
    }
    let slots = results::load(tables, path, &mut map)?;
    Ok((map, slots))
}

/// Syncs directory `dir`, so a create or rename in it survives a crash.
fn sync_dir(dir: &Path) -> Result<(), MachineError> {
    std::fs::File::open(dir).and_then(|handle| handle.sync_all()).map_err(|error| engine_error(dir, error))
}

/// The generation `current` names, checked to be one of ours.
fn read_current(root: &Path) -> Result<String, MachineError> {
    let file = root.join(CURRENT);
    let name = std::fs::read_to_string(&file).map_err(|error| {
        engine_error(&file, format!("cannot read the engine's generation file (damaged or not an engine dir): {error}"))
    })?;
    let name = name.trim_end_matches('\n');
    let valid = name.strip_prefix("gen-").is_some_and(|number| !number.is_empty() && number.parse::<u64>().is_ok());
    if !valid {
        return Err(engine_error(&file, format!("names {name:?}, not an engine generation (damaged?)")));
    }
    Ok(name.to_string())
}

/// Points `current` at generation `name`, durably and atomically.
fn write_current(root: &Path, name: &str) -> Result<(), MachineError> {
    let temporary = root.join("current.tmp");
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temporary)?;
        std::io::Write::write_all(&mut file, format!("{name}\n").as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, root.join(CURRENT))
    };
    write().map_err(|error| engine_error(&root.join(CURRENT), error))?;
    sync_dir(root)
}

/// Removes every generation directory of `root` but `keep`.
fn remove_other_generations(root: &Path, keep: &str) -> Result<(), MachineError> {
    let entries = std::fs::read_dir(root).map_err(|error| engine_error(root, error))?;
    for entry in entries {
        let entry = entry.map_err(|error| engine_error(root, error))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("gen-") && name != keep {
            std::fs::remove_dir_all(entry.path()).map_err(|error| engine_error(&entry.path(), error))?;
        }
    }
    Ok(())
}

impl LsmStore {
    /// Opens the engine in `root` ([`LSM_DIR`]), or creates it if there is no
    /// such directory. A directory that is damaged, not an engine's, or
    /// another node's, is an error naming it: it is never silently replaced
    /// by an empty state.
    pub fn open(root: &Path, identity: EngineIdentity, cache_bytes: u64) -> Result<LsmStore, MachineError> {
        LsmStore::open_with(root, identity, LsmOptions::new(cache_bytes))
    }

    /// [`LsmStore::open`] with `options`.
    pub fn open_with(root: &Path, identity: EngineIdentity, options: LsmOptions) -> Result<LsmStore, MachineError> {
        let exists = root.try_exists().map_err(|error| engine_error(root, error))?;
        if !exists {
            let generation = "gen-1";
            let path = root.join(generation);
            std::fs::create_dir_all(&path).map_err(|error| engine_error(root, error))?;
            let mut store = LsmStore::open_generation(root, &path, identity, options, true)?;
            store.write_meta(0)?;
            write_current(root, generation)?;
            if let Some(parent) = root.parent().filter(|parent| !parent.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
            return Ok(store);
        }
        let generation = read_current(root)?;
        let path = root.join(&generation);
        if !path.is_dir() {
            return Err(engine_error(&path, "the generation the engine's `current` file names is missing"));
        }
        // A snapshot being built when the node stopped: never switched to.
        remove_other_generations(root, &generation)?;
        LsmStore::open_generation(root, &path, identity, options, false)
    }

    fn open_generation(
        root: &Path,
        path: &Path,
        identity: EngineIdentity,
        options: LsmOptions,
        fresh: bool,
    ) -> Result<LsmStore, MachineError> {
        // The engine asserts some of its files' invariants rather than return
        // an error: that is a damaged directory too.
        let opened = std::panic::catch_unwind(|| Tables::open(path, options));
        let tables = match opened {
            Ok(tables) => tables.map_err(|error| {
                engine_error(
                    path,
                    format!("cannot open the engine (its files are damaged or not an engine's): {error}"),
                )
            })?,
            Err(panic) => {
                return Err(engine_error(path, format!("the engine's files are damaged ({})", panic_reason(&*panic))));
            }
        };
        // The engine's own flush, merge and monitor threads are bulk work.
        crate::background::lower_threads_named(crate::background::LSM_ENGINE_THREADS);
        let mut store = LsmStore {
            tables,
            path: path.to_path_buf(),
            root: root.to_path_buf(),
            identity,
            options,
            applied_index: 0,
            durable_index: 0,
            keys: 0,
            dedup: DedupMap::default(),
            slots: ResultSlots::default(),
        };
        if !fresh {
            store.check_meta()?;
            (store.dedup, store.slots) = load_dedup(&store.tables, path)?;
        }
        Ok(store)
    }

    fn error(&self, error: impl std::fmt::Display) -> MachineError {
        engine_error(&self.path, error)
    }

    fn meta_u64(&self, key: &str) -> Result<Option<u64>, MachineError> {
        match self.tables.meta.get(key.as_bytes()).map_err(|error| self.error(error))? {
            Some(value) => Ok(Some(be_u64(&self.path, &value, key)?)),
            None => Ok(None),
        }
    }

    /// A fresh engine: the identity, the format, applied index 0, durable.
    fn write_meta(&mut self, applied_index: LogIndex) -> Result<(), MachineError> {
        let mut batch = self.tables.keyspace.batch();
        for (key, value) in [
            (FORMAT, self.tables.format),
            (CLUSTER_ID, self.identity.cluster_id),
            (NODE_ID, self.identity.node_id),
            (APPLIED_INDEX, applied_index),
            (KEY_COUNT, 0),
            (results::LAYOUT, results::LAYOUT_SLOTS),
        ] {
            self.tables.meta.insert(&mut batch, key.as_bytes(), &value.to_be_bytes());
        }
        batch.commit().map_err(|error| self.error(error))?;
        self.tables.keyspace.persist(PersistMode::SyncAll).map_err(|error| self.error(error))?;
        self.applied_index = applied_index;
        self.durable_index = applied_index;
        Ok(())
    }

    /// An existing engine: its format and identity must be this node's.
    fn check_meta(&mut self) -> Result<(), MachineError> {
        let read = |key: &str| -> Result<u64, MachineError> {
            self.meta_u64(key)?
                .ok_or_else(|| self.error(format!("not a state machine engine (no {key} in its metadata)")))
        };
        let format = read(FORMAT)?;
        if format != self.tables.format {
            return Err(self.error(format!(
                "its metadata says format {format}, its tables are laid out in format {} (this build reads 1 and \
                 2)",
                self.tables.format
            )));
        }
        let found = EngineIdentity { cluster_id: read(CLUSTER_ID)?, node_id: read(NODE_ID)? };
        self.identity.check(found).map_err(|problem| self.error(problem))?;
        let (applied_index, keys) = (read(APPLIED_INDEX)?, read(KEY_COUNT)?);
        self.applied_index = applied_index;
        self.keys = keys;
        self.durable_index = applied_index;
        Ok(())
    }

    /// The engine's directory ([`LSM_DIR`]).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Builds a new generation from snapshot bytes, synced and closed;
    /// returns its name and the index the bytes hold.
    fn build_beside(&self, bytes: &[u8]) -> Result<(String, LogIndex), MachineError> {
        let current = self.path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
        let number = current.strip_prefix("gen-").and_then(|number| number.parse::<u64>().ok()).unwrap_or(0);
        let generation = format!("gen-{}", number + 1);
        let path = self.root.join(&generation);
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(engine_error(&path, format!("cannot remove a leftover: {error}"))),
        }
        std::fs::create_dir_all(&path).map_err(|error| engine_error(&path, error))?;
        let mut fresh = LsmStore::open_generation(&self.root, &path, self.identity, self.options, true)?;
        fresh.write_meta(0)?;
        let tables = fresh.tables.clone();
        let failed = |error: fjall::Error| engine_error(&path, error);
        let mut batch = tables.keyspace.batch();
        let mut keys = 0u64;
        let mut origins = Vec::new();
        let (index, _) = visit_snapshot(
            bytes,
            |key, value| {
                tables.data.insert(&mut batch, key, value);
                keys += 1;
                if batch.len() >= INSTALL_STEP_PAIRS {
                    std::mem::replace(&mut batch, tables.keyspace.batch()).commit().map_err(failed)?;
                }
                Ok::<_, MachineError>(())
            },
            |record| {
                origins.push(record);
                Ok(())
            },
        )?;
        let mut dedup = DedupMap::default();
        let mut table = DedupView { map: &mut dedup, changes: Vec::new() };
        for record in &origins {
            for (id, reply) in &record.results {
                table.put_result(record.node, record.session.incarnation, *id, reply)?;
            }
            table.set_session(record.node, record.session)?;
        }
        let mut touched = Vec::new();
        table.write_into(&mut batch, &tables, &mut fresh.slots, &mut touched);
        write_sessions(&mut batch, &tables, &dedup, &touched);
        // The index and count go in the last batch only: the generation is
        // whole only then (and is not switched to before).
        tables.meta.insert(&mut batch, APPLIED_INDEX.as_bytes(), &index.to_be_bytes());
        tables.meta.insert(&mut batch, KEY_COUNT.as_bytes(), &keys.to_be_bytes());
        batch.commit().map_err(failed)?;
        fault::check(Point::StateFlush).map_err(|error| engine_error(&path, error))?;
        tables.keyspace.persist(PersistMode::SyncAll).map_err(failed)?;
        drop(tables);
        drop(fresh);
        Ok((generation, index))
    }
}

impl StateMachine for LsmStore {
    fn applied_index(&self) -> LogIndex {
        self.applied_index
    }

    fn durable_index(&self) -> LogIndex {
        self.durable_index
    }

    fn apply_batch(&mut self, batch: &[BatchEntry<'_>]) -> Result<Vec<KvReply>, MachineError> {
        let Some(&(last, _)) = batch.last() else { return Ok(Vec::new()) };
        let failed = |path: &Path, error: &dyn std::fmt::Display| {
            engine_error(path, format!("write of applied entries up to index {last} failed: {error}"))
        };
        fault::check(Point::StateApply).map_err(|error| failed(&self.path, &error))?;
        let mut previous = self.applied_index;
        let mut engine_batch = self.tables.keyspace.batch();
        let mut pending = HashMap::new();
        let mut keys = self.keys;
        // The mirror changes with the batch; a failed commit is fatal for the
        // node (it restarts from the engine), so no rollback is needed.
        let mut replies = Vec::with_capacity(batch.len());
        let mut touched = Vec::new();
        {
            let mut data = BatchData {
                data: &self.tables.data,
                batch: &mut engine_batch,
                pending: &mut pending,
                keys: &mut keys,
                path: &self.path,
            };
            for &(index, envelope) in batch {
                assert!(index > previous, "entries are applied once, in order: {index} after {previous}");
                previous = index;
                let Some(envelope) = envelope else { continue };
                // Two borrows of the batch, one at a time: the data's writes
                // and the table's go into the same engine batch.
                let mut table = DedupView { map: &mut self.dedup, changes: Vec::new() };
                let reply = dedup::apply_once(&mut data, &mut table, envelope)?;
                table.write_into(data.batch, &self.tables, &mut self.slots, &mut touched);
                replies.push(reply);
            }
            write_sessions(data.batch, &self.tables, &self.dedup, &touched);
        }
        self.tables.meta.insert(&mut engine_batch, APPLIED_INDEX.as_bytes(), &last.to_be_bytes());
        self.tables.meta.insert(&mut engine_batch, KEY_COUNT.as_bytes(), &keys.to_be_bytes());
        engine_batch.commit().map_err(|error| failed(&self.path, &error))?;
        self.applied_index = last;
        self.keys = keys;
        Ok(replies)
    }

    fn read(&self, command: &KvCommand) -> Result<KvReply, MachineError> {
        machine::evaluate(&ReadData { data: &self.tables.data, keys: self.keys, path: &self.path }, command)
    }

    fn key_count(&self) -> Result<u64, MachineError> {
        Ok(self.keys)
    }

    fn flush(&mut self) -> Result<(), MachineError> {
        if self.durable_index == self.applied_index {
            return Ok(());
        }
        let failed = |error: &dyn std::fmt::Display| {
            self.error(format!("durable flush (fsync) up to index {} failed: {error}", self.applied_index))
        };
        fault::check(Point::StateFlush).map_err(|error| failed(&error))?;
        self.tables.keyspace.persist(PersistMode::SyncAll).map_err(|error| failed(&error))?;
        self.durable_index = self.applied_index;
        Ok(())
    }

    fn snapshot_job(&mut self) -> Result<SnapshotJob, MachineError> {
        // One instant across the tables: the data, the table and the count
        // the same batches left.
        let instant = self.tables.keyspace.instant();
        let data = self.tables.data.at(instant);
        let meta = self.tables.meta.at(instant);
        let path = self.path.clone();
        let (applied_index, dedup) = (self.applied_index, self.dedup.records());
        Ok(Box::new(move |out: &mut dyn std::io::Write| {
            let count = match meta.get(KEY_COUNT.as_bytes()).map_err(|error| engine_error(&path, error))? {
                Some(value) => be_u64(&path, &value, KEY_COUNT)?,
                None => return Err(engine_error(&path, "no key count in the metadata")),
            };
            let mut writer = SnapshotWriter::new(out, applied_index, count).map_err(MachineError::SnapshotOutput)?;
            let mut written = 0u64;
            for pair in data.snapshot.prefix(data.prefix) {
                let (key, value) = pair.map_err(|error| engine_error(&path, error))?;
                writer.pair(&key[data.prefix.len()..], &value).map_err(MachineError::SnapshotOutput)?;
                written += 1;
            }
            if written != count {
                return Err(engine_error(&path, format!("the engine holds {written} keys, its count says {count}")));
            }
            writer.finish(&dedup).map_err(MachineError::SnapshotOutput)?;
            Ok(())
        }))
    }

    fn install_snapshot(&mut self, bytes: &[u8]) -> Result<LogIndex, MachineError> {
        let (generation, index) = match self.build_beside(bytes) {
            Ok(built) => built,
            Err(error) => {
                let current = self.path.file_name().and_then(|name| name.to_str()).unwrap_or_default().to_string();
                let _ = remove_other_generations(&self.root, &current);
                return Err(error);
            }
        };
        // What was applied to the old generation since its last flush is
        // replaced; the switch is the rename of `current`.
        write_current(&self.root, &generation)?;
        let old = std::mem::replace(
            self,
            LsmStore::open_generation(&self.root, &self.root.join(&generation), self.identity, self.options, false)?,
        );
        let old_path = old.path.clone();
        drop(old);
        if let Err(error) = std::fs::remove_dir_all(&old_path) {
            // Not in use any more: the next open removes it.
            tracing::warn!(path = %old_path.display(), %error, "the replaced engine generation was not removed");
        }
        debug_assert_eq!(self.applied_index, index);
        Ok(index)
    }

    fn cache_bytes(&self) -> Option<u64> {
        Some(self.options.cache_bytes)
    }
}

/// The deduplication table during one entry: the mirror answers, and the
/// changes are kept to go into the engine batch after the entry.
struct DedupView<'a> {
    map: &'a mut DedupMap,
    changes: Vec<DedupChange>,
}

enum DedupChange {
    /// The origin's session changed (written once per batch).
    Session(NodeId),
    Result(NodeId, u64, u64, Vec<u8>),
    Removed(NodeId, u64, u64),
}

impl DedupView<'_> {
    /// Writes the entry's results into `batch`, and notes the origins whose
    /// session changed in `touched`: [`write_sessions`] writes each of them
    /// once per batch, as the batch's last entry left it.
    fn write_into(self, batch: &mut Batch, tables: &Tables, slots: &mut ResultSlots, touched: &mut Vec<NodeId>) {
        for change in self.changes {
            match change {
                DedupChange::Session(node) => {
                    if !touched.contains(&node) {
                        touched.push(node);
                    }
                }
                DedupChange::Result(node, incarnation, id, bytes) => {
                    slots.put(batch, tables, (node, incarnation, id), &bytes)
                }
                DedupChange::Removed(node, incarnation, id) => slots.release(node, incarnation, id),
            }
        }
    }
}

/// Writes the sessions of the `touched` origins as `map` holds them.
fn write_sessions(batch: &mut Batch, tables: &Tables, map: &DedupMap, touched: &[NodeId]) {
    for node in touched {
        let session = map.sessions.get(node).expect("a touched origin has a session");
        tables.sessions.insert(batch, &node.to_be_bytes(), &encode_session(*session));
    }
}

impl DedupTable for DedupView<'_> {
    fn session(&self, node: NodeId) -> Result<Option<Session>, MachineError> {
        self.map.session(node)
    }

    fn set_session(&mut self, node: NodeId, session: Session) -> Result<(), MachineError> {
        self.changes.push(DedupChange::Session(node));
        self.map.set_session(node, session)
    }

    fn result(&self, node: NodeId, incarnation: u64, request_id: u64) -> Result<Option<KvReply>, MachineError> {
        self.map.result(node, incarnation, request_id)
    }

    fn put_result(
        &mut self,
        node: NodeId,
        incarnation: u64,
        request_id: u64,
        reply: &KvReply,
    ) -> Result<(), MachineError> {
        self.changes.push(DedupChange::Result(node, incarnation, request_id, encode_reply(reply)));
        self.map.put_result(node, incarnation, request_id, reply)
    }

    fn remove_results_below(&mut self, node: NodeId, incarnation: u64, below: u64) -> Result<u64, MachineError> {
        let ids: Vec<u64> = self
            .map
            .results
            .range((node, incarnation, 0)..(node, incarnation, below))
            .map(|(&(_, _, id), _)| id)
            .collect();
        self.changes.extend(ids.iter().map(|&id| DedupChange::Removed(node, incarnation, id)));
        self.map.remove_results_below(node, incarnation, below)
    }

    fn lowest_result(&self, node: NodeId, incarnation: u64) -> Result<Option<u64>, MachineError> {
        self.map.lowest_result(node, incarnation)
    }
}

impl Drop for LsmStore {
    /// What was applied reaches the OS: a store closed without a flush keeps
    /// it for as long as the machine stays up.
    fn drop(&mut self) {
        if let Err(error) = self.tables.keyspace.persist(PersistMode::Buffer) {
            tracing::warn!(%error, "the state machine's last applied batches did not reach the OS; the WAL replays them");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::dedup::MAX_RESULTS_PER_ORIGIN;
    use crate::kv::machine::run_to_vec;
    use crate::kv::{Envelope, SetCondition};

    const ME: EngineIdentity = EngineIdentity { cluster_id: 7, node_id: 1 };

    fn set(key: &str, value: &str) -> KvCommand {
        KvCommand::Set { key: key.into(), value: value.into(), condition: SetCondition::Always }
    }

    fn envelope(i: u64, command: KvCommand) -> Envelope {
        Envelope { origin: 1 + i % 2, incarnation: 5, request_id: i + 1, command, settled_below: i / 2 }
    }

    fn apply_all(store: &mut LsmStore, commands: Vec<KvCommand>) -> Vec<KvReply> {
        let first = store.applied_index() + 1;
        let envelopes: Vec<_> = commands.into_iter().enumerate().map(|(i, c)| envelope(first + i as u64, c)).collect();
        let batch: Vec<BatchEntry<'_>> =
            envelopes.iter().enumerate().map(|(i, e)| (first + i as u64, Some(e))).collect();
        store.apply_batch(&batch).unwrap()
    }

    fn filled(root: &Path, count: u64) -> LsmStore {
        let mut store = LsmStore::open(root, ME, 1 << 20).unwrap();
        apply_all(&mut store, (0..count).map(|i| set(&format!("key-{i}"), &format!("value-{i}"))).collect());
        store
    }

    #[test]
    fn the_applied_index_and_key_count_survive_a_reopen_once_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(LSM_DIR);
        let mut store = filled(&root, 50);
        assert_eq!((store.applied_index(), store.durable_index()), (50, 0), "batches are not synced");
        store.flush().unwrap();
        assert_eq!(store.durable_index(), 50);
        drop(store);
        let store = LsmStore::open(&root, ME, 1 << 20).unwrap();
        assert_eq!((store.applied_index(), store.durable_index()), (50, 50));
        assert_eq!(store.read(&KvCommand::Get("key-7".into())).unwrap(), KvReply::Bulk("value-7".into()));
        assert_eq!(store.key_count().unwrap(), 50);
    }

    // A command reads what the commands before it in its batch wrote, and the
    // key count follows every kind of change.
    #[test]
    fn a_batch_sees_its_own_writes_and_keeps_the_key_count() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = filled(&dir.path().join(LSM_DIR), 3);
        let replies = apply_all(
            &mut store,
            vec![
                set("n", "1"),
                KvCommand::IncrBy { key: b"n".to_vec(), delta: 2 },
                set("key-0", "again"),
                KvCommand::Del(vec![b"key-1".to_vec(), b"missing".to_vec()]),
                KvCommand::Del(vec![b"key-1".to_vec()]),
                set("key-1", "back"),
                KvCommand::Get(b"n".to_vec()),
            ],
        );
        assert_eq!(replies[1], KvReply::Integer(3));
        assert_eq!(replies[3], KvReply::Integer(1), "one of the two keys was there");
        assert_eq!(replies[4], KvReply::Integer(0), "removed earlier in the batch");
        assert_eq!(replies[6], KvReply::Bulk(b"3".to_vec()));
        assert_eq!(store.key_count().unwrap(), 4, "key-0..2 and n");
        assert_eq!(store.read(&KvCommand::Get(b"key-1".to_vec())).unwrap(), KvReply::Bulk(b"back".to_vec()));
    }

    #[test]
    fn the_lsm_engine_and_the_map_encode_the_same_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = filled(&dir.path().join(LSM_DIR), 40);
        let mut map = crate::kv::KvStore::default();
        for i in 0..40 {
            map.apply_envelope(&envelope(i + 1, set(&format!("key-{i}"), &format!("value-{i}"))));
        }
        assert!(map.saved_results() > 0, "the snapshots hold a deduplication table");
        let job = store.snapshot_job().unwrap();
        // Writes after the view was taken are not in it.
        apply_all(&mut store, vec![set("later", "x")]);
        assert_eq!(run_to_vec(job).unwrap(), map.encode_snapshot(40));
    }

    // A crash mid-install leaves the old generation in use; bad bytes change nothing.
    #[test]
    fn a_snapshot_is_built_beside_the_old_state_and_bad_bytes_keep_the_old_state() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(LSM_DIR);
        let mut store = filled(&root, 10);
        let mut other = crate::kv::KvStore::default();
        other.apply(&set("only", "this"));
        let bytes = other.encode_snapshot(99);
        let mut damaged = bytes.clone();
        damaged[30] ^= 1;
        assert!(matches!(store.install_snapshot(&damaged), Err(MachineError::Snapshot(_))));
        assert_eq!((store.applied_index(), store.key_count().unwrap()), (10, 10), "the old state is kept");
        assert!(!root.join("gen-2").exists(), "the partial generation is removed");
        // A leftover of a crash mid-install is replaced by the next install.
        std::fs::create_dir_all(root.join("gen-2")).unwrap();
        std::fs::write(root.join("gen-2").join("junk"), b"half a build").unwrap();
        assert_eq!(store.install_snapshot(&bytes).unwrap(), 99);
        assert_eq!(store.read(&KvCommand::Get("only".into())).unwrap(), KvReply::Bulk("this".into()));
        assert_eq!(store.key_count().unwrap(), 1);
        assert!(!root.join("gen-1").exists(), "the old generation is removed");
        drop(store);
        // A build that a crash cut short, found at the next start, is removed.
        std::fs::create_dir_all(root.join("gen-3")).unwrap();
        let store = LsmStore::open(&root, ME, 1 << 20).unwrap();
        assert_eq!((store.applied_index(), store.durable_index(), store.key_count().unwrap()), (99, 99, 1));
        assert!(!root.join("gen-3").exists());
    }

    // Bad input: a damaged or foreign engine directory is refused, named, and left as it was.
    #[test]
    fn a_damaged_or_foreign_engine_directory_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(LSM_DIR);
        let mut store = filled(&root, 200);
        store.flush().unwrap();
        drop(store);
        let current = std::fs::read(root.join(CURRENT)).unwrap();
        let refuse = |identity: EngineIdentity, what: &str, names: &Path| {
            let error = LsmStore::open(&root, identity, 1 << 20).expect_err(what).to_string();
            assert!(error.contains(&names.display().to_string()), "{what}: {error}");
            assert!(root.join("gen-1").is_dir(), "{what}: the data is left as it was");
        };
        std::fs::remove_file(root.join(CURRENT)).unwrap();
        refuse(ME, "no generation file", &root.join(CURRENT));
        std::fs::write(root.join(CURRENT), b"../elsewhere\n").unwrap();
        refuse(ME, "a generation file that names no generation", &root.join(CURRENT));
        std::fs::write(root.join(CURRENT), b"gen-9\n").unwrap();
        refuse(ME, "a generation that is missing", &root.join("gen-9"));
        std::fs::write(root.join(CURRENT), &current).unwrap();
        refuse(EngineIdentity { cluster_id: 7, node_id: 2 }, "another node's", &root.join("gen-1"));
        refuse(EngineIdentity { cluster_id: 8, node_id: 1 }, "another cluster's", &root.join("gen-1"));
        let store = LsmStore::open(&root, ME, 1 << 20).unwrap();
        assert_eq!((store.applied_index(), store.key_count().unwrap()), (200, 200));
    }

    /// The sorted-table files under `root`.
    fn segments(root: &Path) -> Vec<PathBuf> {
        let data = root.join("gen-1").join("partitions").join(STATE_PARTITION).join("segments");
        std::fs::read_dir(data)
            .map(|entries| entries.filter_map(|entry| entry.ok()).map(|entry| entry.path()).collect())
            .unwrap_or_default()
    }

    // Bad input: a truncated sorted table is refused at start, naming the generation.
    #[test]
    fn a_truncated_table_file_is_refused_naming_the_engine_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(LSM_DIR);
        let mut store = LsmStore::open(&root, ME, 1 << 20).unwrap();
        write_until_a_table_appears(&mut store, &root, &"v".repeat(1024));
        drop(store);
        let table = segments(&root).into_iter().next().unwrap();
        let length = std::fs::metadata(&table).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&table).unwrap().set_len(length / 2).unwrap();
        let error = LsmStore::open(&root, ME, 1 << 20).expect_err("a truncated table").to_string();
        assert!(error.contains(&root.join("gen-1").display().to_string()) && error.contains("damaged"), "{error}");
    }

    /// Writes 1 KiB values until a memtable fills and is written out as a
    /// table; bounded in time and in rounds (2 MB each): the flush happens in
    /// the background while writes go on.
    fn write_until_a_table_appears(store: &mut LsmStore, root: &Path, value: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut round = 0;
        while segments(root).is_empty() {
            assert!(std::time::Instant::now() < deadline && round < 100, "no table was written");
            apply_all(store, (0..2000).map(|i| set(&format!("key-{round}-{i}"), value)).collect());
            round += 1;
        }
        store.flush().unwrap();
    }

    #[test]
    fn compression_none_writes_values_as_they_are_and_lz4_compresses_them() {
        let value = "v".repeat(1024);
        for compress in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join(LSM_DIR);
            let mut store =
                LsmStore::open_with(&root, ME, LsmOptions { cache_bytes: 1 << 20, compress, memtable_bytes: 1 << 20 })
                    .unwrap();
            write_until_a_table_appears(&mut store, &root, &value);
            drop(store);
            let table = std::fs::read(segments(&root).into_iter().next().unwrap()).unwrap();
            let literal = table.windows(value.len()).any(|window| window == value.as_bytes());
            assert_eq!(literal, !compress, "compress = {compress}: a value stored as written in the table");
        }
    }

    /// A store as the first layout (format 1) wrote it: a partition per
    /// table, unprefixed keys.
    fn format_1_store(root: &Path, pairs: &[(&str, &str)], applied_index: u64) {
        let path = root.join("gen-1");
        std::fs::create_dir_all(&path).unwrap();
        let keyspace = Config::new(&path).open().unwrap();
        let partition = |name: &str| keyspace.open_partition(name, PartitionCreateOptions::default()).unwrap();
        let (data, meta) = (partition("data"), partition("meta"));
        partition("dedup_sessions");
        partition("dedup_results");
        for (key, value) in pairs {
            data.insert(*key, *value).unwrap();
        }
        for (key, value) in [
            (FORMAT, FORMAT_SEPARATE_PARTITIONS),
            (CLUSTER_ID, ME.cluster_id),
            (NODE_ID, ME.node_id),
            (APPLIED_INDEX, applied_index),
            (KEY_COUNT, pairs.len() as u64),
        ] {
            meta.insert(key, value.to_be_bytes()).unwrap();
        }
        keyspace.persist(PersistMode::SyncAll).unwrap();
        drop((data, meta, keyspace));
        write_current(root, "gen-1").unwrap();
    }

    // A store of the first layout is read and written as it is, and a
    // leader's snapshot rebuilds it in the current one.
    #[test]
    fn a_format_1_store_is_read_and_written_and_a_snapshot_rebuilds_it_in_format_2() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(LSM_DIR);
        format_1_store(&root, &[("old", "value"), ("other", "x")], 3);
        let mut store = LsmStore::open(&root, ME, 1 << 20).unwrap();
        assert_eq!((store.tables.format, store.applied_index(), store.key_count().unwrap()), (1, 3, 2));
        assert_eq!(store.read(&KvCommand::Get("old".into())).unwrap(), KvReply::Bulk("value".into()));
        apply_all(&mut store, vec![set("new", "1"), KvCommand::Del(vec![b"other".to_vec()])]);
        store.flush().unwrap();
        drop(store);
        let mut store = LsmStore::open(&root, ME, 1 << 20).unwrap();
        assert_eq!((store.tables.format, store.applied_index(), store.key_count().unwrap()), (1, 5, 2));
        assert_eq!(store.read(&KvCommand::Get("new".into())).unwrap(), KvReply::Bulk("1".into()));
        assert_eq!(store.read(&KvCommand::Get("other".into())).unwrap(), KvReply::Nil);
        // Its snapshot is the map's, installed it is format 2.
        let bytes = run_to_vec(store.snapshot_job().unwrap()).unwrap();
        let mut map = crate::kv::KvStore::default();
        assert_eq!(map.install_snapshot(&bytes).unwrap(), 5);
        assert_eq!(store.install_snapshot(&bytes).unwrap(), 5);
        assert_eq!(store.tables.format, FORMAT_VERSION);
        assert!(root.join("gen-2").join("partitions").join(STATE_PARTITION).is_dir());
        drop(store);
        let store = LsmStore::open(&root, ME, 1 << 20).unwrap();
        assert_eq!((store.tables.format, store.applied_index(), store.key_count().unwrap()), (2, 5, 2));
        assert_eq!(store.read(&KvCommand::Get("old".into())).unwrap(), KvReply::Bulk("value".into()));
    }

    /// Applies `envelopes` to the store and the map, in batches of 100.
    fn apply_both(store: &mut LsmStore, map: &mut crate::kv::KvStore, envelopes: &[Envelope]) {
        for chunk in envelopes.chunks(100) {
            let first = store.applied_index() + 1;
            let batch: Vec<BatchEntry<'_>> =
                chunk.iter().enumerate().map(|(at, envelope)| (first + at as u64, Some(envelope))).collect();
            let replies = store.apply_batch(&batch).unwrap();
            let expected: Vec<KvReply> = chunk.iter().map(|envelope| map.apply_envelope(envelope)).collect();
            assert_eq!(replies, expected);
        }
    }

    /// Writes as a cluster makes them, round `round` of them: origin 1's
    /// ids settle right behind it (its clients wait), origin 2 restarts every
    /// round (a new incarnation), origin 3 never settles (the table's bound
    /// drops its oldest results).
    fn writes_of_round(round: u64, count: u64) -> Vec<Envelope> {
        (0..count)
            .map(|at| {
                let id = round * count + at + 1;
                let command = KvCommand::IncrBy { key: format!("k{}", at % 7).into_bytes(), delta: 1 };
                let (origin, incarnation, settled_below) = match at % 3 {
                    0 => (1, 1, id.saturating_sub(2)),
                    1 => (2, round + 1, 0),
                    _ => (3, 1, 0),
                };
                Envelope { origin, incarnation, request_id: id, command, settled_below }
            })
            .collect()
    }

    fn result_keys(store: &LsmStore) -> Vec<Vec<u8>> {
        store.tables.results.iter().map(|pair| pair.unwrap().0.to_vec()).collect()
    }

    // The results live in a bounded set of slots overwritten in place: the
    // table reopens equal to the map's, dropped results stay dropped, and the
    // key range does not grow with the number of writes.
    #[test]
    fn the_results_reopen_as_saved_in_a_bounded_number_of_slots() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(LSM_DIR);
        let mut map = crate::kv::KvStore::default();
        let mut written = Vec::new();
        for round in 0..3 {
            let mut store = LsmStore::open(&root, ME, 1 << 20).unwrap();
            assert_eq!(store.dedup, map.dedup, "round {round}: the table as saved");
            apply_both(&mut store, &mut map, &writes_of_round(round, 3 * 4000));
            store.flush().unwrap();
            written.push(result_keys(&store).len());
            assert_eq!(written[round as usize] as u64, store.slots.written());
        }
        let store = LsmStore::open(&root, ME, 1 << 20).unwrap();
        assert_eq!(store.dedup, map.dedup);
        // Origin 3 fills its slots; 1 and 2 use a few each.
        let bound = MAX_RESULTS_PER_ORIGIN as usize + 1;
        assert!(written.iter().all(|&keys| keys > bound && keys <= 3 * bound), "{written:?}");
        assert_eq!(written[1], written[2], "the same slots, overwritten: {written:?}");
    }

    // A store that saved its results by id (before the slots) has them
    // rewritten into slots at its first open, with nothing lost.
    #[test]
    fn results_saved_by_id_are_rewritten_into_slots_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(LSM_DIR);
        let mut map = crate::kv::KvStore::default();
        let mut store = LsmStore::open(&root, ME, 1 << 20).unwrap();
        apply_both(&mut store, &mut map, &writes_of_round(0, 900));
        // Back to the first layout: a key per result, no layout in the metadata.
        let mut batch = store.tables.keyspace.batch();
        for key in result_keys(&store) {
            store.tables.results.remove(&mut batch, store.tables.results.unprefixed(&key));
        }
        for (&(node, incarnation, id), reply) in &store.dedup.results {
            let key = super::super::engine::result_key(node, incarnation, id);
            store.tables.results.insert(&mut batch, &key, &encode_reply(reply));
        }
        store.tables.meta.remove(&mut batch, results::LAYOUT.as_bytes());
        batch.commit().unwrap();
        store.flush().unwrap();
        drop(store);
        for _ in 0..2 {
            let store = LsmStore::open(&root, ME, 1 << 20).unwrap();
            assert_eq!(store.dedup, map.dedup);
            assert_eq!(store.meta_u64(results::LAYOUT).unwrap(), Some(results::LAYOUT_SLOTS));
            let keys = result_keys(&store);
            assert!(!keys.is_empty() && keys.iter().all(|key| key.len() == 1 + 12), "slot keys only");
        }
        let mut store = LsmStore::open(&root, ME, 1 << 20).unwrap();
        apply_both(&mut store, &mut map, &writes_of_round(1, 900));
        assert_eq!(store.dedup, map.dedup);
    }

    // A damaged slot, or a missing one the sessions count, is refused at
    // open, naming the engine's directory.
    #[test]
    fn a_damaged_or_missing_result_slot_is_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(LSM_DIR);
        let mut map = crate::kv::KvStore::default();
        let mut store = LsmStore::open(&root, ME, 1 << 20).unwrap();
        apply_both(&mut store, &mut map, &writes_of_round(0, 30));
        let keys = result_keys(&store);
        let short = &keys[0];
        let missing = keys.last().unwrap();
        let mut batch = store.tables.keyspace.batch();
        store.tables.results.insert(&mut batch, store.tables.results.unprefixed(short), b"short");
        batch.commit().unwrap();
        store.flush().unwrap();
        drop(store);
        let error = LsmStore::open(&root, ME, 1 << 20).unwrap_err().to_string();
        assert!(error.contains("holds 5 bytes") && error.contains(LSM_DIR), "{error}");

        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(LSM_DIR);
        let mut store = LsmStore::open(&root, ME, 1 << 20).unwrap();
        apply_both(&mut store, &mut crate::kv::KvStore::default(), &writes_of_round(0, 30));
        let mut batch = store.tables.keyspace.batch();
        store.tables.results.remove(&mut batch, store.tables.results.unprefixed(missing));
        batch.commit().unwrap();
        store.flush().unwrap();
        drop(store);
        let error = LsmStore::open(&root, ME, 1 << 20).unwrap_err().to_string();
        assert!(error.contains("its session says") && error.contains(LSM_DIR), "{error}");
    }
}

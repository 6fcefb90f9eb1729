//! [`Wal`]: the durable [`LogStore`] — a segmented write-ahead log in a data
//! directory.
//!
//! # Data directory
//! ```text
//! LOCK                          held (flock) while a Wal is open
//! meta                          cluster id and node id, written at creation
//! snapshot                      the latest snapshot (see crate::snapshot)
//! wal-00000000000000000001.log  segments, named by their first record's sequence number
//! wal-00000000000000000213.log
//! wal-spare.tmp                 zeros, being prepared as the next segment (see crate::segment)
//! ```
//! Records (framing and binary format in [`crate::codec`]) are numbered from 1
//! across the WAL. A [`Wal::persist`] call encodes every batch's hard state then
//! log write, writes them with one `write` (over zeros written ahead, so that
//! the file does not grow: see [`crate::segment`]) and one `sync_data`, and
//! only then reports success. When the active segment reaches
//! [`WalOptions::segment_bytes`] it is cut to its last record and a new one is
//! created (the directory synced) starting with a copy of the hard state, so
//! older segments can later be removed by [`Wal::compact`] without losing it.
//!
//! Every entry is also kept in memory (the log is read from there); the files
//! are read only by recovery ([`crate::recovery`]).

use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use conclave_core::{ClusterId, Entry, HardState, LogIndex, NodeId, RestoredState};

use crate::codec::{self, Record};
use crate::dir_lock::DirLock;
use crate::error::StorageError;
use crate::fs_util;
use crate::log_state::LogState;
use crate::meta::{Meta, META_FILE};
use crate::recovery::{self, RecoveryReport};
use crate::segment::{self, ActiveSegment, SegmentInfo, Spare, SPARE_FILE};
use crate::snapshot::{self, Snapshot, SNAPSHOT_FILE};
use crate::store::{LogStore, PersistRequest};

/// Default size at which a segment is closed and a new one started: 64 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

/// How to open a data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalOptions {
    /// The cluster this node belongs to; checked against the `meta` file.
    pub cluster_id: ClusterId,
    /// This node's id; checked against the `meta` file.
    pub node_id: NodeId,
    /// A segment is rolled once it holds at least this many bytes.
    pub segment_bytes: u64,
}

impl WalOptions {
    /// Options for `node_id` of `cluster_id`, with 64 MiB segments.
    pub fn new(cluster_id: ClusterId, node_id: NodeId) -> WalOptions {
        WalOptions { cluster_id, node_id, segment_bytes: DEFAULT_SEGMENT_BYTES }
    }

    /// Sets the segment size.
    pub fn with_segment_bytes(mut self, segment_bytes: u64) -> WalOptions {
        self.segment_bytes = segment_bytes.max(1);
        self
    }
}

/// What the WAL has done since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    /// `sync_data` calls on segments (one per non-empty persist, plus one per
    /// snapshot marker, and one or two per segment roll: the closed segment's
    /// zeros cut off, the new one's hard state).
    pub syncs: u64,
    /// Bytes of records appended to segments.
    pub bytes_written: u64,
    /// Zeros written ahead of the records by appends (see [`crate::segment`]).
    pub zeros_written: u64,
    /// Segments that began as a spare filled with zeros off the write path.
    pub spares_used: u64,
    /// Records appended.
    pub records_written: u64,
    /// Persist requests (batches) made durable.
    pub batches_persisted: u64,
}

/// A node's durable storage: a segmented write-ahead log, hard state and
/// snapshot in one data directory.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    options: WalOptions,
    _lock: DirLock,
    state: LogState,
    snapshot: Option<Snapshot>,
    closed_segments: Vec<SegmentInfo>,
    active: ActiveSegment,
    stats: WalStats,
    report: RecoveryReport,
    /// Set after a failed write or sync: what is on disk is then unknown.
    poisoned: Option<String>,
    buffer: Vec<u8>,
    /// The next segment, being filled with zeros off the write path.
    spare: Option<Spare>,
    /// Whether a spare was tried for the active segment (prepared, or failed
    /// to start).
    spare_tried: bool,
}

impl Wal {
    /// Opens (creating if needed) the data directory `dir` and recovers its
    /// state.
    ///
    /// Refused with [`StorageError::Locked`] if another store holds it,
    /// [`StorageError::WrongCluster`] / [`StorageError::WrongNode`] if it was
    /// created for another identity, and [`StorageError::Corrupt`] if its data
    /// is damaged anywhere but a torn tail.
    pub fn open(dir: impl AsRef<Path>, options: WalOptions) -> Result<Wal, StorageError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|source| StorageError::io(&dir, source))?;
        let lock = DirLock::acquire(&dir)?;
        let expected = Meta { cluster_id: options.cluster_id, node_id: options.node_id };
        match Meta::load(&dir)? {
            Some(found) => found.check(&expected, &dir)?,
            None => {
                let has_data = !segment::list_segments(&dir)?.is_empty() || dir.join(SNAPSHOT_FILE).exists();
                if has_data {
                    return Err(StorageError::corrupt(
                        dir.join(META_FILE),
                        0,
                        "the meta file is missing but the directory holds WAL data",
                    ));
                }
                expected.save(&dir)?;
            }
        }
        for leftover in [format!("{SNAPSHOT_FILE}.tmp"), format!("{META_FILE}.tmp"), SPARE_FILE.to_string()] {
            let path = dir.join(leftover);
            if path.exists() {
                fs::remove_file(&path).map_err(|source| StorageError::io(&path, source))?;
            }
        }
        let recovered = recovery::recover(&dir)?;
        let mut closed_segments = recovered.segments;
        let active = match closed_segments.pop() {
            Some(last) => ActiveSegment::reopen(
                last,
                recovered.last_segment_len,
                recovered.last_segment_file_len,
                options.segment_bytes,
            )?,
            None => ActiveSegment::create(&dir, 1, options.segment_bytes)?,
        };
        let mut wal = Wal {
            dir,
            options,
            _lock: lock,
            state: recovered.state,
            snapshot: recovered.snapshot,
            closed_segments,
            active,
            stats: WalStats::default(),
            report: recovered.report,
            poisoned: None,
            buffer: Vec::new(),
            spare: None,
            spare_tried: false,
        };
        if wal.active.info.record_count == 0 && !wal.closed_segments.is_empty() {
            // A crash during a roll, after the new segment was created but
            // before its copy of the hard state: write that copy now, so that
            // compacting the older segments never loses it.
            wal.write_hard_state_copy()?;
        }
        Ok(wal)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records in the WAL a snapshot whose file the caller already made durable
    /// with [`snapshot::save`] in this WAL's directory (so that writing a large
    /// snapshot file need not hold up the WAL's appends); the second half of
    /// [`LogStore::save_snapshot`]. A crash between the two recovers as one
    /// between the halves of `save_snapshot` does.
    pub fn record_saved_snapshot(&mut self, snapshot: Snapshot) -> Result<(), StorageError> {
        self.check_usable()?;
        let index = snapshot.last_included_index;
        if index < self.state.snapshot_index() {
            return Err(StorageError::StaleSnapshot { index, current: self.state.snapshot_index() });
        }
        self.record_marker(snapshot)
    }

    fn record_marker(&mut self, snapshot: Snapshot) -> Result<(), StorageError> {
        let (index, term) = (snapshot.last_included_index, snapshot.last_included_term);
        let log_discarded = self.state.term_at(index) != Some(term);
        self.buffer.clear();
        let marker = Record::SnapshotMarker { last_included_index: index, last_included_term: term, log_discarded };
        codec::encode_record(&marker, &mut self.buffer).map_err(StorageError::invalid_write)?;
        self.append_buffer(1, 0)?;
        self.state.apply_snapshot_marker(index, term, log_discarded);
        // The file holds this snapshot now: keep its data as the mapped file
        // rather than in the process's memory. Should the mapping fail, the
        // bytes at hand are the same.
        let mapped = snapshot::map_saved(&self.dir)
            .ok()
            .filter(|mapped| mapped.last_included_index == index && mapped.data.len() == snapshot.data.len());
        self.snapshot = Some(mapped.unwrap_or(snapshot));
        Ok(())
    }

    /// The options it was opened with.
    pub fn options(&self) -> &WalOptions {
        &self.options
    }

    /// Counters since open: syncs, bytes and records written.
    pub fn stats(&self) -> WalStats {
        self.stats
    }

    /// Whether the next segment is prepared (zeros written and synced) and
    /// the next roll will take it.
    pub fn spare_ready(&self) -> bool {
        self.spare.as_ref().is_some_and(|spare| spare.is_ready())
    }

    /// What recovery found when this WAL was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// The segment files, oldest first.
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        self.closed_segments.iter().chain([&self.active.info]).map(|info| info.path.clone()).collect()
    }

    fn check_usable(&self) -> Result<(), StorageError> {
        match &self.poisoned {
            Some(reason) => Err(StorageError::Poisoned { reason: reason.clone() }),
            None => Ok(()),
        }
    }

    /// Appends `self.buffer` (holding `records` records) to the active segment
    /// and syncs it; a failure poisons the WAL.
    fn append_buffer(&mut self, records: u64, max_touched_index: LogIndex) -> Result<(), StorageError> {
        match self.active.append(&self.buffer, records, max_touched_index) {
            Ok(zeros) => self.stats.zeros_written += zeros,
            Err(error) => {
                self.poisoned = Some(error.to_string());
                return Err(error);
            }
        }
        self.stats.syncs += 1;
        self.stats.bytes_written += self.buffer.len() as u64;
        self.stats.records_written += records;
        Ok(())
    }

    /// Once the active segment is half full, starts preparing the next one (a
    /// spare filled with zeros) on a thread of its own. A spare that cannot
    /// be prepared is only a slower roll: warned about, never an error.
    fn prepare_spare(&mut self) {
        let segment_bytes = self.options.segment_bytes;
        if self.spare_tried || self.spare.is_some() || self.active.len < segment_bytes / 2 {
            return;
        }
        self.spare_tried = true;
        match Spare::prepare(&self.dir, segment_bytes) {
            Ok(spare) => self.spare = Some(spare),
            Err(error) => tracing::warn!(%error, "could not start preparing the next WAL segment"),
        }
    }

    /// The next segment: the spare if it is ready, else a new empty file.
    fn next_segment(&mut self) -> Result<ActiveSegment, StorageError> {
        let (first_seq, zero_limit) = (self.active.next_seq(), self.options.segment_bytes);
        if let Some(spare) = self.spare.take_if(|spare| spare.is_ready()) {
            let len = spare.len;
            match spare.take() {
                Ok(file) => {
                    self.stats.spares_used += 1;
                    return ActiveSegment::from_spare(&self.dir, first_seq, file, len, zero_limit);
                }
                Err(error) => tracing::warn!(%error, "could not prepare the next WAL segment"),
            }
        }
        ActiveSegment::create(&self.dir, first_seq, zero_limit)
    }

    /// Closes the active segment (cut to its last record) and starts the next,
    /// beginning with the hard state so that the older segments are never
    /// needed for it.
    fn roll(&mut self) -> Result<(), StorageError> {
        let next = match self.active.cut_zeros().and_then(|cut| {
            self.stats.syncs += u64::from(cut);
            self.next_segment()
        }) {
            Ok(next) => next,
            Err(error) => {
                self.poisoned = Some(error.to_string());
                return Err(error);
            }
        };
        let closed = std::mem::replace(&mut self.active, next);
        self.closed_segments.push(closed.info);
        self.spare_tried = false;
        self.write_hard_state_copy()
    }

    /// Appends the current hard state as the active segment's first record.
    fn write_hard_state_copy(&mut self) -> Result<(), StorageError> {
        self.buffer.clear();
        codec::encode_hard_state(&self.state.hard_state(), &mut self.buffer);
        self.append_buffer(1, 0)
    }
}

impl LogStore for Wal {
    fn persist(&mut self, batches: &[PersistRequest<'_>]) -> Result<(), StorageError> {
        self.check_usable()?;
        self.state.check_batches(batches)?;
        self.buffer.clear();
        let mut records = 0;
        let mut max_touched_index = 0;
        for batch in batches {
            // Hard state first: a torn write may keep a batch's term and vote
            // without its entries, never entries without the term they carry.
            if let Some(hard_state) = &batch.hard_state {
                codec::encode_hard_state(hard_state, &mut self.buffer);
                records += 1;
            }
            if let Some(write) = batch.log_write {
                max_touched_index = max_touched_index.max(segment::touched_index_of_write(write));
                codec::encode_log_write(write, &mut self.buffer).map_err(StorageError::invalid_write)?;
                records += 1;
            }
        }
        if records == 0 {
            return Ok(());
        }
        self.append_buffer(records, max_touched_index)?;
        for batch in batches {
            if let Some(hard_state) = batch.hard_state {
                self.state.set_hard_state(hard_state);
            }
            if let Some(write) = batch.log_write {
                self.state.apply_write(write).map_err(StorageError::invalid_write)?;
            }
        }
        self.stats.batches_persisted += batches.iter().filter(|batch| !batch.is_empty()).count() as u64;
        if self.active.len >= self.options.segment_bytes {
            self.roll()?;
        }
        self.prepare_spare();
        Ok(())
    }

    fn hard_state(&self) -> HardState {
        self.state.hard_state()
    }

    fn first_index(&self) -> LogIndex {
        self.state.first_index()
    }

    fn last_index(&self) -> LogIndex {
        self.state.last_index()
    }

    fn entries(&self, range: Range<LogIndex>) -> Result<Vec<Entry>, StorageError> {
        self.state.entries(range)
    }

    fn save_snapshot(&mut self, snapshot: Snapshot) -> Result<(), StorageError> {
        self.check_usable()?;
        let index = snapshot.last_included_index;
        if index < self.state.snapshot_index() {
            return Err(StorageError::StaleSnapshot { index, current: self.state.snapshot_index() });
        }
        if let Err(error) = snapshot::save(&self.dir, &snapshot) {
            self.poisoned = Some(error.to_string());
            return Err(error);
        }
        self.record_marker(snapshot)
    }

    fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    fn compact(&mut self, upto_index: LogIndex) -> Result<(), StorageError> {
        self.check_usable()?;
        let snapshot_index = self.state.snapshot_index();
        if upto_index > snapshot_index {
            return Err(StorageError::CompactBeyondSnapshot { upto_index, snapshot_index });
        }
        // Whole closed segments only, oldest first, while every index they
        // touched is covered. The first one kept starts with the hard state.
        let removable = self.closed_segments.iter().take_while(|info| info.max_touched_index <= upto_index).count();
        if removable == 0 {
            return Ok(());
        }
        for info in self.closed_segments.drain(..removable) {
            if let Err(source) = fs::remove_file(&info.path) {
                let error = StorageError::io(&info.path, source);
                self.poisoned = Some(error.to_string());
                return Err(error);
            }
        }
        fs_util::sync_dir(&self.dir)
    }

    fn restored_state(&self) -> Result<RestoredState, StorageError> {
        self.state.restored_state(self.snapshot.as_ref())
    }
}

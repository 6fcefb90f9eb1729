//! Rebuilding a node's state from its data directory.
//!
//! Replay starts from the snapshot file (or an empty log) and applies every
//! segment's records in sequence order. Damage is treated by where it is:
//!
//! * at the tail of the **last** segment, with no intact record after it, it is
//!   what a crash in the middle of a write leaves (a short header, a short body,
//!   a checksum mismatch): the tail is cut off, with a warning;
//! * anywhere else — an earlier segment, or followed by an intact record, or a
//!   record whose checksum matches but whose body is invalid — it cannot come
//!   from a crash, and recovery refuses with [`StorageError::Corrupt`] naming
//!   the file and offset. Nothing is ever skipped.
//!
//! Zeros from the end of the last record to the end of the **last** segment
//! are not damage: they are the space the WAL writes ahead of its records
//! ([`crate::segment`]), kept for the next appends. (A crash that extended the
//! file before its data landed leaves the same picture, and nothing in it was
//! synced.) Zeros after the records of an earlier segment are refused: a
//! segment is cut to its last record before the next one is created.

use std::fs;
use std::path::{Path, PathBuf};

use conclave_core::LogIndex;

use crate::codec::Record;
use crate::error::StorageError;
use crate::log_state::LogState;
use crate::segment::{self, SegmentInfo};
use crate::snapshot::{self, Snapshot, SNAPSHOT_FILE};

/// A torn tail cut off during recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TruncatedTail {
    /// The segment.
    pub file: PathBuf,
    /// Where it now ends.
    pub offset: u64,
    /// How many bytes were dropped.
    pub bytes_dropped: u64,
    /// What was wrong at `offset`.
    pub reason: String,
}

/// What recovery found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments replayed.
    pub segments: usize,
    /// Records replayed.
    pub records: u64,
    /// The torn tail cut off, if there was one.
    pub truncated_tail: Option<TruncatedTail>,
    /// Zeros after the last record of the last segment, kept as space written
    /// ahead for the next records (not damage).
    pub zero_tail: u64,
}

/// Everything recovery rebuilt.
#[derive(Debug)]
pub struct Recovered {
    /// Hard state and log.
    pub state: LogState,
    /// The snapshot file's contents.
    pub snapshot: Option<Snapshot>,
    /// Every segment, in order; the last one is appended to next.
    pub segments: Vec<SegmentInfo>,
    /// Bytes of records in the last segment, after any truncation.
    pub last_segment_len: u64,
    /// The last segment file's length: its records, then zeros written ahead.
    pub last_segment_file_len: u64,
    /// What happened.
    pub report: RecoveryReport,
}

/// Replays `dir`'s snapshot and segments.
pub fn recover(dir: &Path) -> Result<Recovered, StorageError> {
    let snapshot = snapshot::load(dir)?;
    let mut state = snapshot
        .as_ref()
        .map(|snapshot| LogState::with_base(snapshot.last_included_index, snapshot.last_included_term))
        .unwrap_or_default();
    let listed = segment::list_segments(dir)?;
    let mut report = RecoveryReport { segments: listed.len(), ..RecoveryReport::default() };
    if let Some((first_seq, path)) = listed.first() {
        if *first_seq != 1 && snapshot.is_none() {
            return Err(StorageError::corrupt(
                path,
                0,
                format!("the WAL starts at record {first_seq}, so earlier segments were compacted, but there is no snapshot"),
            ));
        }
    }
    let mut segments = Vec::with_capacity(listed.len());
    let mut last_segment_len = 0;
    let mut last_segment_file_len = 0;
    let mut newest_marker: Option<(LogIndex, PathBuf, u64)> = None;
    // The term the replayed log holds at the snapshot file's last index (the
    // base hides it): needed if a crash came between the file and its marker.
    let base = snapshot.as_ref().map(|snapshot| snapshot.last_included_index);
    let mut term_at_base: Option<conclave_core::Term> = None;
    let mut expected_seq = listed.first().map_or(1, |(first_seq, _)| *first_seq);
    for (position, (first_seq, path)) in listed.iter().enumerate() {
        let is_last = position + 1 == listed.len();
        if *first_seq != expected_seq {
            return Err(StorageError::corrupt(
                path,
                0,
                format!("segment starts at record {first_seq} but the previous one ends before record {expected_seq}: a segment is missing or was cut short"),
            ));
        }
        let bytes = fs::read(path).map_err(|source| StorageError::io(path, source))?;
        let scanned = segment::scan(path, &bytes)?;
        let mut file_len = scanned.file_len;
        if scanned.zero_tail > 0 {
            if !is_last {
                return Err(StorageError::corrupt(
                    path,
                    scanned.valid_len,
                    format!(
                        "{} zero bytes after the last record, in a segment that is not the last (a closed segment ends at its last record)",
                        scanned.zero_tail
                    ),
                ));
            }
            report.zero_tail = scanned.zero_tail;
        }
        if let Some(damage) = &scanned.damage {
            if !is_last {
                return Err(StorageError::corrupt(
                    path,
                    damage.offset,
                    format!("{} (in a segment that is not the last, so not a torn write)", damage.reason),
                ));
            }
            if let Some(intact) = damage.intact_record_after {
                return Err(StorageError::corrupt(
                    path,
                    damage.offset,
                    format!(
                        "{}; an intact record follows at offset {intact}, so this is not a torn tail",
                        damage.reason
                    ),
                ));
            }
            tracing::warn!(
                file = %path.display(),
                offset = damage.offset,
                bytes_dropped = scanned.file_len - scanned.valid_len,
                reason = %damage.reason,
                "cutting off a torn write at the tail of the WAL"
            );
            segment::truncate(path, scanned.valid_len)?;
            file_len = scanned.valid_len;
            report.truncated_tail = Some(TruncatedTail {
                file: path.clone(),
                offset: damage.offset,
                bytes_dropped: scanned.file_len - scanned.valid_len,
                reason: damage.reason.clone(),
            });
        }
        let mut info = SegmentInfo {
            path: path.clone(),
            first_seq: *first_seq,
            record_count: scanned.records.len() as u64,
            max_touched_index: 0,
        };
        for (offset, record) in &scanned.records {
            info.max_touched_index = info.max_touched_index.max(segment::touched_index(record));
            if let (Some(base), Record::LogWrite(write)) = (base, record) {
                if write.first_index <= base {
                    let position = (base - write.first_index) as usize;
                    term_at_base = write.entries.get(position).map(|entry| entry.term);
                }
            }
            replay(&mut state, record).map_err(|reason| StorageError::corrupt(path, *offset, reason))?;
            if let Record::SnapshotMarker { last_included_index, .. } = record {
                if newest_marker.as_ref().is_none_or(|(newest, _, _)| last_included_index > newest) {
                    newest_marker = Some((*last_included_index, path.clone(), *offset));
                }
            }
        }
        report.records += info.record_count;
        expected_seq = info.first_seq + info.record_count;
        last_segment_len = scanned.valid_len;
        last_segment_file_len = file_len;
        segments.push(info);
    }
    let snapshot_index = snapshot.as_ref().map_or(0, |snapshot| snapshot.last_included_index);
    let newest_marker_index = newest_marker.as_ref().map(|(index, _, _)| *index);
    if let Some((marker_index, path, offset)) = newest_marker {
        if marker_index > snapshot_index {
            return Err(StorageError::corrupt(
                path,
                offset,
                format!(
                    "the WAL records a snapshot up to index {marker_index}, but {} covers only up to index {snapshot_index} (or is missing)",
                    dir.join(SNAPSHOT_FILE).display()
                ),
            ));
        }
    }
    if let Some(snapshot) = &snapshot {
        let confirmed = newest_marker_index.is_some_and(|index| index >= snapshot.last_included_index);
        if !confirmed && term_at_base.is_some_and(|term| term != snapshot.last_included_term) {
            // A crash after the snapshot file was renamed into place but before
            // its marker reached the WAL: finish what the save would have done.
            // The log did not hold the snapshot's last entry (it came from a
            // leader), so the entries after it do not follow it: discard them.
            state.apply_snapshot_marker(snapshot.last_included_index, snapshot.last_included_term, true);
        }
    }
    Ok(Recovered { state, snapshot, segments, last_segment_len, last_segment_file_len, report })
}

fn replay(state: &mut LogState, record: &Record) -> Result<(), String> {
    match record {
        Record::HardState(hard_state) => state.set_hard_state(*hard_state),
        Record::LogWrite(write) => state.apply_write(write)?,
        Record::SnapshotMarker { last_included_index, last_included_term, log_discarded } => {
            state.apply_snapshot_marker(*last_included_index, *last_included_term, *log_discarded)
        }
    }
    Ok(())
}

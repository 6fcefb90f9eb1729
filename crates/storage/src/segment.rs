//! WAL segment files: naming, listing, scanning and appending.
//!
//! A segment is named after the sequence number of its first record
//! (`wal-00000000000000000001.log`; records are numbered from 1 across the
//! whole WAL), so the names alone show whether one is missing.
//!
//! # Zeros written ahead
//! The active segment keeps zeros (written and synced, not a hole and not
//! `fallocate`d space) ahead of its last record, and appends by writing over
//! them: the file does not grow, so the `fdatasync` of a group commit flushes
//! data only and no file-size metadata (the file system's journal stays out of
//! it). When an append reaches the end of the zeros, the same append writes
//! [`ZERO_AHEAD_BYTES`] more after its records (capped at the segment size),
//! synced by the same `fdatasync`. A zero-filled region never reads as a
//! record (a record's length is at least 1), so recovery tells these zeros
//! from records: bytes after the last record that are all zero are this space
//! (see [`scan`]). A segment is cut to its last record when it is closed, so
//! only the last segment has them.
//!
//! Writing those zeros costs a write of their size and a sync. So that a group
//! commit does not pay for them, the next segment is prepared off the write
//! path: once the active segment is half full, a thread of its own fills a
//! [`Spare`] file (`wal-spare.tmp`) with zeros to the segment size (256 MiB
//! at most) and syncs it; the roll renames it to the next segment's name (and syncs the
//! directory). A roll that finds no spare ready creates an empty segment and
//! appends to it as above. A spare left by a crash is removed when the WAL is
//! opened: its name is not a segment's.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use conclave_core::{LogIndex, LogWrite};

use crate::codec::{self, FrameError, Record};
use crate::error::StorageError;
use crate::fault::{self, Point};
use crate::fs_util;

const PREFIX: &str = "wal-";
const SUFFIX: &str = ".log";
const DIGITS: usize = 20;

/// File name of the segment whose first record has sequence number `first_seq`.
pub fn segment_name(first_seq: u64) -> String {
    format!("{PREFIX}{first_seq:0DIGITS$}{SUFFIX}")
}

/// The first sequence number encoded in a segment file name, if it is one.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() != DIGITS || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segments in `dir`, ordered by first sequence number.
pub fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StorageError> {
    let mut segments = Vec::new();
    for item in fs::read_dir(dir).map_err(|source| StorageError::io(dir, source))? {
        let item = item.map_err(|source| StorageError::io(dir, source))?;
        if let Some(first_seq) = item.file_name().to_str().and_then(parse_segment_name) {
            segments.push((first_seq, item.path()));
        }
    }
    segments.sort();
    Ok(segments)
}

/// Where a segment stops being readable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// Offset of the first record that is not intact.
    pub offset: u64,
    /// What is wrong with it.
    pub reason: String,
    /// Offset of an intact record found after it, if any. If there is one, the
    /// damage is not a torn tail: something overwrote data in the middle.
    pub intact_record_after: Option<u64>,
}

/// What a segment holds: its intact records, then possibly zeros or damage.
#[derive(Clone, Debug)]
pub struct ScannedSegment {
    /// Every intact record before any damage, with its offset.
    pub records: Vec<(u64, Record)>,
    /// Bytes up to the end of the last intact record.
    pub valid_len: u64,
    /// The file's length.
    pub file_len: u64,
    /// Bytes after the last intact record, up to the end of the file, that are
    /// all zero: space written ahead for the next records (0 if none, and
    /// always 0 when there is damage).
    pub zero_tail: u64,
    /// The first non-intact record, if any. Zeros from the end of the last
    /// record to the end of the file are not damage.
    pub damage: Option<Damage>,
}

/// Reads every record of a segment's `bytes`. A record whose checksum matches
/// but whose body is invalid is refused at once: a crash cannot produce it.
///
/// Where the records stop, the rest of the file is either all zeros (space
/// written ahead, [`ScannedSegment::zero_tail`]) or damage: a single non-zero
/// byte after the last record makes it damage, to be judged by the caller.
pub fn scan(path: &Path, bytes: &[u8]) -> Result<ScannedSegment, StorageError> {
    let mut records = Vec::new();
    let mut offset = 0;
    let mut damage = None;
    let mut zero_tail = 0;
    while offset < bytes.len() {
        match codec::decode_frame(bytes, offset) {
            Ok((record, next)) => {
                records.push((offset as u64, record));
                offset = next;
            }
            Err(FrameError::Undecodable(reason)) => {
                return Err(StorageError::corrupt(path, offset as u64, format!("invalid record: {reason}")));
            }
            Err(FrameError::Damaged(_)) if bytes[offset..].iter().all(|&byte| byte == 0) => {
                zero_tail = (bytes.len() - offset) as u64;
                break;
            }
            Err(FrameError::Damaged(reason)) => {
                let intact_record_after =
                    (offset + 1..bytes.len()).find(|&later| codec::intact_frame_at(bytes, later)).map(|at| at as u64);
                damage = Some(Damage { offset: offset as u64, reason, intact_record_after });
                break;
            }
        }
    }
    Ok(ScannedSegment { records, valid_len: offset as u64, file_len: bytes.len() as u64, zero_tail, damage })
}

/// What the WAL remembers about a segment it no longer writes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The file.
    pub path: PathBuf,
    /// Sequence number of its first record.
    pub first_seq: u64,
    /// Records it holds.
    pub record_count: u64,
    /// Highest log index any of its log writes touched (0 if none): once a
    /// snapshot covers it, the segment is no longer needed.
    pub max_touched_index: LogIndex,
}

/// Zeros an append writes after its records when it reaches the end of the
/// zeros written ahead (fewer if the segment's size comes first).
pub const ZERO_AHEAD_BYTES: u64 = 1 << 20;

/// The segment being appended to.
#[derive(Debug)]
pub struct ActiveSegment {
    file: File,
    /// What is known about it so far.
    pub info: SegmentInfo,
    /// Bytes of records: where the next append writes.
    pub len: u64,
    /// The file's length: bytes `len..file_len` are zeros written ahead.
    pub file_len: u64,
    /// Zeros are written ahead up to this length at most (the segment size).
    zero_limit: u64,
}

impl ActiveSegment {
    /// Creates a new, empty segment in `dir` and syncs the directory. Appends
    /// will write zeros ahead up to `zero_limit` bytes into the file at most.
    pub fn create(dir: &Path, first_seq: u64, zero_limit: u64) -> Result<ActiveSegment, StorageError> {
        let path = dir.join(segment_name(first_seq));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| StorageError::io(&path, source))?;
        fs_util::sync_dir(dir)?;
        Ok(ActiveSegment {
            file,
            info: SegmentInfo { path, first_seq, record_count: 0, max_touched_index: 0 },
            len: 0,
            file_len: 0,
            zero_limit,
        })
    }

    /// Makes the `spare` the segment starting at `first_seq` (renamed, and the
    /// directory synced): `file` is the spare's, filled with `file_len` zeros
    /// and synced.
    pub fn from_spare(
        dir: &Path,
        first_seq: u64,
        file: File,
        file_len: u64,
        zero_limit: u64,
    ) -> Result<ActiveSegment, StorageError> {
        let path = dir.join(segment_name(first_seq));
        let spare = dir.join(SPARE_FILE);
        fs::rename(&spare, &path).map_err(|source| StorageError::io(&path, source))?;
        fs_util::sync_dir(dir)?;
        Ok(ActiveSegment {
            file,
            info: SegmentInfo { path, first_seq, record_count: 0, max_touched_index: 0 },
            len: 0,
            file_len,
            zero_limit,
        })
    }

    /// Reopens an existing segment for appending: `len` bytes of records
    /// followed by zeros up to `file_len` (recovery cut off any torn tail).
    pub fn reopen(info: SegmentInfo, len: u64, file_len: u64, zero_limit: u64) -> Result<ActiveSegment, StorageError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&info.path)
            .map_err(|source| StorageError::io(&info.path, source))?;
        Ok(ActiveSegment { file, info, len, file_len: file_len.max(len), zero_limit })
    }

    /// Writes `bytes` holding `records` records after the last record (over
    /// zeros written ahead, or at the end of the file, then with more zeros
    /// after them), then syncs the data before returning. Returns the zeros
    /// written ahead.
    pub fn append(&mut self, bytes: &[u8], records: u64, max_touched_index: LogIndex) -> Result<u64, StorageError> {
        let path = &self.info.path;
        let end = self.len + bytes.len() as u64;
        let zeros = if end > self.file_len { (end + ZERO_AHEAD_BYTES).min(self.zero_limit).max(end) - end } else { 0 };
        fault::check(Point::WalWrite)
            .and_then(|()| self.file.write_all_at(bytes, self.len))
            .and_then(|()| match zeros {
                0 => Ok(()),
                zeros => self.file.write_all_at(&vec![0; zeros as usize], end),
            })
            .map_err(|source| StorageError::failed("write", path, source))?;
        fault::check(Point::WalFsync)
            .and_then(|()| self.file.sync_data())
            .map_err(|source| StorageError::failed("fsync", path, source))?;
        self.len = end;
        self.file_len = self.file_len.max(end + zeros);
        self.info.record_count += records;
        self.info.max_touched_index = self.info.max_touched_index.max(max_touched_index);
        Ok(zeros)
    }

    /// Cuts the zeros written ahead off the file (and syncs it), so that it
    /// ends at its last record: done before the segment is closed. Returns
    /// whether there were any (and so a sync).
    pub fn cut_zeros(&mut self) -> Result<bool, StorageError> {
        if self.file_len == self.len {
            return Ok(false);
        }
        let path = &self.info.path;
        self.file
            .set_len(self.len)
            .and_then(|()| self.file.sync_data())
            .map_err(|source| StorageError::failed("truncate", path, source))?;
        self.file_len = self.len;
        Ok(true)
    }

    /// Sequence number the next segment starts at.
    pub fn next_seq(&self) -> u64 {
        self.info.first_seq + self.info.record_count
    }
}

/// Name of the file prepared as the next segment.
pub const SPARE_FILE: &str = "wal-spare.tmp";

/// A spare holds the segment size in zeros, or this much if less: a segment
/// that outgrows its spare writes its own zeros ahead from there.
pub const SPARE_MAX_BYTES: u64 = 256 << 20;

/// A file being filled with zeros and synced, on a thread of its own, to
/// become the next segment.
#[derive(Debug)]
pub struct Spare {
    filling: JoinHandle<io::Result<File>>,
    /// Its length once filled.
    pub len: u64,
}

impl Spare {
    /// Creates `dir/wal-spare.tmp` (replacing any) and starts filling it with
    /// zeros for a segment of `segment_bytes` (at most [`SPARE_MAX_BYTES`]).
    pub fn prepare(dir: &Path, segment_bytes: u64) -> io::Result<Spare> {
        let len = segment_bytes.min(SPARE_MAX_BYTES);
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(dir.join(SPARE_FILE))?;
        let filling = std::thread::Builder::new().name("wal-spare".into()).spawn(move || {
            let zeros = vec![0; ZERO_AHEAD_BYTES as usize];
            let mut offset = 0;
            while offset < len {
                let chunk = (len - offset).min(zeros.len() as u64);
                file.write_all_at(&zeros[..chunk as usize], offset)?;
                offset += chunk;
            }
            file.sync_all()?;
            Ok(file)
        })?;
        Ok(Spare { filling, len })
    }

    /// Whether it is filled (or failed).
    pub fn is_ready(&self) -> bool {
        self.filling.is_finished()
    }

    /// The filled file; waits for it if not [`Spare::is_ready`].
    pub fn take(self) -> io::Result<File> {
        self.filling.join().unwrap_or_else(|_| Err(io::Error::other("the thread filling the spare segment panicked")))
    }
}

/// Cuts a torn tail off a segment and syncs it.
pub fn truncate(path: &Path, len: u64) -> Result<(), StorageError> {
    let file = OpenOptions::new().write(true).open(path).map_err(|source| StorageError::io(path, source))?;
    file.set_len(len).map_err(|source| StorageError::io(path, source))?;
    file.sync_all().map_err(|source| StorageError::io(path, source))
}

/// Highest log index a record touches: the last entry written, or the
/// truncation point of a write without entries.
pub fn touched_index(record: &Record) -> LogIndex {
    match record {
        Record::LogWrite(write) => touched_index_of_write(write),
        Record::HardState(_) | Record::SnapshotMarker { .. } => 0,
    }
}

/// Highest log index a log write touches.
pub fn touched_index_of_write(write: &LogWrite) -> LogIndex {
    write.first_index + (write.entries.len() as u64).saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_strangers_are_ignored() {
        assert_eq!(segment_name(1), "wal-00000000000000000001.log");
        assert_eq!(parse_segment_name(&segment_name(12345)), Some(12345));
        assert_eq!(parse_segment_name("wal-1.log"), None);
        assert_eq!(parse_segment_name("wal-0000000000000000000x.log"), None);
        assert_eq!(parse_segment_name("snapshot"), None);
    }
}

//! Snapshots and the `snapshot` file.
//!
//! # File format
//! All integers little-endian:
//! ```text
//! offset  0  magic     8 bytes  "CNCLSNAP"
//! offset  8  version   u32      3 (versions 1 and 2 are still read)
//! offset 12  body_len  u64
//! offset 20  crc32c    u32      checksum of the body
//! offset 24  body:     last_included_index u64, last_included_term u64,
//!                      (version 3) membership_len u32, membership bytes
//!                        (`membership_codec`);
//!                      (versions 1, 2) voter_count u32, voters u64 × voter_count,
//!                        read as a membership of those voters;
//!                      (versions 2, 3) has_leader_term u32 (0 or 1), and if 1:
//!                        leader_term u64, leader u64, ballot u64, index u64,
//!                      data_len u64, data bytes
//! ```
//! The file is written as `snapshot.tmp`, synced, renamed to `snapshot` and the
//! directory synced, so `snapshot` is always a whole file; a damaged one is
//! refused (it cannot be a torn write).

use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::path::Path;

use bytes::Bytes;
use conclave_core::{LeaderTermRecord, LogIndex, Membership, NodeId, SnapshotMeta, Term};

use crate::error::StorageError;
use crate::fs_util::{self, FieldReader};

/// Name of the snapshot file in the data directory.
pub const SNAPSHOT_FILE: &str = "snapshot";
const MAGIC: &[u8; 8] = b"CNCLSNAP";
const VERSION: u32 = 3;
/// The first format, without `last_leader_term`; still read.
const VERSION_WITHOUT_LEADER_TERM: u32 = 1;
const HEADER_BYTES: usize = 24;

/// The state machine's state up to a log index, replacing the log up to there.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Last log index the snapshot covers.
    pub last_included_index: LogIndex,
    /// Term of that entry.
    pub last_included_term: Term,
    /// The membership as of that entry.
    pub membership: Membership,
    /// The last `BecomeLeader` the snapshot covers (`gapless`, `conclave`), so
    /// that the core's leader terms survive compaction.
    pub last_leader_term: Option<LeaderTermRecord>,
    /// The serialized state machine (shared, not copied, by clones and by
    /// [`Snapshot::to_core`]).
    pub data: Bytes,
}

impl Snapshot {
    /// The storage form of a core snapshot (from `Node::compact` or
    /// `Output::snapshot`).
    pub fn from_core(snapshot: &conclave_core::Snapshot) -> Snapshot {
        let meta = &snapshot.meta;
        Snapshot {
            last_included_index: meta.last_included_index,
            last_included_term: meta.last_included_term,
            membership: meta.membership.clone(),
            last_leader_term: meta.last_leader_term,
            data: snapshot.data.clone(),
        }
    }

    /// What the snapshot covers, as the core describes it.
    pub fn meta(&self) -> SnapshotMeta {
        SnapshotMeta {
            last_included_index: self.last_included_index,
            last_included_term: self.last_included_term,
            membership: self.membership.clone(),
            last_leader_term: self.last_leader_term,
        }
    }

    /// The core form, for `RestoredState::snapshot`.
    pub fn to_core(&self) -> conclave_core::Snapshot {
        conclave_core::Snapshot::new(self.meta(), self.data.clone())
    }
}

/// The body up to the data (what the snapshot covers, and the data's length).
fn body_prefix(meta: &SnapshotMeta, data_len: usize) -> Vec<u8> {
    let membership = crate::membership_codec::to_bytes(&meta.membership);
    let mut body = Vec::with_capacity(64 + membership.len());
    body.extend_from_slice(&meta.last_included_index.to_le_bytes());
    body.extend_from_slice(&meta.last_included_term.to_le_bytes());
    body.extend_from_slice(&(membership.len() as u32).to_le_bytes());
    body.extend_from_slice(&membership);
    match &meta.last_leader_term {
        None => body.extend_from_slice(&0u32.to_le_bytes()),
        Some(record) => {
            body.extend_from_slice(&1u32.to_le_bytes());
            for field in [record.leader_term, record.leader, record.ballot, record.index] {
                body.extend_from_slice(&field.to_le_bytes());
            }
        }
    }
    body.extend_from_slice(&(data_len as u64).to_le_bytes());
    body
}

/// The file in two parts, the header with the body's prefix and then the
/// data itself, so that a large snapshot is written without a copy of it.
fn file_parts(meta: &SnapshotMeta, data: &[u8]) -> Vec<u8> {
    let prefix = body_prefix(meta, data.len());
    let checksum = crc32c::crc32c_append(crc32c::crc32c(&prefix), data);
    let mut head = Vec::with_capacity(HEADER_BYTES + prefix.len());
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&VERSION.to_le_bytes());
    head.extend_from_slice(&((prefix.len() + data.len()) as u64).to_le_bytes());
    head.extend_from_slice(&checksum.to_le_bytes());
    head.extend_from_slice(&prefix);
    head
}

/// Encodes `snapshot` in the file format above.
pub fn encode(snapshot: &Snapshot) -> Vec<u8> {
    let mut file = file_parts(&snapshot.meta(), &snapshot.data);
    file.extend_from_slice(&snapshot.data);
    file
}

/// Decodes a snapshot file; on failure, the offset and what is wrong there.
pub fn decode(bytes: &[u8]) -> Result<Snapshot, (u64, String)> {
    let (mut snapshot, data) = decode_layout(bytes, true)?;
    snapshot.data = Bytes::copy_from_slice(&bytes[data]);
    Ok(snapshot)
}

/// [`decode`] of a file held as shared bytes (a mapped file): the snapshot's
/// data is a slice of them, not a copy. With `verify_checksum` false the
/// body is not read at all (the caller checked it, or wrote it).
fn decode_shared(file: &Bytes, verify_checksum: bool) -> Result<Snapshot, (u64, String)> {
    let (mut snapshot, data) = decode_layout(file, verify_checksum)?;
    snapshot.data = file.slice(data);
    Ok(snapshot)
}

/// Checks the header (and the body's checksum if asked) and reads what the
/// snapshot covers; the data comes back as its range in `bytes`, and the
/// returned snapshot's own data is empty.
fn decode_layout(bytes: &[u8], verify_checksum: bool) -> Result<(Snapshot, Range<usize>), (u64, String)> {
    let mut reader = FieldReader::new(bytes);
    if reader.take(MAGIC.len(), "magic")? != MAGIC {
        return Err((0, "bad magic: not a Conclave snapshot file".into()));
    }
    let version = reader.u32("version")?;
    if !(VERSION_WITHOUT_LEADER_TERM..=VERSION).contains(&version) {
        return Err((
            8,
            format!(
                "unsupported snapshot version {version} (this build reads {VERSION_WITHOUT_LEADER_TERM} to {VERSION})"
            ),
        ));
    }
    let body_len = reader.u64("body length")?;
    let stored_checksum = reader.u32("checksum")?;
    if body_len != reader.remaining() as u64 {
        return Err((
            12,
            format!("header says the body has {body_len} bytes, the file has {} after the header", reader.remaining()),
        ));
    }
    let body = reader.take(reader.remaining(), "body")?;
    if verify_checksum {
        check_sum(stored_checksum, crc32c::crc32c(body))?;
    }
    let (snapshot, data) =
        decode_body(body, version).map_err(|(offset, reason)| (offset + HEADER_BYTES as u64, reason))?;
    Ok((snapshot, data.start + HEADER_BYTES..data.end + HEADER_BYTES))
}

fn check_sum(stored: u32, computed: u32) -> Result<(), (u64, String)> {
    if computed != stored {
        return Err((
            HEADER_BYTES as u64,
            format!("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"),
        ));
    }
    Ok(())
}

fn decode_body(body: &[u8], version: u32) -> Result<(Snapshot, Range<usize>), (u64, String)> {
    let mut reader = FieldReader::new(body);
    let last_included_index = reader.u64("last_included_index")?;
    let last_included_term = reader.u64("last_included_term")?;
    let membership = if version == VERSION {
        let offset = reader.position();
        let len = reader.u32("membership length")? as usize;
        crate::membership_codec::decode(reader.take(len, "membership")?)
            .map_err(|problem| (offset, format!("membership: {problem}")))?
    } else {
        let voter_count = reader.u32("voter count")? as usize;
        let mut voters: Vec<NodeId> = Vec::with_capacity(voter_count.min(reader.remaining() / 8));
        for _ in 0..voter_count {
            voters.push(reader.u64("voter")?);
        }
        Membership::bootstrap(&voters, &Default::default())
    };
    let last_leader_term = if version == VERSION_WITHOUT_LEADER_TERM {
        None
    } else {
        let flag_offset = reader.position();
        match reader.u32("leader-term flag")? {
            0 => None,
            1 => Some(LeaderTermRecord {
                leader_term: reader.u64("leader term")?,
                leader: reader.u64("leader")?,
                ballot: reader.u64("leader-term ballot")?,
                index: reader.u64("leader-term index")?,
            }),
            other => return Err((flag_offset, format!("leader-term flag is {other}, not 0 or 1"))),
        }
    };
    let data_len = reader.u64("data length")?;
    if data_len != reader.remaining() as u64 {
        return Err((reader.position(), format!("data length {data_len} but {} bytes remain", reader.remaining())));
    }
    let start = reader.position() as usize;
    let snapshot =
        Snapshot { last_included_index, last_included_term, membership, last_leader_term, data: Bytes::new() };
    Ok((snapshot, start..start + data_len as usize))
}

/// The body's checksum, read through a small buffer: a large file is checked
/// without being held in memory, or mapped pages being made resident.
fn file_checksum(path: &Path) -> Result<Option<(u32, u32)>, StorageError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StorageError::io(path, source)),
    };
    let mut header = [0u8; HEADER_BYTES];
    match file.read_exact(&mut header) {
        Ok(()) => {}
        // Too short for a header: the decode names what is missing.
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(Some((0, 0))),
        Err(source) => return Err(StorageError::io(path, source)),
    }
    let stored = u32::from_le_bytes(header[20..24].try_into().expect("4 bytes"));
    let mut buffer = vec![0u8; 1 << 20];
    let mut computed = 0u32;
    loop {
        let read = file.read(&mut buffer).map_err(|source| StorageError::io(path, source))?;
        if read == 0 {
            break;
        }
        computed = crc32c::crc32c_append(computed, &buffer[..read]);
    }
    Ok(Some((stored, computed)))
}

/// The snapshot file at `path`, mapped into memory: its pages are the page
/// cache's, read on demand and dropped under memory pressure, so a snapshot as
/// large as the state machine costs no memory of its own.
#[allow(unsafe_code)]
fn map_file(path: &Path) -> Result<Bytes, StorageError> {
    let file = File::open(path).map_err(|source| StorageError::io(path, source))?;
    if file.metadata().map_err(|source| StorageError::io(path, source))?.len() == 0 {
        return Ok(Bytes::new()); // An empty file cannot be mapped; the decode refuses it.
    }
    // SAFETY: a mapping is sound while nobody changes the file under it. The
    // snapshot file is never written in place: a new one is written under a
    // temporary name, synced and renamed over it (`fs_util::write_atomically`),
    // which leaves the mapped inode as it was, and the data directory's lock
    // (`dir_lock`) keeps a second node process out of it. Anything else
    // writing to a node's data files is outside what a node can defend
    // against, as with every other file it reads.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| StorageError::io(path, source))?;
    // Once a newer snapshot is renamed over it, this mapping is the file's
    // last reference: releasing it frees the file's blocks.
    Ok(crate::unlinked_map::bytes_unmapped_off_thread(map))
}

/// Name of the scratch file a snapshot made to send is written to; unlinked
/// as soon as it is mapped, so only a crash in between leaves one behind
/// ([`remove_outgoing`] clears it at start).
pub const OUTGOING_FILE: &str = "snapshot.outgoing";

/// Writes a snapshot's bytes made to send a follower (`write` produces them)
/// to a scratch file in `dir`, maps it and unlinks it: the bytes then live in
/// the page cache, not in the process's memory, and the disk space goes with
/// the last clone of the returned bytes. Not synced: nothing reads it after a
/// crash.
#[allow(unsafe_code)]
pub fn write_outgoing<E: From<StorageError>>(
    dir: &Path,
    write: impl FnOnce(&mut dyn std::io::Write) -> Result<(), E>,
) -> Result<Bytes, E> {
    let path = dir.join(OUTGOING_FILE);
    // Read too: the mapping below reads through this descriptor.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|source| StorageError::io(&path, source))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    write(&mut out)?;
    let file = out.into_inner().map_err(|error| StorageError::io(&path, error.into_error()))?;
    let len = file.metadata().map_err(|source| StorageError::io(&path, source))?.len();
    let bytes = if len == 0 {
        Bytes::new()
    } else {
        // SAFETY: a mapping is sound while nobody changes the file under it.
        // This file was written above through `file` and is unlinked below
        // before the bytes are handed out: no name leads to it any more, the
        // only descriptor is dropped at the end of this function, and the data
        // directory's lock (`dir_lock`) keeps other node processes out.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| StorageError::io(&path, source))?;
        crate::unlinked_map::bytes_unmapped_off_thread(map)
    };
    std::fs::remove_file(&path).map_err(|source| StorageError::io(&path, source))?;
    Ok(bytes)
}

/// Removes a scratch file a crash left behind ([`write_outgoing`]).
pub fn remove_outgoing(dir: &Path) -> Result<(), StorageError> {
    let path = dir.join(OUTGOING_FILE);
    match std::fs::remove_file(&path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(StorageError::io(&path, error)),
        _ => Ok(()),
    }
}

/// Durably replaces the snapshot file in `dir` (temporary file, sync, rename,
/// directory sync).
pub fn save(dir: &Path, snapshot: &Snapshot) -> Result<(), StorageError> {
    let head = file_parts(&snapshot.meta(), &snapshot.data);
    fs_util::write_parts_atomically(dir, SNAPSHOT_FILE, &[&head, &snapshot.data])
}

/// [`save`] of a core snapshot, its data written from where it is: no copy of
/// a snapshot that may be as large as the state machine.
pub fn save_core(dir: &Path, snapshot: &conclave_core::Snapshot) -> Result<(), StorageError> {
    let head = file_parts(&snapshot.meta, &snapshot.data);
    fs_util::write_parts_atomically(dir, SNAPSHOT_FILE, &[&head, &snapshot.data])
}

/// Loads the snapshot file in `dir`, if there is one; a damaged file is
/// [`StorageError::Corrupt`].
///
/// The body's checksum is verified reading the file through a small buffer,
/// and the data is then mapped, not read: it is as large as the state machine.
pub fn load(dir: &Path) -> Result<Option<Snapshot>, StorageError> {
    let path = dir.join(SNAPSHOT_FILE);
    let Some((stored, computed)) = file_checksum(&path)? else { return Ok(None) };
    let file = map_file(&path)?;
    let corrupt = |(offset, reason): (u64, String)| StorageError::corrupt(&path, offset, reason);
    // The header's own checks come first: they say more than a checksum would.
    decode_layout(&file, false).map_err(corrupt)?;
    check_sum(stored, computed).map_err(corrupt)?;
    decode_shared(&file, false).map(Some).map_err(corrupt)
}

/// The snapshot file this process has just saved in `dir`, mapped: the same
/// snapshot as the one saved, its data now held by the page cache rather than
/// by the process. The checksum is not read again.
pub fn map_saved(dir: &Path) -> Result<Snapshot, StorageError> {
    let path = dir.join(SNAPSHOT_FILE);
    let file = map_file(&path)?;
    decode_shared(&file, false).map_err(|(offset, reason)| StorageError::corrupt(&path, offset, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_snapshot_loads_and_maps_as_saved_and_a_flipped_data_byte_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let meta = SnapshotMeta {
            last_included_index: 5,
            last_included_term: 2,
            membership: Membership::bootstrap(&[1, 2, 3], &Default::default()),
            last_leader_term: None,
        };
        let data: Vec<u8> = (0..=255u8).cycle().take(3 << 20).collect();
        save_core(dir.path(), &conclave_core::Snapshot::new(meta.clone(), data.clone())).unwrap();
        let loaded = load(dir.path()).unwrap().unwrap();
        assert_eq!((loaded.meta(), &loaded.data[..]), (meta.clone(), &data[..]));
        let mapped = map_saved(dir.path()).unwrap();
        assert_eq!(mapped, loaded);
        // The checksum is read through a buffer, not the mapping: a flipped
        // byte deep in the data is still found.
        let path = dir.path().join(SNAPSHOT_FILE);
        let mut file = std::fs::read(&path).unwrap();
        let last = file.len() - 1;
        file[last] ^= 0x40;
        std::fs::write(&path, &file).unwrap();
        match load(dir.path()) {
            Err(StorageError::Corrupt { reason, .. }) => assert!(reason.contains("checksum mismatch"), "{reason}"),
            other => panic!("a flipped byte was not refused: {other:?}"),
        }
    }

    #[test]
    fn a_core_snapshot_is_saved_as_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let record = LeaderTermRecord { leader_term: 4, leader: 2, ballot: 3, index: 7 };
        let meta = SnapshotMeta {
            last_included_index: 9,
            last_included_term: 3,
            membership: Membership::bootstrap(&[1, 2, 3], &Default::default()),
            last_leader_term: Some(record),
        };
        let core = conclave_core::Snapshot::new(meta, (0..=255u8).cycle().take(70_000).collect::<Vec<u8>>());
        save_core(dir.path(), &core).unwrap();
        let written = std::fs::read(dir.path().join(SNAPSHOT_FILE)).unwrap();
        assert_eq!(written, encode(&Snapshot::from_core(&core)));
        assert_eq!(load(dir.path()).unwrap().unwrap().to_core(), core);
    }

    #[test]
    fn snapshot_round_trips_and_every_truncation_is_refused() {
        let record = LeaderTermRecord { leader_term: 4, leader: 2, ballot: 3, index: 7 };
        let snapshot = Snapshot {
            last_included_index: 9,
            last_included_term: 3,
            membership: Membership::bootstrap(&[1, 2, 3], &Default::default()),
            last_leader_term: Some(record),
            data: Bytes::from_static(b"kv"),
        };
        let bytes = encode(&snapshot);
        assert_eq!(decode(&bytes), Ok(snapshot.clone()));
        assert_eq!(
            decode(&encode(&Snapshot { last_leader_term: None, ..snapshot.clone() })).map(|s| s.meta()),
            Ok(SnapshotMeta { last_leader_term: None, ..snapshot.meta() })
        );
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for position in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[position] ^= 1;
            assert!(decode(&damaged).is_err(), "flip at {position}");
        }
    }

    #[test]
    fn a_version_1_file_is_read_without_a_leader_term() {
        // Version 1 had no leader-term field: build one by hand.
        let mut body = Vec::new();
        for field in [5u64, 2] {
            body.extend_from_slice(&field.to_le_bytes());
        }
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(&1u64.to_le_bytes());
        body.extend_from_slice(&2u64.to_le_bytes());
        body.extend_from_slice(b"ab");
        let mut file = Vec::new();
        file.extend_from_slice(MAGIC);
        file.extend_from_slice(&VERSION_WITHOUT_LEADER_TERM.to_le_bytes());
        file.extend_from_slice(&(body.len() as u64).to_le_bytes());
        file.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        file.extend_from_slice(&body);
        let expected = Snapshot {
            last_included_index: 5,
            last_included_term: 2,
            membership: Membership::bootstrap(&[1], &Default::default()),
            last_leader_term: None,
            data: Bytes::from_static(b"ab"),
        };
        assert_eq!(decode(&file), Ok(expected));
    }
}

//! The KV store's snapshot form: the bytes a [`conclave_core::Snapshot`]
//! carries for this state machine, saved in the storage crate's snapshot file
//! and sent to lagging followers in `InstallSnapshot` chunks.
//!
//! # Format (version 2)
//! All integers little-endian:
//! ```text
//! offset  0  magic          4 bytes  "CNKV"
//! offset  4  version        u32      2
//! offset  8  applied_index  u64      the log index the state is at
//! offset 16  key_count      u64
//! offset 24  pairs, keys in ascending byte order, each:
//!            key_len u32, key bytes, value_len u32, value bytes
//!            origin_count   u64      the deduplication table (super::dedup):
//!            origins, node ids ascending, each:
//!            node u64, incarnation u64, floor u64, result_count u64,
//!            results, request ids ascending, each:
//!            request_id u64, reply_len u32, reply bytes (bincode of the KvReply)
//! end - 4    crc32c         u32      checksum of every byte before it
//! ```
//! Version 1 is the same without the deduplication table (from `origin_count`
//! on): it still loads, with an empty table.
//! The bytes are deterministic: equal stores at equal indexes encode the same,
//! whatever order their keys were written in. The checksum is the state
//! machine's own: the storage file has one of its own, but a snapshot also
//! travels over the network, in chunks reassembled by the core, which never
//! reads the bytes.

use std::collections::HashMap;

use conclave_core::LogIndex;
use thiserror::Error;

use super::dedup::{decode_reply, encode_reply, DedupMap, OriginRecord, Session};
use super::store::KvStore;

const MAGIC: &[u8; 4] = b"CNKV";
/// The format this build writes (it reads this one and version 1).
pub const VERSION: u32 = 2;
/// The oldest format this build reads: without the deduplication table.
pub const OLDEST_VERSION: u32 = 1;
const HEADER_BYTES: usize = 24;
const CHECKSUM_BYTES: usize = 4;

/// Why snapshot bytes cannot be a KV store.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum SnapshotDecodeError {
    /// Fewer bytes than a header and a checksum.
    #[error("KV snapshot is {len} bytes, less than the {min} of an empty one")]
    TooShort {
        /// The length found.
        len: usize,
        /// The smallest valid length.
        min: usize,
    },
    /// Not this format at all.
    #[error("KV snapshot has a bad magic number (not a Conclave KV snapshot)")]
    BadMagic,
    /// A version this build does not read.
    #[error("KV snapshot version {found} is not supported (this build reads versions {OLDEST_VERSION} to {VERSION})")]
    UnsupportedVersion {
        /// The version found.
        found: u32,
    },
    /// The bytes were damaged (or cut short).
    #[error("KV snapshot checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// The checksum in the trailer.
        stored: u32,
        /// The checksum of the bytes.
        computed: u32,
    },
    /// The checksum matched but the content breaks the format (a writer's bug).
    #[error("KV snapshot is malformed at byte {offset}: {reason}")]
    Malformed {
        /// Where.
        offset: usize,
        /// What is wrong there.
        reason: String,
    },
}

/// Writes the snapshot bytes of a state at one applied index, pair by pair, in
/// strictly ascending key order (any store's view: a map's sorted entries, or
/// an engine's read transaction).
pub(crate) struct SnapshotWriter<W: std::io::Write> {
    out: W,
    /// Checksum of every byte written so far.
    crc: u32,
    key_count: u64,
    written: u64,
}

impl SnapshotWriter<Vec<u8>> {
    /// A snapshot in memory; `size_hint`: the pairs' bytes.
    pub(crate) fn in_memory(applied_index: LogIndex, key_count: u64, size_hint: usize) -> SnapshotWriter<Vec<u8>> {
        let bytes = Vec::with_capacity(HEADER_BYTES + size_hint + CHECKSUM_BYTES);
        SnapshotWriter::new(bytes, applied_index, key_count).expect("writing to memory cannot fail")
    }
}

impl<W: std::io::Write> SnapshotWriter<W> {
    /// A snapshot at `applied_index` of `key_count` pairs, written to `out` as
    /// it goes: the whole snapshot is never held in memory unless `out` is.
    pub(crate) fn new(out: W, applied_index: LogIndex, key_count: u64) -> std::io::Result<SnapshotWriter<W>> {
        let mut writer = SnapshotWriter { out, crc: 0, key_count, written: 0 };
        writer.put(MAGIC)?;
        writer.put(&VERSION.to_le_bytes())?;
        writer.put(&applied_index.to_le_bytes())?;
        writer.put(&key_count.to_le_bytes())?;
        Ok(writer)
    }

    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.out.write_all(bytes)
    }

    /// The next pair.
    pub(crate) fn pair(&mut self, key: &[u8], value: &[u8]) -> std::io::Result<()> {
        // Keys and values are bounded by the command size limit, far below 4 GiB.
        self.put(&(key.len() as u32).to_le_bytes())?;
        self.put(key)?;
        self.put(&(value.len() as u32).to_le_bytes())?;
        self.put(value)?;
        self.written += 1;
        Ok(())
    }

    /// The deduplication table (`origins` ascending by node, each's results
    /// ascending by id) and the checksum that seals the bytes; returns the
    /// output.
    pub(crate) fn finish(mut self, origins: &[OriginRecord]) -> std::io::Result<W> {
        assert_eq!(self.written, self.key_count, "a snapshot's key count matches its pairs");
        self.put(&(origins.len() as u64).to_le_bytes())?;
        for record in origins {
            let Session { incarnation, floor, results } = record.session;
            debug_assert_eq!(results, record.results.len() as u64, "a session counts its results");
            for field in [record.node, incarnation, floor, record.results.len() as u64] {
                self.put(&field.to_le_bytes())?;
            }
            for (id, reply) in &record.results {
                let reply = encode_reply(reply);
                self.put(&id.to_le_bytes())?;
                self.put(&(reply.len() as u32).to_le_bytes())?;
                self.put(&reply)?;
            }
        }
        let checksum = self.crc;
        self.out.write_all(&checksum.to_le_bytes())?;
        Ok(self.out)
    }
}

/// Checks snapshot bytes whole (format, version, checksum) and then hands
/// each pair to `visit`, in ascending key order, and each origin of the
/// deduplication table to `visit_origin`. Returns the applied index.
/// Damaged, truncated or foreign bytes are an error that says what is wrong,
/// found before `visit` sees anything but a structural error of a writer's
/// bug behind a valid checksum (found as the pairs are read).
pub(crate) fn visit_snapshot<'b, E: From<SnapshotDecodeError>>(
    bytes: &'b [u8],
    mut visit: impl FnMut(&'b [u8], &'b [u8]) -> Result<(), E>,
    mut visit_origin: impl FnMut(OriginRecord) -> Result<(), E>,
) -> Result<(LogIndex, u64), E> {
    let min = HEADER_BYTES + CHECKSUM_BYTES;
    if bytes.len() < min {
        return Err(SnapshotDecodeError::TooShort { len: bytes.len(), min }.into());
    }
    if &bytes[..4] != MAGIC {
        return Err(SnapshotDecodeError::BadMagic.into());
    }
    let version = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if !(OLDEST_VERSION..=VERSION).contains(&version) {
        return Err(SnapshotDecodeError::UnsupportedVersion { found: version }.into());
    }
    let (body, trailer) = bytes.split_at(bytes.len() - CHECKSUM_BYTES);
    let stored = u32::from_le_bytes(trailer.try_into().expect("4 bytes"));
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(SnapshotDecodeError::Checksum { stored, computed }.into());
    }
    let mut reader = Reader { bytes: body, position: 8 };
    let applied_index = reader.u64("applied index")?;
    let key_count = reader.u64("key count")?;
    // Each pair takes at least 8 bytes: a count beyond that cannot be honest.
    if key_count > (reader.remaining() / 8) as u64 {
        return Err(reader
            .malformed(format!("{key_count} keys cannot fit in the {} bytes that follow", reader.remaining()))
            .into());
    }
    let mut previous: Option<&[u8]> = None;
    for _ in 0..key_count {
        let key_offset = reader.position;
        let key = reader.field("key")?;
        let value = reader.field("value")?;
        if previous.is_some_and(|previous| previous >= key) {
            return Err(SnapshotDecodeError::Malformed {
                offset: key_offset,
                reason: "keys are not in strictly ascending order".into(),
            }
            .into());
        }
        previous = Some(key);
        visit(key, value)?;
    }
    if version >= 2 {
        read_origins(&mut reader, &mut visit_origin)?;
    }
    if reader.remaining() != 0 {
        return Err(reader.malformed(format!("{} bytes follow the last key", reader.remaining())).into());
    }
    Ok((applied_index, key_count))
}

/// Reads the deduplication table of a version 2 snapshot.
fn read_origins<E: From<SnapshotDecodeError>>(
    reader: &mut Reader<'_>,
    visit_origin: &mut impl FnMut(OriginRecord) -> Result<(), E>,
) -> Result<(), E> {
    let origin_count = reader.u64("origin count")?;
    if origin_count > (reader.remaining() / 32) as u64 {
        return Err(reader
            .malformed(format!("{origin_count} origins cannot fit in the {} bytes that follow", reader.remaining()))
            .into());
    }
    let mut previous_node = None;
    for _ in 0..origin_count {
        let offset = reader.position;
        let node = reader.u64("origin node")?;
        if previous_node.is_some_and(|previous| previous >= node) {
            return Err(SnapshotDecodeError::Malformed {
                offset,
                reason: "origins are not in strictly ascending order".into(),
            }
            .into());
        }
        previous_node = Some(node);
        let incarnation = reader.u64("origin incarnation")?;
        let floor = reader.u64("origin floor")?;
        let count = reader.u64("result count")?;
        if count > (reader.remaining() / 12) as u64 {
            return Err(reader
                .malformed(format!("{count} results cannot fit in the {} bytes that follow", reader.remaining()))
                .into());
        }
        let mut results = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let offset = reader.position;
            let id = reader.u64("request id")?;
            if id < floor || results.last().is_some_and(|&(previous, _)| previous >= id) {
                return Err(SnapshotDecodeError::Malformed {
                    offset,
                    reason: format!("request id {id} is below its origin's floor {floor} or out of order"),
                }
                .into());
            }
            let bytes = reader.field("reply")?;
            let reply = decode_reply(bytes)
                .ok_or_else(|| reader.malformed(format!("the reply of request id {id} does not decode")))?;
            results.push((id, reply));
        }
        visit_origin(OriginRecord { node, session: Session { incarnation, floor, results: count }, results })?;
    }
    Ok(())
}

impl KvStore {
    /// The snapshot bytes of this store, which holds the state at `applied_index`.
    pub fn encode_snapshot(&self, applied_index: LogIndex) -> Vec<u8> {
        let mut pairs: Vec<(&Vec<u8>, &Vec<u8>)> = self.data.iter().collect();
        pairs.sort_unstable_by(|left, right| left.0.cmp(right.0));
        let content: usize = pairs.iter().map(|(key, value)| 8 + key.len() + value.len()).sum();
        let mut writer = SnapshotWriter::in_memory(applied_index, pairs.len() as u64, content);
        let memory = "writing to memory cannot fail";
        for (key, value) in pairs {
            writer.pair(key, value).expect(memory);
        }
        writer.finish(&self.dedup.records()).expect(memory)
    }

    /// The store and its applied index from snapshot bytes; damaged, truncated or
    /// foreign bytes are an error that says what is wrong.
    pub fn decode_snapshot(bytes: &[u8]) -> Result<(KvStore, LogIndex), SnapshotDecodeError> {
        let mut data = HashMap::new();
        let mut dedup = DedupMap::default();
        let (applied_index, _) = visit_snapshot(
            bytes,
            |key, value| {
                data.insert(key.to_vec(), value.to_vec());
                Ok::<_, SnapshotDecodeError>(())
            },
            |record| {
                dedup.insert(record);
                Ok(())
            },
        )?;
        Ok((KvStore { data, applied_index, dedup }, applied_index))
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    fn malformed(&self, reason: String) -> SnapshotDecodeError {
        SnapshotDecodeError::Malformed { offset: self.position, reason }
    }

    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], SnapshotDecodeError> {
        if self.remaining() < len {
            return Err(self.malformed(format!("{what} needs {len} bytes, {} remain", self.remaining())));
        }
        let taken = &self.bytes[self.position..self.position + len];
        self.position += len;
        Ok(taken)
    }

    fn u64(&mut self, what: &str) -> Result<u64, SnapshotDecodeError> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }

    fn field(&mut self, what: &str) -> Result<&'a [u8], SnapshotDecodeError> {
        let len = u32::from_le_bytes(self.take(4, what)?.try_into().expect("4 bytes")) as usize;
        self.take(len, what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{KvCommand, KvReply, SetCondition};

    fn store(pairs: &[(&str, &str)]) -> KvStore {
        let mut store = KvStore::default();
        for (key, value) in pairs {
            let command = KvCommand::Set {
                key: key.as_bytes().to_vec(),
                value: value.as_bytes().to_vec(),
                condition: SetCondition::Always,
            };
            assert_eq!(store.apply(&command), KvReply::Ok);
        }
        store
    }

    #[test]
    fn a_store_round_trips_with_its_index() {
        let original = store(&[("b", "2"), ("a", "1"), ("", "empty key"), ("bin\0ary", "")]);
        let bytes = original.encode_snapshot(42);
        let (decoded, index) = KvStore::decode_snapshot(&bytes).unwrap();
        assert_eq!(index, 42);
        assert_eq!(decoded.data, original.data);
        let (empty, index) = KvStore::decode_snapshot(&KvStore::default().encode_snapshot(7)).unwrap();
        assert_eq!((empty.len(), index), (0, 7));
    }

    #[test]
    fn the_bytes_do_not_depend_on_the_order_keys_were_written_in() {
        let pairs = [("k1", "v1"), ("k2", "v2"), ("k3", "v3"), ("a", "x"), ("zz", "y")];
        let mut reversed = pairs;
        reversed.reverse();
        assert_eq!(store(&pairs).encode_snapshot(9), store(&reversed).encode_snapshot(9));
        assert_ne!(store(&pairs).encode_snapshot(9), store(&pairs).encode_snapshot(10));
    }

    // Version 1 (before the deduplication table) still loads, with an empty table.
    #[test]
    fn a_version_1_snapshot_loads_with_an_empty_deduplication_table() {
        let original = store(&[("a", "1"), ("b", "22")]);
        let mut bytes = original.encode_snapshot(12);
        bytes.truncate(bytes.len() - CHECKSUM_BYTES - 8); // The checksum and the empty table's count.
        bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
        let checksum = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&checksum.to_le_bytes());
        let (decoded, index) = KvStore::decode_snapshot(&bytes).unwrap();
        assert_eq!((index, &decoded.data, decoded.saved_results()), (12, &original.data, 0));
    }

    #[test]
    fn a_deduplication_table_round_trips_and_its_damage_is_refused() {
        let mut original = store(&[("k", "v")]);
        for id in 1..=3 {
            let command = KvCommand::IncrBy { key: b"n".to_vec(), delta: 1 };
            original.apply_envelope(&crate::kv::Envelope {
                origin: 2,
                incarnation: 9,
                request_id: id,
                command,
                settled_below: 1,
            });
        }
        let bytes = original.encode_snapshot(4);
        let (decoded, _) = KvStore::decode_snapshot(&bytes).unwrap();
        assert_eq!(decoded.dedup, original.dedup);
        assert_eq!(decoded.saved_results(), 3);
        for cut in 0..bytes.len() {
            assert!(KvStore::decode_snapshot(&bytes[..cut]).is_err(), "cut at {cut} was accepted");
        }
        // A result id below its origin's floor, behind a valid checksum: a writer's bug, refused.
        let reseal = |mut body: Vec<u8>| {
            body.truncate(body.len() - CHECKSUM_BYTES);
            let checksum = crc32c::crc32c(&body);
            body.extend_from_slice(&checksum.to_le_bytes());
            body
        };
        let floor_at = HEADER_BYTES + 2 * (4 + 1 + 4 + 1) + 8 + 8 + 8; // Two pairs, the count, node, incarnation.
        let mut raised = bytes.clone();
        raised[floor_at..floor_at + 8].copy_from_slice(&2u64.to_le_bytes());
        let error = KvStore::decode_snapshot(&reseal(raised)).unwrap_err();
        assert!(matches!(&error, SnapshotDecodeError::Malformed { reason, .. } if reason.contains("floor")), "{error}");
    }

    #[test]
    fn every_truncation_and_every_flipped_bit_is_refused() {
        let bytes = store(&[("alpha", "1"), ("beta", "22"), ("gamma", "333")]).encode_snapshot(5);
        for cut in 0..bytes.len() {
            assert!(KvStore::decode_snapshot(&bytes[..cut]).is_err(), "cut at {cut} was accepted");
        }
        for position in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[position] ^= 1 << bit;
                assert!(KvStore::decode_snapshot(&damaged).is_err(), "flip of bit {bit} at {position} was accepted");
            }
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(KvStore::decode_snapshot(&longer).is_err(), "a trailing byte was accepted");
    }

    #[test]
    fn each_kind_of_bad_bytes_says_what_is_wrong() {
        let bytes = store(&[("a", "1"), ("b", "2")]).encode_snapshot(3);
        assert_eq!(KvStore::decode_snapshot(b"CNKV"), Err(SnapshotDecodeError::TooShort { len: 4, min: 28 }));
        let mut foreign = bytes.clone();
        foreign[..4].copy_from_slice(b"JSON");
        assert_eq!(KvStore::decode_snapshot(&foreign), Err(SnapshotDecodeError::BadMagic));
        let mut future = bytes.clone();
        future[4..8].copy_from_slice(&3u32.to_le_bytes());
        let error = KvStore::decode_snapshot(&future).unwrap_err();
        assert_eq!(error, SnapshotDecodeError::UnsupportedVersion { found: 3 });
        assert!(error.to_string().contains("reads versions 1 to 2"), "{error}");
        let mut damaged = bytes.clone();
        damaged[30] ^= 0x40;
        assert!(matches!(KvStore::decode_snapshot(&damaged), Err(SnapshotDecodeError::Checksum { .. })));
        // A writer's bug behind a valid checksum: keys out of order, a count too large.
        let reseal = |mut body: Vec<u8>| {
            body.truncate(body.len() - CHECKSUM_BYTES);
            let checksum = crc32c::crc32c(&body);
            body.extend_from_slice(&checksum.to_le_bytes());
            body
        };
        let mut unsorted = bytes.clone();
        let (first, second) = (HEADER_BYTES + 4, HEADER_BYTES + 4 + 1 + 4 + 1 + 4);
        unsorted.swap(first, second);
        let error = KvStore::decode_snapshot(&reseal(unsorted)).unwrap_err();
        assert!(
            matches!(&error, SnapshotDecodeError::Malformed { reason, .. } if reason.contains("ascending")),
            "{error}"
        );
        let mut counted = bytes;
        counted[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        let error = KvStore::decode_snapshot(&reseal(counted)).unwrap_err();
        assert!(
            matches!(&error, SnapshotDecodeError::Malformed { reason, .. } if reason.contains("cannot fit")),
            "{error}"
        );
    }
}

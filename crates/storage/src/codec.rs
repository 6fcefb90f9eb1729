//! The WAL record codec: framing, checksums and the binary body format.
//!
//! # Frame
//! ```text
//! [u32 body_len][u32 crc32c(body)][body: body_len bytes]
//! ```
//! All integers are little-endian. `body_len` is at least 1 (the kind byte), so
//! a zero-filled region never reads as a record.
//!
//! # Body
//! The first byte is the record kind:
//!
//! | kind | record | fields after the kind byte |
//! |---|---|---|
//! | 1 | hard state | `term: u64`, `voted_for: u64` (0 = none), `commit: u64` |
//! | 2 | log write | `first_index: u64`, `count: u32`, then `count` entries |
//! | 3 | snapshot marker | `last_included_index: u64`, `last_included_term: u64`, `log_discarded: u8` (0 or 1) |
//!
//! An entry of a log write is
//! `term: u64, index: u64, payload_kind: u8 (0 noop, 1 command, 2 become-leader,
//! 3 membership), len: u32, bytes[len]`; a noop has `len` 0, a membership's
//! bytes are `membership_codec`'s, and the entries' indexes run contiguously
//! from `first_index`.
//! A body must be consumed exactly: trailing bytes are corruption.

use conclave_core::{Entry, HardState, LogIndex, LogWrite, Payload, Term};

/// Bytes before a record's body: the length and the checksum.
pub const FRAME_HEADER_BYTES: usize = 8;

const KIND_HARD_STATE: u8 = 1;
const KIND_LOG_WRITE: u8 = 2;
const KIND_SNAPSHOT_MARKER: u8 = 3;
const PAYLOAD_NOOP: u8 = 0;
const PAYLOAD_COMMAND: u8 = 1;
const PAYLOAD_BECOME_LEADER: u8 = 2;
const PAYLOAD_MEMBERSHIP: u8 = 3;
/// A `BecomeLeader` payload: leader term and leader id.
const BECOME_LEADER_BYTES: usize = 16;
/// Smallest encoded entry: term, index, payload kind, length.
const ENTRY_MIN_BYTES: usize = 8 + 8 + 1 + 4;

/// One WAL record, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// The node's hard state from now on.
    HardState(HardState),
    /// Remove every entry at `first_index` or above, then append `entries`.
    LogWrite(LogWrite),
    /// A snapshot covering the log up to `last_included_index` was saved.
    SnapshotMarker {
        /// Last index the snapshot covers.
        last_included_index: LogIndex,
        /// Term of that entry.
        last_included_term: Term,
        /// True if the log was discarded whole (it did not contain the
        /// snapshot's last entry); false if only the covered prefix was.
        log_discarded: bool,
    },
}

/// Why bytes at some offset are not a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The frame is incomplete or its checksum does not match: what a crash in
    /// the middle of a write leaves behind (or damage that looks like it).
    Damaged(String),
    /// The checksum matches but the body is not a valid record. A crash cannot
    /// produce this; it is always corruption (or a bug).
    Undecodable(String),
}

/// Appends `record`, framed, to `out`. Fails only if the body exceeds 4 GiB or
/// a count exceeds `u32`.
pub fn encode_record(record: &Record, out: &mut Vec<u8>) -> Result<(), String> {
    match record {
        Record::HardState(hard_state) => {
            encode_hard_state(hard_state, out);
            Ok(())
        }
        Record::LogWrite(write) => encode_log_write(write, out),
        Record::SnapshotMarker { last_included_index, last_included_term, log_discarded } => {
            let body_start = begin_frame(out);
            out.push(KIND_SNAPSHOT_MARKER);
            put_u64(out, *last_included_index);
            put_u64(out, *last_included_term);
            out.push(u8::from(*log_discarded));
            finish_frame(out, body_start)
        }
    }
}

/// Appends a framed hard-state record to `out`.
pub fn encode_hard_state(hard_state: &HardState, out: &mut Vec<u8>) {
    let body_start = begin_frame(out);
    out.push(KIND_HARD_STATE);
    put_u64(out, hard_state.term);
    put_u64(out, hard_state.voted_for.unwrap_or(0));
    put_u64(out, hard_state.commit);
    // A 25-byte body always fits its length field.
    let _ = finish_frame(out, body_start);
}

/// Appends a framed log-write record to `out` (borrowing, no copy of entries).
pub fn encode_log_write(write: &LogWrite, out: &mut Vec<u8>) -> Result<(), String> {
    let body_start = begin_frame(out);
    out.push(KIND_LOG_WRITE);
    put_u64(out, write.first_index);
    let count = u32::try_from(write.entries.len()).map_err(|_| "more than u32::MAX entries in one write")?;
    put_u32(out, count);
    for entry in &write.entries {
        put_u64(out, entry.term);
        put_u64(out, entry.index);
        match &entry.payload {
            Payload::Noop => {
                out.push(PAYLOAD_NOOP);
                put_u32(out, 0);
            }
            Payload::Command(bytes) => {
                out.push(PAYLOAD_COMMAND);
                let len = u32::try_from(bytes.len()).map_err(|_| "command larger than 4 GiB")?;
                put_u32(out, len);
                out.extend_from_slice(bytes);
            }
            Payload::BecomeLeader { leader_term, leader } => {
                out.push(PAYLOAD_BECOME_LEADER);
                put_u32(out, BECOME_LEADER_BYTES as u32);
                put_u64(out, *leader_term);
                put_u64(out, *leader);
            }
            Payload::Membership(membership) => {
                out.push(PAYLOAD_MEMBERSHIP);
                let bytes = crate::membership_codec::to_bytes(membership);
                let len = u32::try_from(bytes.len()).map_err(|_| "membership larger than 4 GiB")?;
                put_u32(out, len);
                out.extend_from_slice(&bytes);
            }
        }
    }
    finish_frame(out, body_start)
}

/// Reserves the frame header; returns where the body starts.
fn begin_frame(out: &mut Vec<u8>) -> usize {
    out.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
    out.len()
}

/// Fills in the header of the frame whose body starts at `body_start`.
fn finish_frame(out: &mut [u8], body_start: usize) -> Result<(), String> {
    let body_len = u32::try_from(out.len() - body_start).map_err(|_| "record body larger than 4 GiB")?;
    let checksum = crc32c::crc32c(&out[body_start..]);
    let frame_start = body_start - FRAME_HEADER_BYTES;
    out[frame_start..frame_start + 4].copy_from_slice(&body_len.to_le_bytes());
    out[frame_start + 4..body_start].copy_from_slice(&checksum.to_le_bytes());
    Ok(())
}

/// Reads the frame starting at `offset` in `bytes`: the record and the offset
/// just past it.
pub fn decode_frame(bytes: &[u8], offset: usize) -> Result<(Record, usize), FrameError> {
    let rest = bytes.get(offset..).unwrap_or_default();
    if rest.len() < FRAME_HEADER_BYTES {
        return Err(FrameError::Damaged(format!(
            "incomplete record header: {} of {FRAME_HEADER_BYTES} bytes",
            rest.len()
        )));
    }
    let body_len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let stored_checksum = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if body_len == 0 {
        return Err(FrameError::Damaged("record length is zero".into()));
    }
    let available = rest.len() - FRAME_HEADER_BYTES;
    if body_len > available {
        return Err(FrameError::Damaged(format!(
            "record body of {body_len} bytes runs past the end of the file ({available} bytes left)"
        )));
    }
    let body = &rest[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + body_len];
    let computed_checksum = crc32c::crc32c(body);
    if computed_checksum != stored_checksum {
        return Err(FrameError::Damaged(format!(
            "checksum mismatch: stored {stored_checksum:#010x}, computed {computed_checksum:#010x}"
        )));
    }
    let record = decode_body(body).map_err(FrameError::Undecodable)?;
    Ok((record, offset + FRAME_HEADER_BYTES + body_len))
}

/// True if an intact record (length in bounds, valid body, matching checksum)
/// starts at `offset`. Cheap to reject garbage: the body is parsed before the
/// checksum is computed.
pub fn intact_frame_at(bytes: &[u8], offset: usize) -> bool {
    let Some(rest) = bytes.get(offset..) else { return false };
    if rest.len() <= FRAME_HEADER_BYTES {
        return false;
    }
    let body_len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    if body_len == 0 || body_len > rest.len() - FRAME_HEADER_BYTES {
        return false;
    }
    let body = &rest[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + body_len];
    if !matches!(body[0], KIND_HARD_STATE | KIND_LOG_WRITE | KIND_SNAPSHOT_MARKER) || decode_body(body).is_err() {
        return false;
    }
    crc32c::crc32c(body) == u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]])
}

/// Decodes a record body (kind byte and fields).
pub fn decode_body(body: &[u8]) -> Result<Record, String> {
    let mut reader = Reader { bytes: body, position: 0 };
    let kind = reader.u8("record kind")?;
    let record = match kind {
        KIND_HARD_STATE => {
            let term = reader.u64("term")?;
            let voted_for = reader.u64("voted_for")?;
            let commit = reader.u64("commit")?;
            Record::HardState(HardState { term, voted_for: (voted_for != 0).then_some(voted_for), commit })
        }
        KIND_LOG_WRITE => {
            let first_index = reader.u64("first_index")?;
            if first_index == 0 {
                return Err("log write at index 0 (indexes start at 1)".into());
            }
            let count = reader.u32("entry count")? as usize;
            // Never trust a count for allocation: bound it by the bytes present.
            let mut entries = Vec::with_capacity(count.min(reader.remaining() / ENTRY_MIN_BYTES));
            for position in 0..count {
                let term = reader.u64("entry term")?;
                let index = reader.u64("entry index")?;
                let expected_index = first_index.checked_add(position as u64).ok_or("entry index overflows")?;
                if index != expected_index {
                    return Err(format!("entry {position} has index {index}, expected {expected_index}"));
                }
                let payload_kind = reader.u8("payload kind")?;
                let len = reader.u32("payload length")? as usize;
                let payload = match payload_kind {
                    PAYLOAD_NOOP if len == 0 => Payload::Noop,
                    PAYLOAD_NOOP => return Err(format!("noop entry {index} has a payload of {len} bytes")),
                    PAYLOAD_COMMAND => Payload::Command(reader.bytes(len, "command")?.to_vec().into()),
                    PAYLOAD_BECOME_LEADER if len == BECOME_LEADER_BYTES => {
                        let leader_term = reader.u64("leader term")?;
                        let leader = reader.u64("leader id")?;
                        if leader_term == 0 || leader == 0 {
                            return Err(format!(
                                "BecomeLeader entry {index} names leader term {leader_term}, leader {leader}"
                            ));
                        }
                        Payload::BecomeLeader { leader_term, leader }
                    }
                    PAYLOAD_BECOME_LEADER => {
                        return Err(format!("BecomeLeader entry {index} has a payload of {len} bytes"))
                    }
                    PAYLOAD_MEMBERSHIP => Payload::Membership(
                        crate::membership_codec::decode(reader.bytes(len, "membership")?)
                            .map_err(|problem| format!("membership entry {index}: {problem}"))?,
                    ),
                    other => return Err(format!("entry {index} has unknown payload kind {other}")),
                };
                entries.push(Entry { term, index, payload });
            }
            Record::LogWrite(LogWrite { first_index, entries })
        }
        KIND_SNAPSHOT_MARKER => {
            let last_included_index = reader.u64("last_included_index")?;
            let last_included_term = reader.u64("last_included_term")?;
            let log_discarded = match reader.u8("log_discarded")? {
                0 => false,
                1 => true,
                other => return Err(format!("log_discarded flag is {other}, expected 0 or 1")),
            };
            Record::SnapshotMarker { last_included_index, last_included_term, log_discarded }
        }
        other => return Err(format!("unknown record kind {other}")),
    };
    if reader.remaining() != 0 {
        return Err(format!("{} trailing bytes after the record", reader.remaining()));
    }
    Ok(record)
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// A bounds-checked cursor over a body; every read names its field on failure.
struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    fn bytes(&mut self, len: usize, field: &str) -> Result<&'a [u8], String> {
        if len > self.remaining() {
            return Err(format!("body ends inside {field}: needs {len} bytes, {} left", self.remaining()));
        }
        let slice = &self.bytes[self.position..self.position + len];
        self.position += len;
        Ok(slice)
    }

    fn u8(&mut self, field: &str) -> Result<u8, String> {
        Ok(self.bytes(1, field)?[0])
    }

    fn u32(&mut self, field: &str) -> Result<u32, String> {
        let bytes = self.bytes(4, field)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn u64(&mut self, field: &str) -> Result<u64, String> {
        let bytes = self.bytes(8, field)?;
        let mut array = [0; 8];
        array.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(array))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_records() -> Vec<Record> {
        vec![
            Record::HardState(HardState { term: 3, voted_for: Some(2), commit: 7 }),
            Record::HardState(HardState { term: 4, voted_for: None, commit: 0 }),
            Record::LogWrite(LogWrite {
                first_index: 5,
                entries: vec![
                    Entry { term: 3, index: 5, payload: Payload::Noop },
                    Entry { term: 3, index: 6, payload: Payload::Command(b"set x 1".to_vec().into()) },
                    Entry { term: 4, index: 7, payload: Payload::BecomeLeader { leader_term: 2, leader: 3 } },
                    Entry {
                        term: 4,
                        index: 8,
                        payload: Payload::Membership(conclave_core::Membership::bootstrap(
                            &[1, 2, 3],
                            &Default::default(),
                        )),
                    },
                ],
            }),
            Record::LogWrite(LogWrite { first_index: 2, entries: vec![] }),
            Record::SnapshotMarker { last_included_index: 9, last_included_term: 2, log_discarded: true },
        ]
    }

    #[test]
    fn every_record_kind_round_trips() {
        for record in sample_records() {
            let mut bytes = Vec::new();
            encode_record(&record, &mut bytes).unwrap();
            assert_eq!(decode_frame(&bytes, 0), Ok((record, bytes.len())));
            assert!(intact_frame_at(&bytes, 0));
        }
    }

    #[test]
    fn every_truncation_and_flip_is_detected_without_panic() {
        let mut bytes = Vec::new();
        for record in sample_records() {
            encode_record(&record, &mut bytes).unwrap();
        }
        let (_, first_end) = decode_frame(&bytes, 0).unwrap();
        for cut in 0..first_end {
            assert!(matches!(decode_frame(&bytes[..cut], 0), Err(FrameError::Damaged(_))), "cut at {cut}");
        }
        for position in 0..first_end {
            let mut damaged = bytes.clone();
            damaged[position] ^= 0x40;
            assert!(decode_frame(&damaged, 0).is_err(), "flip at {position}");
        }
    }

    #[test]
    fn a_valid_checksum_over_a_bad_body_is_undecodable() {
        let body = [KIND_HARD_STATE, 1, 2, 3];
        let mut bytes = (body.len() as u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        bytes.extend_from_slice(&body);
        assert!(matches!(decode_frame(&bytes, 0), Err(FrameError::Undecodable(_))));
    }

    #[test]
    fn a_huge_entry_count_does_not_allocate_or_panic() {
        let mut body = vec![KIND_LOG_WRITE];
        body.extend_from_slice(&1u64.to_le_bytes());
        body.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_body(&body).is_err());
    }
}

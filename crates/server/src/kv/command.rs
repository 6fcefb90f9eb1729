//! Commands of the replicated KV store, as they travel in log entries.

use bincode::Options;
use conclave_core::NodeId;
use serde::{Deserialize, Serialize};

/// `SET`'s condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetCondition {
    /// Always set.
    Always,
    /// `NX`: only if the key does not exist.
    IfAbsent,
    /// `XX`: only if the key exists.
    IfPresent,
}

/// One state-machine command. Writes go through the log; reads
/// ([`KvCommand::is_read`]) are served by ReadIndex at the leader (or from the
/// local store on a `READONLY` connection), never appended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvCommand {
    /// `GET key`.
    Get(#[serde(with = "serde_bytes")] Vec<u8>),
    /// `MGET key…`.
    MGet(Vec<Vec<u8>>),
    /// `EXISTS key…`: how many of them exist.
    Exists(Vec<Vec<u8>>),
    /// `DBSIZE`.
    DbSize,
    /// `SET key value [NX|XX]`.
    Set {
        /// Key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// Value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// Condition.
        condition: SetCondition,
    },
    /// `MSET key value …`.
    MSet(Vec<(Vec<u8>, Vec<u8>)>),
    /// `DEL key…`: how many were removed.
    Del(Vec<Vec<u8>>),
    /// `INCRBY key delta` (INCR, DECR, DECRBY too).
    IncrBy {
        /// Key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// Amount added.
        delta: i64,
    },
    /// `CAS key expected new`: set to `new` only if the value equals `expected`.
    Cas {
        /// Key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// Value it must hold.
        #[serde(with = "serde_bytes")]
        expected: Vec<u8>,
        /// Value it gets.
        #[serde(with = "serde_bytes")]
        new: Vec<u8>,
    },
    /// `MULTI … EXEC`: the queued commands, applied together as one log entry
    /// (all of them or none), each answered as if run alone in this order.
    Transaction(Vec<KvCommand>),
}

impl KvCommand {
    /// True if the command never changes the store (so a stale read may serve it).
    pub fn is_read(&self) -> bool {
        matches!(self, KvCommand::Get(_) | KvCommand::MGet(_) | KvCommand::Exists(_) | KvCommand::DbSize)
    }
}

/// The answer to a command, in RESP terms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvReply {
    /// `+OK`.
    Ok,
    /// `$-1`.
    Nil,
    /// `:n`.
    Integer(i64),
    /// `$n value`.
    Bulk(Vec<u8>),
    /// `*n` of bulk strings or nils.
    Array(Vec<Option<Vec<u8>>>),
    /// `-ERR message`.
    Error(String),
    /// `EXEC`'s answer: one reply per queued command.
    Multi(Vec<KvReply>),
}

/// What a log entry's command bytes hold: the command and its request id,
/// `(origin, incarnation, request_id)`, unique over the cluster's life: the
/// state machine applies each id at most once ([`super::dedup`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The node whose client asked.
    pub origin: NodeId,
    /// That node's process incarnation, greater at each start of the node
    /// (docs/decisions/0060-exactly-once-writes.md), so a restarted node never
    /// mistakes an old entry for a new request with the same id.
    pub incarnation: u64,
    /// The request id at the origin.
    pub request_id: u64,
    /// The command.
    pub command: KvCommand,
    /// Every write of this origin and incarnation with a smaller request id is
    /// settled at the origin (answered or given up): it is never sent again,
    /// so the state machine may forget its saved result.
    pub settled_below: u64,
}

/// The envelope of builds before request ids were deduplicated: decoded with
/// nothing settled.
#[derive(Deserialize)]
struct EnvelopeV1 {
    origin: NodeId,
    incarnation: u64,
    request_id: u64,
    command: KvCommand,
}

impl Envelope {
    /// Encodes for a log entry.
    pub fn encode(&self) -> Vec<u8> {
        bincode::DefaultOptions::new().serialize(self).expect("an envelope always encodes")
    }

    /// Decodes a log entry's bytes; `None` if they are not an envelope. Entries
    /// written by earlier builds (no `settled_below`) decode with it 0.
    pub fn decode(bytes: &[u8]) -> Option<Envelope> {
        let options = bincode::DefaultOptions::new().with_limit(bytes.len() as u64 + 64);
        if let Ok(envelope) = options.deserialize::<Envelope>(bytes) {
            return Some(envelope);
        }
        let old: EnvelopeV1 = options.deserialize(bytes).ok()?;
        Some(Envelope {
            origin: old.origin,
            incarnation: old.incarnation,
            request_id: old.request_id,
            command: old.command,
            settled_below: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_round_trips_and_an_old_one_decodes_with_nothing_settled() {
        let envelope = Envelope {
            origin: 2,
            incarnation: 7,
            request_id: 40,
            command: KvCommand::IncrBy { key: b"n".to_vec(), delta: 1 },
            settled_below: 33,
        };
        assert_eq!(Envelope::decode(&envelope.encode()), Some(envelope.clone()));
        #[derive(Serialize)]
        struct Old<'a> {
            origin: NodeId,
            incarnation: u64,
            request_id: u64,
            command: &'a KvCommand,
        }
        let old = Old { origin: 2, incarnation: 7, request_id: 40, command: &envelope.command };
        let bytes = bincode::DefaultOptions::new().serialize(&old).unwrap();
        assert_eq!(Envelope::decode(&bytes), Some(Envelope { settled_below: 0, ..envelope.clone() }));
        assert_eq!(Envelope::decode(&envelope.encode()[..5]), None);
        assert_eq!(Envelope::decode(b"not an envelope at all"), None);
    }

    // The log's format: a command's bytes are raw bytes after their length
    // (they are read as a byte buffer, not element by element, and must
    // stay what earlier builds wrote).
    #[test]
    fn an_envelopes_bytes_are_the_logs_format() {
        let envelope = Envelope {
            origin: 2,
            incarnation: 7,
            request_id: 40,
            command: KvCommand::Set { key: b"k".to_vec(), value: b"vv".to_vec(), condition: SetCondition::IfAbsent },
            settled_below: 33,
        };
        assert_eq!(envelope.encode(), [2, 7, 40, 4, 1, b'k', 2, b'v', b'v', 1, 33]);
        let cas = KvCommand::Cas { key: b"a".to_vec(), expected: b"b".to_vec(), new: b"c".to_vec() };
        let bytes = Envelope { command: cas.clone(), ..envelope }.encode();
        assert_eq!(bytes, [2, 7, 40, 8, 1, b'a', 1, b'b', 1, b'c', 33]);
        assert_eq!(Envelope::decode(&bytes).map(|decoded| decoded.command), Some(cas));
    }
}

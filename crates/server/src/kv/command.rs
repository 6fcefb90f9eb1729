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
    Get(Vec<u8>),
    /// `MGET key…`.
    MGet(Vec<Vec<u8>>),
    /// `EXISTS key…`: how many of them exist.
    Exists(Vec<Vec<u8>>),
    /// `DBSIZE`.
    DbSize,
    /// `SET key value [NX|XX]`.
    Set {
        /// Key.
        key: Vec<u8>,
        /// Value.
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
        key: Vec<u8>,
        /// Amount added.
        delta: i64,
    },
    /// `CAS key expected new`: set to `new` only if the value equals `expected`.
    Cas {
        /// Key.
        key: Vec<u8>,
        /// Value it must hold.
        expected: Vec<u8>,
        /// Value it gets.
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

/// What a log entry's command bytes hold: the command and who is waiting for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The node whose client asked.
    pub origin: NodeId,
    /// That node's process incarnation, so a restarted node never mistakes an old
    /// entry for a new request with the same id.
    pub incarnation: u64,
    /// The request id at the origin.
    pub request_id: u64,
    /// The command.
    pub command: KvCommand,
}

impl Envelope {
    /// Encodes for a log entry.
    pub fn encode(&self) -> Vec<u8> {
        bincode::DefaultOptions::new().serialize(self).expect("an envelope always encodes")
    }

    /// Decodes a log entry's bytes; `None` if they are not an envelope.
    pub fn decode(bytes: &[u8]) -> Option<Envelope> {
        bincode::DefaultOptions::new().with_limit(bytes.len() as u64 + 64).deserialize(bytes).ok()
    }
}

//! Peer frames: what travels between nodes, and its wire format.
//!
//! A frame is `[u32 big-endian length][u8 version][bincode body]`, where the
//! length counts the version byte and the body. bincode 1.x was chosen because
//! its decoder takes a byte limit, so a hostile length prefix inside the body
//! (a `Vec` claiming 2^60 elements) fails instead of allocating.
//!
//! Version 2: appends and their answers carry a ReadIndex round, and a
//! follower forwards linearizable reads ([`PeerFrame::ForwardRead`]).
//! Version 3: a forwarded read names the index of its connection's latest
//! earlier write, so it is served after that write.
//! Version 4: the log envelopes inside appends and forwards carry
//! `settled_below` (exactly-once writes, docs/decisions/0060-exactly-once-writes.md),
//! which a version 3 node cannot decode: it would skip those entries and its
//! state would part from the others'.
//! Version 5: leader transfer (docs/decisions/0099): a `TimeoutNow` message,
//! and vote requests that say whether they come from a hand-over. A node
//! refuses frames of another version with a message naming both; the cluster
//! is upgraded as a whole.

use bincode::Options;
use conclave_core::{Body, ClusterId, LogIndex, Message, NodeId, Term};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::kv::{KvCommand, KvReply};

/// The only frame version this build speaks.
pub const FRAME_VERSION: u8 = 6;

/// Marks a Conclave peer handshake ("CNCL").
pub const HANDSHAKE_MAGIC: u32 = 0x434E_434C;

/// The first frame on every peer connection, from the dialling node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handshake {
    /// Always [`HANDSHAKE_MAGIC`].
    pub magic: u32,
    /// The dialler's cluster.
    pub cluster_id: ClusterId,
    /// The dialler.
    pub from: NodeId,
    /// The node it means to reach.
    pub to: NodeId,
    /// Where the dialler's own peer transport listens: a node that does not
    /// dial it yet (it joins, or it lags behind the change that added the
    /// dialler) dials it back there to answer (docs/design/membership.md).
    pub reply_to: Option<std::net::SocketAddr>,
}

/// The acceptor's answer to a [`Handshake`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HandshakeReply {
    /// The connection may carry frames.
    Accepted,
    /// Refused, and why; the acceptor closes the connection.
    Refused(String),
    /// Refused because the dialler was removed from the membership
    /// (docs/design/membership.md), and how to rejoin.
    Removed(String),
}

/// Everything that follows the handshake.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerFrame {
    /// A protocol message for the core.
    Raft(Message),
    /// A follower forwards a client's command (an encoded log envelope) to the leader.
    Forward {
        /// The follower's process incarnation, echoed in the replies.
        incarnation: u64,
        /// The follower's request id, echoed in the replies.
        request_id: u64,
        /// The encoded envelope to propose.
        command: Vec<u8>,
    },
    /// The leader's answer to a [`PeerFrame::Forward`].
    ForwardReply {
        /// The incarnation of the forward.
        incarnation: u64,
        /// The request id of the forward.
        request_id: u64,
        /// What became of it.
        outcome: ForwardOutcome,
    },
    /// The answer to a forwarded command, once applied; or to a forwarded
    /// read, once confirmed and served.
    ForwardResult(ForwardResult),
    /// A follower forwards a client's linearizable read to the leader, which
    /// serves it by ReadIndex and answers with a [`PeerFrame::ForwardResult`]
    /// (or a [`ForwardOutcome::NotLeader`] reply: the follower retries).
    ForwardRead {
        /// The follower's process incarnation, echoed in the replies.
        incarnation: u64,
        /// The follower's request id, echoed in the replies.
        request_id: u64,
        /// The read (never a write: the leader refuses those).
        command: KvCommand,
        /// The log index the leader gave the asking connection's latest earlier
        /// write (0: none outstanding): the read is served at a state that
        /// includes it, so a pipelined read sees the write before it.
        min_index: LogIndex,
    },
}

/// The result of a forwarded command, sent by the leader that accepted it as
/// soon as it applied the entry, so the follower need not wait until it learns
/// the commit itself (up to a heartbeat later).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardResult {
    /// The incarnation of the forward.
    pub incarnation: u64,
    /// The request id of the forward.
    pub request_id: u64,
    /// The state machine's answer at the entry's log position.
    pub reply: KvReply,
}

/// What the leader did with a forwarded command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardOutcome {
    /// Appended at `index` in `term`; it takes effect only if committed there.
    Accepted {
        /// Log index of the entry.
        index: LogIndex,
        /// Term of the entry.
        term: Term,
    },
    /// The receiver is not the leader (it names the one it knows).
    NotLeader {
        /// The leader it knows, if any.
        leader: Option<NodeId>,
    },
    /// Refused for good (too large, …), with the reason.
    Refused(String),
}

impl PeerFrame {
    /// Urgent frames (heartbeats, votes, acks, replies) jump ahead of bulk ones
    /// (appends that carry entries, forwarded commands) in a peer's queue.
    pub fn is_urgent(&self) -> bool {
        match self {
            PeerFrame::Raft(message) => {
                !matches!(&message.body, Body::AppendEntries { entries, .. } if !entries.is_empty())
            }
            PeerFrame::Forward { .. } | PeerFrame::ForwardRead { .. } => false,
            PeerFrame::ForwardReply { .. } | PeerFrame::ForwardResult(_) => true,
        }
    }
}

/// Why bytes from a peer are not a frame.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix exceeds the configured maximum.
    #[error("frame of {length} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Claimed length.
        length: usize,
        /// The limit.
        limit: usize,
    },
    /// A zero-length frame cannot hold the version byte.
    #[error("empty frame (no version byte)")]
    Empty,
    /// Unknown version byte.
    #[error("frame version {0} is not supported (this build speaks version {FRAME_VERSION})")]
    Version(u8),
    /// The body does not decode.
    #[error("malformed frame body: {0}")]
    Malformed(String),
}

fn options(limit: usize) -> impl Options {
    bincode::DefaultOptions::new().with_limit(limit as u64)
}

/// Encodes `value` as a whole frame, length prefix included.
pub fn encode<T: Serialize>(value: &T, limit: usize) -> Result<Vec<u8>, FrameError> {
    let body =
        bincode::DefaultOptions::new().serialize(value).map_err(|error| FrameError::Malformed(error.to_string()))?;
    let length = body.len() + 1;
    if length > limit {
        return Err(FrameError::TooLarge { length, limit });
    }
    let mut frame = Vec::with_capacity(4 + length);
    frame.extend_from_slice(&(length as u32).to_be_bytes());
    frame.push(FRAME_VERSION);
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// Checks a length prefix before anything is read or allocated for the frame.
pub fn check_length(length: u32, limit: usize) -> Result<usize, FrameError> {
    let length = length as usize;
    if length == 0 {
        return Err(FrameError::Empty);
    }
    if length > limit {
        return Err(FrameError::TooLarge { length, limit });
    }
    Ok(length)
}

/// Decodes a frame's content (version byte and body, without the length prefix).
pub fn decode<T: for<'de> Deserialize<'de>>(content: &[u8], limit: usize) -> Result<T, FrameError> {
    let (&version, body) = content.split_first().ok_or(FrameError::Empty)?;
    if version != FRAME_VERSION {
        return Err(FrameError::Version(version));
    }
    options(limit).deserialize(body).map_err(|error| FrameError::Malformed(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_round_trips() {
        let frame = PeerFrame::Forward { incarnation: 1, request_id: 9, command: vec![1, 2, 3] };
        let bytes = encode(&frame, 1024).unwrap();
        let length = check_length(u32::from_be_bytes(bytes[..4].try_into().unwrap()), 1024).unwrap();
        assert_eq!(length, bytes.len() - 4);
        assert_eq!(decode::<PeerFrame>(&bytes[4..], 1024).unwrap(), frame);
    }

    #[test]
    fn a_forwarded_read_round_trips_and_is_queued_like_a_forward() {
        let frame = PeerFrame::ForwardRead {
            incarnation: 3,
            request_id: 4,
            command: KvCommand::Get(b"k".to_vec()),
            min_index: 9,
        };
        let bytes = encode(&frame, 1024).unwrap();
        assert_eq!(decode::<PeerFrame>(&bytes[4..], 1024).unwrap(), frame);
        assert!(!frame.is_urgent());
    }

    #[test]
    fn a_frame_of_the_previous_version_is_refused_naming_both_versions() {
        // Version 5 predates membership changes: its node would misread this
        // build's votes (a priority) and entries (a membership), so the
        // version byte refuses them first.
        let error = decode::<PeerFrame>(&[5, 0, 0], 1024).unwrap_err();
        assert_eq!(error, FrameError::Version(5));
        assert_eq!(error.to_string(), "frame version 5 is not supported (this build speaks version 6)");
    }

    #[test]
    fn bad_frames_are_refused_with_a_reason() {
        assert_eq!(check_length(0, 10), Err(FrameError::Empty));
        assert_eq!(check_length(11, 10), Err(FrameError::TooLarge { length: 11, limit: 10 }));
        assert_eq!(decode::<PeerFrame>(&[9, 0], 10), Err(FrameError::Version(9)));
        assert!(matches!(decode::<PeerFrame>(&[FRAME_VERSION, 200, 1], 10), Err(FrameError::Malformed(_))));
        // A vector claiming a huge length fails on the limit, without allocating.
        let mut hostile = vec![FRAME_VERSION, 1];
        hostile.extend_from_slice(&[0xFF; 9]);
        assert!(decode::<PeerFrame>(&hostile, 64).is_err());
        let too_big = PeerFrame::Forward { incarnation: 1, request_id: 1, command: vec![0; 100] };
        assert!(matches!(encode(&too_big, 50), Err(FrameError::TooLarge { .. })));
    }
}

//! Snapshots as the core sees them (Raft §7): what a snapshot covers, and the
//! opaque state-machine bytes that go with it.
//!
//! The core never reads the bytes. It keeps the latest snapshot only to send it
//! to a follower whose next entry was compacted away (`InstallSnapshot`), and
//! hands an installed one to the driver (`Output::snapshot`), which owns the
//! state machine.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::entry::LeaderTermRecord;
use crate::types::{LogIndex, Term};

/// What a snapshot covers: the log up to `last_included_index`, replaced by the
/// state machine's state at that index.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// Last log index the snapshot covers (at least 1).
    pub last_included_index: LogIndex,
    /// Term of that entry: the log-matching check of the entry after it needs it.
    pub last_included_term: Term,
    /// The membership as of that entry (docs/design/membership.md).
    pub membership: crate::membership::Membership,
    /// The last `BecomeLeader` at or below `last_included_index` (`gapless`,
    /// `conclave`), so that leader terms survive compaction: the next leader
    /// term is one above it even when no `BecomeLeader` is left in the log
    /// (docs/design/leader-terms.md). `None` in modes without leader terms or before any.
    pub last_leader_term: Option<LeaderTermRecord>,
}

impl SnapshotMeta {
    /// Checks what the metadata can say on its own. The error says what is
    /// wrong.
    pub fn check(&self) -> Result<(), String> {
        if self.last_included_index == 0 || self.last_included_term == 0 {
            return Err(format!(
                "snapshot up to index {} term {}: a snapshot covers at least entry 1, whose term is at least 1",
                self.last_included_index, self.last_included_term
            ));
        }
        self.membership
            .check()
            .map_err(|problem| format!("snapshot up to index {}: {problem}", self.last_included_index))?;
        if let Some(record) = self.last_leader_term {
            if record.index == 0
                || record.index > self.last_included_index
                || record.ballot == 0
                || record.ballot > self.last_included_term
                || record.leader_term == 0
                || record.leader == 0
            {
                return Err(format!(
                    "snapshot up to index {} term {} names an impossible last BecomeLeader {record:?}",
                    self.last_included_index, self.last_included_term
                ));
            }
        }
        Ok(())
    }
}

/// A snapshot: its metadata and the state machine's bytes. Cloning and
/// slicing share the bytes, and a `Vec` becomes them without a copy: a
/// snapshot is as large as the state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// What it covers.
    pub meta: SnapshotMeta,
    /// The serialized state machine, opaque to the core.
    pub data: Bytes,
}

impl Snapshot {
    /// A snapshot of `data` covering `meta`.
    pub fn new(meta: SnapshotMeta, data: impl Into<Bytes>) -> Snapshot {
        Snapshot { meta, data: data.into() }
    }
}

/// A chunk of a leader's snapshot a follower received, handed to its driver to
/// stage (`Config::stage_snapshot_chunks`). The core takes a chunk only if it
/// continues what the follower holds, so the chunks of one transfer come in
/// order and without gaps; one at offset 0 begins a new transfer and
/// supersedes whatever was staged before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotChunk {
    /// The last index of the snapshot it belongs to.
    pub last_included_index: LogIndex,
    /// Where its bytes go in the snapshot's data.
    pub offset: u64,
    /// The bytes (shared with the message that carried them: no copy).
    pub data: Bytes,
}

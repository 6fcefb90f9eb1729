//! The follower's side of a leader's snapshot with a state machine that may
//! be larger than memory (docs/decisions/0090): the core hands out each chunk
//! as it arrives (`Output::snapshot_chunks`), and a thread of its own writes
//! them to a scratch file ([`IncomingSnapshotFile`]), so neither the driver
//! task nor the process's memory carries the snapshot. When the last chunk is
//! in, the staged bytes are checked and installed into the state machine
//! before the log's new base is persisted ([`super::snapshot::Screening`]).

use std::sync::mpsc::{Receiver, Sender};

use bytes::Bytes;
use conclave_core::{LogIndex, SnapshotChunk};
use conclave_storage::incoming::IncomingSnapshotFile;
use tokio::sync::oneshot;

enum StageItem {
    Chunk(SnapshotChunk),
    Finish { index: LogIndex, total_bytes: u64, reply: oneshot::Sender<Result<Bytes, String>> },
}

/// The driver's handle on the staging thread.
pub(crate) struct Stager {
    items: Sender<StageItem>,
    /// The transfer the chunks sent so far belong to, and their bytes: what
    /// the thread must hold when asked to finish.
    staged: Option<(LogIndex, u64)>,
}

impl Stager {
    /// Starts the thread over `file`.
    pub(crate) fn start(node: conclave_core::NodeId, file: IncomingSnapshotFile) -> Stager {
        let (items, receiver) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(format!("stage-{node}"))
            .spawn(move || {
                crate::background::lower_this_thread();
                run(file, receiver)
            })
            .expect("the staging thread starts");
        Stager { items, staged: None }
    }

    /// Queues a chunk to write. The core hands them out in order; one at
    /// offset 0 begins a new transfer.
    pub(crate) fn chunk(&mut self, chunk: SnapshotChunk) {
        let length = chunk.data.len() as u64;
        self.staged = match self.staged {
            _ if chunk.offset == 0 => Some((chunk.last_included_index, length)),
            Some((index, bytes)) if index == chunk.last_included_index && bytes == chunk.offset => {
                Some((index, bytes + length))
            }
            // The thread finds the gap too, and the transfer fails at its end.
            other => other,
        };
        let _ = self.items.send(StageItem::Chunk(chunk));
    }

    /// Asks for the staged bytes of the snapshot up to `index`, once every
    /// chunk sent before is written: mapped, the scratch file unlinked.
    pub(crate) fn finish(&mut self, index: LogIndex) -> oneshot::Receiver<Result<Bytes, String>> {
        let (reply, answer) = oneshot::channel();
        let total_bytes = match self.staged.take() {
            Some((staged_index, bytes)) if staged_index == index => bytes,
            _ => 0,
        };
        // A thread that is gone drops `reply`: the receiver then says so.
        let _ = self.items.send(StageItem::Finish { index, total_bytes, reply });
        answer
    }
}

fn run(mut file: IncomingSnapshotFile, items: Receiver<StageItem>) {
    while let Ok(item) = items.recv() {
        match item {
            StageItem::Chunk(chunk) => file.write_chunk(chunk.last_included_index, chunk.offset, &chunk.data),
            StageItem::Finish { index, total_bytes, reply } => {
                let _ = reply.send(file.finish(index, total_bytes));
            }
        }
    }
}

//! Background writeback of the engine file's pages.
//!
//! Applied batches commit without an fsync; a durable commit follows about
//! once a second (`state_machine.flush_interval_ms`). Its fsync had to write
//! out every page committed since the last one, and the apply thread waited
//! for it: with data much larger than the cache, each write dirties a page of
//! its own, and that sync grew with the data (90–120 ms a second at 1.4 GB),
//! a pause in every answer. A thread of its own syncs the file after each
//! commit without an fsync, so the durable commit finds little left to write
//! (docs/decisions/0049).

use std::fs::File;
use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};

use tracing::warn;

/// The handle on the writeback thread of one engine file; dropping it stops
/// the thread.
pub(crate) struct Writeback {
    nudge: SyncSender<()>,
}

impl Writeback {
    /// Starts syncing the file at `path` when nudged, through a descriptor
    /// of its own (the engine's is private to it; a sync of any descriptor
    /// writes the file's pages, and a write error is reported to every
    /// descriptor open at the time, so the engine's own durable commit still
    /// sees it).
    pub(crate) fn start(path: &Path) -> std::io::Result<Writeback> {
        let file = File::open(path)?;
        // One nudge pending is enough: a sync covers every page written before it starts.
        let (nudge, nudged) = sync_channel::<()>(1);
        let shown = path.display().to_string();
        std::thread::Builder::new().name("writeback".into()).spawn(move || {
            crate::background::lower_this_thread();
            while nudged.recv().is_ok() {
                if let Err(error) = file.sync_data() {
                    // The next durable commit meets the same error and stops the node.
                    warn!(file = %shown, %error, "background writeback of the state machine file failed");
                }
            }
        })?;
        Ok(Writeback { nudge })
    }

    /// Pages were just written (a commit without an fsync): start writing
    /// them back unless a sync is already due.
    pub(crate) fn nudge(&self) {
        match self.nudge.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }
}

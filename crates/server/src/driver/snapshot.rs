//! The driver's side of snapshots (Raft §7):
//! * every `snapshot.every_entries` applied entries, the KV store is encoded at
//!   the applied index, the core compacts its log in memory
//!   ([`conclave_core::Node::compact`]) and the snapshot is queued behind the
//!   persists ahead of it, where it is made durable before any WAL segment it
//!   covers is deleted ([`super::persist`]);
//! * a snapshot the core installed from its leader (`Output::snapshot`) is
//!   decoded before anything of its batch is persisted: a snapshot that does not
//!   decode is never saved or applied — its batch is dropped, as a crash before
//!   its sync would, the error is logged and counted, and the core is restarted
//!   from the WAL once the persists ahead are done (the leader then sends the
//!   snapshot again);
//! * at start, the KV store is restored from the saved snapshot and the core
//!   hands out the committed entries after it.

use conclave_core::{LogIndex, Node, Output};
use conclave_storage::LogStore;
use rand::SeedableRng;
use tracing::{error, info, warn};

use super::Driver;
use crate::error::ServerError;
use crate::kv::KvStore;
use crate::observe::metrics::increment;

/// What a driver starts from: the core and the KV store it restored from the
/// data dir, at `applied_index`.
pub(crate) struct Restored {
    pub(crate) node: Node,
    pub(crate) store: KvStore,
    pub(crate) applied_index: LogIndex,
}

/// The KV store and its applied index as restored from a node's saved snapshot
/// (`covered`: its last index, and its data), an empty store at 0 without one.
/// A snapshot that does not decode, or holds the state at another index than
/// it covers, is an error: the node must not start from it.
pub(crate) fn restore_store(saved: Option<(LogIndex, &[u8])>) -> Result<(KvStore, LogIndex), ServerError> {
    let Some((covered, data)) = saved else { return Ok((KvStore::default(), 0)) };
    let (store, index) = KvStore::decode_snapshot(data)
        .map_err(|error| ServerError::Snapshot(format!("the saved snapshot up to index {covered}: {error}")))?;
    if index != covered {
        return Err(ServerError::Snapshot(format!(
            "the saved snapshot up to index {covered} holds the KV state at index {index}"
        )));
    }
    Ok((store, index))
}

impl Driver {
    /// Snapshots the store and compacts the log if `every_entries` entries were
    /// applied since the last snapshot.
    pub(super) fn maybe_snapshot(&mut self) {
        let every = self.snapshot_every;
        if every == 0 || self.reload_pending {
            return;
        }
        let base = self.node.log().snapshot_index();
        if self.applied_index < base.saturating_add(every) {
            return;
        }
        let data = self.store.encode_snapshot(self.applied_index);
        let bytes = data.len();
        match self.node.compact(self.applied_index, data) {
            Ok(snapshot) => {
                info!(node = self.node.id(), index = self.applied_index, bytes, "snapshot taken; log compacted");
                self.group_commit.save_snapshot(conclave_storage::Snapshot::from_core(&snapshot));
            }
            Err(error) => warn!(node = self.node.id(), %error, "no snapshot taken"),
        }
    }

    /// Checks the snapshot an output installs, before anything of it is
    /// persisted. False if it must not be: the output is then dropped and the
    /// core restarted from the WAL (the rejection is logged and counted).
    pub(super) fn screen_installed_snapshot(&mut self, output: &Output) -> bool {
        let Some(snapshot) = &output.snapshot else { return true };
        let covered = snapshot.meta.last_included_index;
        let problem = match KvStore::decode_snapshot(&snapshot.data) {
            Ok((store, index)) if index == covered => {
                // Kept for the install, which comes in queue order.
                self.screened_installs.push_back((index, store));
                return true;
            }
            Ok((_, index)) => format!("it holds the KV state at index {index}"),
            Err(error) => error.to_string(),
        };
        self.snapshots_rejected += 1;
        increment(&self.observe.metrics.snapshots_rejected);
        error!(
            node = self.node.id(),
            index = covered,
            leader = ?self.node.leader(),
            %problem,
            "refused a snapshot from the leader; restarting the core from the WAL"
        );
        self.reload_pending = true;
        false
    }

    /// Replaces the store with an installed snapshot (durable by now).
    pub(super) fn install_snapshot(&mut self, snapshot: &conclave_core::Snapshot) {
        let index = snapshot.meta.last_included_index;
        match self.screened_installs.pop_front() {
            Some((screened, store)) if screened == index => self.store = store,
            _ => match KvStore::decode_snapshot(&snapshot.data) {
                Ok((store, _)) => self.store = store,
                // Screened before it was persisted: cannot happen.
                Err(error) => unreachable!("a screened snapshot stopped decoding: {error}"),
            },
        }
        self.applied_index = index;
        // What this node asked for at those indexes is answered by the leader
        // (forwarded) or times out: it cannot tell from here.
        self.requests.unplace_upto(index);
        self.accepted_forwards.retain(|&placed, _| placed > index);
        self.snapshots_installed += 1;
        increment(&self.observe.metrics.snapshots_installed);
        info!(node = self.node.id(), index, keys = self.store.len(), "installed the leader's snapshot");
    }

    /// After a refused snapshot, once the persists ahead of it are done: a new
    /// core and store from what the WAL holds, as at a process restart.
    pub(super) fn reload_if_due(&mut self) -> Result<(), ServerError> {
        if !self.reload_pending || !self.group_commit.is_idle() {
            return Ok(());
        }
        let wal = self.group_commit.wal().expect("the WAL is home when nothing is in flight");
        let restored = wal.restored_state()?;
        let saved = restored.snapshot.as_ref().map(|snapshot| (snapshot.meta.last_included_index, &snapshot.data[..]));
        let (store, applied_index) = restore_store(saved)?;
        self.reloads += 1;
        let seed = self.incarnation ^ self.reloads.rotate_left(17) ^ self.node.id().rotate_left(32);
        let rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        self.node = Node::new(self.core_config.clone(), restored, rng, self.last_tick_ms)?;
        self.store = store;
        self.applied_index = applied_index;
        self.reload_pending = false;
        self.screened_installs.clear(); // Empty already: everything queued was released.
        info!(node = self.node.id(), applied_index, "core restarted from the WAL");
        let first = self.node.tick(self.last_tick_ms);
        self.enqueue(first);
        Ok(())
    }
}

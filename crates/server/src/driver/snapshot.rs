//! The driver's side of snapshots (Raft §7):
//! * when a trigger fires ([`Triggers`]: entries, log bytes or time since the
//!   last snapshot), the apply thread is asked for a snapshot; it makes its
//!   store durable and encodes the state from a consistent view off the driver
//!   task. The bytes come back at the index they hold: the core compacts its
//!   log in memory ([`conclave_core::Node::compact`]) and the snapshot is
//!   queued behind the persists ahead of it, where it is made durable before
//!   any WAL segment it covers is deleted ([`super::persist`]). That index is
//!   durable in the store, so the WAL is never compacted beyond it;
//! * a snapshot the core installed from its leader (`Output::snapshot`) is
//!   checked (format and checksum) before anything of its batch is persisted,
//!   on a blocking thread while later outputs wait behind it ([`Screening`]):
//!   a snapshot that does not decode is never saved or applied — its batch is
//!   dropped, as a crash before its sync would, the error is logged and
//!   counted, and the core is restarted from the WAL once the persists ahead
//!   are done (the leader then sends the snapshot again). Once durable it goes
//!   into the apply stream, where the store is rebuilt beside the old one;
//! * at start, the store opens at its own applied index (the engine) or is
//!   restored from the saved snapshot (in memory), and the core hands out the
//!   committed entries after its snapshot: the apply thread skips those the
//!   store holds already.

use std::time::{Duration, Instant};

use conclave_core::{Entry, LogIndex, Node, Output, Payload};
use conclave_storage::LogStore;
use rand::SeedableRng;
use tracing::{debug, error, info, warn};

use super::apply::ApplyItem;
use super::Driver;
use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::kv::{KvStore, StateMachine};
use crate::observe::metrics::increment;

/// What a driver starts from: the core and the state machine it restored from
/// the data dir, at `applied_index`.
pub(crate) struct Restored {
    pub(crate) node: Node,
    pub(crate) machine: Box<dyn StateMachine>,
    pub(crate) applied_index: LogIndex,
    /// Where a leader's snapshot is staged, with a state machine durable on
    /// its own (docs/decisions/0090).
    pub(crate) incoming: Option<conclave_storage::incoming::IncomingSnapshotFile>,
}

/// The KV store and its applied index as restored from a node's saved snapshot
/// (`covered`: its last index, and its data), an empty store at 0 without one.
/// A snapshot that does not decode, or holds the state at another index than
/// it covers, is an error: the node must not start from it.
pub(crate) fn restore_store(saved: Option<(LogIndex, &[u8])>) -> Result<(KvStore, LogIndex), ServerError> {
    let Some((covered, data)) = saved else { return Ok((KvStore::default(), 0)) };
    if data.is_empty() {
        return Err(ServerError::Snapshot(format!(
            "the saved snapshot up to index {covered} holds no data: the data directory was written with the \
             engine state machine (state_machine.engine = \"redb\"), which holds the state itself; start with it"
        )));
    }
    let (store, index) = KvStore::decode_snapshot(data)
        .map_err(|error| ServerError::Snapshot(format!("the saved snapshot up to index {covered}: {error}")))?;
    if index != covered {
        return Err(ServerError::Snapshot(format!(
            "the saved snapshot up to index {covered} holds the KV state at index {index}"
        )));
    }
    Ok((store, index))
}

/// A snapshot from the leader (`Output::snapshot`) is checked — format,
/// checksum, the index it holds — before anything of its output is persisted,
/// on a blocking thread: the check reads the whole snapshot, which is as large
/// as the state machine, and must not hold up the task that ticks the core.
/// Outputs the core produces meanwhile wait behind it, in order.
pub(crate) struct Screening {
    check: tokio::task::JoinHandle<Result<(), String>>,
    /// The output that installs the snapshot.
    output: Output,
    /// Outputs produced after it, to queue once it is checked.
    pub(crate) held: std::collections::VecDeque<Output>,
    /// The snapshot's last index.
    covered: LogIndex,
}

impl Screening {
    /// Starts checking the snapshot `output` installs.
    pub(crate) fn start(output: Output) -> Screening {
        let snapshot = output.snapshot.as_ref().expect("an output that installs a snapshot");
        let covered = snapshot.meta.last_included_index;
        let data = snapshot.data.clone();
        let check = tokio::task::spawn_blocking(move || check_installed_snapshot(&data, covered));
        Screening { check, output, held: std::collections::VecDeque::new(), covered }
    }

    /// Starts installing the snapshot `output` installs, whose bytes the
    /// chunks before it staged (`Config::stage_snapshot_chunks`): once every
    /// chunk is written, they are checked as above, then installed into the
    /// state machine, durably, all off this task. Only then is the output
    /// persisted, with the log's new base (docs/decisions/0090): a crash
    /// before leaves the old base and a state machine at or beyond it.
    pub(crate) fn start_staged(
        output: Output,
        stager: &mut super::staging::Stager,
        applier: &super::Applier,
    ) -> Screening {
        let snapshot = output.snapshot.as_ref().expect("an output that installs a snapshot");
        assert!(snapshot.data.is_empty(), "a staged snapshot's bytes are the stager's");
        let covered = snapshot.meta.last_included_index;
        let staged = stager.finish(covered);
        let installs = applier.sender();
        let check = tokio::spawn(async move {
            let data = staged.await.map_err(|_| "the staging thread stopped".to_string())??;
            let data = tokio::task::spawn_blocking(move || check_installed_snapshot(&data, covered).map(|()| data))
                .await
                .map_err(|error| format!("the check did not finish: {error}"))??;
            let (done, installed) = tokio::sync::oneshot::channel();
            let install = ApplyItem::InstallSnapshot { index: covered, data, done: Some(done) };
            installs
                .ok_or(())
                .and_then(|installs| installs.send(install).map_err(|_| ()))
                .map_err(|()| "the state machine is stopped".to_string())?;
            // The apply thread stops the node if the install fails.
            installed.await.map_err(|_| "the state machine did not install it".to_string())
        });
        Screening { check, output, held: std::collections::VecDeque::new(), covered }
    }

    /// The check's verdict.
    pub(crate) async fn wait(&mut self) -> Result<(), String> {
        match (&mut self.check).await {
            Ok(verdict) => verdict,
            Err(error) => Err(format!("the check did not finish: {error}")),
        }
    }
}

/// Whether `data` is a KV snapshot holding the state at `covered`.
fn check_installed_snapshot(data: &[u8], covered: LogIndex) -> Result<(), String> {
    let checked =
        crate::kv::snapshot::visit_snapshot(data, |_, _| Ok::<_, crate::kv::SnapshotDecodeError>(()), |_| Ok(()));
    match checked {
        Ok((index, _)) if index == covered => Ok(()),
        Ok((index, _)) => Err(format!("it holds the KV state at index {index}")),
        Err(error) => Err(error.to_string()),
    }
}

/// When to snapshot: any trigger that is set and due fires.
pub(crate) struct Triggers {
    every_entries: u64,
    log_bytes: u64,
    interval: Duration,
    /// This node's jitter on the size and time triggers, in percent (0–20):
    /// nodes with the same settings compact at different indexes.
    jitter_percent: u64,
    /// Command bytes applied since the last snapshot was asked for.
    bytes_since: u64,
    /// Bytes of the last snapshot taken (the size trigger grows with the data).
    last_snapshot_bytes: u64,
    last_snapshot_at: Instant,
    /// A snapshot was asked for and has not come back.
    pub(crate) in_flight: bool,
}

impl Triggers {
    pub(crate) fn new(config: &ServerConfig) -> Triggers {
        let settings = &config.snapshot;
        Triggers {
            every_entries: settings.every_entries,
            log_bytes: settings.log_bytes,
            interval: Duration::from_secs(settings.interval_secs),
            jitter_percent: config.node_id.wrapping_mul(0x9E37_79B9) % 21,
            bytes_since: 0,
            last_snapshot_bytes: 0,
            last_snapshot_at: Instant::now(),
            in_flight: false,
        }
    }

    /// Entries sent to be applied: their command bytes count toward the size trigger.
    pub(crate) fn count(&mut self, entries: &[Entry]) {
        for entry in entries {
            if let Payload::Command(bytes) = &entry.payload {
                self.bytes_since += bytes.len() as u64;
            }
        }
    }

    /// Whether the log may still be held back for a follower that is behind:
    /// it holds less than four times each trigger's amount beyond the last
    /// compaction (command bytes, and entries when that trigger is on), with
    /// `base` the log's base and `submitted` the last index sent to apply.
    pub(crate) fn may_hold(&self, base: LogIndex, submitted: LogIndex) -> bool {
        let by_bytes = self.bytes_since < self.log_bytes.saturating_mul(4);
        let by_entries =
            self.every_entries == 0 || submitted.saturating_sub(base) < self.every_entries.saturating_mul(4);
        by_bytes && by_entries
    }

    fn jittered(&self, value: u64) -> u64 {
        value.saturating_mul(100 + self.jitter_percent) / 100
    }

    /// Whether to snapshot now, with `base` the current snapshot's last index
    /// and `submitted` the last index sent to be applied.
    fn due(&self, base: LogIndex, submitted: LogIndex) -> bool {
        if self.in_flight || submitted <= base {
            return false;
        }
        let by_entries = self.every_entries > 0 && submitted >= base.saturating_add(self.every_entries);
        let by_bytes =
            self.log_bytes > 0 && self.bytes_since >= self.jittered(self.log_bytes.max(self.last_snapshot_bytes));
        let interval_ms = self.jittered(self.interval.as_millis() as u64);
        let by_time = interval_ms > 0 && self.last_snapshot_at.elapsed() >= Duration::from_millis(interval_ms);
        by_entries || by_bytes || by_time
    }
}

impl Driver {
    /// Compacts when a trigger is due. With a state machine durable on its
    /// own, the log is compacted up to the store's durable applied index at
    /// once, encoding nothing (docs/decisions/0086); with the in-memory store
    /// the apply thread is asked for a snapshot to compact behind.
    pub(super) fn maybe_snapshot(&mut self) {
        let base = self.node.log().snapshot_index();
        if self.reload_pending || !self.triggers.due(base, self.submitted_index) {
            return;
        }
        if self.outgoing_dir.is_some() {
            let durable = self.durable_applied_index.min(self.node.log().applied());
            let mut upto = durable;
            // Keep what a follower behind still needs from the log (one
            // installing a snapshot continues from the log after it, one
            // restarting resumes from it), unless the log grew past its bound
            // meanwhile: then that follower needs a snapshot
            // (docs/decisions/0090, 0097).
            // A snapshot being made to send is offered at its own index: the
            // log must still reach it then.
            let floor = match (self.node.compaction_floor(), self.outgoing_in_flight) {
                (Some(floor), Some(making)) => Some(floor.min(making)),
                (floor, making) => floor.or(making),
            };
            let held = floor.filter(|floor| *floor >= base && *floor < upto);
            if let Some(floor) = held {
                if self.triggers.may_hold(base, self.submitted_index) {
                    upto = floor;
                } else {
                    warn!(
                        node = self.node.id(),
                        needed_from = floor + 1,
                        compact_to = upto,
                        "the log outgrew its bound while a follower is behind; it will need a snapshot"
                    );
                }
            }
            if upto <= base {
                return; // Due once the store's next flush makes more durable.
            }
            // The size trigger keeps counting while the log is held back, so
            // that its bound is met.
            if upto == durable {
                self.triggers.bytes_since = 0;
            }
            self.triggers.last_snapshot_at = Instant::now();
            match self.node.compact_log_releasing(upto) {
                Ok((marker, released)) => {
                    debug!(node = self.node.id(), index = upto, "log compacted behind the durable store");
                    self.group_commit.save_snapshot(marker);
                    // Freeing a log's worth of entries took 45–80 ms: not on
                    // the task that sends heartbeats.
                    tokio::task::spawn_blocking(move || drop(released));
                }
                Err(error) => warn!(node = self.node.id(), %error, "log not compacted"),
            }
            return;
        }
        self.triggers.in_flight = true;
        self.triggers.bytes_since = 0;
        self.applier.send(ApplyItem::TakeSnapshot { outgoing_dir: None });
    }

    /// The core needs a snapshot to send a follower (`Output::snapshot_wanted`):
    /// one is made from a read view of the store, into a scratch file, off
    /// this task; one in the making answers every ask.
    pub(super) fn make_outgoing_snapshot(&mut self) {
        if self.outgoing_in_flight.is_some() || self.reload_pending {
            return;
        }
        let Some(dir) = self.outgoing_dir.clone() else {
            warn!(node = self.node.id(), "a snapshot to send was asked for, but the log is compacted with one");
            return;
        };
        // The apply thread takes it after everything sent to it so far.
        self.outgoing_in_flight = Some(self.submitted_index.max(self.applied_index));
        info!(node = self.node.id(), "making a snapshot to send a follower");
        self.applier.send(ApplyItem::TakeSnapshot { outgoing_dir: Some(dir) });
    }

    /// The apply thread's snapshot, at `index`: offered to the core to send
    /// (a store durable on its own), or the log compacted behind it.
    pub(super) fn on_snapshot_taken(&mut self, index: LogIndex, data: bytes::Bytes) {
        let bytes = data.len();
        if self.outgoing_dir.is_some() {
            self.outgoing_in_flight = None;
            match self.node.offer_snapshot(index, data) {
                Some(output) => {
                    info!(node = self.node.id(), index, bytes, "snapshot made to send");
                    self.enqueue(output);
                }
                None => info!(node = self.node.id(), index, bytes, "snapshot made to send is no longer needed"),
            }
            return;
        }
        self.triggers.in_flight = false;
        self.triggers.last_snapshot_at = Instant::now();
        self.triggers.last_snapshot_bytes = data.len() as u64;
        match self.node.compact(index, data) {
            Ok(snapshot) => {
                info!(node = self.node.id(), index, bytes, "snapshot taken; log compacted");
                self.group_commit.save_snapshot(snapshot);
            }
            Err(error) => warn!(node = self.node.id(), %error, "no snapshot taken"),
        }
    }

    /// A snapshot check finished: its output and those behind it go on to
    /// the group commit, or, if the snapshot was refused, are dropped and the
    /// core is restarted from the WAL once the persists ahead are done (the
    /// rejection is logged and counted; the leader sends the snapshot again).
    pub(super) fn on_screened(&mut self, checked: Result<(), String>) {
        let Screening { output, held, covered, .. } = self.screening.take().expect("a check was in flight");
        if let Err(problem) = checked {
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
            return;
        }
        if let Some(output) = self.group_commit.push(output) {
            self.release(output);
        }
        // Those behind it go on in order; another snapshot among them is
        // checked in turn, and holds the rest again.
        for output in held {
            self.enqueue_durable(output);
        }
    }

    /// Sends an installed snapshot (durable by now) into the apply stream.
    pub(super) fn install_snapshot(&mut self, snapshot: &conclave_core::Snapshot) {
        let index = snapshot.meta.last_included_index;
        // A staged snapshot is installed already: this persisted its base.
        if !snapshot.data.is_empty() {
            self.applier.send(ApplyItem::InstallSnapshot { index, data: snapshot.data.clone(), done: None });
        }
        self.submitted_index = index;
        self.triggers.bytes_since = 0;
        // What this node asked for at those indexes is answered by the leader
        // (forwarded) or times out: it cannot tell from here.
        self.requests.unplace_upto(index);
        self.accepted_forwards.retain(|&placed, _| placed > index);
        self.snapshots_installed += 1;
        increment(&self.observe.metrics.snapshots_installed);
    }

    /// After a refused snapshot, once the persists ahead of it are done: a new
    /// core from what the WAL holds, as at a process restart. The store keeps
    /// its state: everything it applied was committed, and the apply thread
    /// skips the entries the new core hands out again.
    pub(super) fn reload_if_due(&mut self) -> Result<(), ServerError> {
        if !self.reload_pending || !self.group_commit.is_idle() {
            return Ok(());
        }
        let wal = self.group_commit.wal().expect("the WAL is home when nothing is in flight");
        let restored = wal.restored_state()?;
        self.reloads += 1;
        let seed = self.incarnation ^ self.reloads.rotate_left(17) ^ self.node.id().rotate_left(32);
        let rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        self.node = Node::new(self.core_config.clone(), restored, rng, self.last_tick_ms)?;
        self.reload_pending = false;
        info!(node = self.node.id(), applied_index = self.applied_index, "core restarted from the WAL");
        self.publish_members();
        let first = self.node.tick(self.last_tick_ms);
        self.enqueue(first);
        Ok(())
    }
}

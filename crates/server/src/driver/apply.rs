//! The apply loop, on a thread of its own (as etcd's): nothing whose cost
//! grows with the data runs on the driver task that ticks the core and sends
//! heartbeats.
//!
//! The driver sends one ordered stream of [`ApplyItem`]s; the thread carries
//! them out in exactly that order, so a read placed between two batches of
//! entries sees the first and not the second (the driver decides where each
//! read goes). What comes back ([`ApplyReport`]) travels on one channel to the
//! driver: write answers and the applied index, read answers, installs,
//! snapshots, and the durable index after each durable commit.
//!
//! Batches commit without an fsync; a durable commit ([`StateMachine::flush`])
//! follows by time (`state_machine.flush_interval_ms`) and by bytes
//! (`state_machine.flush_bytes`), and before every snapshot, which is thus
//! taken at a durable index: the WAL it compacts is never needed again.
//! Snapshot bytes are made from a consistent view on a helper thread while
//! batches go on being applied.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use conclave_core::{Entry, LogIndex, NodeId, Payload};
use tokio::sync::mpsc::UnboundedSender;
use tracing::warn;

use crate::kv::{Envelope, KvCommand, KvReply, MachineError, StateMachine};

/// One step of the apply stream, carried out in the order sent.
pub(crate) enum ApplyItem {
    /// Committed entries, in index order (those at or below the applied index
    /// are skipped: a restart replays the WAL from the snapshot, and the
    /// engine may be ahead of it).
    Apply(Vec<Entry>),
    /// A read, served against the state at this point of the stream.
    ServeRead {
        /// Who gets the answer.
        target: ReadTarget,
        /// The read command.
        command: KvCommand,
    },
    /// Replace the state with a snapshot's (screened by the driver, durable in
    /// the snapshot file).
    InstallSnapshot {
        /// The index it covers.
        index: LogIndex,
        /// Its bytes.
        data: bytes::Bytes,
        /// Told once the state is installed, durably (a staged snapshot,
        /// installed before the log's new base is persisted).
        done: Option<tokio::sync::oneshot::Sender<()>>,
    },
    /// Make everything applied durable, then snapshot the state at this point:
    /// into memory, or, with `outgoing_dir`, into a scratch file there that is
    /// mapped (a snapshot made to send, as large as the data: never in memory).
    TakeSnapshot {
        /// Where to write the snapshot's scratch file.
        outgoing_dir: Option<std::path::PathBuf>,
    },
}

/// Where a read's answer goes.
pub(crate) enum ReadTarget {
    /// Back to the driver under this context (the read's asker is there).
    Driver(u64),
}

/// A command entry's answer, for whoever proposed it.
#[derive(Debug)]
pub(crate) struct AppliedCommand {
    /// Its log index.
    pub(crate) index: LogIndex,
    /// The node its client is on, that node's incarnation, and the request id.
    pub(crate) origin: (NodeId, u64, u64),
    /// The answer.
    pub(crate) reply: KvReply,
}

/// What the apply thread tells the driver.
pub(crate) enum ApplyReport {
    /// Entries up to `index` applied.
    Applied {
        /// The new applied index.
        index: LogIndex,
        /// The answers of the command entries among them.
        commands: Vec<AppliedCommand>,
        /// Keys in the store now.
        keys: u64,
    },
    /// A read's answer.
    Read {
        /// The context the driver gave it.
        context: u64,
        /// The answer.
        reply: KvReply,
    },
    /// A snapshot was installed: the state is at `index`.
    Installed {
        /// Its index.
        index: LogIndex,
        /// Keys in the store now.
        keys: u64,
    },
    /// The snapshot asked for, at `index` (durable in the store).
    SnapshotTaken {
        /// The index it holds the state at.
        index: LogIndex,
        /// Its bytes (shared, as the core keeps them: made on the snapshot
        /// thread, so the driver copies nothing).
        data: bytes::Bytes,
    },
    /// Everything up to `index` is durable in the store.
    Durable {
        /// The durable applied index.
        index: LogIndex,
    },
    /// The store failed: the node must stop.
    Failed(MachineError),
}

/// When the apply thread makes its store durable.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FlushPolicy {
    /// At least this often, if anything was applied.
    pub(crate) interval: Duration,
    /// After this many command bytes applied.
    pub(crate) bytes: u64,
}

/// The driver's handle on the apply thread.
pub(crate) struct Applier {
    items: Option<Sender<ApplyItem>>,
    thread: Option<JoinHandle<()>>,
}

impl Applier {
    /// Starts the thread over `machine`; reports go to `reports`.
    pub(crate) fn start(
        node: NodeId,
        machine: Box<dyn StateMachine>,
        policy: FlushPolicy,
        reports: UnboundedSender<ApplyReport>,
    ) -> Applier {
        let (items, receiver) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("apply-{node}"))
            .spawn(move || {
                crate::background::lower_this_thread();
                ApplyLoop::new(machine, policy, reports).run(receiver)
            })
            .expect("the apply thread starts");
        Applier { items: Some(items), thread: Some(thread) }
    }

    /// Queues `item` behind everything sent before it.
    pub(crate) fn send(&self, item: ApplyItem) {
        // The thread only stops when told to, or after reporting a failure
        // (which stops the driver): a closed channel loses nothing that matters.
        if let Some(items) = &self.items {
            let _ = items.send(item);
        }
    }

    /// A sender into the stream, for a task that must queue an item once
    /// something else is ready (a staged snapshot, checked); `None` once stopped.
    pub(crate) fn sender(&self) -> Option<Sender<ApplyItem>> {
        self.items.clone()
    }

    /// Takes the thread's handle out of this one, which is left stopped.
    pub(crate) fn detach(&mut self) -> Applier {
        Applier { items: self.items.take(), thread: self.thread.take() }
    }

    /// Stops the thread after what was sent (it flushes first) and waits for it.
    pub(crate) fn stop(&mut self) {
        self.items = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Applier {
    fn drop(&mut self) {
        self.stop();
    }
}

struct ApplyLoop {
    machine: Box<dyn StateMachine>,
    policy: FlushPolicy,
    reports: UnboundedSender<ApplyReport>,
    last_flush: Instant,
    bytes_since_flush: u64,
}

impl ApplyLoop {
    fn new(machine: Box<dyn StateMachine>, policy: FlushPolicy, reports: UnboundedSender<ApplyReport>) -> ApplyLoop {
        ApplyLoop { machine, policy, reports, last_flush: Instant::now(), bytes_since_flush: 0 }
    }

    fn report(&self, report: ApplyReport) {
        let _ = self.reports.send(report); // The driver may be gone (shutdown).
    }

    fn run(mut self, items: Receiver<ApplyItem>) {
        let mut pending: Option<ApplyItem> = None;
        loop {
            let item = match pending.take() {
                Some(item) => item,
                None => match items.recv_timeout(self.until_flush()) {
                    Ok(item) => item,
                    Err(RecvTimeoutError::Timeout) => {
                        if let Err(failure) = self.flush() {
                            return self.fail(failure);
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
            };
            let result = match item {
                ApplyItem::Apply(mut entries) => {
                    // Whatever else is queued behind, up to the next other item,
                    // goes in the same write transaction.
                    while let Ok(next) = items.try_recv() {
                        match next {
                            ApplyItem::Apply(more) => entries.extend(more),
                            other => {
                                pending = Some(other);
                                break;
                            }
                        }
                    }
                    self.apply(entries)
                }
                ApplyItem::ServeRead { target, command } => self.serve_read(target, &command),
                ApplyItem::InstallSnapshot { index, data, done } => self.install(index, &data, done),
                ApplyItem::TakeSnapshot { outgoing_dir } => self.take_snapshot(outgoing_dir),
            };
            if let Err(failure) = result.and_then(|()| self.flush_if_due()) {
                return self.fail(failure);
            }
        }
        if let Err(failure) = self.flush() {
            self.fail(failure);
        }
    }

    fn fail(&self, failure: MachineError) {
        // The driver stops on the report, and the node's one error line
        // (`stopped`) names the failure.
        warn!(%failure, "the state machine failed; the node stops");
        self.report(ApplyReport::Failed(failure));
    }

    fn until_flush(&self) -> Duration {
        if self.machine.durable_index() == self.machine.applied_index() {
            return Duration::from_secs(3600);
        }
        self.policy.interval.saturating_sub(self.last_flush.elapsed())
    }

    fn flush_if_due(&mut self) -> Result<(), MachineError> {
        if self.bytes_since_flush >= self.policy.bytes || self.last_flush.elapsed() >= self.policy.interval {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), MachineError> {
        self.last_flush = Instant::now();
        self.bytes_since_flush = 0;
        let before = self.machine.durable_index();
        self.machine.flush()?;
        let index = self.machine.durable_index();
        if index != before {
            self.report(ApplyReport::Durable { index });
        }
        Ok(())
    }

    fn apply(&mut self, entries: Vec<Entry>) -> Result<(), MachineError> {
        let applied = self.machine.applied_index();
        let mut decoded: Vec<(LogIndex, Option<Envelope>)> = Vec::with_capacity(entries.len());
        for entry in entries {
            if entry.index <= applied {
                continue; // Replayed from the WAL, applied before the restart.
            }
            // Only commands touch the store; every other payload (Noop, and
            // whatever the core adds, such as BecomeLeader) only takes up its index.
            let envelope = match &entry.payload {
                Payload::Command(bytes) => {
                    self.bytes_since_flush += bytes.len() as u64;
                    let envelope = Envelope::decode(bytes);
                    if envelope.is_none() {
                        // Every node skips the same bytes, so the stores stay identical.
                        warn!(index = entry.index, "committed command does not decode; skipped");
                    }
                    envelope
                }
                _ => None,
            };
            decoded.push((entry.index, envelope));
        }
        let Some(&(index, _)) = decoded.last() else { return Ok(()) };
        let batch: Vec<_> = decoded.iter().map(|(index, envelope)| (*index, envelope.as_ref())).collect();
        let replies = self.machine.apply_batch(&batch)?;
        let commands = decoded
            .iter()
            .filter_map(|(index, envelope)| {
                envelope.as_ref().map(|e| (*index, (e.origin, e.incarnation, e.request_id)))
            })
            .zip(replies)
            .map(|((index, origin), reply)| AppliedCommand { index, origin, reply })
            .collect();
        let keys = self.machine.key_count()?;
        self.report(ApplyReport::Applied { index, commands, keys });
        Ok(())
    }

    fn serve_read(&mut self, target: ReadTarget, command: &KvCommand) -> Result<(), MachineError> {
        let reply = self.machine.read(command)?;
        match target {
            ReadTarget::Driver(context) => self.report(ApplyReport::Read { context, reply }),
        }
        Ok(())
    }

    fn install(
        &mut self,
        index: LogIndex,
        data: &[u8],
        done: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<(), MachineError> {
        let installed = self.machine.install_snapshot(data)?;
        assert_eq!(installed, index, "a screened snapshot holds the state at the index it covers");
        self.last_flush = Instant::now();
        self.bytes_since_flush = 0;
        let keys = self.machine.key_count()?;
        self.report(ApplyReport::Installed { index, keys });
        self.report(ApplyReport::Durable { index: self.machine.durable_index() });
        if let Some(done) = done {
            let _ = done.send(());
        }
        Ok(())
    }

    fn take_snapshot(&mut self, outgoing_dir: Option<std::path::PathBuf>) -> Result<(), MachineError> {
        self.flush()?;
        let index = self.machine.applied_index();
        let job = self.machine.snapshot_job()?;
        let reports = self.reports.clone();
        // The view holds the state at `index` while the next batches commit.
        let spawned = std::thread::Builder::new().name("snapshot".into()).spawn(move || {
            crate::background::lower_this_thread();
            let made = match outgoing_dir {
                Some(dir) => conclave_storage::snapshot::write_outgoing(&dir, job),
                None => super::super::kv::machine::run_to_vec(job).map(bytes::Bytes::from),
            };
            let report = match made {
                Ok(data) => ApplyReport::SnapshotTaken { index, data },
                Err(failure) => ApplyReport::Failed(failure),
            };
            let _ = reports.send(report);
        });
        if let Err(failure) = spawned {
            warn!(%failure, "cannot start a snapshot thread; no snapshot taken");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use conclave_core::Entry;

    use super::*;
    use crate::kv::{KvStore, SetCondition};

    fn set_entry(index: LogIndex, value: &str) -> Entry {
        let command = KvCommand::Set { key: b"k".to_vec(), value: value.into(), condition: SetCondition::Always };
        let envelope = Envelope { origin: 1, incarnation: 9, request_id: index, command, settled_below: 0 };
        Entry { term: 1, index, payload: Payload::Command(envelope.encode().into()) }
    }

    fn get() -> KvCommand {
        KvCommand::Get(b"k".to_vec())
    }

    fn next(reports: &mut tokio::sync::mpsc::UnboundedReceiver<ApplyReport>) -> ApplyReport {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match reports.try_recv() {
                Ok(report) => return report,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
                Err(error) => panic!("no report within 10 s: {error}"),
            }
        }
    }

    // The interface contract with the driver: a read is served exactly where it
    // was placed in the stream, after the entries before it and none after.
    #[test]
    fn a_read_is_served_at_its_place_in_the_stream() {
        let (sender, mut reports) = tokio::sync::mpsc::unbounded_channel();
        let policy = FlushPolicy { interval: Duration::from_secs(1), bytes: 1 << 20 };
        let mut applier = Applier::start(1, Box::new(KvStore::default()), policy, sender);
        applier.send(ApplyItem::Apply(vec![set_entry(1, "one")]));
        applier.send(ApplyItem::ServeRead { target: ReadTarget::Driver(100), command: get() });
        applier.send(ApplyItem::Apply(vec![set_entry(2, "two")]));
        applier.send(ApplyItem::Apply(vec![set_entry(3, "three")]));
        applier.send(ApplyItem::ServeRead { target: ReadTarget::Driver(101), command: get() });
        // Replayed entries (at or below the applied index) are skipped.
        applier.send(ApplyItem::Apply(vec![set_entry(2, "two again")]));
        applier.send(ApplyItem::ServeRead { target: ReadTarget::Driver(102), command: get() });
        let mut seen = Vec::new();
        while seen.len() < 3 {
            match next(&mut reports) {
                ApplyReport::Read { context, reply } => seen.push((context, reply)),
                ApplyReport::Applied { commands, .. } => {
                    assert!(commands.iter().all(|command| command.origin.0 == 1 && command.reply == KvReply::Ok))
                }
                ApplyReport::Failed(failure) => panic!("{failure}"),
                _ => {}
            }
        }
        assert_eq!(
            seen,
            vec![
                (100, KvReply::Bulk("one".into())),
                (101, KvReply::Bulk("three".into())),
                (102, KvReply::Bulk("three".into()))
            ]
        );
        applier.stop();
    }

    #[test]
    fn a_snapshot_is_taken_at_the_point_of_the_stream_it_was_asked_at() {
        let (sender, mut reports) = tokio::sync::mpsc::unbounded_channel();
        let policy = FlushPolicy { interval: Duration::from_secs(1), bytes: 1 << 20 };
        let dir = tempfile::tempdir().unwrap();
        let identity = crate::kv::EngineIdentity { cluster_id: 7, node_id: 1 };
        let engine = crate::kv::EngineStore::open(&dir.path().join("state.redb"), identity, 1 << 20).unwrap();
        let mut applier = Applier::start(1, Box::new(engine), policy, sender);
        applier.send(ApplyItem::Apply(vec![set_entry(1, "one"), set_entry(2, "two")]));
        applier.send(ApplyItem::TakeSnapshot { outgoing_dir: None });
        applier.send(ApplyItem::Apply(vec![set_entry(3, "three")]));
        let (mut snapshot, mut durable) = (None, 0);
        while snapshot.is_none() {
            match next(&mut reports) {
                ApplyReport::SnapshotTaken { index, data } => snapshot = Some((index, data)),
                ApplyReport::Durable { index } => durable = durable.max(index),
                ApplyReport::Failed(failure) => panic!("{failure}"),
                _ => {}
            }
        }
        let (index, data) = snapshot.unwrap();
        assert_eq!(index, 2);
        assert!(durable >= 2, "a snapshot is taken at a durable index");
        let (store, at) = KvStore::decode_snapshot(&data).unwrap();
        assert_eq!((at, store.read(&get())), (2, KvReply::Bulk("two".into())));
        applier.stop();
    }
}

//! Group commit: outputs produced while a sync is in flight are gathered and
//! persisted together with one write and one sync, on a blocking thread so the
//! driver keeps taking inputs meanwhile. An output is handed back (to be sent
//! and applied) only after its own persist and every earlier one completed.
//!
//! Snapshots go through the same queue, in order with the outputs: a snapshot
//! the core installed (`Output::snapshot`) is saved before its own batch's hard
//! state and log write, and one the driver took ([`GroupCommit::save_snapshot`])
//! after everything queued before it. The file of the driver's own snapshot is
//! written beside the queue when no other snapshot file is being written, so
//! that a large file's write and sync does not hold up the persists (and the
//! heartbeats they release) behind it; its WAL record then takes its turn.
//! Each save makes the snapshot file durable,
//! then records it in the WAL, then deletes the segments it covers
//! ([`conclave_storage::Wal::compact`]); a crash between any two of these steps
//! recovers (docs/decisions/0035-server-snapshots.md).

use std::sync::Arc;
use std::time::Instant;

use conclave_core::{LogIndex, Output};
use conclave_storage::{LogStore, PersistRequest, Snapshot, StorageError, Wal};
use tokio::task::JoinHandle;

use crate::error::ServerError;
use crate::observe::Observability;

/// One thing to make durable, in queue order.
// Outputs are by far the most frequent job; boxing them would cost an
// allocation per batch to save a few hundred bytes on the rare snapshot jobs.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Job {
    /// A core output (hard state, log write, and possibly an installed snapshot).
    Output(Output),
    /// A snapshot of the driver's own state machine (its bytes are shared
    /// with the core's: the copy into the storage form is made on the persist
    /// thread, never on the driver).
    Snapshot(conclave_core::Snapshot),
    /// The WAL record of a snapshot of the driver's own state machine whose
    /// file was written beside the queue (see [`GroupCommit::save_snapshot`]).
    Record(conclave_core::Snapshot),
}

impl Job {
    fn needs_persist(&self) -> bool {
        match self {
            Job::Output(output) => output.needs_persist(),
            Job::Snapshot(_) | Job::Record(_) => true,
        }
    }

    /// Whether persisting it writes the snapshot file.
    fn writes_snapshot_file(&self) -> bool {
        matches!(self, Job::Snapshot(_)) || matches!(self, Job::Output(output) if output.snapshot.is_some())
    }
}

type Persisted = (Wal, Vec<Job>, Result<(), StorageError>);
type SideWrite = (conclave_core::Snapshot, Result<(), StorageError>);

pub(crate) struct GroupCommit {
    /// The WAL while no persist runs (it travels to the blocking thread and back).
    wal: Option<Wal>,
    in_flight: Option<JoinHandle<Persisted>>,
    /// Whether the persist in flight writes the snapshot file.
    in_flight_installs: bool,
    /// The file of this node's own snapshot, written beside the queue: a large
    /// file's write and sync must not hold up the small persists behind it
    /// (and the messages they release, heartbeats among them).
    side_write: Option<JoinHandle<SideWrite>>,
    /// The data of the snapshot saved last, for the core (`take_saved_snapshot_data`).
    saved_data: Option<(LogIndex, bytes::Bytes)>,
    dir: std::path::PathBuf,
    /// Jobs waiting behind the persist in flight, in order.
    queued: Vec<Job>,
    /// Persists started (one write and one sync each), for `INFO`.
    pub(crate) syncs: u64,
    /// Snapshots of this node's own state machine made durable.
    pub(crate) snapshots_saved: u64,
    /// Last index of the newest snapshot made durable (0 without one).
    pub(crate) durable_snapshot_index: LogIndex,
    observe: Arc<Observability>,
}

impl GroupCommit {
    pub(crate) fn new(wal: Wal, observe: Arc<Observability>) -> GroupCommit {
        let durable_snapshot_index = wal.snapshot().map_or(0, |snapshot| snapshot.last_included_index);
        let dir = wal.dir().to_path_buf();
        GroupCommit {
            wal: Some(wal),
            in_flight: None,
            in_flight_installs: false,
            side_write: None,
            saved_data: None,
            dir,
            queued: Vec::new(),
            syncs: 0,
            snapshots_saved: 0,
            durable_snapshot_index,
            observe,
        }
    }

    /// Takes an output. Returns it at once if nothing is in flight or queued and it
    /// needs nothing durable; otherwise it waits its turn.
    pub(crate) fn push(&mut self, output: Output) -> Option<Output> {
        if self.in_flight.is_none() && self.queued.is_empty() && !output.needs_persist() {
            return Some(output);
        }
        self.queued.push(Job::Output(output));
        None
    }

    /// Queues a snapshot of the state machine, saved after everything queued
    /// before it (its entries are durable already: they were applied).
    ///
    /// Its file is written beside the queue when no other snapshot file is
    /// being written (one the core installed, in a persist, or another of its
    /// own): once durable, its WAL record takes its turn in the queue. Else it
    /// waits in the queue and is written there, as before.
    pub(crate) fn save_snapshot(&mut self, snapshot: conclave_core::Snapshot) {
        let installing = self.in_flight_installs || self.queued.iter().any(Job::writes_snapshot_file);
        if self.side_write.is_some() || installing {
            self.queued.push(Job::Snapshot(snapshot));
            return;
        }
        let dir = self.dir.clone();
        self.side_write = Some(tokio::task::spawn_blocking(move || {
            let result = conclave_storage::snapshot::save_core(&dir, &snapshot);
            (snapshot, result)
        }));
    }

    /// The snapshot file written beside the queue is durable: its WAL record
    /// joins the queue.
    fn side_write_done(&mut self, joined: Result<SideWrite, tokio::task::JoinError>) -> Result<(), ServerError> {
        self.side_write = None;
        let (snapshot, result) = joined.map_err(|error| ServerError::PersistTask(error.to_string()))?;
        result?;
        self.queued.push(Job::Record(snapshot));
        Ok(())
    }

    /// The data of the snapshot saved last, as the storage now holds it (the
    /// mapped file), once per saved snapshot.
    pub(crate) fn take_saved_snapshot_data(&mut self) -> Option<(LogIndex, bytes::Bytes)> {
        self.saved_data.take()
    }

    /// True if nothing is in flight or queued.
    pub(crate) fn is_idle(&self) -> bool {
        self.in_flight.is_none() && self.queued.is_empty() && self.side_write.is_none()
    }

    /// The WAL, when no persist runs.
    pub(crate) fn wal(&self) -> Option<&Wal> {
        self.wal.as_ref()
    }

    /// Starts persisting everything queued if no persist runs. Returns queued
    /// outputs that need nothing durable and may be released now.
    pub(crate) fn start_if_idle(&mut self) -> Vec<Output> {
        if self.in_flight.is_some() || self.queued.is_empty() {
            return Vec::new();
        }
        // One snapshot file written at a time: one in the queue waits for ours.
        if self.side_write.is_some() && self.queued.iter().any(Job::writes_snapshot_file) {
            return Vec::new();
        }
        let jobs = std::mem::take(&mut self.queued);
        if !jobs.iter().any(Job::needs_persist) {
            return outputs_of(jobs, &mut Vec::new());
        }
        self.in_flight_installs = jobs.iter().any(Job::writes_snapshot_file);
        let mut wal = self.wal.take().expect("the WAL is home while nothing is in flight");
        self.syncs += 1;
        let observe = self.observe.clone();
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let result = persist_jobs(&mut wal, &jobs);
            observe.metrics.fsync_ms.observe(started.elapsed().as_secs_f64() * 1000.0);
            (wal, jobs, result)
        }));
        Vec::new()
    }

    /// Completes when the persist in flight is durable, with its outputs; never
    /// completes if none is in flight.
    /// A snapshot file written beside the queue completing counts as a
    /// completion with no outputs.
    pub(crate) async fn completion(&mut self) -> Result<Vec<Output>, ServerError> {
        tokio::select! {
            joined = async { self.side_write.as_mut().expect("checked").await }, if self.side_write.is_some() => {
                self.side_write_done(joined)?;
                Ok(Vec::new())
            }
            joined = async { self.in_flight.as_mut().expect("checked").await }, if self.in_flight.is_some() => {
                self.persisted(joined)
            }
            else => std::future::pending().await,
        }
    }

    fn persisted(&mut self, joined: Result<Persisted, tokio::task::JoinError>) -> Result<Vec<Output>, ServerError> {
        self.in_flight = None;
        self.in_flight_installs = false;
        let (wal, jobs, result) = joined.map_err(|error| ServerError::PersistTask(error.to_string()))?;
        self.wal = Some(wal);
        result?;
        let mut saved = Vec::new();
        let outputs = outputs_of(jobs, &mut saved);
        self.snapshots_saved += saved.len() as u64;
        if let Some(saved) = self.wal.as_ref().and_then(|wal| wal.snapshot()) {
            if saved.last_included_index > self.durable_snapshot_index {
                // The core may hold the same snapshot in memory: it gets the
                // saved (mapped) bytes instead (`take_saved_snapshot_data`).
                self.saved_data = Some((saved.last_included_index, saved.data.clone()));
            }
            self.durable_snapshot_index = saved.last_included_index;
        }
        Ok(outputs)
    }

    /// Waits for the persist in flight, if any (shutdown).
    pub(crate) async fn finish(&mut self) -> Option<Result<Vec<Output>, ServerError>> {
        let joined = self.in_flight.as_mut()?.await;
        Some(self.persisted(joined))
    }
}

/// The outputs among `jobs`, in order; the indexes of the driver's own
/// snapshots go to `saved`.
fn outputs_of(jobs: Vec<Job>, saved: &mut Vec<LogIndex>) -> Vec<Output> {
    let mut outputs = Vec::with_capacity(jobs.len());
    for job in jobs {
        match job {
            Job::Output(output) => outputs.push(output),
            Job::Snapshot(snapshot) | Job::Record(snapshot) => saved.push(snapshot.meta.last_included_index),
        }
    }
    outputs
}

/// Persists `jobs` in order: runs of outputs with one write and one sync, each
/// snapshot on its own before what follows it.
fn persist_jobs(wal: &mut Wal, jobs: &[Job]) -> Result<(), StorageError> {
    let mut requests: Vec<PersistRequest<'_>> = Vec::with_capacity(jobs.len());
    for job in jobs {
        if let Job::Record(snapshot) = job {
            wal.persist(&requests)?;
            requests.clear();
            // A newer snapshot (a leader's) was saved since: the file is its.
            if snapshot.meta.last_included_index > wal.snapshot().map_or(0, |saved| saved.last_included_index) {
                let index = snapshot.meta.last_included_index;
                wal.record_saved_snapshot(Snapshot::from_core(snapshot))?;
                wal.compact(index)?;
            }
            continue;
        }
        let snapshot = match job {
            Job::Output(output) => output.snapshot.as_ref().map(Snapshot::from_core),
            Job::Snapshot(snapshot) => Some(Snapshot::from_core(snapshot)),
            Job::Record(_) => None,
        };
        if let Some(snapshot) = snapshot {
            // What is queued before the snapshot reaches the disk before it.
            wal.persist(&requests)?;
            requests.clear();
            save_and_compact(wal, snapshot)?;
        }
        if let Job::Output(output) = job {
            requests.push(PersistRequest::from_output(output));
        }
    }
    wal.persist(&requests)
}

/// The snapshot file, then its WAL record (both durable in
/// [`LogStore::save_snapshot`]), then the segments it covers deleted.
fn save_and_compact(wal: &mut Wal, snapshot: Snapshot) -> Result<(), StorageError> {
    let index = snapshot.last_included_index;
    wal.save_snapshot(snapshot)?;
    wal.compact(index)
}

#[cfg(test)]
mod tests {
    use conclave_core::{Entry, Event, HardState, LogWrite, Payload};
    use conclave_storage::WalOptions;

    use super::*;

    fn durable(term: u64) -> Output {
        Output { hard_state: Some(HardState { term, voted_for: Some(1), commit: 0 }), ..Output::default() }
    }

    fn volatile(term: u64) -> Output {
        Output { events: vec![Event::QuorumLost { term }], ..Output::default() }
    }

    // Reference: the core's Output contract (persist, then send, then apply).
    #[tokio::test]
    async fn nothing_is_released_before_the_persists_ahead_of_it_completed() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), WalOptions::new(7, 1)).unwrap();
        let mut group = GroupCommit::new(wal, Observability::new(1));
        assert_eq!(group.push(volatile(1)), Some(volatile(1)), "nothing ahead, nothing to persist: at once");
        assert_eq!(group.push(durable(1)), None);
        assert_eq!(group.push(volatile(2)), None, "waits behind the durable one");
        assert!(group.start_if_idle().is_empty(), "a persist started");
        assert_eq!(group.push(durable(2)), None);
        assert_eq!(group.push(volatile(3)), None);
        assert!(group.start_if_idle().is_empty(), "one persist at a time");
        assert_eq!(group.completion().await.unwrap(), vec![durable(1), volatile(2)]);
        // The outputs gathered meanwhile go in one more persist: group commit.
        assert!(group.start_if_idle().is_empty());
        assert_eq!(group.completion().await.unwrap(), vec![durable(2), volatile(3)]);
        assert_eq!(group.syncs, 2);
        assert!(group.finish().await.is_none());
    }

    fn append(first: u64, count: u64) -> Output {
        let entries = (first..first + count)
            .map(|index| Entry { term: 1, index, payload: Payload::Command(vec![7; 100].into()) })
            .collect();
        Output {
            hard_state: Some(HardState { term: 1, voted_for: Some(1), commit: first + count - 1 }),
            log_write: Some(LogWrite { first_index: first, entries }),
            ..Output::default()
        }
    }

    fn snapshot(index: u64, term: u64) -> Snapshot {
        Snapshot {
            last_included_index: index,
            last_included_term: term,
            membership: conclave_core::Membership::bootstrap(&[1], &Default::default()),
            last_leader_term: None,
            data: format!("state at {index}").into_bytes().into(),
        }
    }

    fn small_segments() -> WalOptions {
        WalOptions::new(7, 1).with_segment_bytes(4096)
    }

    // The driver's own snapshot: saved after what was queued before it, then the
    // segments it covers are deleted; a restart finds the snapshot and the rest.
    #[tokio::test]
    async fn a_snapshot_is_saved_in_order_and_the_segments_it_covers_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let mut group = GroupCommit::new(Wal::open(dir.path(), small_segments()).unwrap(), Observability::new(1));
        for batch in 0..10 {
            assert_eq!(group.push(append(batch * 20 + 1, 20)), None);
            assert!(group.start_if_idle().is_empty());
            assert_eq!(group.completion().await.unwrap().len(), 1);
        }
        let segments_before = group.wal().unwrap().segment_paths().len();
        assert!(segments_before > 3, "small segments roll: {segments_before}");
        group.save_snapshot(snapshot(150, 1).to_core());
        assert_eq!(group.push(append(201, 10)), None, "persisted while the snapshot file is written beside");
        assert!(!group.is_idle());
        // The file's write and the append complete in either order; the WAL
        // record of the snapshot then takes its turn in the queue.
        let mut released = Vec::new();
        for _ in 0..10 {
            if group.is_idle() {
                break;
            }
            assert!(group.start_if_idle().is_empty());
            released.extend(group.completion().await.unwrap());
        }
        assert_eq!(released, vec![append(201, 10)], "only outputs come back");
        assert!(group.is_idle());
        assert_eq!((group.durable_snapshot_index, group.snapshots_saved), (150, 1));
        let wal = group.wal().unwrap();
        let segments_after = wal.segment_paths().len();
        assert!(segments_after < segments_before, "{segments_after} segments left of {segments_before}");
        assert_eq!((wal.first_index(), wal.last_index()), (151, 210));
        drop(group);
        let wal = Wal::open(dir.path(), small_segments()).unwrap();
        let restored = wal.restored_state().unwrap();
        assert_eq!(restored.snapshot.map(|s| s.meta.last_included_index), Some(150));
        assert_eq!(restored.entries.first().map(|entry| entry.index), Some(151));
        assert_eq!(restored.entries.len(), 60);
    }

    // An installed snapshot goes to disk before its own batch's hard state, which
    // already counts the snapshot's last index as committed.
    #[tokio::test]
    async fn an_installed_snapshot_is_saved_before_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut group = GroupCommit::new(Wal::open(dir.path(), small_segments()).unwrap(), Observability::new(1));
        assert_eq!(group.push(append(1, 5)), None);
        let installed = Output {
            hard_state: Some(HardState { term: 3, voted_for: None, commit: 300 }),
            snapshot: Some(snapshot(300, 3).to_core()),
            ..Output::default()
        };
        assert_eq!(group.push(installed.clone()), None);
        assert!(group.start_if_idle().is_empty());
        assert_eq!(group.completion().await.unwrap(), vec![append(1, 5), installed]);
        assert_eq!((group.durable_snapshot_index, group.snapshots_saved), (300, 0), "not this node's own");
        drop(group);
        let wal = Wal::open(dir.path(), small_segments()).unwrap();
        let restored = wal.restored_state().unwrap();
        assert_eq!(restored.hard_state.commit, 300);
        assert_eq!(restored.snapshot.map(|s| s.meta.last_included_index), Some(300));
        assert!(restored.entries.is_empty(), "the leader's snapshot superseded the log");
    }
}

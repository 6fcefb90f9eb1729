//! Group commit: outputs produced while a sync is in flight are gathered and
//! persisted together with one write and one sync, on a blocking thread so the
//! driver keeps taking inputs meanwhile. An output is handed back (to be sent
//! and applied) only after its own persist and every earlier one completed.

use std::sync::Arc;
use std::time::Instant;

use conclave_core::Output;
use conclave_storage::{LogStore, PersistRequest, StorageError, Wal};
use tokio::task::JoinHandle;

use crate::error::ServerError;
use crate::observe::Observability;

type Persisted = (Wal, Vec<Output>, Result<(), StorageError>);

pub(crate) struct GroupCommit {
    /// The WAL while no persist runs (it travels to the blocking thread and back).
    wal: Option<Wal>,
    in_flight: Option<JoinHandle<Persisted>>,
    /// Outputs waiting behind the persist in flight, in order.
    queued: Vec<Output>,
    /// Persists started (one write and one sync each), for `INFO`.
    pub(crate) syncs: u64,
    observe: Arc<Observability>,
}

impl GroupCommit {
    pub(crate) fn new(wal: Wal, observe: Arc<Observability>) -> GroupCommit {
        GroupCommit { wal: Some(wal), in_flight: None, queued: Vec::new(), syncs: 0, observe }
    }

    /// Takes an output. Returns it at once if nothing is in flight or queued and it
    /// needs nothing durable; otherwise it waits its turn.
    pub(crate) fn push(&mut self, output: Output) -> Option<Output> {
        if self.in_flight.is_none() && self.queued.is_empty() && !output.needs_persist() {
            return Some(output);
        }
        self.queued.push(output);
        None
    }

    /// Starts persisting everything queued if no persist runs. Returns queued
    /// outputs that need nothing durable and may be released now.
    pub(crate) fn start_if_idle(&mut self) -> Vec<Output> {
        if self.in_flight.is_some() || self.queued.is_empty() {
            return Vec::new();
        }
        let outputs = std::mem::take(&mut self.queued);
        if !outputs.iter().any(Output::needs_persist) {
            return outputs;
        }
        let mut wal = self.wal.take().expect("the WAL is home while nothing is in flight");
        self.syncs += 1;
        let observe = self.observe.clone();
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            let requests: Vec<PersistRequest<'_>> = outputs.iter().map(PersistRequest::from_output).collect();
            let started = Instant::now();
            let result = wal.persist(&requests);
            observe.metrics.fsync_ms.observe(started.elapsed().as_secs_f64() * 1000.0);
            (wal, outputs, result)
        }));
        Vec::new()
    }

    /// Completes when the persist in flight is durable, with its outputs; never
    /// completes if none is in flight.
    pub(crate) async fn completion(&mut self) -> Result<Vec<Output>, ServerError> {
        let Some(handle) = self.in_flight.as_mut() else {
            return std::future::pending().await;
        };
        let joined = handle.await;
        self.in_flight = None;
        let (wal, outputs, result) = joined.map_err(|error| ServerError::PersistTask(error.to_string()))?;
        self.wal = Some(wal);
        result?;
        Ok(outputs)
    }

    /// Waits for the persist in flight, if any (shutdown).
    pub(crate) async fn finish(&mut self) -> Option<Result<Vec<Output>, ServerError>> {
        self.in_flight.as_ref()?;
        Some(self.completion().await)
    }
}

#[cfg(test)]
mod tests {
    use conclave_core::{Event, HardState};
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
}

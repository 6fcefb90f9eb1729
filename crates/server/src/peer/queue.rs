//! One peer's outgoing queue: two bounded classes so that heartbeats and votes
//! are never stuck behind a backlog of large appends.
//!
//! The writer always drains the urgent class first. A full class drops its
//! oldest frame: the protocol tolerates loss (the leader re-sends what a
//! follower lacks), and a dropped forward ends in its request's timeout, which
//! the client sees as `-TRYAGAIN`. A frame that is already being written is not
//! interrupted, so the worst delay for a heartbeat is one frame's write.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;

/// Encoded frames waiting for one peer's connection.
#[derive(Debug)]
pub struct PeerQueue {
    frames: Mutex<Classes>,
    ready: Notify,
    capacity: usize,
    dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct Classes {
    urgent: VecDeque<Vec<u8>>,
    bulk: VecDeque<Vec<u8>>,
}

impl PeerQueue {
    /// A queue holding at most `capacity` frames per class.
    pub fn new(capacity: usize) -> PeerQueue {
        assert!(capacity > 0, "a queue must hold at least one frame");
        PeerQueue { frames: Mutex::new(Classes::default()), ready: Notify::new(), capacity, dropped: AtomicU64::new(0) }
    }

    /// Queues an encoded frame in its class, dropping that class's oldest if full.
    pub fn push(&self, frame: Vec<u8>, urgent: bool) {
        {
            let mut classes = self.frames.lock().expect("peer queue lock poisoned");
            let class = if urgent { &mut classes.urgent } else { &mut classes.bulk };
            if class.len() >= self.capacity {
                class.pop_front();
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            class.push_back(frame);
        }
        self.ready.notify_one();
    }

    /// Takes up to `max_bytes` of frames (at least one if any), urgent ones first.
    pub fn take_batch(&self, max_bytes: usize) -> Vec<Vec<u8>> {
        let mut classes = self.frames.lock().expect("peer queue lock poisoned");
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(frame) = classes.urgent.pop_front().or_else(|| classes.bulk.pop_front()) {
            bytes += frame.len();
            batch.push(frame);
            if bytes >= max_bytes {
                break;
            }
        }
        batch
    }

    /// Waits until a frame may be available.
    pub async fn wait(&self) {
        self.ready.notified().await
    }

    /// Frames dropped because a class was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urgent_frames_go_first_and_full_classes_drop_their_oldest() {
        let queue = PeerQueue::new(2);
        queue.push(vec![1], false);
        queue.push(vec![2], false);
        queue.push(vec![3], false);
        queue.push(vec![9], true);
        assert_eq!(queue.dropped(), 1);
        assert_eq!(queue.take_batch(usize::MAX), vec![vec![9], vec![2], vec![3]]);
        assert!(queue.take_batch(usize::MAX).is_empty());
    }

    #[test]
    fn a_batch_stops_at_its_byte_budget() {
        let queue = PeerQueue::new(8);
        for _ in 0..4 {
            queue.push(vec![0; 10], false);
        }
        assert_eq!(queue.take_batch(15).len(), 2);
    }
}

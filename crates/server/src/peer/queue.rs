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
    /// Bulk frames, each with the request id if it is a forwarded command.
    bulk: VecDeque<(Vec<u8>, Option<u64>)>,
}

impl PeerQueue {
    /// A queue holding at most `capacity` frames per class.
    pub fn new(capacity: usize) -> PeerQueue {
        assert!(capacity > 0, "a queue must hold at least one frame");
        PeerQueue { frames: Mutex::new(Classes::default()), ready: Notify::new(), capacity, dropped: AtomicU64::new(0) }
    }

    /// Queues an urgent encoded frame, dropping the oldest urgent one if full.
    pub fn push_urgent(&self, frame: Vec<u8>) {
        {
            let mut classes = self.frames.lock().expect("peer queue lock poisoned");
            if classes.urgent.len() >= self.capacity {
                classes.urgent.pop_front();
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            classes.urgent.push_back(frame);
        }
        self.ready.notify_one();
    }

    /// Queues a bulk encoded frame (tagged with its request id if it is a
    /// forward), dropping the oldest bulk one if full.
    pub fn push_bulk(&self, frame: Vec<u8>, forward: Option<u64>) {
        {
            let mut classes = self.frames.lock().expect("peer queue lock poisoned");
            if classes.bulk.len() >= self.capacity {
                classes.bulk.pop_front();
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            classes.bulk.push_back((frame, forward));
        }
        self.ready.notify_one();
    }

    /// Removes the forwards still queued and returns their request ids. They
    /// were never written to a socket, so the peer cannot have seen them: they
    /// may safely go to another leader.
    pub fn take_unsent_forwards(&self) -> Vec<u64> {
        let mut classes = self.frames.lock().expect("peer queue lock poisoned");
        let mut ids = Vec::new();
        classes.bulk.retain(|(_, forward)| match forward {
            Some(id) => {
                ids.push(*id);
                false
            }
            None => true,
        });
        ids
    }

    /// Takes up to `max_bytes` of frames (at least one if any), urgent ones first.
    pub fn take_batch(&self, max_bytes: usize) -> Vec<Vec<u8>> {
        let mut classes = self.frames.lock().expect("peer queue lock poisoned");
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(frame) = classes.urgent.pop_front().or_else(|| classes.bulk.pop_front().map(|(frame, _)| frame))
        {
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
        queue.push_bulk(vec![1], None);
        queue.push_bulk(vec![2], None);
        queue.push_bulk(vec![3], None);
        queue.push_urgent(vec![9]);
        assert_eq!(queue.dropped(), 1);
        assert_eq!(queue.take_batch(usize::MAX), vec![vec![9], vec![2], vec![3]]);
        assert!(queue.take_batch(usize::MAX).is_empty());
    }

    #[test]
    fn a_batch_stops_at_its_byte_budget() {
        let queue = PeerQueue::new(8);
        for _ in 0..4 {
            queue.push_bulk(vec![0; 10], None);
        }
        assert_eq!(queue.take_batch(15).len(), 2);
    }

    #[test]
    fn unsent_forwards_can_be_taken_back() {
        let queue = PeerQueue::new(8);
        queue.push_bulk(vec![1], Some(11));
        queue.push_bulk(vec![2], None);
        queue.push_bulk(vec![3], Some(12));
        assert_eq!(queue.take_batch(1), vec![vec![1]]); // Request 11 went out.
        assert_eq!(queue.take_unsent_forwards(), vec![12]);
        assert_eq!(queue.take_batch(usize::MAX), vec![vec![2]]);
    }
}

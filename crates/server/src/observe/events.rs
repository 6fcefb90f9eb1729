//! A bounded ring buffer of the core's events, stamped with wall-clock time,
//! so that `conclave demo` (or an operator) can replay an election across nodes.

use std::collections::VecDeque;
use std::sync::Mutex;

use conclave_core::{Event, NodeId};
use serde::{Deserialize, Serialize};

/// Events kept per node; older ones are dropped first.
pub const CAPACITY: usize = 1024;

/// One event as `GET /events` serves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// Wall-clock milliseconds since the UNIX epoch.
    pub at_ms: u64,
    /// The node that saw it.
    pub node: NodeId,
    /// The core's event.
    pub event: Event,
}

/// The newest [`CAPACITY`] events of one node.
#[derive(Debug)]
pub struct EventLog {
    node: NodeId,
    capacity: usize,
    buffer: Mutex<VecDeque<RecordedEvent>>,
}

impl EventLog {
    /// An empty log keeping at most `capacity` events.
    pub fn new(node: NodeId, capacity: usize) -> EventLog {
        assert!(capacity > 0, "an event log must hold at least one event");
        EventLog { node, capacity, buffer: Mutex::new(VecDeque::with_capacity(capacity)) }
    }

    /// Appends `event` seen at `at_ms`, dropping the oldest when full.
    pub fn record(&self, at_ms: u64, event: Event) {
        let mut buffer = self.buffer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buffer.len() == self.capacity {
            buffer.pop_front();
        }
        buffer.push_back(RecordedEvent { at_ms, node: self.node, event });
    }

    /// Every event kept, oldest first.
    pub fn snapshot(&self) -> Vec<RecordedEvent> {
        self.buffer.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_events_in_order() {
        let log = EventLog::new(3, 2);
        for term in 1..=3 {
            log.record(term * 10, Event::QuorumLost { term });
        }
        let kept = log.snapshot();
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].event, Event::QuorumLost { term: 2 });
        assert_eq!(kept[1].at_ms, 30);
        assert_eq!(kept[1].node, 3);
    }
}

//! What a node tells operators beyond its status: counters and histograms for
//! `GET /metrics` ([`metrics`]) and the election events of `GET /events`
//! ([`events`]). Shared by the driver, the client API and the HTTP endpoint.

pub mod events;
pub mod metrics;

use std::sync::Arc;

pub use events::{EventLog, RecordedEvent};
pub use metrics::{Histogram, Metrics};

/// Everything the HTTP endpoint reads besides the status.
#[derive(Debug)]
pub struct Observability {
    /// Counters and histograms.
    pub metrics: Metrics,
    /// The bounded log of election events.
    pub events: EventLog,
}

impl Observability {
    /// Fresh counters and an empty event log for `node`.
    pub fn new(node: conclave_core::NodeId) -> Arc<Observability> {
        Arc::new(Observability { metrics: Metrics::default(), events: EventLog::new(node, events::CAPACITY) })
    }
}

/// Milliseconds since the UNIX epoch: wall-clock, so that a reader can line up
/// the events of several nodes (never used for protocol timing).
pub fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_millis() as u64)
}

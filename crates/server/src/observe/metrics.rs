//! Counters and histograms in the Prometheus text exposition format (0.0.4),
//! written by hand: a few lines of formatting do not justify a dependency and
//! its registry machinery.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use conclave_core::{Detector, DropReason};

use crate::status::NodeStatus;

/// Bucket upper bounds for the failover time, in milliseconds.
const FAILOVER_BUCKETS_MS: [f64; 14] =
    [5.0, 10.0, 20.0, 30.0, 50.0, 100.0, 200.0, 300.0, 500.0, 750.0, 1000.0, 2000.0, 5000.0, 10000.0];
/// Bucket upper bounds for a WAL write plus sync, in milliseconds.
const FSYNC_BUCKETS_MS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0];

/// Bucket upper bounds for how late a driver timer fired, in milliseconds.
const LATENESS_BUCKETS_MS: [f64; 12] = [0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0];

/// A cumulative histogram with fixed buckets.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    inner: Mutex<HistogramCounts>,
}

#[derive(Debug, Default, Clone)]
struct HistogramCounts {
    /// Per bucket, not cumulative; the last slot is `+Inf`.
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        let counts = HistogramCounts { buckets: vec![0; bounds.len() + 1], ..HistogramCounts::default() };
        Histogram { bounds, inner: Mutex::new(counts) }
    }

    /// Records one observation.
    pub fn observe(&self, value: f64) {
        let slot = self.bounds.iter().position(|&bound| value <= bound).unwrap_or(self.bounds.len());
        let mut counts = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        counts.buckets[slot] += 1;
        counts.sum += value;
        counts.count += 1;
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).count
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let counts = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&counts.buckets) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", counts.count);
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", counts.sum, counts.count);
    }
}

/// A node's counters. Monotonic unless named as a gauge.
#[derive(Debug)]
pub struct Metrics {
    /// Election rounds this node started (pre-vote rounds included).
    pub elections_started: AtomicU64,
    /// Elections this node won (it became leader-elect).
    pub elections_won: AtomicU64,
    /// Commands proposed by this node as leader (its own clients' and forwarded).
    pub proposals: AtomicU64,
    /// Log entries committed and applied here.
    pub commits: AtomicU64,
    /// Requests sent again, under the same request id, to a new leader after
    /// the one they were sent to was lost.
    pub requests_resent: AtomicU64,
    /// Client connections accepted.
    pub client_connections: AtomicU64,
    /// Client connections open now (a gauge).
    pub client_connections_open: AtomicU64,
    /// Error replies sent to clients.
    pub client_errors: AtomicU64,
    /// Snapshots installed from the leader.
    pub snapshots_installed: AtomicU64,
    /// Snapshots from the leader refused because their data did not decode.
    pub snapshots_rejected: AtomicU64,
    /// Times this node gave up on its leader, by the detector that fired (in
    /// `Detector::ALL` order).
    pub failures_detected: [AtomicU64; 2],
    /// From losing the leader to the first commit of a new leader, as this node saw it.
    pub failover_ms: Histogram,
    /// One WAL write plus sync (a group commit).
    pub fsync_ms: Histogram,
    /// How late the driver loop's timers (ticks) fired against their deadline:
    /// a stall of the task that sends heartbeats shows here.
    pub driver_lateness_ms: Histogram,
    /// The worst lateness so far (a gauge, milliseconds).
    pub driver_lateness_ms_max: AtomicU64,
    /// The state machine's configured cache in bytes (a gauge; 0: unbounded).
    pub state_machine_cache_bytes: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            elections_started: AtomicU64::new(0),
            elections_won: AtomicU64::new(0),
            proposals: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            requests_resent: AtomicU64::new(0),
            client_connections: AtomicU64::new(0),
            client_connections_open: AtomicU64::new(0),
            client_errors: AtomicU64::new(0),
            snapshots_installed: AtomicU64::new(0),
            snapshots_rejected: AtomicU64::new(0),
            failures_detected: [AtomicU64::new(0), AtomicU64::new(0)],
            failover_ms: Histogram::new(&FAILOVER_BUCKETS_MS),
            fsync_ms: Histogram::new(&FSYNC_BUCKETS_MS),
            driver_lateness_ms: Histogram::new(&LATENESS_BUCKETS_MS),
            driver_lateness_ms_max: AtomicU64::new(0),
            state_machine_cache_bytes: AtomicU64::new(0),
        }
    }
}

/// Adds one to a counter.
pub fn increment(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Adds `amount` to a counter.
pub fn increment_by(counter: &AtomicU64, amount: u64) {
    counter.fetch_add(amount, Ordering::Relaxed);
}

/// This process's resident memory in bytes (Linux; `None` elsewhere).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

impl Metrics {
    /// Counts one failure detection by `detector`.
    pub fn failure_detected(&self, detector: Detector) {
        let slot = Detector::ALL.iter().position(|known| *known == detector).expect("every detector is listed");
        increment(&self.failures_detected[slot]);
    }

    /// The exposition text: these metrics and the dropped-message counters of `status`.
    pub fn render(&self, status: &NodeStatus) -> String {
        let mut out = String::with_capacity(4096);
        let counters: [(&str, &str, &AtomicU64); 9] = [
            ("conclave_elections_started_total", "Election rounds this node started.", &self.elections_started),
            ("conclave_elections_won_total", "Elections this node won.", &self.elections_won),
            ("conclave_proposals_total", "Commands this node proposed as leader.", &self.proposals),
            ("conclave_commits_total", "Log entries committed and applied on this node.", &self.commits),
            (
                "conclave_requests_resent_total",
                "Requests sent again to a new leader after theirs was lost.",
                &self.requests_resent,
            ),
            ("conclave_client_connections_total", "Client connections accepted.", &self.client_connections),
            ("conclave_client_errors_total", "Error replies sent to clients.", &self.client_errors),
            ("conclave_snapshots_installed_total", "Snapshots installed from the leader.", &self.snapshots_installed),
            (
                "conclave_snapshots_rejected_total",
                "Snapshots from the leader refused: their data did not decode.",
                &self.snapshots_rejected,
            ),
        ];
        for (name, help, counter) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let open = self.client_connections_open.load(Ordering::Relaxed);
        let name = "conclave_client_connections_open";
        let _ = writeln!(out, "# HELP {name} Client connections open now.\n# TYPE {name} gauge\n{name} {open}");
        let name = "conclave_messages_dropped_total";
        let _ = writeln!(out, "# HELP {name} Peer messages the core dropped, by reason.\n# TYPE {name} counter");
        for reason in DropReason::ALL {
            let count = status.dropped.get(reason.name()).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}{{reason=\"{}\"}} {count}", reason.name());
        }
        let name = "conclave_failures_detected_total";
        let _ = writeln!(
            out,
            "# HELP {name} Times this node gave up on its leader, by the detector that fired.\n# TYPE {name} counter"
        );
        for (detector, count) in Detector::ALL.iter().zip(&self.failures_detected) {
            let _ = writeln!(out, "{name}{{detector=\"{}\"}} {}", detector.name(), count.load(Ordering::Relaxed));
        }
        // From the published status, as the snapshot index below: a scrape
        // never sees a snapshot counted whose index is not yet shown.
        let name = "conclave_snapshots_taken_total";
        let _ = writeln!(out, "# HELP {name} Snapshots of this node's KV store saved.\n# TYPE {name} counter");
        let _ = writeln!(out, "{name} {}", status.snapshots_taken);
        let name = "conclave_snapshot_index";
        let _ = writeln!(out, "# HELP {name} Last index of the newest saved snapshot.\n# TYPE {name} gauge");
        let _ = writeln!(out, "{name} {}", status.snapshot_index);
        let name = "conclave_durable_applied_index";
        let _ = writeln!(out, "# HELP {name} Last applied index durable in the state machine.\n# TYPE {name} gauge");
        let _ = writeln!(out, "{name} {}", status.durable_applied_index);
        let gauges = [
            (
                "conclave_driver_lateness_max_ms",
                "Worst lateness of a driver timer so far, in milliseconds.",
                self.driver_lateness_ms_max.load(Ordering::Relaxed),
            ),
            (
                "conclave_state_machine_cache_bytes",
                "The state machine's configured cache in bytes (0: unbounded, in memory).",
                self.state_machine_cache_bytes.load(Ordering::Relaxed),
            ),
            ("conclave_resident_memory_bytes", "Resident memory of this process.", resident_bytes().unwrap_or(0)),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        let name = "conclave_peer_frames_dropped_total";
        let _ = writeln!(out, "# HELP {name} Peer frames dropped from full send queues.\n# TYPE {name} counter");
        let _ = writeln!(out, "{name} {}", status.dropped_peer_frames);
        self.failover_ms.render(
            &mut out,
            "conclave_failover_ms",
            "Milliseconds from losing the leader to the first commit of the new leader, as this node saw it.",
        );
        self.fsync_ms.render(&mut out, "conclave_fsync_ms", "Milliseconds of one WAL write and sync.");
        self.driver_lateness_ms.render(
            &mut out,
            "conclave_driver_lateness_ms",
            "Milliseconds a driver timer fired after its deadline (a stall of the task that sends heartbeats).",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let metrics = Metrics::default();
        metrics.failover_ms.observe(80.0);
        metrics.failover_ms.observe(20_000.0);
        let text = metrics.render(&NodeStatus::example());
        assert!(text.contains("conclave_failover_ms_bucket{le=\"50\"} 0"));
        assert!(text.contains("conclave_failover_ms_bucket{le=\"100\"} 1"));
        assert!(text.contains("conclave_failover_ms_bucket{le=\"10000\"} 1"));
        assert!(text.contains("conclave_failover_ms_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("conclave_failover_ms_count 2"));
        assert!(text.contains("# TYPE conclave_messages_dropped_total counter"));
    }
}

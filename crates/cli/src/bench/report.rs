//! The figures of a run and how they are printed (a table or one JSON object).

use serde::Serialize;

use super::load::RunResult;

/// The figures of one run (serialized in this order, as an entry of `runs`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunFigures {
    /// Concurrent clients.
    pub clients: usize,
    /// Measured requests.
    pub requests: u64,
    /// Errors (the warm-up's included).
    pub errors: u64,
    /// The first error's text.
    pub first_error: Option<String>,
    /// Acknowledged writes per second of the measured phase.
    pub ops_per_sec: f64,
    /// Median latency of an acknowledged write.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Length of the measured phase.
    pub duration_ms: f64,
    /// Keys read back and found with the value written.
    pub verified: usize,
    /// New ballots bound during the run (elections started and settled).
    pub ballots: u64,
    /// New leaders during the run: with no fault injected, any is a failure.
    pub leader_changes: u64,
}

/// The elections a run saw, from the nodes' `/status` before and after it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Elections {
    /// Increase of the highest ballot any node reports.
    pub ballots: u64,
    /// Increase of the highest committed leader term (the ballot in modes without leader terms).
    pub leader_changes: u64,
}

/// The nearest-rank percentile `p` (0 < p ≤ 1) of sorted values, in ms.
pub fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted_us.len() as f64).ceil() as usize;
    sorted_us[rank.clamp(1, sorted_us.len()) - 1] as f64 / 1000.0
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

impl RunFigures {
    /// The figures of `result`, whose sample of `verified` keys read back.
    pub fn of(result: &RunResult, verified: usize, elections: Elections) -> RunFigures {
        let seconds = result.elapsed.as_secs_f64();
        let acknowledged = result.latencies_us.len() as f64;
        RunFigures {
            clients: result.clients,
            requests: result.requests,
            errors: result.errors,
            first_error: result.first_error.clone(),
            ops_per_sec: if seconds > 0.0 { (acknowledged / seconds * 10.0).round() / 10.0 } else { 0.0 },
            p50_ms: round3(percentile_ms(&result.latencies_us, 0.50)),
            p99_ms: round3(percentile_ms(&result.latencies_us, 0.99)),
            max_ms: round3(percentile_ms(&result.latencies_us, 1.0)),
            duration_ms: round3(seconds * 1000.0),
            verified,
            ballots: elections.ballots,
            leader_changes: elections.leader_changes,
        }
    }
}

/// What the whole bench measured (the `--json` object, in this order).
#[derive(Serialize)]
pub struct BenchReport {
    /// Nodes in the cluster.
    pub nodes: u64,
    /// Always `true`: every WAL write is synced before it counts.
    pub fsync: bool,
    /// Bytes per value.
    pub value_bytes: usize,
    /// `leader` or `any`.
    pub target: &'static str,
    /// The leader the clients found.
    pub leader: u64,
    /// One per client count, in the order asked.
    pub runs: Vec<RunFigures>,
}

impl BenchReport {
    /// The `--json` object on one line, its fields in declaration order.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("the report has no map with non-string keys")
    }

    /// What went wrong, one line per run with errors or a leader change (none:
    /// the bench passed). The bench injects no fault, so a new leader means the
    /// load alone cost the cluster its leader.
    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        for run in &self.runs {
            if run.errors > 0 {
                failures.push(format!(
                    "{} errors with {} clients; the first: {}",
                    run.errors,
                    run.clients,
                    run.first_error.as_deref().unwrap_or("(no text)")
                ));
            }
            if run.leader_changes > 0 {
                failures.push(format!(
                    "{} leader changes with {} clients and no fault injected",
                    run.leader_changes, run.clients
                ));
            }
        }
        failures
    }

    /// The table.
    pub fn table(&self) -> String {
        let to = if self.target == "leader" { "the leader" } else { "every node in turn" };
        let mut out = format!(
            "{} nodes, fsync on, SET of {}-byte values to {to} (leader: node {})\n",
            self.nodes, self.value_bytes, self.leader
        );
        out.push_str(&format!(
            "{:>8} {:>9} {:>7} {:>11} {:>9} {:>9} {:>9} {:>15}\n",
            "clients", "requests", "errors", "ops/s", "p50 ms", "p99 ms", "max ms", "leader changes"
        ));
        for run in &self.runs {
            out.push_str(&format!(
                "{:>8} {:>9} {:>7} {:>11.1} {:>9.3} {:>9.3} {:>9.3} {:>15}\n",
                run.clients,
                run.requests,
                run.errors,
                run.ops_per_sec,
                run.p50_ms,
                run.p99_ms,
                run.max_ms,
                run.leader_changes
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn report(errors: u64) -> BenchReport {
        report_with(errors, Elections::default())
    }

    fn report_with(errors: u64, elections: Elections) -> BenchReport {
        let result = RunResult {
            clients: 2,
            requests: 4,
            errors,
            first_error: (errors > 0).then(|| "-TRYAGAIN later".to_string()),
            elapsed: Duration::from_millis(500),
            latencies_us: vec![1000, 2000, 3000, 4000],
            written: vec![0, 1, 2, 3],
        };
        let runs = vec![RunFigures::of(&result, 4, elections)];
        BenchReport { nodes: 3, fsync: true, value_bytes: 128, target: "leader", leader: 2, runs }
    }

    #[test]
    fn a_run_with_errors_is_a_failure_naming_the_first_error() {
        assert!(report(0).failures().is_empty());
        assert_eq!(report(3).failures(), vec!["3 errors with 2 clients; the first: -TRYAGAIN later".to_string()]);
    }

    #[test]
    fn a_run_that_changed_leader_is_a_failure() {
        let report = report_with(0, Elections { ballots: 2, leader_changes: 1 });
        assert_eq!(report.failures(), vec!["1 leader changes with 2 clients and no fault injected".to_string()]);
        let value: serde_json::Value = serde_json::from_str(&report.to_json_line()).unwrap();
        assert_eq!(
            (value["runs"][0]["ballots"].as_u64(), value["runs"][0]["leader_changes"].as_u64()),
            (Some(2), Some(1))
        );
    }

    #[test]
    fn figures_and_json_shape() {
        let report = report(0);
        let run = &report.runs[0];
        assert_eq!((run.ops_per_sec, run.p50_ms, run.p99_ms, run.max_ms, run.duration_ms), (8.0, 2.0, 4.0, 4.0, 500.0));
        let json = report.to_json_line();
        assert!(json.starts_with(r#"{"nodes":3,"fsync":true,"#), "{json}");
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["runs"][0]["requests"], 4);
        assert_eq!(value["runs"][0]["p99_ms"], 4.0);
        assert!(report.table().contains("to the leader (leader: node 2)"), "{}", report.table());
    }

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<u64> = (1..=100).map(|ms| ms * 1000).collect();
        assert_eq!(percentile_ms(&values, 0.50), 50.0);
        assert_eq!(percentile_ms(&values, 0.99), 99.0);
        assert_eq!(percentile_ms(&values, 1.0), 100.0);
        assert_eq!(percentile_ms(&[1500], 0.5), 1.5);
        assert_eq!(percentile_ms(&[], 0.5), 0.0);
    }
}

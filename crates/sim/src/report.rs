//! What one run measured, and the summary over a sweep of seeds (docs/design/simulator.md).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::faults::FaultCounts;
use crate::newest_wins::MissCause;

/// A broken invariant, with where to look.
#[derive(Clone, Debug, Serialize)]
pub struct Violation {
    /// The property (`election_safety`, `log_matching`, …, `liveness`, `node_invariant`, `node_panic`).
    pub property: String,
    /// The seed that reproduces it.
    pub seed: u64,
    /// Trace step at which it was seen.
    pub step: u64,
    /// Virtual time at which it was seen.
    pub at_ms: u64,
    /// What exactly was seen.
    pub detail: String,
    /// The events leading up to it.
    pub recent_events: Vec<String>,
}

/// The result of one seed.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// The first broken invariant, if any.
    pub violation: Option<Violation>,
    /// Hash of the whole trace: equal for two runs of one seed (hex in JSON, as
    /// 64-bit integers do not survive every JSON reader).
    #[serde(serialize_with = "as_hex")]
    pub trace_hash: u64,
    /// Trace events.
    pub steps: u64,
    /// Virtual time simulated.
    pub simulated_ms: u64,
    /// Real elections started (pre-vote rounds excluded).
    pub elections: u64,
    /// Nodes that became leader.
    pub leader_changes: u64,
    /// From a leader's crash or isolation to the first commit by a newer leader,
    /// for failovers during which the other nodes kept a connected majority.
    pub failover_ms: Vec<u64>,
    /// Failovers during which no majority of the other nodes was available (their
    /// length measures the outage, not the election).
    pub failovers_without_quorum: u64,
    /// The subset of `failover_ms` during which no other fault was injected.
    pub single_fault_failover_ms: Vec<u64>,
    /// `failover_ms` of failovers that a leader's crash started, by the kind of
    /// crash: `process` (its host refuses redials) or `host` (silence).
    pub failover_ms_by_crash_kind: BTreeMap<String, Vec<u64>>,
    /// The same for `single_fault_failover_ms`.
    pub single_fault_failover_ms_by_crash_kind: BTreeMap<String, Vec<u64>>,
    /// Entries committed (applied by at least one node).
    pub committed_entries: u64,
    /// New terms bound while the leader of an older term could still reach a
    /// majority, once per term, the same event in every mode: a Raft
    /// candidate raising its term, or the first finalized vote for a ballot
    /// (docs/design/simulator.md).
    pub disruptions: u64,
    /// Faults injected, by kind.
    pub faults: FaultCounts,
    /// Proposals the client made.
    pub proposals: u64,
    /// Linearizable reads the client issued to a node that believed it led.
    pub reads_issued: u64,
    /// Of those, served (confirmed by ReadIndex and checked).
    pub reads_served: u64,
    /// Of those, failed because their node stopped leading (or crashed).
    pub reads_failed: u64,
    /// Elections that ended with a leader.
    pub elections_won: u64,
    /// Of those, won by a node whose data was the newest among the eligible.
    pub up_to_date_wins: u64,
    /// Of those, won by a node whose data was the newest among the electable
    /// (the eligible minus nodes that abstained or crashed during the election).
    pub up_to_date_electable_wins: u64,
    /// Elections not won by the newest eligible data, by cause (`crate::newest_wins`).
    pub not_newest_by_cause: BTreeMap<String, u64>,
    /// Uncommitted entries thrown away by log truncation.
    pub truncated_entries: u64,
    /// Holes in the committed leader-term sequence (docs/design/simulator.md).
    pub term_gaps: u64,
    /// Most leaders seen for one committed leader term.
    pub leaders_per_term_max: u64,
    /// Snapshots nodes took of their state machine (each followed by compaction).
    pub snapshots_taken: u64,
    /// Snapshots nodes installed from their leader (`InstallSnapshot`).
    pub installed_snapshots: u64,
}

fn as_hex<S: serde::Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format!("{value:016x}"))
}

/// p50, p99 and max of a set of durations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
    /// How many values.
    pub count: u64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `values`.
    pub fn of(values: &[u64]) -> Percentiles {
        if values.is_empty() {
            return Percentiles::default();
        }
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        let rank =
            |fraction: f64| sorted[((fraction * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
        Percentiles { p50: rank(0.50), p99: rank(0.99), max: sorted[sorted.len() - 1], count: sorted.len() as u64 }
    }
}

/// Everything a sweep measured (the `--json` output of `conclave sim`).
#[derive(Clone, Debug, Serialize)]
pub struct SweepReport {
    /// Election mode.
    pub mode: String,
    /// Cluster size.
    pub nodes: usize,
    /// Faults enabled.
    pub fault_set: String,
    /// First seed of the sweep.
    pub first_seed: u64,
    /// Seeds run.
    pub runs: u64,
    /// Runs that broke an invariant.
    pub violations: u64,
    /// The broken runs (at most the first 20).
    pub violation_details: Vec<Violation>,
    /// Real elections started.
    pub elections: u64,
    /// Leaders established.
    pub leader_changes: u64,
    /// Failover time distribution, in virtual milliseconds, over failovers during
    /// which the other nodes kept a connected majority.
    pub failover_ms: Percentiles,
    /// Failovers not measured because no majority was available for a while.
    pub failovers_without_quorum: u64,
    /// Failover time over failovers during which no other fault was injected:
    /// the protocol's own cost for one failure.
    pub single_fault_failover_ms: Percentiles,
    /// Failovers a leader's crash started, by the kind of crash: `process` (its
    /// host refuses redials: the transport's evidence) or `host` (silence: the
    /// counted misses).
    pub failover_ms_by_crash_kind: BTreeMap<String, Percentiles>,
    /// The same, over failovers during which no other fault was injected.
    pub single_fault_failover_ms_by_crash_kind: BTreeMap<String, Percentiles>,
    /// Entries committed.
    pub committed_entries: u64,
    /// New terms bound while the leader of an older term could still reach a
    /// majority (once per term; a Raft campaign or a finalized vote alike).
    pub disruptions: u64,
    /// Elections that ended with a leader.
    pub elections_won: u64,
    /// Share of won elections whose winner had the newest data among the nodes
    /// alive in the majority side from the election's start to its end (`null`
    /// if no election was won).
    pub up_to_date_winner_ratio: Option<f64>,
    /// Share of won elections whose winner had the newest data among the
    /// electable nodes: the eligible ones minus those that abstained after
    /// losing their data or crashed during the election (`null` if none won).
    pub up_to_date_electable_winner_ratio: Option<f64>,
    /// Elections not won by the newest eligible data, by cause: every cause
    /// of docs/decisions/0078 appears, with 0 if it never happened.
    pub not_newest_by_cause: BTreeMap<String, u64>,
    /// Of those, the elections whose cause a rule of ours could avoid.
    pub not_newest_avoidable: u64,
    /// Uncommitted entries thrown away by log truncation.
    pub truncated_entries: u64,
    /// Holes in the committed leader-term sequences of all runs: `BecomeLeader`
    /// leader terms in `gapless`/`conclave` (0 is the promise), Raft terms that
    /// had no leader in `raft`/`fast` (docs/design/simulator.md).
    pub term_gaps: u64,
    /// Most leaders seen for one committed leader term in any run (1 is the
    /// promise; 0 when no mode entry carries a leader term).
    pub leaders_per_term_max: u64,
    /// Snapshots taken by nodes of their state machine, over all runs.
    pub snapshots_taken: u64,
    /// Snapshots installed through `InstallSnapshot`, over all runs.
    pub installed_snapshots: u64,
    /// Faults injected, by kind.
    pub faults: FaultCounts,
    /// Virtual time simulated, in seconds.
    pub simulated_seconds: f64,
    /// Wall-clock time of the sweep, in seconds.
    pub wall_seconds: f64,
}

impl SweepReport {
    /// Folds the runs of a sweep, in seed order.
    pub fn from_runs(
        mode: String,
        nodes: usize,
        fault_set: String,
        first_seed: u64,
        runs: &[RunReport],
        wall_seconds: f64,
    ) -> SweepReport {
        let mut faults = FaultCounts::default();
        let mut failovers = Vec::new();
        let mut single_fault_failovers = Vec::new();
        let mut by_kind: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        let mut single_by_kind: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for run in runs {
            for (kind, times) in &run.failover_ms_by_crash_kind {
                by_kind.entry(kind.clone()).or_default().extend_from_slice(times);
            }
            for (kind, times) in &run.single_fault_failover_ms_by_crash_kind {
                single_by_kind.entry(kind.clone()).or_default().extend_from_slice(times);
            }
            faults.add(&run.faults);
            failovers.extend_from_slice(&run.failover_ms);
            single_fault_failovers.extend_from_slice(&run.single_fault_failover_ms);
        }
        let elections_won: u64 = runs.iter().map(|run| run.elections_won).sum();
        let mut not_newest_by_cause: BTreeMap<String, u64> =
            MissCause::ALL.iter().map(|cause| (cause.name().to_string(), 0)).collect();
        for run in runs {
            for (cause, count) in &run.not_newest_by_cause {
                *not_newest_by_cause.entry(cause.clone()).or_default() += count;
            }
        }
        let broken: Vec<Violation> = runs.iter().filter_map(|run| run.violation.clone()).collect();
        SweepReport {
            mode,
            nodes,
            fault_set,
            first_seed,
            runs: runs.len() as u64,
            violations: broken.len() as u64,
            violation_details: broken.into_iter().take(20).collect(),
            elections: runs.iter().map(|run| run.elections).sum(),
            leader_changes: runs.iter().map(|run| run.leader_changes).sum(),
            failover_ms: Percentiles::of(&failovers),
            failovers_without_quorum: runs.iter().map(|run| run.failovers_without_quorum).sum(),
            single_fault_failover_ms: Percentiles::of(&single_fault_failovers),
            failover_ms_by_crash_kind: by_kind
                .iter()
                .map(|(kind, times)| (kind.clone(), Percentiles::of(times)))
                .collect(),
            single_fault_failover_ms_by_crash_kind: single_by_kind
                .iter()
                .map(|(kind, times)| (kind.clone(), Percentiles::of(times)))
                .collect(),
            committed_entries: runs.iter().map(|run| run.committed_entries).sum(),
            disruptions: runs.iter().map(|run| run.disruptions).sum(),
            elections_won,
            up_to_date_winner_ratio: (elections_won > 0)
                .then(|| runs.iter().map(|run| run.up_to_date_wins).sum::<u64>() as f64 / elections_won as f64),
            up_to_date_electable_winner_ratio: (elections_won > 0).then(|| {
                runs.iter().map(|run| run.up_to_date_electable_wins).sum::<u64>() as f64 / elections_won as f64
            }),
            not_newest_avoidable: MissCause::ALL
                .iter()
                .filter(|cause| !cause.unavoidable())
                .map(|cause| not_newest_by_cause[cause.name()])
                .sum(),
            not_newest_by_cause,
            truncated_entries: runs.iter().map(|run| run.truncated_entries).sum(),
            term_gaps: runs.iter().map(|run| run.term_gaps).sum(),
            leaders_per_term_max: runs.iter().map(|run| run.leaders_per_term_max).max().unwrap_or(0),
            snapshots_taken: runs.iter().map(|run| run.snapshots_taken).sum(),
            installed_snapshots: runs.iter().map(|run| run.installed_snapshots).sum(),
            faults,
            simulated_seconds: runs.iter().map(|run| run.simulated_ms).sum::<u64>() as f64 / 1000.0,
            wall_seconds,
        }
    }

    /// One line for logs and closing notes.
    pub fn summary_line(&self) -> String {
        format!(
            "mode={} nodes={} runs={} violations={} elections={} leader_changes={} failover_ms p50={} p99={} max={} (n={}) committed={} disruptions={} up_to_date_winner_ratio={} up_to_date_electable_winner_ratio={} truncated={} term_gaps={} leaders_per_term_max={} snapshots_taken={} installed_snapshots={} simulated={:.0}s wall={:.1}s",
            self.mode,
            self.nodes,
            self.runs,
            self.violations,
            self.elections,
            self.leader_changes,
            self.failover_ms.p50,
            self.failover_ms.p99,
            self.failover_ms.max,
            self.failover_ms.count,
            self.committed_entries,
            self.disruptions,
            self.up_to_date_winner_ratio.map_or("n/a".to_string(), |ratio| format!("{ratio:.4}")),
            self.up_to_date_electable_winner_ratio.map_or("n/a".to_string(), |ratio| format!("{ratio:.4}")),
            self.truncated_entries,
            self.term_gaps,
            self.leaders_per_term_max,
            self.snapshots_taken,
            self.installed_snapshots,
            self.simulated_seconds,
            self.wall_seconds
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        let percentiles = Percentiles::of(&values);
        assert_eq!((percentiles.p50, percentiles.p99, percentiles.max, percentiles.count), (50, 99, 100, 100));
        assert_eq!(Percentiles::of(&[7]).p99, 7);
        assert_eq!(Percentiles::of(&[]), Percentiles::default());
    }
}

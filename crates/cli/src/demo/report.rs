//! The demo's results: the summary table, the `--json` object, and the HTML
//! report with one SVG timeline per failover (drawn here: one lane per node,
//! events on a time axis from the kill).

use std::fmt::Write;

use serde_json::{json, Value};

use super::chart;
use super::failover::{describe_detector, describe_version, FailoverRecord, KillKind, Phases};
use super::timeline::{escape, timeline_svg, View};

/// The outcome of a whole demo run.
pub struct DemoResult {
    /// The election mode the cluster ran.
    pub mode: String,
    /// The same scenario on a cluster of another mode (`--compare`).
    pub comparison: Option<Box<DemoResult>>,
    /// Every failover, in order.
    pub failovers: Vec<FailoverRecord>,
    /// Acknowledged writes.
    pub acknowledged_writes: usize,
    /// Writes that failed (not acknowledged; they may or may not have applied).
    pub failed_writes: u64,
    /// Acknowledged writes missing or wrong when read back.
    pub lost_writes: Vec<String>,
    /// The heartbeat interval used.
    pub heartbeat_ms: u64,
    /// The election timeout (miss limit × heartbeat timeout).
    pub election_timeout_ms: u64,
    /// How each leader was taken down.
    pub kill: KillKind,
    /// `timing.fast_detection` of the nodes.
    pub fast_detection: bool,
}

/// The median (lower of the two middle values) and the maximum.
pub fn p50_max(values: &[u64]) -> (u64, u64) {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let p50 = sorted.get(sorted.len().saturating_sub(1) / 2).copied().unwrap_or(0);
    (p50, sorted.last().copied().unwrap_or(0))
}

impl DemoResult {
    /// Failovers whose survivors held different data versions at the kill.
    pub fn failovers_with_differing_versions(&self) -> usize {
        self.failovers.iter().filter(|record| record.versions_differ()).count()
    }

    /// Every winner had the newest data, and every leader term after the old
    /// one was committed, in order (usually just the old one + 1).
    pub fn elections_correct(&self) -> bool {
        self.failovers.iter().all(|record| record.winner_had_newest_data() && record.leader_terms_gapless())
    }

    fn failover_times(&self) -> Vec<u64> {
        self.failovers.iter().map(|record| record.failover_ms).collect()
    }

    /// Over the failovers: how often each detector was the first to fire.
    fn first_detector_counts(&self) -> std::collections::BTreeMap<String, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for record in &self.failovers {
            *counts.entry(record.first_detector().unwrap_or_else(|| "none".to_string())).or_insert(0) += 1;
        }
        counts
    }

    /// The `--json` object.
    pub fn to_json(&self) -> Value {
        let (p50, max) = p50_max(&self.failover_times());
        let details: Vec<Value> = self
            .failovers
            .iter()
            .map(|record| {
                json!({
                    "killed_node": record.killed,
                    "elected_node": record.elected_node,
                    "elected_data_version": version_json(record.elected_data_version()),
                    "best_data_version": version_json(record.best_data_version()),
                    "data_versions": record.versions.iter().map(|(id, version)| (id.to_string(), version_json(*version))).collect::<serde_json::Map<_, _>>(),
                    "survivor_data_versions": record.versions.iter().map(|(id, version)| json!({
                        "node": id,
                        "last_term": version.0,
                        "last_index": version.1,
                        "newest": *version == record.best_data_version(),
                        "elected": *id == record.elected_node,
                    })).collect::<Vec<_>>(),
                    "versions_differ": record.versions_differ(),
                    "lagging_nodes": record.lag.held,
                    "kept_up_node": record.lag.kept_up,
                    "entries_thrown_away": record.entries_thrown_away(),
                    "old_term": record.old_term,
                    "new_term": record.new_term,
                    "winner_had_newest_data": record.winner_had_newest_data(),
                    "old_leader_term": record.old_leader_term,
                    "new_leader_term": record.new_leader_term,
                    "leader_terms_gapless": record.leader_terms_gapless(),
                    "failover_ms": record.failover_ms,
                    "kill": record.kill.name(),
                    "first_detector": record.first_detector(),
                    "detectors": record.detector_counts(),
                    "detections": record.detections().iter().map(|detection| json!({
                        "node": detection.node,
                        "detector": detection.detector,
                        "after_kill_ms": detection.after_kill_ms,
                    })).collect::<Vec<_>>(),
                    "phases_ms": phases_json(&record.phases(), record.failover_ms),
                    "rejoin_ms": record.rejoin_ms,
                    "stale_leader_scene": record.stale_leader.as_ref().map(|scene| json!({
                        "node": scene.node,
                        "waited_as_initial_leader": scene.waited_as_initial_leader,
                        "corrected_after_ms": scene.corrected_after_ms,
                        "abstained_after_ms": scene.abstained.map(|(ms, _)| ms),
                    })),
                })
            })
            .collect();
        let mut object = json!({
            "mode": self.mode,
            "failovers_with_differing_versions": self.failovers_with_differing_versions(),
            "failovers": self.failovers.len(),
            "acknowledged_writes": self.acknowledged_writes,
            "failed_writes": self.failed_writes,
            "lost_writes": self.lost_writes.len(),
            "lost_keys": self.lost_writes,
            "heartbeat_ms": self.heartbeat_ms,
            "election_timeout_ms": self.election_timeout_ms,
            "kill": self.kill.name(),
            "fast_detection": self.fast_detection,
            "failover_ms": { "p50": p50, "max": max },
            "first_detectors": self.first_detector_counts(),
            "failover_details": details,
            "elections_correct": self.elections_correct(),
        });
        if let Some(comparison) = &self.comparison {
            object["comparison"] = comparison.to_json();
        }
        object
    }

    /// The table printed at the end.
    pub fn summary_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<3} {:<7} {:<8} {:<13} {:<12} {:<16} {:<16} {:<8} {:<8} {:>12} {:>10}",
            "#",
            "killed",
            "elected",
            "detector",
            "leader term",
            "winner data",
            "newest live",
            "behind",
            "newest?",
            "failover ms",
            "rejoin ms"
        );
        for record in &self.failovers {
            let _ = writeln!(
                out,
                "{:<3} {:<7} {:<8} {:<13} {:<12} {:<16} {:<16} {:<8} {:<8} {:>12} {:>10}",
                record.number,
                record.killed,
                record.elected_node,
                record.first_detector().unwrap_or_else(|| "none".to_string()),
                format!("{} → {}", record.old_leader_term, record.new_leader_term),
                describe_version(record.elected_data_version()),
                describe_version(record.best_data_version()),
                format!("{} of {}", record.survivors_behind(), record.versions.len()),
                if record.winner_had_newest_data() { "yes" } else { "NO" },
                record.failover_ms,
                record.rejoin_ms.map_or_else(|| "-".to_string(), |ms| ms.to_string()),
            );
        }
        let (p50, max) = p50_max(&self.failover_times());
        let _ = writeln!(
            out,
            "failover ({} → first acknowledged new write): p50 {p50} ms, max {max} ms \
             (heartbeat {} ms, election timeout {} ms, fast detection {})",
            kill_signal(self.kill),
            self.heartbeat_ms,
            self.election_timeout_ms,
            if self.fast_detection { "on" } else { "off" }
        );
        let _ = writeln!(
            out,
            "acknowledged writes: {}, read back: {}, lost: {} (failed, never acknowledged: {})",
            self.acknowledged_writes,
            self.acknowledged_writes - self.lost_writes.len(),
            self.lost_writes.len(),
            self.failed_writes
        );
        out
    }

    /// The term sequence across the failovers: leader terms where the mode has
    /// them (consecutive in `conclave`), else Raft's terms (which may skip).
    fn term_sequence(&self) -> (String, Vec<u64>) {
        let leader_terms = self.failovers.first().is_some_and(|record| record.old_leader_term > 0);
        let (name, first, rest): (&str, Option<u64>, Vec<u64>) = if leader_terms {
            (
                "leader terms",
                self.failovers.first().map(|record| record.old_leader_term),
                self.failovers.iter().map(|record| record.new_leader_term).collect(),
            )
        } else {
            (
                "terms",
                self.failovers.first().map(|record| record.old_term),
                self.failovers.iter().map(|record| record.new_term).collect(),
            )
        };
        (name.to_string(), first.into_iter().chain(rest).collect())
    }

    /// The side-by-side table of this run and its comparison, if there is one.
    pub fn comparison_table(&self) -> Option<String> {
        let other = self.comparison.as_deref()?;
        let mut out = String::new();
        let _ = writeln!(out, "the same scenario on `{}` and `{}`, side by side:", self.mode, other.mode);
        let header = |mode: &str| format!("{mode}: winner  newest?  failover ms  thrown away  term");
        let _ = writeln!(out, "{:<3} | {:<56} | {}", "#", header(&self.mode), header(&other.mode));
        let cell = |record: Option<&FailoverRecord>| match record {
            None => "-".to_string(),
            Some(record) => {
                let (old, new) = if record.old_leader_term > 0 {
                    (format!("LT{}", record.old_leader_term), format!("LT{}", record.new_leader_term))
                } else {
                    (format!("T{}", record.old_term), format!("T{}", record.new_term))
                };
                format!(
                    "node {:<3} {:<8} {:>11}  {:>11}  {old} → {new}",
                    record.elected_node,
                    if record.winner_had_newest_data() { "yes" } else { "NO" },
                    record.failover_ms,
                    record.entries_thrown_away(),
                )
            }
        };
        for number in 0..self.failovers.len().max(other.failovers.len()) {
            let _ = writeln!(
                out,
                "{:<3} | {:<56} | {}",
                number + 1,
                cell(self.failovers.get(number)),
                cell(other.failovers.get(number))
            );
        }
        for run in [self, other] {
            let (name, sequence) = run.term_sequence();
            let consecutive = sequence.windows(2).all(|pair| pair[1] == pair[0] + 1);
            let (p50, max) = p50_max(&run.failover_times());
            let newest = run.failovers.iter().filter(|record| record.winner_had_newest_data()).count();
            let thrown: u64 = run.failovers.iter().map(FailoverRecord::entries_thrown_away).sum();
            let _ = writeln!(
                out,
                "{:<9} {name} {} ({}); newest data won {newest} of {}; uncommitted entries thrown away {thrown}; \
                 failover p50 {p50} ms, max {max} ms; acknowledged writes {}, lost {}",
                run.mode,
                sequence.iter().map(u64::to_string).collect::<Vec<_>>().join(" → "),
                if consecutive { "consecutive" } else { "skips" },
                run.failovers.len(),
                run.acknowledged_writes,
                run.lost_writes.len(),
            );
        }
        Some(out)
    }

    /// The HTML report: the summary tables, the failover-time chart, and per
    /// failover the whole timeline beside the election zoomed in; then the
    /// comparison's failovers the same way.
    pub fn html(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Conclave failover demo</title>\n\
             <style>body{font-family:sans-serif;margin:2em;color:#222}\
             .pair{display:flex;flex-wrap:wrap;gap:1em}\
             svg{border:1px solid #ccc;background:#fff;margin:0.5em 0 1.5em 0}</style></head><body>\n\
             <h1>Conclave failover demo</h1>\n",
        );
        let _ = writeln!(out, "<pre>{}</pre>", escape(&self.summary_table()));
        if let Some(table) = self.comparison_table() {
            let _ = writeln!(out, "<pre>{}</pre>", escape(&table));
        }
        let mut series = vec![(self.mode.as_str(), self.failover_times())];
        if let Some(other) = &self.comparison {
            series.push((other.mode.as_str(), other.failover_times()));
        }
        out.push_str(&chart::failover_chart(&series));
        self.failover_sections(&mut out);
        if let Some(other) = &self.comparison {
            let _ = writeln!(out, "<h1>The same scenario in `{}` mode</h1>", escape(&other.mode));
            other.failover_sections(&mut out);
        }
        out.push_str("</body></html>\n");
        out
    }

    fn failover_sections(&self, out: &mut String) {
        for record in &self.failovers {
            let _ = writeln!(
                out,
                "<h2>{}, failover {}: node {} {}, node {} elected, {} → {}</h2>",
                escape(&self.mode),
                record.number,
                record.killed,
                match record.kill {
                    KillKind::Process => "killed (SIGKILL)",
                    KillKind::Host => "stopped (SIGSTOP)",
                },
                record.elected_node,
                if record.old_leader_term > 0 {
                    format!("leader term {}", record.old_leader_term)
                } else {
                    format!("term {}", record.old_term)
                },
                record.new_term_name()
            );
            let versions: Vec<String> = record
                .versions
                .iter()
                .map(|(node, version)| {
                    let mark = if *version == record.best_data_version() { " (newest)" } else { "" };
                    format!("node {node} {}{mark}", describe_version(*version))
                })
                .collect();
            let _ = writeln!(
                out,
                "<p>Data versions at the kill: {}. Winner: node {} {}.</p>",
                escape(&versions.join(", ")),
                record.elected_node,
                if record.winner_had_newest_data() {
                    "with the newest data".to_string()
                } else {
                    format!(
                        "NOT with the newest data ({} uncommitted entries thrown away)",
                        record.entries_thrown_away()
                    )
                }
            );
            let detections: Vec<String> = record
                .detections()
                .iter()
                .map(|detection| {
                    format!(
                        "node {} +{} ms: {}",
                        detection.node,
                        detection.after_kill_ms,
                        describe_detector(&detection.detector)
                    )
                })
                .collect();
            let _ = writeln!(out, "<p>Detected by: {}</p>", escape(&detections.join("; ")));
            out.push_str("<div class=\"pair\">\n");
            out.push_str(&timeline_svg(record, View::Whole));
            out.push_str(&timeline_svg(record, View::Election));
            out.push_str("</div>\n");
        }
    }
}

fn kill_signal(kill: KillKind) -> &'static str {
    match kill {
        KillKind::Process => "SIGKILL",
        KillKind::Host => "SIGSTOP",
    }
}

fn phases_json(phases: &Phases, failover_ms: u64) -> Value {
    json!({
        "detected": phases.detected_ms,
        "objectively_down": phases.objectively_down_ms,
        "first_final_vote": phases.first_final_vote_ms,
        "elected": phases.elected_ms,
        "serving": phases.serving_ms,
        "first_write": failover_ms,
    })
}

fn version_json((term, index): (u64, u64)) -> Value {
    json!({ "last_term": term, "last_index": index })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_max() {
        assert_eq!(p50_max(&[]), (0, 0));
        assert_eq!(p50_max(&[300, 100, 200]), (200, 300));
        assert_eq!(p50_max(&[4, 1, 3, 2]), (2, 4));
    }
}

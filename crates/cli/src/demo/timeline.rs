//! One failover drawn as SVG: a lane per node, milliseconds after the kill
//! across. Two views of the same events: the whole failover (kill, first
//! write, restart) and the election zoomed in, from the first survivor's
//! SDOWN to the winner serving, where events a millisecond apart would
//! otherwise share one spot and their labels collide.

use std::fmt::Write;

use super::failover::{describe_detector, FailoverRecord, KillKind, TimelineEvent};

/// Which part of a failover a view shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// From the kill to the restart and the first write.
    Whole,
    /// From the first SDOWN (or detection) to the winner serving.
    Election,
}

const WIDTH: f64 = 640.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 70.0;
const LANE: f64 = 96.0;
/// Label rows around a lane: offsets from the lane's line, nearest first.
const LABEL_ROWS: [f64; 6] = [-9.0, 19.0, -23.0, 33.0, -37.0, 47.0];
/// Roughly the width of one character of an 11 px label.
const CHARACTER_WIDTH: f64 = 6.5;

/// The election's window in milliseconds after the kill: the first SDOWN (or
/// detection, in `raft` mode) to the winner serving, a little wider.
pub fn election_window(record: &FailoverRecord) -> (f64, f64) {
    let phases = record.phases();
    let first_sdown = record
        .timeline
        .iter()
        .filter(|event| event.node != record.killed && event.kind == "SubjectivelyDown")
        .map(|event| event.after_kill_ms)
        .min();
    let start = first_sdown.or(phases.detected_ms).unwrap_or(0);
    let end = phases.serving_ms.or(phases.elected_ms).unwrap_or(record.failover_ms as i64).max(start + 2);
    let pad = ((end - start) as f64 * 0.08).max(0.5);
    (start as f64 - pad, end as f64 + pad)
}

/// The SVG of one view of `record`.
pub fn timeline_svg(record: &FailoverRecord, view: View) -> String {
    let nodes: Vec<u64> = {
        let mut nodes: Vec<u64> = record.versions.keys().copied().chain([record.killed]).collect();
        nodes.extend(record.timeline.iter().map(|event| event.node));
        nodes.sort_unstable();
        nodes.dedup();
        nodes
    };
    let (start_ms, end_ms) = match view {
        View::Whole => {
            let end = record
                .timeline
                .iter()
                .map(|event| event.after_kill_ms)
                .chain([record.failover_ms as i64, record.restart_after_kill_ms as i64 + 1])
                .max()
                .unwrap_or(1)
                .max(1) as f64
                * 1.05;
            (-0.03 * end, end)
        }
        View::Election => election_window(record),
    };
    let x = |ms: f64| LEFT + (ms - start_ms) / (end_ms - start_ms) * (WIDTH - LEFT - RIGHT);
    let height = TOP + LANE * nodes.len() as f64 + 70.0;
    let lane_y = |node: u64| TOP + LANE * nodes.iter().position(|&id| id == node).unwrap_or(0) as f64 + LANE / 2.0;
    let mut svg = String::new();
    let class = match view {
        View::Whole => "whole",
        View::Election => "election",
    };
    let _ = writeln!(
        svg,
        "<svg class=\"{class}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"11\">"
    );
    let title = match view {
        View::Whole => "the whole failover".to_string(),
        View::Election => format!(
            "the election, zoomed: {:.0} to {:.0} ms (detector: {})",
            start_ms.max(0.0),
            end_ms,
            record.first_detector().as_deref().map_or("none", describe_detector)
        ),
    };
    let _ = writeln!(svg, "<text x=\"8\" y=\"16\" font-size=\"13\" font-weight=\"bold\">{}</text>", escape(&title));
    for &node in &nodes {
        let y = lane_y(node);
        let mut name = format!("node {node}");
        if node == record.killed {
            name.push_str(" ✝");
        } else if node == record.elected_node {
            name.push_str(" ★");
        }
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#ddd\"/><text x=\"8\" y=\"{}\" font-size=\"13\">{}</text>",
            WIDTH - RIGHT,
            y + 4.0,
            escape(&name)
        );
    }
    let axis_y = TOP + LANE * nodes.len() as f64 + 10.0;
    axis(&mut svg, start_ms, end_ms, axis_y, &x);
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">milliseconds after the {}</text>",
        (LEFT + WIDTH - RIGHT) / 2.0,
        axis_y + 34.0,
        kill_signal(record.kill)
    );
    let marker = |svg: &mut String, ms: f64, colour: &str, text: &str, row: f64| {
        if ms < start_ms || ms > end_ms {
            return;
        }
        let _ = writeln!(
            svg,
            "<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{axis_y}\" stroke=\"{colour}\" stroke-width=\"2\" stroke-dasharray=\"4 3\"/>\
             <text x=\"{0}\" y=\"{2}\" fill=\"{colour}\" text-anchor=\"middle\" font-weight=\"bold\">{3}</text>",
            x(ms),
            TOP - 30.0 + 14.0 * row,
            TOP - 34.0 + 14.0 * row,
            escape(text)
        );
    };
    match view {
        View::Whole => {
            // Three rows, so that markers close in time keep their labels apart.
            marker(&mut svg, 0.0, "#c00000", &format!("{} node {}", kill_signal(record.kill), record.killed), 0.0);
            marker(
                &mut svg,
                record.failover_ms as f64,
                "#008000",
                &format!("first write +{} ms", record.failover_ms),
                1.0,
            );
            let restart = format!(
                "{} node {} +{} ms",
                if record.kill == KillKind::Host && record.stale_leader.is_none() { "SIGCONT" } else { "restart" },
                record.killed,
                record.restart_after_kill_ms
            );
            marker(&mut svg, record.restart_after_kill_ms as f64, "#7040a0", &restart, 2.0);
        }
        View::Election => {
            // Which detector fired first, where it fired.
            if let Some(first) = record.detections().first() {
                marker(
                    &mut svg,
                    first.after_kill_ms as f64,
                    "#c00000",
                    &format!("{} fired (node {})", first.detector, first.node),
                    0.0,
                );
            }
            if let Some(serving) = record.phases().serving_ms {
                marker(&mut svg, serving as f64, "#006400", &format!("serving +{serving} ms"), 1.0);
            }
        }
    }
    // Per lane and label row, where the last label ends: a label takes the first
    // row it fits in, so events a few milliseconds apart stay legible.
    let mut row_ends = std::collections::BTreeMap::<u64, [f64; LABEL_ROWS.len()]>::new();
    let shown = record.timeline.iter().filter(|event| (start_ms..=end_ms).contains(&(event.after_kill_ms as f64)));
    for event in shown {
        let ends = row_ends.entry(event.node).or_insert([f64::MIN; LABEL_ROWS.len()]);
        svg.push_str(&event_mark(event, x(event.after_kill_ms as f64), lane_y(event.node), ends));
    }
    legend(&mut svg, height - 8.0);
    svg.push_str("</svg>\n");
    svg
}

/// The time axis with about eight ticks at a round step.
fn axis(svg: &mut String, start_ms: f64, end_ms: f64, axis_y: f64, x: &dyn Fn(f64) -> f64) {
    let span = end_ms - start_ms;
    let step = [0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0]
        .into_iter()
        .find(|step| span / step <= 8.0)
        .unwrap_or(10_000.0);
    let _ =
        writeln!(svg, "<line x1=\"{LEFT}\" y1=\"{axis_y}\" x2=\"{}\" y2=\"{axis_y}\" stroke=\"#444\"/>", WIDTH - RIGHT);
    let mut tick = (start_ms / step).ceil() * step;
    while tick <= end_ms {
        let _ = writeln!(
            svg,
            "<line x1=\"{0}\" y1=\"{axis_y}\" x2=\"{0}\" y2=\"{1}\" stroke=\"#444\"/><text x=\"{0}\" y=\"{2}\" text-anchor=\"middle\">{3}</text>",
            x(tick),
            axis_y + 5.0,
            axis_y + 18.0,
            tick
        );
        tick += step;
    }
}

fn legend(svg: &mut String, legend_y: f64) {
    let mut legend_x = 8.0;
    for (kind, name) in [
        ("FailureDetected", "detected"),
        ("SubjectivelyDown", "SDOWN"),
        ("ObjectivelyDown", "ODOWN"),
        ("VoteChanged", "vote"),
        ("VoteFinalized", "binding vote"),
        ("LeaderElect", "won"),
        ("LeaderTermCommitted", "serving"),
        ("Corrected", "corrected"),
    ] {
        let _ = writeln!(
            svg,
            "<circle cx=\"{legend_x}\" cy=\"{}\" r=\"5\" fill=\"{}\"/><text x=\"{}\" y=\"{legend_y}\">{name}</text>",
            legend_y - 4.0,
            colour(kind),
            legend_x + 8.0
        );
        legend_x += 8.0 + 7.5 * name.len() as f64 + 16.0;
    }
}

fn kill_signal(kill: KillKind) -> &'static str {
    match kill {
        KillKind::Process => "SIGKILL",
        KillKind::Host => "SIGSTOP",
    }
}

pub(super) fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn colour(kind: &str) -> &'static str {
    match kind {
        "FailureDetected" => "#c00000",
        "SubjectivelyDown" => "#e69f00",
        "ObjectivelyDown" => "#d55e00",
        "ElectionStarted" => "#999999",
        "VoteChanged" => "#56b4e9",
        "VoteFinalized" => "#0072b2",
        "LeaderElect" => "#009e73",
        "LeaderTermCommitted" => "#006400",
        "Corrected" => "#cc79a7",
        _ => "#bbbbbb",
    }
}

/// Events drawn with a label (the rest are dots with a tooltip).
fn labelled(kind: &str) -> bool {
    matches!(
        kind,
        "FailureDetected"
            | "SubjectivelyDown"
            | "ObjectivelyDown"
            | "VoteChanged"
            | "VoteFinalized"
            | "LeaderElect"
            | "LeaderTermCommitted"
            | "Corrected"
            | "AbstainedAfterDataLoss"
            | "RoleChanged"
    )
}

fn event_mark(event: &TimelineEvent, x: f64, y: f64, row_ends: &mut [f64; LABEL_ROWS.len()]) -> String {
    let title = escape(&format!("node {} +{} ms {} {}", event.node, event.after_kill_ms, event.kind, event.detail));
    let mut mark = format!(
        "<circle cx=\"{x}\" cy=\"{y}\" r=\"5\" fill=\"{}\" stroke=\"#333\" stroke-width=\"0.5\"><title>{title}</title></circle>",
        colour(&event.kind)
    );
    if labelled(&event.kind) {
        let width = CHARACTER_WIDTH * event.label.chars().count() as f64;
        let start = x - width / 2.0;
        // When every row is taken, the row that frees up first.
        let row = (0..LABEL_ROWS.len())
            .find(|&row| row_ends[row] + 4.0 <= start)
            .unwrap_or_else(|| (0..LABEL_ROWS.len()).min_by(|&a, &b| row_ends[a].total_cmp(&row_ends[b])).unwrap_or(0));
        row_ends[row] = start + width;
        let label_y = y + LABEL_ROWS[row];
        let _ = write!(mark, "<text x=\"{x}\" y=\"{label_y}\" text-anchor=\"middle\">{}</text>", escape(&event.label));
    }
    mark.push('\n');
    mark
}

//! A small bar chart of failover times (kill to first acknowledged write):
//! one group per failover, one bar per mode when the demo compares two.

use std::fmt::Write;

use super::timeline::escape;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
const COLOURS: [&str; 2] = ["#0072b2", "#d55e00"];

/// `series`: (mode, failover times in order). An SVG, empty bars for none.
pub fn failover_chart(series: &[(&str, Vec<u64>)]) -> String {
    let groups = series.iter().map(|(_, times)| times.len()).max().unwrap_or(0).max(1);
    let max_ms = series.iter().flat_map(|(_, times)| times.iter().copied()).max().unwrap_or(1).max(1) as f64;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let group_width = (WIDTH - LEFT - RIGHT) / groups as f64;
    let bar_width = (group_width * 0.7 / series.len().max(1) as f64).min(60.0);
    let y = |ms: f64| TOP + plot_height * (1.0 - ms / max_ms);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         font-family=\"sans-serif\" font-size=\"11\">\
         <text x=\"8\" y=\"16\" font-size=\"13\" font-weight=\"bold\">failover time per failover (ms, kill to first acknowledged write)</text>"
    );
    let baseline = TOP + plot_height;
    let _ = writeln!(
        svg,
        "<line x1=\"{LEFT}\" y1=\"{baseline}\" x2=\"{}\" y2=\"{baseline}\" stroke=\"#444\"/>\
         <line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{baseline}\" stroke=\"#444\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{max_ms}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">0</text>",
        WIDTH - RIGHT,
        LEFT - 4.0,
        TOP + 4.0,
        LEFT - 4.0,
        baseline + 4.0
    );
    for group in 0..groups {
        let group_x = LEFT + group_width * group as f64 + group_width * 0.15;
        for (index, (mode, times)) in series.iter().enumerate() {
            let Some(&ms) = times.get(group) else { continue };
            let bar_x = group_x + bar_width * index as f64;
            let top = y(ms as f64);
            let _ = writeln!(
                svg,
                "<rect x=\"{bar_x}\" y=\"{top}\" width=\"{}\" height=\"{}\" fill=\"{}\"><title>{} failover {}: {ms} ms</title></rect>\
                 <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{ms}</text>",
                bar_width - 2.0,
                (baseline - top).max(1.0),
                COLOURS[index % COLOURS.len()],
                escape(mode),
                group + 1,
                bar_x + bar_width / 2.0,
                top - 4.0
            );
        }
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">#{}</text>",
            group_x + bar_width * series.len() as f64 / 2.0,
            baseline + 16.0,
            group + 1
        );
    }
    let mut legend_x = LEFT;
    for (index, (mode, _)) in series.iter().enumerate() {
        let _ = writeln!(
            svg,
            "<rect x=\"{legend_x}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{}</text>",
            HEIGHT - 22.0,
            COLOURS[index % COLOURS.len()],
            legend_x + 16.0,
            HEIGHT - 12.0,
            escape(mode)
        );
        legend_x += 40.0 + 7.0 * mode.len() as f64;
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bar_per_failover_and_mode() {
        let svg = failover_chart(&[("conclave", vec![10, 20, 30]), ("raft", vec![300, 40, 25])]);
        assert_eq!(svg.matches("<rect").count(), 6 + 2, "six bars and two legend boxes");
        assert!(svg.contains("raft failover 1: 300 ms"));
    }
}

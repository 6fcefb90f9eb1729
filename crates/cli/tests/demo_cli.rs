//! `conclave demo` end to end with small timings: the
//! JSON fields, no lost writes, survivors holding different data versions and
//! the newest winning, consecutive leader terms, the detector named for each
//! failover (SIGKILL and SIGSTOP), the Raft comparison; and the HTML report
//! rendered by headless Chromium when installed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

#[path = "support/process.rs"]
mod process;

/// Runs `conclave demo` with `arguments`, killing it if it overruns `timeout`.
/// One demo at a time. Each runs five nodes with 20 ms heartbeats and checks
/// that every election picked the newest data; four of them at once on two
/// cores starved one another's nodes for tens of milliseconds, long enough
/// for a round to settle before the newest node took part (CI saw one: the
/// node holding 9 more unacknowledged entries noticed the loss 21 ms after the
/// others, and lost). What the vote exchange does under such stalls is measured by the
/// simulator (`up_to_date_winner_ratio`), not asserted here.
static ONE_DEMO_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run_demo(data_dir: &Path, arguments: &[&str], timeout: Duration) -> Output {
    let _turn = ONE_DEMO_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut command = Command::new(env!("CARGO_BIN_EXE_conclave"));
    command.arg("demo").args(arguments).arg("--data-dir").arg(data_dir);
    process::output_within(command, "conclave demo", timeout)
}

#[test]
fn demo_json_reports_three_correct_failovers_and_no_lost_write() {
    let dir = tempfile::tempdir().unwrap();
    let output =
        run_demo(dir.path(), &["--json", "--failovers", "3", "--heartbeat-ms", "20"], Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{}\nstdout: {stdout}\nstderr: {stderr}", output.status);
    let result: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|error| panic!("{error}: {stdout}"));
    assert_eq!(result["failovers"], 3);
    assert!(result["acknowledged_writes"].as_u64().unwrap() > 0, "{result}");
    assert_eq!(result["lost_writes"], 0, "{result}");
    assert_eq!(result["mode"], "conclave", "{result}");
    assert_eq!(result["failovers_with_differing_versions"], 3, "every kill found the survivors apart: {result}");
    let p50 = result["failover_ms"]["p50"].as_u64().unwrap();
    let max = result["failover_ms"]["max"].as_u64().unwrap();
    assert!(0 < p50 && p50 <= max, "{result}");
    let details = result["failover_details"].as_array().unwrap();
    assert_eq!(details.len(), 3);
    for detail in details {
        for field in [
            "elected_node",
            "elected_data_version",
            "best_data_version",
            "old_leader_term",
            "new_leader_term",
            "failover_ms",
        ] {
            assert!(detail.get(field).is_some(), "{field} missing from {detail}");
        }
        assert_eq!(detail["elected_data_version"], detail["best_data_version"], "{detail}");
        let survivors = detail["survivor_data_versions"].as_array().unwrap();
        assert_eq!(survivors.len(), 4, "{detail}");
        assert!(survivors.iter().any(|survivor| survivor["newest"] == false), "some survivor lags: {detail}");
        assert_eq!(detail["entries_thrown_away"], 0, "{detail}");
        // Usually the old one + 1; a leader-elect that gave up and won again
        // commits two leader terms, in order: no gap either way.
        assert_eq!(detail["leader_terms_gapless"], true, "{detail}");
        assert_ne!(detail["elected_node"], detail["killed_node"], "{detail}");
        assert_eq!(detail["kill"], "process", "{detail}");
        assert_known_detectors(detail);
    }
    assert_eq!(result["kill"], "process", "{result}");
    assert_eq!(result["fast_detection"], true, "{result}");
    // A SIGKILLed leader's connections are reset and its port refuses: that
    // evidence reaches some survivor in some failover (the SIGKILL test of
    // failure_detection.rs pins it down for one node).
    let gone = details.iter().filter(|detail| detail["detectors"].get("process_gone").is_some()).count();
    assert!(gone > 0, "no failover detected by process_gone: {result}");
    let report = PathBuf::from(result["report"].as_str().unwrap());
    assert_eq!(report, dir.path().join("report.html"));
    // The same scenario on a raft cluster: its own figures, no write lost.
    let raft = &result["comparison"];
    assert_eq!(raft["mode"], "raft", "{result}");
    assert_eq!(raft["lost_writes"], 0, "{raft}");
    let raft_details = raft["failover_details"].as_array().unwrap();
    assert_eq!(raft_details.len(), 3, "{raft}");
    for detail in raft_details {
        for field in ["winner_had_newest_data", "entries_thrown_away", "old_term", "new_term", "failover_ms"] {
            assert!(detail.get(field).is_some(), "{field} missing from {detail}");
        }
        assert!(detail["new_term"].as_u64().unwrap() > detail["old_term"].as_u64().unwrap(), "{detail}");
    }
    let html = std::fs::read_to_string(&report).unwrap();
    assert_eq!(html.matches("<svg class=\"whole\"").count(), 6, "one whole timeline per failover and mode");
    assert_eq!(html.matches("<svg class=\"election\"").count(), 6, "one election zoom beside each");
    assert_eq!(html.matches("<svg class=\"chart\"").count(), 1, "the failover-time chart");
    assert_eq!(html.matches("Detected by:").count(), 6, "each failover names its detectors");
}

/// Every failover names which detector told each survivor, from the known set,
/// and where its time went.
fn assert_known_detectors(detail: &serde_json::Value) {
    let detections = detail["detections"].as_array().unwrap_or_else(|| panic!("no detections: {detail}"));
    assert!(!detections.is_empty(), "some survivor detected the loss: {detail}");
    for detection in detections {
        let detector = detection["detector"].as_str().unwrap();
        assert!(["process_gone", "misses", "report"].contains(&detector), "{detection}");
    }
    assert!(detail["first_detector"].is_string(), "{detail}");
    for phase in ["detected", "objectively_down", "serving", "first_write"] {
        assert!(detail["phases_ms"][phase].is_u64(), "{phase} missing from {detail}");
    }
}

#[test]
fn a_stopped_leader_is_detected_by_misses_only() {
    // SIGSTOP: the leader's sockets stay open and silent, so no redial is
    // refused, and only the counted misses (or peers' reports) may tell.
    let dir = tempfile::tempdir().unwrap();
    let output = run_demo(
        dir.path(),
        &["--json", "--failovers", "2", "--heartbeat-ms", "20", "--kill", "host", "--compare", "none"],
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{}\nstdout: {stdout}\nstderr: {stderr}", output.status);
    let result: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|error| panic!("{error}: {stdout}"));
    assert_eq!(result["kill"], "host", "{result}");
    assert_eq!(result["lost_writes"], 0, "{result}");
    assert_eq!(result["elections_correct"], true, "{result}");
    for detail in result["failover_details"].as_array().unwrap() {
        assert_eq!(detail["kill"], "host", "{detail}");
        assert_known_detectors(detail);
        assert!(detail["detectors"].get("process_gone").is_none(), "a stopped process is not gone: {detail}");
    }
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains("SIGSTOP"), "the timeline names the signal");
}

#[test]
fn without_fast_detection_no_failover_is_detected_by_process_gone() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_demo(
        dir.path(),
        &["--json", "--failovers", "1", "--heartbeat-ms", "20", "--no-fast-detection", "--compare", "none"],
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}\nstdout: {stdout}", String::from_utf8_lossy(&output.stderr));
    let result: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|error| panic!("{error}: {stdout}"));
    assert_eq!(result["fast_detection"], false, "{result}");
    for detail in result["failover_details"].as_array().unwrap() {
        assert_known_detectors(detail);
        assert!(detail["detectors"].get("process_gone").is_none(), "{detail}");
    }
}

fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"].into_iter().map(PathBuf::from).find(|path| path.exists())
}

#[test]
fn the_html_report_renders_in_headless_chromium() {
    let Some(chromium) = chromium() else {
        println!("note: chromium is not installed (Debian: apt-get install chromium); screenshot test skipped");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let output =
        run_demo(dir.path(), &["--json", "--failovers", "1", "--heartbeat-ms", "20"], Duration::from_secs(120));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report = dir.path().join("report.html");
    let profile = tempfile::tempdir().unwrap();
    let screenshot = dir.path().join("report.png");
    let mut browser = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,1600",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(format!("file://{}", report.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while browser.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = browser.kill();
            panic!("chromium did not finish the screenshot within 60 s");
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
    let png = std::fs::read(&screenshot).expect("chromium wrote the screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG file");
    // A blank page compresses to a few kilobytes; the report's text and timeline do not.
    assert!(png.len() > 20_000, "the screenshot is {} bytes: is the page empty?", png.len());
    if let Ok(keep) = std::env::var("CONCLAVE_KEEP_SCREENSHOT") {
        std::fs::copy(&screenshot, keep).unwrap();
    }
}

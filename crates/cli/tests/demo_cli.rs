//! `conclave demo` end to end with small timings: the
//! JSON fields, no lost writes, the newest data winning, consecutive leader
//! terms; and the HTML report rendered by headless Chromium when installed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

#[path = "support/process.rs"]
mod process;

/// Runs `conclave demo` with `arguments`, killing it if it overruns `timeout`.
fn run_demo(data_dir: &Path, arguments: &[&str], timeout: Duration) -> Output {
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
        assert_eq!(
            detail["new_leader_term"].as_u64().unwrap(),
            detail["old_leader_term"].as_u64().unwrap() + 1,
            "{detail}"
        );
        assert_ne!(detail["elected_node"], detail["killed_node"], "{detail}");
    }
    let report = PathBuf::from(result["report"].as_str().unwrap());
    assert_eq!(report, dir.path().join("report.html"));
    let html = std::fs::read_to_string(&report).unwrap();
    assert_eq!(html.matches("<svg").count(), 3, "one timeline per failover");
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
            "--window-size=1200,900",
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

//! The HTTP endpoint of one node: `/status`, `/health`, `/events` and
//! `/metrics` (parsed as Prometheus text).

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conclave_server::Member;
use support::node::TestNode;
use support::resp::{wait_until, Reply};

fn http_get(address: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.split(' ').nth(1).unwrap().parse().unwrap(), body.to_string())
}

fn with_http(config: &mut conclave_server::ServerConfig) {
    config.members[0].http_address = Some("127.0.0.1:0".parse().unwrap());
}

use support::ports::free_address;

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|first| first.is_ascii_alphabetic() || first == '_' || first == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Checks the text exposition format line by line; returns each metric's TYPE
/// and the samples by their full name with labels.
fn parse_prometheus(text: &str) -> (BTreeMap<String, String>, BTreeMap<String, f64>) {
    let mut types = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or_else(|| panic!("HELP without text: {line}"));
            assert!(is_metric_name(name) && !help.is_empty(), "bad HELP line: {line}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("TYPE without a type: {line}"));
            assert!(is_metric_name(name), "bad metric name: {line}");
            assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind), "bad type: {line}");
            assert!(types.insert(name.to_string(), kind.to_string()).is_none(), "TYPE given twice: {line}");
        } else {
            assert!(!line.starts_with('#') && !line.is_empty(), "unexpected line: {line:?}");
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("sample without value: {line}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad sample value: {line}"));
            let name = match series.split_once('{') {
                Some((name, labels)) => {
                    let labels = labels.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line}"));
                    for label in labels.split(',') {
                        let (key, quoted) = label.split_once('=').unwrap_or_else(|| panic!("bad label: {line}"));
                        assert!(is_metric_name(key), "bad label name: {line}");
                        assert!(quoted.len() >= 2 && quoted.starts_with('"') && quoted.ends_with('"'), "{line}");
                    }
                    name
                }
                None => series,
            };
            assert!(is_metric_name(name), "bad sample name: {line}");
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    name.strip_suffix(suffix)
                        .filter(|family| types.get(*family).is_some_and(|kind| kind == "histogram"))
                })
                .unwrap_or(name);
            assert!(types.contains_key(family), "sample before its TYPE line: {line}");
            samples.insert(series.to_string(), value);
        }
    }
    (types, samples)
}

#[test]
fn metrics_parse_as_prometheus_text_with_the_expected_names() {
    let node = TestNode::start_leader(|config| {
        with_http(config);
        config.snapshot.every_entries = 2;
    });
    let http = node.server.as_ref().unwrap().http_address.unwrap();
    let mut client = node.client();
    for index in 0..5 {
        assert_eq!(client.command(&["SET", &format!("k{index}"), "v"]).unwrap(), Reply::Simple("OK".into()));
    }
    assert!(client.command(&["NOSUCHCOMMAND"]).unwrap().is_error());
    // Snapshots are saved after the writes that trigger them are answered.
    let text = wait_until("a snapshot to be saved", Duration::from_secs(10), || {
        let (code, text) = http_get(http, "/metrics");
        assert_eq!(code, 200);
        (parse_prometheus(&text).1.get("conclave_snapshots_taken_total").copied().unwrap_or(0.0) >= 1.0).then_some(text)
    });
    let (types, samples) = parse_prometheus(&text);
    let expected = [
        ("conclave_elections_started_total", "counter"),
        ("conclave_elections_won_total", "counter"),
        ("conclave_proposals_total", "counter"),
        ("conclave_requests_resent_total", "counter"),
        ("conclave_commits_total", "counter"),
        ("conclave_client_connections_total", "counter"),
        ("conclave_client_connections_open", "gauge"),
        ("conclave_client_errors_total", "counter"),
        ("conclave_messages_dropped_total", "counter"),
        ("conclave_failover_ms", "histogram"),
        ("conclave_fsync_ms", "histogram"),
        ("conclave_snapshots_taken_total", "counter"),
        ("conclave_snapshots_installed_total", "counter"),
        ("conclave_snapshots_rejected_total", "counter"),
        ("conclave_snapshot_index", "gauge"),
    ];
    for (name, kind) in expected {
        assert_eq!(types.get(name).map(String::as_str), Some(kind), "{name} in\n{text}");
    }
    assert!(samples["conclave_proposals_total"] >= 5.0, "{text}");
    assert!(samples["conclave_commits_total"] >= 5.0, "{text}");
    assert!(samples["conclave_client_errors_total"] >= 1.0, "{text}");
    assert!(samples["conclave_client_connections_open"] >= 1.0, "{text}");
    assert!(samples["conclave_fsync_ms_count"] >= 1.0, "{text}");
    assert_eq!(samples["conclave_fsync_ms_bucket{le=\"+Inf\"}"], samples["conclave_fsync_ms_count"]);
    assert!(samples.contains_key("conclave_messages_dropped_total{reason=\"stale_term\"}"), "{text}");
    assert!(samples["conclave_snapshot_index"] >= 2.0, "{text}");
    assert_eq!(samples["conclave_snapshots_rejected_total"], 0.0, "{text}");
}

#[test]
fn status_health_and_events_of_a_leader() {
    let node = TestNode::start_leader(with_http);
    let http = node.server.as_ref().unwrap().http_address.unwrap();
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let status: serde_json::Value = wait_until("the leader to serve", Duration::from_secs(10), || {
        let status: serde_json::Value = serde_json::from_str(&http_get(http, "/status").1).unwrap();
        (status["serving"] == true).then_some(status)
    });
    assert_eq!(status["role"], "Leader");
    assert_eq!(status["leader"], 1);
    assert!(status["leader_term"].as_u64().is_some_and(|term| term >= 1), "{status}");
    let fields = ["last_term", "last_index", "commit_index", "applied_index", "followers", "dropped", "election"];
    let snapshot_fields = ["snapshot_index", "snapshots_taken", "snapshots_installed", "snapshots_rejected"];
    for field in fields.into_iter().chain(snapshot_fields) {
        assert!(status.get(field).is_some(), "{field} missing from {status}");
    }
    let (code, body) = http_get(http, "/health");
    assert_eq!(code, 200, "{body}");

    let (code, body) = http_get(http, "/events");
    assert_eq!(code, 200);
    let events: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let committed = events
        .iter()
        .find(|event| event["event"].get("LeaderTermCommitted").is_some())
        .unwrap_or_else(|| panic!("no LeaderTermCommitted in {body}"));
    assert_eq!(committed["node"], 1);
    assert_eq!(committed["event"]["LeaderTermCommitted"]["leader"], 1);
    // Wall-clock stamps: within a minute of the test's own clock.
    let at_ms = committed["at_ms"].as_u64().unwrap();
    assert!(at_ms.abs_diff(now_ms) < 60_000, "{at_ms} vs {now_ms}");
    assert_eq!(http_get(http, "/nothing-here").0, 404);
}

#[test]
fn health_is_503_without_a_leader() {
    // Two of three members never start: no quorum, no leader.
    let node = TestNode::start(|config| {
        with_http(config);
        config.members[0].peer_address = free_address();
        config.members[0].client_address = free_address();
        config.members[0].http_address = Some(free_address());
        for id in 2..=3 {
            config.members.push(Member {
                id,
                peer_address: free_address(),
                client_address: free_address(),
                http_address: None,
                priority: None,
            });
        }
    });
    let http = node.server.as_ref().unwrap().http_address.unwrap();
    let (code, body) = http_get(http, "/health");
    assert_eq!(code, 503, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["healthy"], false);
}

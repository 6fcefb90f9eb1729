//! Leader transfer on real processes (docs/decisions/0099): `conclave admin
//! transfer` moves leadership and waits for it, bad requests get clear
//! errors, and a leader stopped by SIGTERM hands over before it exits.

#[path = "support/process.rs"]
mod process;
mod support;

use std::process::Command;
use std::time::Duration;

use process::output_within;
use support::cluster::Cluster;
use support::resp::{Client, Reply};

fn admin(cluster: &Cluster, node: u64, arguments: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_conclave"));
    command.args(["admin", "--endpoint", &cluster.address(node).to_string()]).args(arguments);
    output_within(command, "conclave admin", Duration::from_secs(30))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn error_text(reply: Reply) -> String {
    match reply {
        Reply::Error(text) => text,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn admin_transfer_moves_leadership_and_bad_requests_are_refused_with_the_reason() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(&[1, 2, 3]);
    cluster.write_acked(&[1, 2, 3], "before", "the transfer");
    let target = if leader == 3 { 1 } else { 3 };

    let output = admin(&cluster, leader, &["transfer", &target.to_string()]);
    assert!(output.status.success(), "{}{}", text(&output.stdout), text(&output.stderr));
    assert!(text(&output.stdout).contains(&format!("node {target} leads term")), "{}", text(&output.stdout));
    assert_eq!(cluster.wait_for_leader(&[1, 2, 3]), target);
    assert_eq!(cluster.mget(target, &["before".to_string()]), vec![Some("the transfer".to_string())]);
    cluster.write_acked(&[target], "after", "the transfer");

    // The members as the new leader sees them.
    let output = admin(&cluster, target, &["members"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let table = text(&output.stdout);
    assert_eq!(table.lines().count(), 2 + 3, "a head, a header and a row per member:\n{table}");
    assert!(table.contains("leader") && table.contains(&cluster.address(leader).to_string()), "{table}");
    let output = admin(&cluster, target, &["members", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["leader"], target);
    let members = json["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    assert!(members.iter().all(|member| member["role"] == "voter" && member["match_index"].as_u64() > Some(0)));
    // Asked of a follower, the CLI follows the redirect to the leader.
    let output = admin(&cluster, leader, &["members"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("does not lead; asking"), "{}", text(&output.stderr));

    // Asked of a follower over RESP: refused, naming the leader and where
    // it is (the CLI follows that).
    let mut follower = Client::connect(cluster.address(leader)).unwrap();
    let refusal = error_text(follower.command(&["ADMIN", "TRANSFER"]).unwrap());
    let at = format!("node {target} does at {}", cluster.address(target));
    assert!(refusal.starts_with("NOTLEADER") && refusal.contains(&at), "{refusal}");

    // Malformed or impossible requests, straight over RESP.
    let mut client = Client::connect(cluster.address(target)).unwrap();
    let refused = |client: &mut Client, arguments: &[&str]| error_text(client.command(arguments).unwrap());
    assert!(refused(&mut client, &["ADMIN"]).contains("wrong number of arguments"));
    assert!(refused(&mut client, &["ADMIN", "FOO"]).contains("unknown ADMIN subcommand 'foo'"));
    assert!(refused(&mut client, &["ADMIN", "TRANSFER", "abc"]).contains("'abc' is not a member id"));
    assert!(refused(&mut client, &["ADMIN", "TRANSFER", "0"]).contains("'0' is not a member id"));
    assert!(refused(&mut client, &["ADMIN", "TRANSFER", "1", "2"]).contains("ADMIN TRANSFER [ID]"));
    assert!(refused(&mut client, &["ADMIN", "TRANSFER", "9"]).contains("node 9 is not a voter"));
    let itself = target.to_string();
    assert!(refused(&mut client, &["ADMIN", "TRANSFER", &itself]).contains("leads already"));
    // Nothing of that moved the leadership.
    assert_eq!(cluster.wait_for_leader(&[1, 2, 3]), target);

    // An endpoint nothing listens on.
    let mut command = Command::new(env!("CARGO_BIN_EXE_conclave"));
    command.args(["admin", "--endpoint", "127.0.0.1:1", "transfer"]);
    let output = output_within(command, "conclave admin", Duration::from_secs(30));
    assert!(!output.status.success() && text(&output.stderr).contains("127.0.0.1:1"), "{}", text(&output.stderr));
}

#[test]
fn a_leader_stopped_by_sigterm_hands_over_before_it_exits() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(&[1, 2, 3]);
    cluster.write_acked(&[1, 2, 3], "kept", "across the restart");
    cluster.send_signal(leader, "TERM");
    let status = cluster.wait_for_exit(leader, Duration::from_secs(20));
    assert!(status.success(), "the leader exited with {status}");
    let others: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let new_leader = cluster.wait_for_leader(&others);
    let log = cluster.log(leader);
    assert!(
        log.contains("leadership handed over before stopping") && log.contains(&format!("leader={new_leader}")),
        "the old leader's log:\n{log}"
    );
    // The survivors were handed the leadership: none of them detected a failure.
    for id in &others {
        let log = cluster.log(*id);
        assert!(!log.contains("FailureDetected"), "node {id} waited out a failure detection:\n{log}");
    }
    assert_eq!(cluster.mget(new_leader, &["kept".to_string()]), vec![Some("across the restart".to_string())]);
}

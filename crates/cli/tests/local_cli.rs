//! `conclave local`: starts a cluster of real processes, prints every address,
//! and stops them all cleanly on SIGTERM.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::resp::{info_field, wait_until, Client, Reply};

#[test]
fn local_runs_a_cluster_and_stops_it_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut local = Command::new(env!("CARGO_BIN_EXE_conclave"))
        .args(["local", "--nodes", "3", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(local.stdout.take().unwrap());
    let mut clients: Vec<SocketAddr> = Vec::new();
    let mut line = String::new();
    while clients.len() < 3 {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            let mut stderr = String::new();
            let _ = std::io::Read::read_to_string(&mut local.stderr.take().unwrap(), &mut stderr);
            panic!("conclave local ended early ({:?}): {stderr}", local.wait());
        }
        if let Some(rest) = line.strip_prefix(&format!("node {}: client ", clients.len() + 1)) {
            clients.push(rest.split_whitespace().next().unwrap().parse().unwrap());
        }
    }
    wait_until("a leader", Duration::from_secs(20), || {
        clients.iter().any(|address| info_field(*address, "role").as_deref() == Some("leader")).then_some(())
    });
    let mut client = Client::connect(clients[0]).unwrap();
    assert_eq!(client.command(&["SET", "k", "v"]).unwrap(), Reply::Simple("OK".into()));
    let mut client = Client::connect(clients[2]).unwrap();
    assert_eq!(client.command(&["GET", "k"]).unwrap(), Reply::bulk("v"));

    // SIGTERM without unsafe code: the system's `kill` command.
    let killed = Command::new("kill").args(["-TERM", &local.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = wait_until("conclave local to exit", Duration::from_secs(30), || local.try_wait().unwrap());
    assert!(status.success(), "{status}");
    let mut rest = String::new();
    for line in stdout.lines() {
        rest.push_str(&line.unwrap());
        rest.push('\n');
    }
    for id in 1..=3 {
        assert!(rest.contains(&format!("node {id} stopped (exit status: 0)")), "{rest}");
    }
}

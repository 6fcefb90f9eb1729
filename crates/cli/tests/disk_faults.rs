//! Disk faults on real `conclave serve` processes (issues 13 and 16;
//! docs/decisions/0069-disk-faults-stop-the-node.md): a WAL fsync that fails
//! with EIO, a WAL write or a state machine commit that finds the disk full,
//! a durable flush of the state machine that fails, on the leader or on a
//! follower, under a write load. The node stops at once, exit status 1, with
//! one error naming the operation and the file; the other two go on serving;
//! the node restarted with the fault disarmed rejoins, and every write
//! acknowledged before, during and after the fault reads back, from the
//! cluster and from the restarted node's own store.
//!
//! The faults are injected through the arming file named by
//! `CONCLAVE_DISK_FAULTS` (`conclave_storage::fault`): the `conclave` binary
//! these tests run is built with the feature `disk-faults`, which this
//! package's dev-dependency on the server turns on for test builds only.
//!
//! The figures printed are not assertions.

mod support;

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::cluster::Cluster;
use support::resp::{info_field, wait_until};
use support::writers::{read_all, Writers};

/// Frequent durable flushes of the state machine, so the flush fault is
/// reached within a few milliseconds of being armed.
const SETTINGS: [&str; 4] = ["--set", "state_machine.flush_interval_ms=20", "--set", "state_machine.engine=redb"];

fn number(address: SocketAddr, field: &str) -> Option<u64> {
    info_field(address, field)?.parse().ok()
}

/// Which node the fault hits.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Victim {
    Leader,
    Follower,
}

/// Runs a 3-node cluster under a write load, arms `fault` (an arming file's
/// text) on the victim, and checks what the module comment says. `expected`
/// are fragments the victim's fatal error must hold (the operation, the file,
/// the OS error).
fn a_disk_fault_stops_the_node_and_loses_nothing(victim: Victim, fault: &str, expected: &[&str]) {
    a_disk_fault_on_an_engine_stops_the_node_and_loses_nothing(victim, fault, expected, &SETTINGS);
}

/// [`a_disk_fault_stops_the_node_and_loses_nothing`] with `settings` for every node.
fn a_disk_fault_on_an_engine_stops_the_node_and_loses_nothing(
    victim: Victim,
    fault: &str,
    expected: &[&str],
    settings: &[&str],
) {
    let mut cluster = Cluster::new(3);
    let arming = |id: u64| -> PathBuf { cluster.dir.path().join(format!("node{id}.disk-faults")) };
    let arming_files: Vec<PathBuf> = (1..=3).map(arming).collect();
    for id in 1..=3u64 {
        let file = arming_files[id as usize - 1].clone();
        cluster.start_node_with_env(id, settings, &[("CONCLAVE_DISK_FAULTS", OsStr::new(&file))]);
    }
    let leader = cluster.wait_for_leader(&[1, 2, 3]);
    let victim = match victim {
        Victim::Leader => leader,
        Victim::Follower => (1..=3).find(|id| *id != leader).unwrap(),
    };
    let others: Vec<u64> = (1..=3).filter(|id| *id != victim).collect();
    let writers = Writers::start((1..=3).map(|id| cluster.address(id)).collect(), 4, "d");
    writers.wait_for("acknowledged writes before the fault", Writers::count, 300);

    let armed_at = Instant::now();
    let acked_before = writers.count();
    std::fs::write(&arming_files[victim as usize - 1], fault).unwrap();
    let status = cluster.wait_for_exit(victim, Duration::from_secs(20));
    let stopped_after = armed_at.elapsed();
    let log = cluster.log(victim);
    assert_eq!(status.code(), Some(1), "node {victim} exits with status 1 on {fault}; log:\n{log}");
    let fatal = log
        .lines()
        .find(|line| line.contains("stopped") && line.contains("ERROR"))
        .unwrap_or_else(|| panic!("node {victim} logs its fatal error; log:\n{log}"));
    let errors = log.lines().filter(|line| line.contains(" ERROR ")).count();
    assert_eq!(errors, 1, "node {victim} logs one error line; log:\n{log}");
    for fragment in expected {
        assert!(fatal.contains(fragment), "the fatal error names {fragment:?}: {fatal}");
    }
    println!(
        "{fault} on node {victim} ({victim_role}): exited {status} after {stopped_after:?}: {fatal}",
        victim_role = if victim == leader { "leader" } else { "follower" }
    );

    // The other two go on: a leader among them, and writes acknowledged.
    let stopped_at = Instant::now();
    let new_leader = cluster.wait_for_leader(&others);
    writers.wait_for("acknowledged writes after the stop", |w| w.acked_after(stopped_at), 300);
    let first_after = writers.first_after(stopped_at);
    println!(
        "nodes {others:?} serve on (leader {new_leader}); first write acknowledged {:?} after the victim exited",
        first_after.map(|at| at - stopped_at)
    );

    // Disarmed and restarted, the victim rejoins.
    std::fs::remove_file(&arming_files[victim as usize - 1]).unwrap();
    cluster.start_node(victim, settings);
    writers.wait_for("acknowledged writes with the victim back", |w| w.acked_after(stopped_at), 600);
    let acked: Vec<String> = writers.stop().into_iter().map(|(key, _)| key).collect();
    let leader = cluster.wait_for_leader(&[1, 2, 3]);
    let target = number(cluster.address(leader), "applied_index").unwrap();
    wait_until(&format!("node {victim} to apply up to {target}"), Duration::from_secs(30), || {
        (number(cluster.address(victim), "applied_index")? >= target).then_some(())
    });

    // Every acknowledged write reads back: through the leader, and from the
    // restarted node's own store.
    for (source, local) in [(leader, false), (victim, true)] {
        let values = read_all(cluster.address(source), &acked, local);
        let missing: Vec<&String> = acked
            .iter()
            .zip(&values)
            .filter(|(key, value)| value.as_deref() != Some(key.as_str()))
            .map(|(key, _)| key)
            .collect();
        assert!(
            missing.is_empty(),
            "{} of {} acknowledged writes do not read back from node {source} (first: {:?})",
            missing.len(),
            acked.len(),
            missing.first()
        );
    }
    println!(
        "{} writes acknowledged ({acked_before} before the fault), every one read back from leader {leader} and from \
         node {victim} restarted",
        acked.len()
    );
}

#[test]
fn an_fsync_eio_on_the_leader_stops_it_and_loses_nothing_acknowledged() {
    a_disk_fault_stops_the_node_and_loses_nothing(
        Victim::Leader,
        "wal-fsync:eio",
        &["fsync of", "wal-", ".log failed", "os error 5"],
    );
}

#[test]
fn an_fsync_eio_on_a_follower_stops_it_and_loses_nothing_acknowledged() {
    a_disk_fault_stops_the_node_and_loses_nothing(
        Victim::Follower,
        "wal-fsync:eio",
        &["fsync of", "wal-", ".log failed", "os error 5"],
    );
}

#[test]
fn a_full_disk_under_the_wal_or_the_state_machine_stops_the_node_and_loses_nothing_acknowledged() {
    // A WAL write on a follower, a state machine commit on the leader.
    a_disk_fault_stops_the_node_and_loses_nothing(
        Victim::Follower,
        "wal-write:enospc",
        &["write of", "wal-", ".log failed", "os error 28"],
    );
    a_disk_fault_stops_the_node_and_loses_nothing(
        Victim::Leader,
        "state-apply:enospc",
        &["state machine file", "state.redb", "applied entries up to index", "os error 28"],
    );
}

#[test]
fn an_eio_in_the_state_machines_durable_flush_stops_the_node_and_loses_nothing_acknowledged() {
    a_disk_fault_stops_the_node_and_loses_nothing(
        Victim::Follower,
        "state-flush:eio",
        &["state machine file", "state.redb", "durable flush", "os error 5"],
    );
}

#[test]
fn on_the_lsm_engine_a_full_disk_or_an_eio_in_the_state_machine_stops_the_node_and_loses_nothing_acknowledged() {
    let settings = ["--set", "state_machine.flush_interval_ms=20", "--set", "state_machine.engine=fjall"];
    a_disk_fault_on_an_engine_stops_the_node_and_loses_nothing(
        Victim::Leader,
        "state-apply:enospc",
        &["state machine file", "state.fjall", "applied entries up to index", "os error 28"],
        &settings,
    );
    a_disk_fault_on_an_engine_stops_the_node_and_loses_nothing(
        Victim::Follower,
        "state-flush:eio",
        &["state machine file", "state.fjall", "durable flush", "os error 5"],
        &settings,
    );
}

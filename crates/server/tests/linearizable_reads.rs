//! Linearizable reads across a three-node in-process cluster on loopback:
//! a read through a follower sees a write acknowledged just
//! before through another node, reads never enter the log (ReadIndex through
//! the leader), and a `READONLY` connection still reads its node's own state.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use conclave_server::config::{Limits, Timing};
use conclave_server::{Member, RunningServer, ServerConfig};
use support::resp::{info_field, wait_until, Client, Reply};

use support::ports::free_address;

struct TestCluster {
    runtime: tokio::runtime::Runtime,
    servers: Vec<RunningServer>,
    _dir: tempfile::TempDir,
}

impl TestCluster {
    fn start() -> TestCluster {
        let dir = tempfile::tempdir().unwrap();
        let members: Vec<Member> = (1..=3)
            .map(|id| Member {
                id,
                peer_address: free_address(),
                client_address: free_address(),
                http_address: None,
                priority: None,
            })
            .collect();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let servers = (1..=3)
            .map(|id| {
                let config = ServerConfig {
                    cluster_id: 7,
                    node_id: id,
                    data_dir: dir.path().join(format!("node{id}")),
                    election_mode: None,
                    initial_leader: Some(1),
                    password: None,
                    members: members.clone(),
                    join: false,
                    timing: Timing::default(),
                    limits: Limits::default(),
                    snapshot: Default::default(),
                    state_machine: Default::default(),
                };
                runtime.block_on(conclave_server::start(config)).expect("the node starts")
            })
            .collect();
        TestCluster { runtime, servers, _dir: dir }
    }

    fn address(&self, id: u64) -> SocketAddr {
        self.servers[id as usize - 1].client_address
    }

    /// The node every member names as serving leader.
    fn wait_for_leader(&self) -> u64 {
        wait_until("a leader every node knows", Duration::from_secs(20), || {
            let leaders: Vec<String> =
                (1..=3).map(|id| info_field(self.address(id), "leader_id")).collect::<Option<_>>()?;
            let leader: u64 = leaders[0].parse().ok()?;
            let agreed = leaders.iter().all(|other| *other == leaders[0]);
            let role = info_field(self.address(leader), "role")?;
            (agreed && role == "leader").then_some(leader)
        })
    }

    fn last_index(&self, id: u64) -> u64 {
        info_field(self.address(id), "last_index").expect("INFO answers").parse().unwrap()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for server in self.servers.drain(..) {
            let _ = self.runtime.block_on(server.shutdown());
        }
    }
}

/// A command that retries `-TRYAGAIN` (the cluster may still be settling).
fn command(client: &mut Client, arguments: &[&str]) -> Reply {
    wait_until("an answer that is not TRYAGAIN", Duration::from_secs(10), || {
        match client.command(arguments).expect("the node answers") {
            Reply::Error(error) if error.starts_with("TRYAGAIN") => None,
            reply => Some(reply),
        }
    })
}

#[test]
fn a_read_through_a_follower_sees_the_write_acknowledged_just_before_through_another_node() {
    let cluster = TestCluster::start();
    let leader = cluster.wait_for_leader();
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let (reader, other) = (followers[0], followers[1]);
    let mut reading = Client::connect(cluster.address(reader)).unwrap();
    // Writes go through the other follower and the leader in turn; each read
    // through `reader` follows its write's acknowledgement at once, before
    // `reader` can have learned the commit from a heartbeat.
    for round in 0..40 {
        let through = if round % 2 == 0 { other } else { leader };
        let mut writing = Client::connect(cluster.address(through)).unwrap();
        let value = format!("v{round}");
        assert_eq!(command(&mut writing, &["SET", "key", &value]), Reply::Simple("OK".into()));
        assert_eq!(command(&mut reading, &["GET", "key"]), Reply::bulk(&value), "read {round} is stale");
        let counter = command(&mut writing, &["INCR", "counter"]);
        assert_eq!(command(&mut reading, &["GET", "counter"]), Reply::bulk(&(round + 1).to_string()));
        assert_eq!(counter, Reply::Integer(round + 1));
    }
}

#[test]
fn reads_never_enter_the_log() {
    let cluster = TestCluster::start();
    let leader = cluster.wait_for_leader();
    let mut client = Client::connect(cluster.address(leader)).unwrap();
    assert_eq!(command(&mut client, &["SET", "a", "1"]), Reply::Simple("OK".into()));
    let before = cluster.last_index(leader);
    for id in 1..=3 {
        let mut client = Client::connect(cluster.address(id)).unwrap();
        for _ in 0..10 {
            assert_eq!(command(&mut client, &["GET", "a"]), Reply::bulk("1"));
            assert_eq!(command(&mut client, &["EXISTS", "a", "b"]), Reply::Integer(1));
        }
    }
    assert_eq!(cluster.last_index(leader), before, "60 reads appended nothing: they went by ReadIndex");
}

#[test]
fn a_readonly_connection_reads_its_own_node() {
    let cluster = TestCluster::start();
    let leader = cluster.wait_for_leader();
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let mut writer = Client::connect(cluster.address(leader)).unwrap();
    assert_eq!(command(&mut writer, &["SET", "k", "x"]), Reply::Simple("OK".into()));
    let mut stale = Client::connect(cluster.address(follower)).unwrap();
    assert_eq!(command(&mut stale, &["READONLY"]), Reply::Simple("OK".into()));
    // The follower learns the commit within a heartbeat; its local read then
    // shows it without asking the leader.
    wait_until("the follower to apply the write", Duration::from_secs(10), || {
        (command(&mut stale, &["GET", "k"]) == Reply::bulk("x")).then_some(())
    });
}
